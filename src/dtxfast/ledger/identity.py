"""Node identities: an Ed25519 key pair per node, its key file, and sealing to a node's key.

A node of dtxfast (storage node, executor, data owner, requester) is known on the ledger by its
Ed25519 public key; its short printable **node id** is derived from that key
(:attr:`~dtxfast.crypto.signatures.Ed25519PublicKey.node_id`). The private key lives in a key
file readable by its owner only (mode ``0600``); :meth:`NodeIdentity.load` refuses a key file that
other users can read.

The same key pair also receives secrets: :func:`seal_to` encrypts bytes to a node's Ed25519 public
key (the key is mapped to its X25519 twin, an ephemeral X25519 key agreement derives a one-time
ChaCha20-Poly1305 key), and only :meth:`NodeIdentity.unseal` of that node opens them. A file
owner uses it to hand an executor the file's decryption material inside an approval on the ledger,
never in the clear.

Examples
--------
>>> from dtxfast.ledger.identity import NodeIdentity, seal_to
>>> alice = NodeIdentity.generate()
>>> len(alice.node_id)
16
>>> box = seal_to(alice.public_key_bytes, b"file key")
>>> alice.unseal(box)
b'file key'
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from Crypto.Cipher import ChaCha20_Poly1305
from Crypto.Hash import SHA256
from Crypto.Protocol import DH
from Crypto.Protocol.KDF import HKDF

from ..crypto.signatures import PUBLIC_KEY_SIZE, Ed25519PrivateKey, Ed25519PublicKey
from ..errors import InvalidProof, MalformedInput, ParameterError

__all__ = ["KEY_FILE_VERSION", "SEALED_OVERHEAD", "NodeIdentity", "seal_to"]

#: version of the key file format written by :meth:`NodeIdentity.save`
KEY_FILE_VERSION = 1
#: bytes a sealed box adds to its plaintext: version byte, ephemeral key, tag
SEALED_OVERHEAD = 1 + 32 + 16
_SEAL_VERSION = 1
_P = 2**255 - 19


class _KeyFile(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    kind: str
    seed: str  # hex
    node_id: str


def _fast_signer(seed: bytes) -> Callable[[bytes], bytes] | None:
    """An OpenSSL signer of the same key when ``cryptography`` is present (same bytes: RFC 8032)."""
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:  # pragma: no cover - cryptography is a dependency
        return None
    return ed25519.Ed25519PrivateKey.from_private_bytes(seed).sign


def _x25519_public(ed_public: bytes) -> bytes:
    """The X25519 (Montgomery u) form of an Ed25519 public key: u = (1 + y) / (1 - y) mod p."""
    y = int.from_bytes(ed_public, "little") & ((1 << 255) - 1)
    if y >= _P or y == 1:
        raise MalformedInput("not an Ed25519 public key usable for sealing")
    u = (1 + y) * pow(1 - y, -1, _P) % _P
    return u.to_bytes(32, "little")


def _x25519_private(seed: bytes) -> bytes:
    """The X25519 scalar of an Ed25519 seed (its SHA-512 lower half; X25519 clamps it)."""
    return hashlib.sha512(seed).digest()[:32]


def _seal_key(shared: bytes, eph_pub: bytes, recipient_pub: bytes) -> bytes:
    key = HKDF(shared, 32, eph_pub + recipient_pub, SHA256, context=b"dtxfast/seal/v1")
    assert isinstance(key, bytes)
    return key


def seal_to(public_key: bytes | Ed25519PublicKey, plaintext: bytes) -> bytes:
    """Encrypt ``plaintext`` so that only the holder of ``public_key``'s private key can read it.

    Parameters
    ----------
    public_key : bytes or Ed25519PublicKey
        The recipient's Ed25519 public key (32 bytes), as registered on the ledger.
    plaintext : bytes
        The secret, e.g. a file's decryption key.

    Returns
    -------
    bytes
        ``version || ephemeral X25519 key || ciphertext || tag``, ``len(plaintext) + 49`` bytes.

    Examples
    --------
    >>> bob = NodeIdentity.generate()
    >>> box = seal_to(bob.public_key, b"k" * 32)
    >>> len(box) == 32 + SEALED_OVERHEAD
    True
    """
    raw = public_key.to_bytes() if isinstance(public_key, Ed25519PublicKey) else bytes(public_key)
    if len(raw) != PUBLIC_KEY_SIZE:
        raise MalformedInput(f"a node public key is {PUBLIC_KEY_SIZE} bytes")
    recipient = _x25519_public(raw)
    eph_seed = os.urandom(32)
    eph = DH.import_x25519_private_key(eph_seed)
    eph_pub = eph.public_key().export_key(format="raw")
    shared = DH.key_agreement(
        static_priv=eph, static_pub=DH.import_x25519_public_key(recipient), kdf=lambda z: z
    )
    key = _seal_key(shared, eph_pub, recipient)
    cipher = ChaCha20_Poly1305.new(key=key, nonce=bytes(12))
    cipher.update(bytes([_SEAL_VERSION]))
    ct, tag = cipher.encrypt_and_digest(bytes(plaintext))
    return bytes([_SEAL_VERSION]) + eph_pub + ct + tag


class NodeIdentity:
    """The key pair of one node: signs its ledger transactions and opens secrets sealed to it.

    Parameters
    ----------
    private_key : Ed25519PrivateKey
        The node's signing key.

    Examples
    --------
    >>> ident = NodeIdentity.generate()
    >>> sig = ident.sign(b"msg")
    >>> ident.public_key.verify(sig, b"msg")
    >>> ident.node_id == ident.public_key.node_id
    True
    """

    __slots__ = ("_pk", "_sign", "_sk")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        if not isinstance(private_key, Ed25519PrivateKey):
            raise ParameterError("NodeIdentity needs an Ed25519PrivateKey")
        self._sk = private_key
        self._pk = private_key.public_key()
        self._sign = _fast_signer(private_key.to_bytes()) or private_key.sign

    @classmethod
    def generate(cls) -> NodeIdentity:
        """A fresh identity from the operating system's CSPRNG."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> NodeIdentity:
        """The identity of a 32-byte Ed25519 seed (deterministic; for tests and key escrow)."""
        return cls(Ed25519PrivateKey.from_bytes(seed))

    @property
    def private_key(self) -> Ed25519PrivateKey:
        """The Ed25519 signing key."""
        return self._sk

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The Ed25519 verification key."""
        return self._pk

    @property
    def public_key_bytes(self) -> bytes:
        """The 32 raw bytes of the public key, as carried by every transaction."""
        return self._pk.to_bytes()

    @property
    def node_id(self) -> str:
        """The short printable node id (16 lowercase base32 characters)."""
        return self._pk.node_id

    def sign(self, message: bytes) -> bytes:
        """Sign ``message`` (Ed25519, RFC 8032, deterministic); 64 bytes."""
        return self._sign(message)

    def pair_key(self, peer_public_key: bytes | Ed25519PublicKey) -> bytes:
        """A 32-byte secret this node shares with one peer, and nobody else.

        A static X25519 key agreement between the two nodes' keys (each Ed25519 key mapped to its
        X25519 twin, as for sealing), hashed with both public keys and a domain tag: the peer's
        ``pair_key`` of this node's public key gives the same bytes. For keying a MAC between two
        nodes (:mod:`dtxfast.transport.http_auth` authenticates large request bodies with it);
        a MAC under it convinces those two nodes only, it is no signature.

        Raises
        ------
        MalformedInput
            Not a public key usable for key agreement.

        Examples
        --------
        >>> a, b = NodeIdentity.generate(), NodeIdentity.generate()
        >>> a.pair_key(b.public_key_bytes) == b.pair_key(a.public_key)
        True
        >>> a.pair_key(b.public_key) == a.pair_key(NodeIdentity.generate().public_key)
        False
        """
        raw = peer_public_key.to_bytes() if isinstance(peer_public_key, Ed25519PublicKey) else bytes(peer_public_key)
        if len(raw) != PUBLIC_KEY_SIZE:
            raise MalformedInput(f"a node public key is {PUBLIC_KEY_SIZE} bytes")
        own = DH.import_x25519_private_key(_x25519_private(self._sk.to_bytes()))
        try:
            shared = DH.key_agreement(static_priv=own, static_pub=DH.import_x25519_public_key(_x25519_public(raw)),
                                      kdf=lambda z: z)
        except ValueError:
            raise MalformedInput("a public key unusable for key agreement") from None
        mine = self._pk.to_bytes()
        both = min(mine, raw) + max(mine, raw)
        key = HKDF(shared, 32, both, SHA256, context=b"dtxfast/pair-key/v1")
        assert isinstance(key, bytes)
        return key

    def unseal(self, box: bytes) -> bytes:
        """Open a box made by :func:`seal_to` for this node.

        Raises
        ------
        MalformedInput
            The box is truncated or of an unknown version.
        InvalidProof
            The box was not sealed to this node, or was altered.
        """
        box = bytes(box)
        if len(box) < SEALED_OVERHEAD or box[0] != _SEAL_VERSION:
            raise MalformedInput("not a sealed box of a known version")
        eph_pub, ct, tag = box[1:33], box[33:-16], box[-16:]
        own = DH.import_x25519_private_key(_x25519_private(self._sk.to_bytes()))
        own_pub = own.public_key().export_key(format="raw")
        try:
            shared = DH.key_agreement(
                static_priv=own, static_pub=DH.import_x25519_public_key(eph_pub), kdf=lambda z: z
            )
        except ValueError:
            raise MalformedInput("sealed box carries an invalid ephemeral key") from None
        cipher = ChaCha20_Poly1305.new(key=_seal_key(shared, eph_pub, own_pub), nonce=bytes(12))
        cipher.update(box[:1])
        try:
            return cipher.decrypt_and_verify(ct, tag)
        except ValueError:
            raise InvalidProof("sealed box does not open with this node's key") from None

    # -- key files ---------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the key file (mode 0600, created atomically; refuses to overwrite by default).

        Examples
        --------
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> ident = NodeIdentity.generate()
        >>> p = ident.save(os.path.join(d, "node.key"))
        >>> oct(p.stat().st_mode & 0o777)
        '0o600'
        >>> NodeIdentity.load(p).node_id == ident.node_id
        True
        """
        path = Path(path)
        doc = _KeyFile(KEY_FILE_VERSION, "ed25519", self._sk.to_bytes().hex(), self.node_id)
        data = msgspec.json.encode(doc) + b"\n"
        target = path.with_name(f".{path.name}.{os.getpid()}.tmp") if overwrite else path
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise ParameterError(f"key file {target} already exists") from None
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(target, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> NodeIdentity:
        """Read a key file written by :meth:`save`.

        Raises
        ------
        ParameterError
            The key file can be read or written by other users (group/other permission bits set).
        MalformedInput
            The file is not a dtxfast key file, or its node id does not match its key.
        """
        path = Path(path)
        st = path.stat()
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise ParameterError(
                f"key file {path} is accessible by other users (mode {stat.S_IMODE(st.st_mode):04o}); "
                f"run: chmod 600 {path}"
            )
        try:
            doc = msgspec.json.decode(path.read_bytes(), type=_KeyFile)
            seed = bytes.fromhex(doc.seed)
        except (msgspec.DecodeError, ValueError) as exc:
            raise MalformedInput(f"{path} is not a dtxfast key file ({exc})") from None
        if doc.version != KEY_FILE_VERSION or doc.kind != "ed25519":
            raise MalformedInput(f"{path}: unknown key file version {doc.version} / kind {doc.kind!r}")
        ident = cls.from_seed(seed)
        if ident.node_id != doc.node_id:
            raise MalformedInput(f"{path}: node id does not match the key")
        return ident

    def __repr__(self) -> str:
        return f"NodeIdentity(node_id={self.node_id!r})"

    def __reduce__(self) -> tuple[Any, ...]:  # picklable for multiprocessing tests and workers
        return (NodeIdentity.from_seed, (self._sk.to_bytes(),))
