"""Small file-system helpers shared by the CLI and the stores."""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["PositionedWriter", "atomic_output", "buffer_address"]


def _umask() -> int:
    """The process umask, read without changing it (Linux); 0o022 where it cannot be read."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    return 0o022


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], mode: str = "wb", *, private: bool = True,
                  **kwargs: Any) -> Iterator[IO[Any]]:
    """Write ``path`` all or nothing: a temporary file beside it replaces it only on success.

    If the body raises, the temporary file is removed and an existing ``path`` is left as it
    was, so a failed command never leaves a half-written or emptied output behind. The data is
    flushed to disk before the rename. A symbolic link is followed (the file it points to is
    replaced, the link stays); a target that is not a regular file (``/dev/stdout``, a pipe) is
    written directly, as there is nothing to protect. A new file gets mode 0600 when
    ``private`` (decrypted files, aligned ids, predictions), else the umask's default; a
    replaced file keeps its mode.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / "out.txt").write_text("old")
    3
    >>> try:
    ...     with atomic_output(d / "out.txt", "w") as f:
    ...         _ = f.write("new, half")
    ...         raise RuntimeError("failed midway")
    ... except RuntimeError:
    ...     pass
    >>> (d / "out.txt").read_text(), sorted(p.name for p in d.iterdir())
    ('old', ['out.txt'])
    """
    try:
        existing: os.stat_result | None = os.stat(path)  # follows symbolic links
    except FileNotFoundError:
        existing = None
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        with open(path, mode, **kwargs) as fh:
            yield fh
        return
    target = Path(os.path.realpath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        if existing is not None:
            os.chmod(tmp, stat.S_IMODE(existing.st_mode))
        elif not private:
            os.chmod(tmp, 0o666 & ~_umask())
        fh = os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    try:
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


#: direct (O_DIRECT) transfers must be aligned to the device's logical block; a page is safe everywhere
_ALIGN = mmap.PAGESIZE


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        n = os.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n


class PositionedWriter:
    """Positioned writes into an open regular file, bypassing the page cache where it can.

    A second descriptor of the same file is opened with ``O_DIRECT`` (through ``/proc/self/fd``);
    the page-aligned part of each write whose offset is page-aligned goes through it straight
    to the disk, the rest (an unaligned tail or offset) through ``fd`` and the page cache. Where
    the file system refuses ``O_DIRECT`` (tmpfs), or a buffer is not page-aligned (pass ``mmap``
    buffers for direct writes), every write is buffered: the bytes are the same either way.
    Why: writing fresh page-cache pages costs CPU per 4 KiB page (allocating, then writing each
    back on ``fsync``); a download writes hundreds of MiB that it does not read again.
    The caller still calls ``fsync`` on ``fd`` (direct writes skip the cache, not the disk's own, nor
    the file's metadata). Writes to disjoint ranges may run in parallel threads.

    Examples
    --------
    >>> import mmap, tempfile
    >>> buf = mmap.mmap(-1, 3 * mmap.PAGESIZE)
    >>> buf[:] = bytes(range(256)) * (len(buf) // 256)
    >>> with tempfile.TemporaryFile() as f:
    ...     w = PositionedWriter(f.fileno())
    ...     w.pwrite(memoryview(buf)[:5000], 0)          # 4096 direct + 904 buffered (on a disk)
    ...     w.pwrite(memoryview(buf)[:100], 5000)
    ...     w.close()
    ...     _ = f.seek(0)
    ...     f.read() == buf[:5000] + buf[:100]
    True
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._direct = -1
        if hasattr(os, "O_DIRECT") and os.path.exists(f"/proc/self/fd/{fd}"):
            try:
                self._direct = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_DIRECT | os.O_CLOEXEC)
            except OSError:
                self._direct = -1

    @property
    def direct(self) -> bool:
        """Whether aligned writes still go around the page cache."""
        return self._direct >= 0

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        """Write all of ``data`` at ``offset``."""
        mv = memoryview(data).cast("B")
        done = 0
        direct = self._direct
        head = len(mv) - len(mv) % _ALIGN
        if direct >= 0 and head and offset % _ALIGN == 0 and buffer_address(mv) % _ALIGN == 0:
            try:
                while done < head:
                    n = os.pwrite(direct, mv[done:head], offset + done)
                    done += n
                    if n <= 0 or n % _ALIGN:  # a short unaligned write: the rest goes buffered
                        break
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                # aligned memory, aligned offset, refused: the file system took the flag but
                # does not do direct transfers; the rest of this write and all later ones go buffered
                self._drop_direct()
        _pwrite_all(self.fd, mv[done:], offset + done)

    def _drop_direct(self) -> None:
        if self._direct >= 0:
            os.close(self._direct)
            self._direct = -1

    def close(self) -> None:
        """Close the direct descriptor (``fd`` stays the caller's)."""
        self._drop_direct()


def buffer_address(mv: memoryview) -> int:
    """Where a writable buffer starts in memory; 1 (aligned to nothing) for a read-only or empty one.

    Examples
    --------
    >>> import mmap
    >>> m = mmap.mmap(-1, mmap.PAGESIZE)
    >>> buffer_address(memoryview(m)) % mmap.PAGESIZE, buffer_address(memoryview(m)[1:]) % mmap.PAGESIZE
    (0, 1)
    >>> buffer_address(memoryview(b"read-only"))
    1
    """
    if mv.readonly or not len(mv):
        return 1
    import ctypes

    c = ctypes.c_char.from_buffer(mv)
    try:
        return ctypes.addressof(c)
    finally:
        del c

