"""Which implementation of the kernels is in use, and why.

dtxfast's hot paths are compiled (``dtxfast._kernels.*``, built from ``ext/*.pyx``). When a
kernel is missing (no compiler or headers at install time) dtxfast still works: it falls back to
the pure-Python reference of that kernel, which passes the same tests.

The environment variable ``DTXFAST_BACKEND`` forces a choice: ``python`` always uses the
references; ``compiled`` raises :class:`~dtxfast.errors.BackendUnavailable` instead of falling
back.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Literal

from .errors import BackendUnavailable, ParameterError

__all__ = ["BackendInfo", "backend_info", "load_kernel", "num_threads", "set_num_threads"]

# Primitive modules whose import loads a kernel; backend_info() imports them to report.
_PRIMITIVES = ("dtxfast.crypto.paillier", "dtxfast.crypto.merkle", "dtxfast.protocols.mpc",
               "dtxfast.crypto.blind_rsa")


@dataclass(frozen=True)
class BackendInfo:
    """Which backend a kernel uses.

    Attributes
    ----------
    kernel : str
        Name of the kernel module (``"_paillier"``, ...).
    backend : {"compiled", "python"}
        ``"compiled"`` for the Cython/GMP extension, ``"python"`` for the reference.
    reason : str
        Why this backend was chosen (the import error, or the environment override).
    """

    kernel: str
    backend: Literal["compiled", "python"]
    reason: str


_loaded: dict[str, tuple[ModuleType, BackendInfo]] = {}


def _requested() -> str:
    value = os.environ.get("DTXFAST_BACKEND", "auto").strip().lower()
    if value not in ("auto", "compiled", "python"):
        raise ParameterError(f"DTXFAST_BACKEND must be auto, compiled or python, not {value!r}")
    return value


def load_kernel(name: str, python_module: str) -> tuple[ModuleType, BackendInfo]:
    """Import compiled kernel ``dtxfast._kernels.<name>``, or its pure-Python twin.

    Parameters
    ----------
    name : str
        Stem of the compiled module, e.g. ``"_paillier"``.
    python_module : str
        Absolute module path of the pure-Python reference with the same functions.
    """
    if name in _loaded:
        return _loaded[name]
    requested = _requested()
    module: ModuleType
    if requested == "python":
        module = importlib.import_module(python_module)
        info = BackendInfo(name, "python", "DTXFAST_BACKEND=python")
    else:
        try:
            module = importlib.import_module(f"dtxfast._kernels.{name}")
            reason = "compiled extension loaded"
            simd = getattr(module, "simd_available", None)
            if simd is not None:
                reason += "; AVX-512 IFMA in use" if simd() else "; GMP path (no AVX-512 IFMA, or DTXFAST_SIMD=0)"
            info = BackendInfo(name, "compiled", reason)
        except ImportError as exc:
            if requested == "compiled":
                raise BackendUnavailable(
                    f"compiled kernel dtxfast._kernels.{name} is not available ({exc}); "
                    "reinstall with a C compiler and libgmp-dev/libssl-dev"
                ) from exc
            module = importlib.import_module(python_module)
            info = BackendInfo(
                name,
                "python",
                f"compiled extension not available ({exc}); using the pure-Python reference. "
                "Reinstall with a C compiler and Debian's libgmp-dev and libssl-dev for speed",
            )
    _loaded[name] = (module, info)
    return module, info


def backend_info() -> dict[str, BackendInfo]:
    """Report, for each kernel, whether the compiled or the pure-Python backend is in use.

    Returns
    -------
    dict of str to BackendInfo

    Examples
    --------
    >>> import dtxfast
    >>> info = dtxfast.backend_info()
    >>> info["_paillier"].backend in ("compiled", "python")
    True
    """
    for module in _PRIMITIVES:  # importing a primitive module loads its kernel
        importlib.import_module(module)
    return {name: info for name, (_, info) in sorted(_loaded.items())}


_num_threads: int | None = None


def num_threads() -> int:
    """Number of threads compiled batch kernels use (default: ``OMP_NUM_THREADS`` or all cores)."""
    if _num_threads is not None:
        return _num_threads
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def set_num_threads(n: int | None) -> None:
    """Set the number of threads for compiled batch kernels (``None`` restores the default).

    Examples
    --------
    >>> import dtxfast
    >>> dtxfast.set_num_threads(1); dtxfast.num_threads()
    1
    >>> dtxfast.set_num_threads(None)
    """
    global _num_threads
    if n is not None and (not isinstance(n, int) or n < 1):
        raise ParameterError(f"number of threads must be a positive int, not {n!r}")
    _num_threads = n
