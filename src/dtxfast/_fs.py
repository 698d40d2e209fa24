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


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], mode: str = "wb", **kwargs: Any) -> Iterator[IO[Any]]:
    """Write ``path`` all or nothing: a temporary file beside it replaces it only on success.

    If the body raises, the temporary file is removed and an existing ``path`` is left as it
    was, so a failed command never leaves a half-written or emptied output behind. A new file
    gets mode 0600 (outputs hold private data: decrypted files, aligned ids, predictions); a
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
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
