"""Small file-system helpers shared by the CLI and the stores."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_output"]


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
