"""Choose the Numba kernels or their pure-numpy twin (``DTXFAST_BACKEND`` as for every kernel)."""

from __future__ import annotations

import importlib
from types import ModuleType

from ... import _backend
from ...errors import BackendUnavailable

__all__ = ["kernels", "set_numba_threads"]

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


def set_numba_threads() -> None:
    """Apply :func:`dtxfast.num_threads` to Numba's pool (no-op without Numba)."""
    try:
        import numba
    except ImportError:  # pragma: no cover
        return
    want = max(1, min(_backend.num_threads(), numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    if numba.get_num_threads() != want:
        numba.set_num_threads(want)
