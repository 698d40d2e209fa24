"""The DataOwner's side of storage: file → slices → encrypted replicas → signed metadata, and back.

The file is read as a stream, one slice at a time (``slice_size`` bytes, default 4 MiB; the
last slice is zero-padded and its real length follows from the recorded file size), so memory
holds one slice and its replicas, never the file. Each slice becomes ``replicas`` (default 3)
AES-256-GCM encryptions, each under its own HKDF-derived key and nonce
(:mod:`dtxfast.crypto.aead`), and each encrypted replica gets a Merkle root
(:mod:`dtxfast.crypto.merkle`) for the proofs of storage. Replicas of one slice are encrypted
and hashed in parallel threads (the AEAD and the Merkle kernel both release the GIL).

Rebuilding needs any one replica of each slice: a replica that is missing or fails its AEAD
tag (tampered, truncated, or stored in another place) is skipped in favour of the next.

Examples
--------
>>> import io
>>> from dtxfast.crypto.signatures import Ed25519PrivateKey
>>> from dtxfast.storage import DataOwner, MemoryReplicaStore
>>> owner = DataOwner(Ed25519PrivateKey.generate())
>>> store = MemoryReplicaStore()
>>> meta = owner.upload(io.BytesIO(b"x" * 10_000), store, name="demo.bin", slice_size=4096)
>>> meta.slice_count, meta.replicas, len(store.list())
(3, 3, 9)
>>> out = io.BytesIO(); owner.download(meta, store, out); out.getvalue() == b"x" * 10_000
True
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO

from .._backend import num_threads
from ..crypto.aead import SECRET_SIZE, FileCipher, ReplicaCipher, hkdf_sha256
from ..crypto.merkle import DEFAULT_CHUNK_SIZE, MerkleTree
from ..crypto.signatures import Ed25519PrivateKey
from ..errors import InvalidProof, KeyMismatch, MalformedInput, NotFound, ParameterError
from ..protocols.storage import ReplicaId
from .metadata import FILE_ID_SIZE, MAX_REPLICAS, MAX_SLICE_SIZE, FileMetadata
from .store import ReplicaStore

__all__ = [
    "DEFAULT_REPLICAS",
    "DEFAULT_SLICE_SIZE",
    "DEFAULT_TTL",
    "DataOwner",
    "EncryptedReplica",
    "ReplicaEncryptor",
    "decrypt_file",
    "decrypt_replica",
]

DEFAULT_SLICE_SIZE = 4 * 1024 * 1024
DEFAULT_REPLICAS = 3
DEFAULT_TTL = 365 * 24 * 3600
_SECRET_SALT = b"dtxfast/owner-secret/v1"

_Fetch = ReplicaStore | Callable[[ReplicaId], bytes]


@dataclass(frozen=True)
class EncryptedReplica:
    """One encrypted replica ready to hand to a storage node, with its Merkle root."""

    replica: ReplicaId
    data: bytes | bytearray
    root: bytes


def _read_full(stream: IO[bytes], buf: bytearray) -> int:
    """Fill ``buf`` from ``stream`` (short reads are retried); returns the bytes read."""
    view = memoryview(buf)
    got = 0
    while got < len(buf):
        readinto = getattr(stream, "readinto", None)
        if readinto is not None:
            n = readinto(view[got:])
        else:
            chunk = stream.read(len(buf) - got)
            n = len(chunk)
            view[got : got + n] = chunk
        if not n:
            break
        got += n
    return got


class ReplicaEncryptor:
    """Iterates over the encrypted replicas of a stream, slice by slice (see the module docstring).

    After the iteration, :attr:`size` is the stream's length and :attr:`roots` the Merkle roots
    (``roots[slice][replica]``).
    """

    def __init__(self, cipher: FileCipher, stream: IO[bytes], *,
                 slice_size: int = DEFAULT_SLICE_SIZE, replicas: int = DEFAULT_REPLICAS,
                 chunk_size: int = DEFAULT_CHUNK_SIZE, threads: int | None = None) -> None:
        if not isinstance(slice_size, int) or not 1 <= slice_size <= MAX_SLICE_SIZE:
            raise ParameterError(f"slice_size must be in [1, {MAX_SLICE_SIZE}]")
        if not isinstance(replicas, int) or not 1 <= replicas <= MAX_REPLICAS:
            raise ParameterError(f"replicas must be in [1, {MAX_REPLICAS}]")
        self._cipher = cipher
        self._stream = stream
        self.file_id = cipher.file_id
        self.slice_size = slice_size
        self.replicas = replicas
        self.chunk_size = chunk_size
        self.threads = threads or num_threads()
        self.size = 0
        self.roots: list[list[bytes]] = []

    def _one(self, plain: bytes | bytearray, s: int, r: int, tree_threads: int | None) -> EncryptedReplica:
        data = self._cipher.encrypt(s, r, plain)
        root = MerkleTree.from_bytes(data, self.chunk_size, threads=tree_threads).root
        return EncryptedReplica(ReplicaId(self.file_id, s, r), data, root)

    def _slices(self) -> Iterator[tuple[int, bytearray]]:
        """(real length, zero-padded slice) for each slice of the stream; a fresh buffer each."""
        while True:
            buf = bytearray(self.slice_size)
            n = _read_full(self._stream, buf)
            if n == 0:
                return
            self.size += n
            yield n, buf
            if n < self.slice_size:
                return

    def __iter__(self) -> Iterator[EncryptedReplica]:
        if self.threads <= 1:
            for s, (_, buf) in enumerate(self._slices()):
                reps = [self._one(buf, s, r, None) for r in range(self.replicas)]
                self.roots.append([rep.root for rep in reps])
                yield from reps
            return
        # Two slices in flight: while the replicas of one are encrypted and hashed (AEAD and
        # Merkle kernel both release the GIL), the next is read and started, so the workers
        # never wait on a slice's last replica. Memory: two slices and their replicas.
        in_flight: deque[list[Future[EncryptedReplica]]] = deque()
        with ThreadPoolExecutor(self.threads) as pool:
            try:
                for s, (_, buf) in enumerate(self._slices()):
                    in_flight.append([pool.submit(self._one, buf, s, r, 1) for r in range(self.replicas)])
                    if len(in_flight) >= 2:
                        yield from self._collect(in_flight.popleft())
                while in_flight:
                    yield from self._collect(in_flight.popleft())
            finally:
                for futures in in_flight:
                    for f in futures:
                        f.cancel()

    def _collect(self, futures: list[Future[EncryptedReplica]]) -> list[EncryptedReplica]:
        reps = [f.result() for f in futures]
        self.roots.append([rep.root for rep in reps])
        return reps


class DataOwner:
    """A data owner: encrypts, slices and replicates files, signs their metadata, and rebuilds them.

    Parameters
    ----------
    key : Ed25519PrivateKey
        The owner's identity; it signs the file metadata.
    secret : bytes, optional
        32-byte secret from which every replica key is derived; by default derived from ``key``
        with HKDF (so one key file is enough to recover everything).
    """

    def __init__(self, key: Ed25519PrivateKey, secret: bytes | None = None) -> None:
        if not isinstance(key, Ed25519PrivateKey):
            raise ParameterError("key must be an Ed25519PrivateKey")
        if secret is None:
            secret = hkdf_sha256(key.to_bytes(), _SECRET_SALT, b"replica-keys", SECRET_SIZE)
        self._key = key
        self._cipher = ReplicaCipher(secret)
        self.public_key = key.public_key()

    def file_key(self, file_id: bytes) -> bytes:
        """The 32-byte key of one file: whoever holds it can read that file (:func:`decrypt_file`).

        Hand it to an executor only sealed to its key (``dtxfast.ledger.identity.seal_to``).
        """
        return self._cipher.file_key(file_id)

    def encrypt_stream(self, stream: IO[bytes], file_id: bytes, **options: int) -> ReplicaEncryptor:
        """The encrypted replicas of ``stream`` as an iterator (options as :class:`ReplicaEncryptor`)."""
        return ReplicaEncryptor(self._cipher.for_file(file_id), stream, **options)

    def upload(
        self,
        stream: IO[bytes],
        store: ReplicaStore | Callable[[EncryptedReplica], None],
        *,
        name: str,
        namespace: str = "default",
        slice_size: int = DEFAULT_SLICE_SIZE,
        replicas: int = DEFAULT_REPLICAS,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        expires_at: int | None = None,
        description: str = "",
        file_id: bytes | None = None,
        now: int | None = None,
    ) -> FileMetadata:
        """Encrypt ``stream`` into replicas, hand each to ``store``, return the signed metadata.

        ``store`` is a :class:`ReplicaStore` or a callable taking each :class:`EncryptedReplica`
        (a storage client, later). Placement is left empty (``""``); fill it with
        :meth:`FileMetadata.with_placement` and re-sign with :meth:`sign`.
        """
        created = int(time.time()) if now is None else int(now)
        expires = created + DEFAULT_TTL if expires_at is None else int(expires_at)
        if expires < created:
            raise ParameterError("expires_at is before the creation time")
        fid = os.urandom(FILE_ID_SIZE) if file_id is None else file_id
        if not isinstance(fid, bytes) or len(fid) != FILE_ID_SIZE:
            raise ParameterError(f"file_id must be {FILE_ID_SIZE} bytes")
        enc = ReplicaEncryptor(self._cipher.for_file(fid), stream, slice_size=slice_size, replicas=replicas,
                               chunk_size=chunk_size)
        put = store.put if isinstance(store, ReplicaStore) else None
        stored: list[ReplicaId] = []
        try:
            for rep in enc:
                if put is not None:
                    put(rep.replica, rep.data)
                    stored.append(rep.replica)
                else:
                    store(rep)  # type: ignore[operator]
        except BaseException:
            # a failed upload takes back what it stored (a callable store cleans up for itself)
            for rid in stored:
                with contextlib.suppress(Exception):
                    store.delete(rid)  # type: ignore[union-attr]
            raise
        meta = FileMetadata(
            file_id=fid, owner=self.public_key.to_bytes(), name=name, namespace=namespace, size=enc.size,
            slice_size=slice_size, chunk_size=chunk_size, replicas=replicas,
            roots=tuple(tuple(r) for r in enc.roots),
            placement=tuple(("",) * replicas for _ in enc.roots),
            created_at=created, expires_at=expires, description=description,
        )
        return meta.sign(self._key)

    def sign(self, metadata: FileMetadata) -> FileMetadata:
        """Sign (again) metadata of one of this owner's files, e.g. after :meth:`FileMetadata.with_placement`."""
        return metadata.sign(self._key)

    def decrypt_replica(self, metadata: FileMetadata, replica: ReplicaId, data: bytes) -> bytes:
        """The real (unpadded) bytes of a slice from one of its encrypted replicas (see :func:`decrypt_replica`)."""
        return decrypt_replica(metadata, self.file_key(metadata.file_id), replica, data)

    def download(self, metadata: FileMetadata, store: _Fetch, out: IO[bytes]) -> None:
        """Rebuild the file into ``out`` from any one good replica of each slice.

        Raises InvalidSignature (metadata not signed by its owner), KeyMismatch (another owner's
        file), or InvalidProof / NotFound when no replica of a slice is available and intact.
        """
        metadata.verify()
        if metadata.owner != self.public_key.to_bytes():
            raise KeyMismatch("this file belongs to another owner")
        decrypt_file(metadata, self.file_key(metadata.file_id), store, out)

    def __repr__(self) -> str:
        return f"DataOwner(node_id={self.public_key.node_id!r})"


def decrypt_replica(metadata: FileMetadata, file_key: bytes, replica: ReplicaId, data: bytes) -> bytes:
    """The real (unpadded) bytes of a slice from one of its encrypted replicas.

    Raises InvalidProof if the replica fails its AEAD tag, MalformedInput if it has the wrong size.
    """
    if len(data) != metadata.replica_size:
        raise MalformedInput(f"replica {replica} is {len(data)} bytes, not {metadata.replica_size}")
    plain = FileCipher(file_key, metadata.file_id).decrypt(replica.slice_index, replica.replica_index, data)
    return plain[: metadata.slice_length(replica.slice_index)]


def decrypt_file(metadata: FileMetadata, file_key: bytes, store: _Fetch, out: IO[bytes]) -> None:
    """Rebuild a file into ``out`` with its file key, from any one intact replica of each slice.

    For whoever was handed the file key (an executor); the owner uses :meth:`DataOwner.download`.
    Verify the metadata's signature first (:meth:`FileMetadata.verify`). Raises InvalidProof
    when no replica of a slice is available and intact (a wrong key fails every tag as well).
    """
    fetch = store.get if isinstance(store, ReplicaStore) else store
    cipher = FileCipher(file_key, metadata.file_id)
    for s in range(metadata.slice_count):
        problems: list[str] = []
        tag_failures = 0
        for r in range(metadata.replicas):
            rid = ReplicaId(metadata.file_id, s, r)
            try:
                data = fetch(rid)
                if len(data) != metadata.replica_size:
                    raise MalformedInput(f"{len(data)} bytes, not {metadata.replica_size}")
                out.write(memoryview(cipher.decrypt(s, r, data))[: metadata.slice_length(s)])
                break
            except InvalidProof as exc:
                tag_failures += 1
                problems.append(f"replica {r}: {exc}")
            except (NotFound, MalformedInput) as exc:
                problems.append(f"replica {r}: {exc}")
        else:
            hint = " (a wrong file key fails every tag too)" if tag_failures == metadata.replicas else ""
            raise InvalidProof(f"no intact replica of slice {s}: " + "; ".join(problems) + hint)
