"""File metadata: the record of a stored file that the ledger carries, signed by its owner.

The serialization is versioned and canonical: a msgpack array whose first element is the
version (``1``), then the fields in the order below, and last the 64-byte Ed25519 signature.
The owner signs ``b"dtxfast/file-metadata/v1\\x00"`` followed by the same array without the
signature, so any change to any field (a root, the placement, the expiry) breaks the signature.

Fields (version 1): ``file_id`` (16 bytes), ``owner`` (Ed25519 public key, 32 bytes), ``name``,
``namespace``, ``size`` (bytes of the plaintext file), ``slice_size``, ``chunk_size`` (Merkle
leaf size), ``replicas`` (per slice), ``aead`` (``"aes-256-gcm"``), ``roots`` (for each slice,
the Merkle root of each encrypted replica), ``placement`` (for each slice, the node id holding
each replica; ``""`` until placed), ``created_at`` and ``expires_at`` (Unix seconds),
``description``. The slice count and each slice's real length follow from ``size`` and
``slice_size`` (the last slice is zero-padded to ``slice_size`` before encryption); every
encrypted replica is ``slice_size + 16`` bytes (ciphertext and GCM tag).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import msgspec

from ..crypto.aead import AEAD_NAME, TAG_SIZE
from ..crypto.merkle import HASH_SIZE, MAX_CHUNK_SIZE
from ..crypto.signatures import SIGNATURE_SIZE, Ed25519PrivateKey, Ed25519PublicKey
from ..errors import InvalidSignature, MalformedInput, ParameterError
from ..protocols.storage import ReplicaCommitment, ReplicaId

__all__ = ["FILE_ID_SIZE", "MAX_SLICE_SIZE", "METADATA_VERSION", "FileMetadata"]

METADATA_VERSION = 1
FILE_ID_SIZE = 16
MAX_SLICE_SIZE = 1 << 30
MAX_REPLICAS = 64
_MAX_TEXT = 4096
_MAX_ENCODED = 64 * 1024 * 1024
_DOMAIN = b"dtxfast/file-metadata/v1\x00"


class _Wire(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    version: int
    file_id: bytes
    owner: bytes
    name: str
    namespace: str
    size: int
    slice_size: int
    chunk_size: int
    replicas: int
    aead: str
    roots: list[list[bytes]]
    placement: list[list[str]]
    created_at: int
    expires_at: int
    description: str
    signature: bytes


@dataclass(frozen=True)
class FileMetadata:
    """The signed record of one stored file (see the module docstring for the fields).

    Build it with :meth:`dtxfast.storage.DataOwner.upload`; change placement with
    :meth:`with_placement` and re-sign with :meth:`sign`.
    """

    file_id: bytes
    owner: bytes
    name: str
    namespace: str
    size: int
    slice_size: int
    chunk_size: int
    replicas: int
    roots: tuple[tuple[bytes, ...], ...]
    placement: tuple[tuple[str, ...], ...]
    created_at: int
    expires_at: int
    description: str = ""
    aead: str = AEAD_NAME
    signature: bytes = b""

    def __post_init__(self) -> None:
        err = self._problem()
        if err is not None:
            raise ParameterError(f"file metadata: {err}")

    def _problem(self) -> str | None:
        if not isinstance(self.file_id, bytes) or len(self.file_id) != FILE_ID_SIZE:
            return f"file_id must be {FILE_ID_SIZE} bytes"
        if not isinstance(self.owner, bytes) or len(self.owner) != 32:
            return "owner must be a 32-byte Ed25519 public key"
        for text in (self.name, self.namespace, self.description):
            if not isinstance(text, str) or len(text) > _MAX_TEXT:
                return f"name, namespace and description are strings of at most {_MAX_TEXT} characters"
        ints = (self.size, self.slice_size, self.chunk_size, self.replicas, self.created_at, self.expires_at)
        if any(not isinstance(v, int) or isinstance(v, bool) for v in ints):
            return "sizes, counts and times are ints"
        if not 0 <= self.size < 2**62:
            return "size out of range"
        if not 1 <= self.slice_size <= MAX_SLICE_SIZE:
            return f"slice_size must be in [1, {MAX_SLICE_SIZE}]"
        if not 1 <= self.chunk_size <= MAX_CHUNK_SIZE:
            return f"chunk_size must be in [1, {MAX_CHUNK_SIZE}]"
        if not 1 <= self.replicas <= MAX_REPLICAS:
            return f"replicas must be in [1, {MAX_REPLICAS}]"
        if self.aead != AEAD_NAME:
            return f"unknown AEAD {self.aead!r}"
        if not 0 <= self.created_at <= self.expires_at < 2**63:
            return "need 0 <= created_at <= expires_at"
        if len(self.roots) != self.slice_count or len(self.placement) != self.slice_count:
            return f"roots and placement need one entry per slice ({self.slice_count})"
        for row in self.roots:
            if len(row) != self.replicas or any(not isinstance(r, bytes) or len(r) != HASH_SIZE for r in row):
                return f"each slice needs {self.replicas} roots of {HASH_SIZE} bytes"
        for prow in self.placement:
            if len(prow) != self.replicas or any(not isinstance(p, str) or len(p) > 256 for p in prow):
                return f"each slice needs {self.replicas} placement entries (node ids)"
        if not isinstance(self.signature, bytes) or len(self.signature) not in (0, SIGNATURE_SIZE):
            return "signature must be empty or 64 bytes"
        return None

    # -- derived values
    @property
    def slice_count(self) -> int:
        return -(-self.size // self.slice_size)

    @property
    def replica_size(self) -> int:
        """Bytes of every encrypted replica (padded slice + GCM tag)."""
        return self.slice_size + TAG_SIZE

    def slice_length(self, index: int) -> int:
        """Real (unpadded) length of slice ``index``."""
        if not 0 <= index < self.slice_count:
            raise ParameterError(f"slice index {index} out of range [0, {self.slice_count})")
        return min(self.slice_size, self.size - index * self.slice_size)

    @property
    def owner_key(self) -> Ed25519PublicKey:
        return Ed25519PublicKey(self.owner)

    @property
    def is_signed(self) -> bool:
        return bool(self.signature)

    def replica_ids(self) -> list[ReplicaId]:
        return [ReplicaId(self.file_id, s, r) for s in range(self.slice_count) for r in range(self.replicas)]

    def commitments(self) -> list[ReplicaCommitment]:
        """What a proof-of-storage verifier checks, one per replica."""
        return [ReplicaCommitment(ReplicaId(self.file_id, s, r), self.roots[s][r], self.replica_size, self.chunk_size)
                for s in range(self.slice_count) for r in range(self.replicas)]

    # -- serialization and signature
    def _wire(self, signature: bytes) -> _Wire:
        return _Wire(METADATA_VERSION, self.file_id, self.owner, self.name, self.namespace, self.size,
                     self.slice_size, self.chunk_size, self.replicas, self.aead,
                     [list(r) for r in self.roots], [list(p) for p in self.placement],
                     self.created_at, self.expires_at, self.description, signature)

    def signed_bytes(self) -> bytes:
        """The exact bytes the owner signs (domain tag + the record without its signature)."""
        raw = msgspec.msgpack.encode(self._wire(b""))
        return _DOMAIN + raw

    def to_bytes(self) -> bytes:
        """Canonical versioned serialization (signature included)."""
        return msgspec.msgpack.encode(self._wire(self.signature))

    @classmethod
    def from_bytes(cls, data: bytes, max_size: int = _MAX_ENCODED) -> FileMetadata:
        """Parse metadata; raises MalformedInput (the signature is *not* checked: call :meth:`verify`)."""
        if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) > max_size:
            raise MalformedInput("file metadata is not bytes or is oversized")
        try:
            raw: Any = msgspec.msgpack.decode(data)
        except (msgspec.DecodeError, ValueError, RecursionError, OverflowError) as exc:
            raise MalformedInput(f"file metadata is not valid msgpack ({exc})") from None
        if not isinstance(raw, list) or not raw or raw[0] != METADATA_VERSION:
            raise MalformedInput("file metadata has an unknown version or layout")
        try:
            w = msgspec.convert(raw, type=_Wire)
        except (msgspec.ValidationError, ValueError, OverflowError) as exc:
            raise MalformedInput(f"file metadata is malformed ({exc})") from None
        try:
            meta = cls(w.file_id, w.owner, w.name, w.namespace, w.size, w.slice_size, w.chunk_size, w.replicas,
                       tuple(tuple(r) for r in w.roots), tuple(tuple(p) for p in w.placement),
                       w.created_at, w.expires_at, w.description, w.aead, w.signature)
        except ParameterError as exc:
            raise MalformedInput(str(exc)) from None
        _ = meta.owner_key  # raises MalformedInput if the owner is not an Ed25519 public key
        return meta

    def sign(self, key: Ed25519PrivateKey) -> FileMetadata:
        """A copy signed by ``key``, which must be the owner's."""
        if key.public_key().to_bytes() != self.owner:
            raise ParameterError("only the owner's key may sign its file metadata")
        return dataclasses.replace(self, signature=key.sign(self.signed_bytes()))

    def verify(self) -> None:
        """Return None if signed by the owner recorded in it; else raise InvalidSignature."""
        if not self.signature:
            raise InvalidSignature("file metadata is not signed")
        try:
            key = self.owner_key
        except MalformedInput:
            raise InvalidSignature("the owner field is not an Ed25519 public key") from None
        key.verify(self.signature, self.signed_bytes())

    def is_valid(self) -> bool:
        try:
            self.verify()
        except InvalidSignature:
            return False
        return True

    def with_placement(self, placement: list[list[str]] | tuple[tuple[str, ...], ...]) -> FileMetadata:
        """An unsigned copy with new placement (sign it again)."""
        return dataclasses.replace(self, placement=tuple(tuple(p) for p in placement), signature=b"")

    def replace(self, **changes: Any) -> FileMetadata:
        """An unsigned copy with some fields changed (sign it again)."""
        changes.setdefault("signature", b"")
        return dataclasses.replace(self, **changes)

    @property
    def file_id_hex(self) -> str:
        return self.file_id.hex()
