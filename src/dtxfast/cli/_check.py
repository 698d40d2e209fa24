"""Checks of command-line values at the boundary (L4): one clear line naming the option.

Typer/click check the *form* of a value (an integer, a float); these check its *range*, which
click does not do for NaN and infinity (``--days nan`` passes a ``min=0`` check), and the paths a
command will read or write, before any work starts, so a command that fails leaves nothing behind.

Examples
--------
>>> finite("--days", 3.0, low=0, low_open=True)
3.0
>>> finite("--days", float("nan"), low=0)
Traceback (most recent call last):
...
dtxfast.errors.ParameterError: --days must be a finite number, not nan
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from ..errors import NotFound, ParameterError

__all__ = ["at_least", "choice", "finite", "input_file", "node_id", "output_file", "output_folder"]


def finite(name: str, value: float, *, low: float | None = None, high: float | None = None,
           low_open: bool = False) -> float:
    """``value`` if it is finite and within ``[low, high]`` (``(low, high]`` when ``low_open``)."""
    if not math.isfinite(value):
        raise ParameterError(f"{name} must be a finite number, not {value}")
    if low is not None and (value <= low if low_open else value < low):
        raise ParameterError(f"{name} must be {'greater than' if low_open else 'at least'} {low:g}, not {value:g}")
    if high is not None and value > high:
        raise ParameterError(f"{name} must be at most {high:g}, not {value:g}")
    return value


def at_least(name: str, value: int, low: int) -> int:
    """``value`` if it is at least ``low``."""
    if value < low:
        raise ParameterError(f"{name} must be at least {low}, not {value}")
    return value


def choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ParameterError(f"{name} must be one of {', '.join(choices)}; not {value!r}")
    return value


def input_file(name: str, path: str | os.PathLike[str]) -> Path:
    """``path`` if it is an existing regular file."""
    p = Path(path)
    if p.is_dir():
        raise ParameterError(f"{name} {p} is a directory, not a file")
    if not p.exists():
        raise NotFound(f"{name} {p}: no such file")
    return p


def output_file(name: str, path: str | os.PathLike[str],
                inputs: dict[str, str | os.PathLike[str] | None] | None = None) -> Path:
    """``path`` if a file can be written there: not a directory, in an existing folder, and not
    one of the command's ``inputs`` (option name -> path), which writing would destroy.

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> _ = open(os.path.join(d, "a.csv"), "w").write("id")
    >>> try:
    ...     output_file("--out", os.path.join(d, "a.csv"), {"--ids": os.path.join(d, ".", "a.csv")})
    ... except ValueError as exc:
    ...     print(str(exc).split(": ")[-1])
    writing it would destroy the input
    """
    p = Path(path)
    if p.is_dir():
        raise ParameterError(f"{name} {p} is a directory, not a file")
    if not p.parent.is_dir():
        raise NotFound(f"{name} {p}: folder {p.parent} does not exist")
    for other, q in (inputs or {}).items():
        if q is not None and p.exists() and Path(q).exists() and os.path.samefile(p, q):
            raise ParameterError(f"{name} {p} is {other}: writing it would destroy the input")
    return p


def output_folder(name: str, path: str | os.PathLike[str]) -> Path:
    """``path`` if it is a folder or can be made one (it is not a file, nor under one)."""
    p = Path(path)
    for q in (p, *p.parents):
        if q.exists():
            if not q.is_dir():
                raise ParameterError(f"{name} {p}: {q} is a file, not a folder")
            break
    return p


_NODE_ID = re.compile(r"[a-z2-7]{16}")


def node_id(name: str, value: str) -> str:
    """``value`` if it has the form of a node id (16 lowercase base32 characters, what
    ``dtx keys new`` prints): a malformed one would silently match nothing.

    Examples
    --------
    >>> node_id("--owner", "abcdefghijklmnop")
    'abcdefghijklmnop'
    """
    if not _NODE_ID.fullmatch(value):
        raise ParameterError(f"{name} must be a node id (16 characters a-z, 2-7, as dtx keys new prints), "
                             f"not {value!r}")
    return value
