"""Choose the Numba kernels or their pure-numpy twin (``DTXFAST_BACKEND`` as for every kernel)."""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from ... import _backend
from ...errors import BackendUnavailable

__all__ = ["blas_threads", "kernels", "set_numba_threads"]

_NAME = "_mpc"


def kernels() -> ModuleType:
    """The kernel module in use, registered so :func:`dtxfast.backend_info` reports it."""
    if _NAME in _backend._loaded:
        return _backend._loaded[_NAME][0]
    requested = _backend._requested()
    if requested == "python":
        module = importlib.import_module(f"{__package__}._kernels_ref")
        info = _backend.BackendInfo(_NAME, "python", "DTXFAST_BACKEND=python")
    else:
        try:
            module = importlib.import_module(f"{__package__}._kernels")
            info = _backend.BackendInfo(_NAME, "compiled", "Numba kernels loaded")
        except ImportError as exc:
            if requested == "compiled":
                raise BackendUnavailable(f"the Numba kernels of dtxfast.protocols.mpc are not available ({exc})") from exc
            module = importlib.import_module(f"{__package__}._kernels_ref")
            info = _backend.BackendInfo(_NAME, "python", f"Numba not available ({exc}); using the numpy reference")
    _backend._loaded[_NAME] = (module, info)
    return module


_DEFAULT: dict[str | None, int] = {}


def _threads() -> int:
    """:func:`dtxfast.num_threads`, with the default (CPU affinity) looked up once per setting of
    ``OMP_NUM_THREADS`` rather than on every operation."""
    if _backend._num_threads is not None:
        return _backend._num_threads
    env = os.environ.get("OMP_NUM_THREADS")
    if env not in _DEFAULT:
        _DEFAULT[env] = _backend.num_threads()
    return _DEFAULT[env]


_LOCAL = threading.local()


def set_numba_threads() -> None:
    """Apply :func:`dtxfast.num_threads` to Numba's pool (no-op without Numba).

    Numba's count is per thread and only this function sets it, so each thread remembers what it
    applied last and skips Numba's own check (~7 us, called before every share operation) while
    the setting is unchanged.
    """
    threads = _threads()
    if getattr(_LOCAL, "numba_threads", None) == threads:
        return
    try:
        import numba
    except ImportError:  # pragma: no cover
        return
    want = max(1, min(threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    if numba.get_num_threads() != want:
        numba.set_num_threads(want)
    _LOCAL.numba_threads = threads


_BLAS: list[Any] | None = None


def _blas_controllers() -> list[Any]:
    global _BLAS
    if _BLAS is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - a dependency; without it BLAS keeps its own count
            _BLAS = []
        else:
            _BLAS = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
    return _BLAS


@contextlib.contextmanager
def blas_threads(n: int | None = None) -> Iterator[None]:
    """Run the block with BLAS on ``n`` threads (default :func:`dtxfast.num_threads`), then restore.

    Small products run on one thread: a BLAS thread team costs more than it saves there, and
    much more when the cores are shared with other work.
    """
    want = max(1, _threads() if n is None else n)
    ctls = _blas_controllers()
    before = [c.get_num_threads() for c in ctls]
    for c, b in zip(ctls, before):
        if b != want:
            c.set_num_threads(want)
    try:
        yield
    finally:
        for c, b in zip(ctls, before):
            if b != want:
                c.set_num_threads(b)
