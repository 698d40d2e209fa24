"""Where encrypted replicas are kept: a small interface, an in-memory and a directory implementation.

:class:`ReplicaStore` is what a storage node (a later issue) serves over the network; the
embedded :class:`MemoryReplicaStore` is for tests and single-process use, and
:class:`DirectoryReplicaStore` keeps one file per replica under a directory.
:func:`open_replica_store` picks one from a short URL (``memory:`` or ``dir:/path``).
"""

from __future__ import annotations

import abc
import os
import tempfile
from pathlib import Path
from typing import IO

from ..errors import NotFound, ParameterError
from ..protocols.storage import ReplicaId

__all__ = ["DirectoryReplicaStore", "MemoryReplicaStore", "ReplicaStore", "open_replica_store"]


class ReplicaStore(abc.ABC):
    """Stores encrypted replicas by :class:`~dtxfast.protocols.storage.ReplicaId`."""

    @abc.abstractmethod
    def put(self, replica: ReplicaId, data: bytes | bytearray) -> None:
        """Store (or overwrite) one replica."""

    @abc.abstractmethod
    def get(self, replica: ReplicaId) -> bytes:
        """The replica's bytes; raises NotFound."""

    @abc.abstractmethod
    def open(self, replica: ReplicaId) -> IO[bytes]:
        """A seekable binary stream over the replica (for answering challenges); raises NotFound."""

    @abc.abstractmethod
    def delete(self, replica: ReplicaId) -> None:
        """Forget a replica; raises NotFound."""

    @abc.abstractmethod
    def __contains__(self, replica: object) -> bool: ...

    @abc.abstractmethod
    def list(self) -> list[ReplicaId]:
        """All replicas held."""


class MemoryReplicaStore(ReplicaStore):
    """Replicas in a dict (tests, one process)."""

    def __init__(self) -> None:
        self._data: dict[ReplicaId, bytes] = {}

    def put(self, replica: ReplicaId, data: bytes | bytearray) -> None:
        self._data[replica] = bytes(data)

    def get(self, replica: ReplicaId) -> bytes:
        try:
            return self._data[replica]
        except KeyError:
            raise NotFound(f"replica {replica} is not stored here") from None

    def open(self, replica: ReplicaId) -> IO[bytes]:
        import io

        return io.BytesIO(self.get(replica))

    def delete(self, replica: ReplicaId) -> None:
        self.get(replica)
        del self._data[replica]

    def __contains__(self, replica: object) -> bool:
        return replica in self._data

    def list(self) -> list[ReplicaId]:
        return list(self._data)


class DirectoryReplicaStore(ReplicaStore):
    """One file per replica: ``<root>/<file id hex>/<slice>.<replica>``.

    A replica is written to a temporary file beside its place, flushed to disk (``fsync``),
    renamed over its place and the directory synced (``durable=True``, the default), so a crash
    leaves either the old replica or the new one, never a torn one. ``create=False`` opens an
    existing store only (readers and auditors: a missing folder is :class:`NotFound`, never
    created).
    """

    def __init__(self, root: str | os.PathLike[str], *, durable: bool = True, create: bool = True) -> None:
        self.durable = durable
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise ParameterError(f"{self.root} is a file, not a replica store folder")
        if not create:  # readers: a missing store is an error, not an empty folder to make
            if not self.root.is_dir():
                raise NotFound(f"no replica store at {self.root}")
            return
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, replica: ReplicaId) -> Path:
        """Where a replica's file is (whether or not it exists)."""
        return self.root / replica.file_id.hex() / f"{replica.slice_index}.{replica.replica_index}"

    _path = path

    def put(self, replica: ReplicaId, data: bytes | bytearray) -> None:
        path = self._path(replica)
        path.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                if self.durable:
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if self.durable:  # the rename itself survives a crash once the directory is synced
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def open(self, replica: ReplicaId) -> IO[bytes]:
        try:
            return open(self._path(replica), "rb")
        except FileNotFoundError:
            raise NotFound(f"replica {replica} is not stored here") from None

    def get(self, replica: ReplicaId) -> bytes:
        with self.open(replica) as f:
            return f.read()

    def delete(self, replica: ReplicaId) -> None:
        path = self._path(replica)
        try:
            path.unlink()
        except FileNotFoundError:
            raise NotFound(f"replica {replica} is not stored here") from None
        try:  # the file's folder goes with its last replica
            path.parent.rmdir()
        except OSError:
            pass

    def __contains__(self, replica: object) -> bool:
        return isinstance(replica, ReplicaId) and self._path(replica).is_file()

    def list(self) -> list[ReplicaId]:
        out = []
        for d in sorted(self.root.iterdir()):
            if not d.is_dir():
                continue
            try:
                fid = bytes.fromhex(d.name)
            except ValueError:
                continue
            for f in sorted(d.iterdir()):
                s, _, r = f.name.partition(".")
                if s.isdigit() and r.isdigit():
                    out.append(ReplicaId(fid, int(s), int(r)))
        return out


def open_replica_store(url: str) -> ReplicaStore:
    """``"memory:"`` → :class:`MemoryReplicaStore`; ``"dir:/some/path"`` → :class:`DirectoryReplicaStore`."""
    if url == "memory:":
        return MemoryReplicaStore()
    if url.startswith("dir:") and len(url) > 4:
        return DirectoryReplicaStore(url[4:])
    raise ParameterError(f"unknown replica store {url!r}; use 'memory:' or 'dir:/path'")
