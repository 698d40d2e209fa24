"""Ed25519 signatures (pycryptodome), the node identities of dtxfast.

Ledger entries, file metadata and protocol messages are signed with these keys. A node's printable
id is derived from its public key (:attr:`Ed25519PublicKey.node_id`).

Examples
--------
>>> from dtxfast.crypto.signatures import Ed25519PrivateKey
>>> sk = Ed25519PrivateKey.generate()
>>> sig = sk.sign(b"hello")
>>> sk.public_key().verify(sig, b"hello")  # returns None, raises InvalidSignature on failure
>>> sk.public_key().is_valid(sig, b"hullo")
False
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from Crypto.PublicKey import ECC
from Crypto.Signature import eddsa

from .._deprecated import renamed as _renamed
from ..errors import InvalidSignature, MalformedInput

__all__ = [
    "PUBLIC_KEY_SIZE",
    "SIGNATURE_SIZE",
    "Ed25519PrivateKey",
    "Ed25519PublicKey",
    "check_signatures",
    "node_id_of",
]

SIGNATURE_SIZE = 64
PUBLIC_KEY_SIZE = 32
SEED_SIZE = 32


def node_id_of(public_key: bytes) -> str:
    """The node id of 32 raw public-key bytes, without parsing the key (see ``node_id``).

    Examples
    --------
    >>> pk = Ed25519PrivateKey.generate().public_key()
    >>> node_id_of(pk.to_bytes()) == pk.node_id
    True
    """
    digest = hashlib.sha256(b"dtxfast-node-id\x00" + bytes(public_key)).digest()[:10]
    return base64.b32encode(digest).decode("ascii").lower()


class Ed25519PublicKey:
    """An Ed25519 verification key (32 raw bytes)."""

    __slots__ = ("_key", "_raw", "_verifier")

    def __init__(self, raw: bytes) -> None:
        if not isinstance(raw, (bytes, bytearray)) or len(raw) != PUBLIC_KEY_SIZE:
            raise MalformedInput(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes")
        try:
            self._key = eddsa.import_public_key(bytes(raw))
        except ValueError as exc:
            raise MalformedInput(f"not an Ed25519 public key: {exc}") from None
        self._raw = bytes(raw)
        self._verifier = eddsa.new(self._key, "rfc8032")

    @classmethod
    def from_bytes(cls, raw: bytes) -> Ed25519PublicKey:
        """Load a public key from its 32 raw bytes."""
        return cls(raw)

    def to_bytes(self) -> bytes:
        """The 32 raw bytes of the key."""
        return self._raw

    @property
    def node_id(self) -> str:
        """A short printable id: base32 of the first 10 bytes of SHA-256(public key), 16 chars."""
        return node_id_of(self._raw)

    def verify(self, signature: bytes, message: bytes) -> None:
        """Return None if ``signature`` is valid for ``message``, else raise InvalidSignature."""
        if len(signature) != SIGNATURE_SIZE:
            raise InvalidSignature("signature has the wrong length")
        try:
            self._verifier.verify(message, signature)
        except ValueError:
            raise InvalidSignature("Ed25519 signature does not verify") from None

    def is_valid(self, signature: bytes, message: bytes) -> bool:
        """True if ``signature`` is valid for ``message``."""
        try:
            self.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ed25519PublicKey) and other._raw == self._raw

    def __hash__(self) -> int:
        return hash(self._raw)

    def __repr__(self) -> str:
        return f"Ed25519PublicKey(node_id={self.node_id!r})"


class Ed25519PrivateKey:
    """An Ed25519 signing key, kept as its 32-byte seed."""

    __slots__ = ("_key", "_seed", "_signer")

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, (bytes, bytearray)) or len(seed) != SEED_SIZE:
            raise MalformedInput(f"an Ed25519 private key seed is {SEED_SIZE} bytes")
        self._seed = bytes(seed)
        self._key = eddsa.import_private_key(self._seed)
        self._signer = eddsa.new(self._key, "rfc8032")

    @classmethod
    def generate(cls) -> Ed25519PrivateKey:
        """A fresh key from the operating system's CSPRNG."""
        key = ECC.generate(curve="Ed25519")
        return cls(key.seed)

    @classmethod
    def from_bytes(cls, seed: bytes) -> Ed25519PrivateKey:
        """Load a private key from its 32-byte seed."""
        return cls(seed)

    def to_bytes(self) -> bytes:
        """The 32-byte seed (secret!)."""
        return self._seed

    def public_key(self) -> Ed25519PublicKey:
        """The matching verification key."""
        return Ed25519PublicKey(self._key.public_key().export_key(format="raw"))

    def sign(self, message: bytes) -> bytes:
        """Sign ``message`` (deterministic, RFC 8032); returns 64 bytes."""
        return self._signer.sign(message)

    def __repr__(self) -> str:
        return f"Ed25519PrivateKey(node_id={self.public_key().node_id!r})"


_OSSL: list[object] = []
_KEY_CACHE: dict[bytes, object] = {}


def _openssl_verifier() -> object | None:
    if _OSSL:
        return _OSSL[0]
    try:
        from cryptography.exceptions import InvalidSignature as _Bad
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey as _Pub
    except ImportError:  # pragma: no cover - optional accelerator
        _OSSL.append(None)
        return None
    _OSSL.append((_Pub, _Bad))
    return _OSSL[0]


def check_signatures(
    public_keys: list[bytes] | tuple[bytes, ...],
    signatures: list[bytes] | tuple[bytes, ...],
    messages: list[bytes] | tuple[bytes, ...],
) -> list[bool]:
    """Check many Ed25519 signatures; one bool per (public key, signature, message).

    Uses OpenSSL through ``cryptography`` when it is installed (about 3x faster than
    pycryptodome, the same RFC 8032 rules), else :meth:`Ed25519PublicKey.is_valid`.

    Examples
    --------
    >>> sk = Ed25519PrivateKey.generate()
    >>> pk = sk.public_key().to_bytes()
    >>> check_signatures([pk, pk], [sk.sign(b"a"), sk.sign(b"a")], [b"a", b"b"])
    [True, False]
    """
    if not (len(public_keys) == len(signatures) == len(messages)):
        raise MalformedInput("check_signatures needs as many keys, signatures and messages")
    fast = _openssl_verifier()
    out: list[bool] = []
    if fast is None:  # pragma: no cover - optional accelerator
        for pk, sig, msg in zip(public_keys, signatures, messages):
            try:
                out.append(Ed25519PublicKey(pk).is_valid(sig, msg))
            except MalformedInput:
                out.append(False)
        return out
    pub_cls: Any
    bad: Any
    pub_cls, bad = fast  # type: ignore[misc]
    cache = _KEY_CACHE
    if len(cache) > 4096:
        cache.clear()
    for pk, sig, msg in zip(public_keys, signatures, messages):
        key = cache.get(pk)
        if key is None:
            try:
                key = cache[pk] = pub_cls.from_public_bytes(bytes(pk))
            except ValueError:
                out.append(False)
                continue
        if len(sig) != SIGNATURE_SIZE:
            out.append(False)
            continue
        try:
            key.verify(bytes(sig), bytes(msg))  # type: ignore[attr-defined]
            out.append(True)
        except bad:
            out.append(False)
    return out


# names before the house rename (issue 14): importable with a DeprecationWarning
__getattr__ = _renamed("dtxfast.crypto.signatures", {'verify_batch': 'check_signatures'}, globals())
