"""Which implementation of the kernels is in use, and why.

dtxfast's hot paths are compiled (``dtxfast._kernels.*``, built from ``ext/*.pyx``). When a
kernel is missing (no compiler or headers at install time) dtxfast still works: it falls back to
the pure-Python reference of that kernel, which passes the same tests.

The environment variable ``DTXFAST_BACKEND`` forces a choice: ``python`` always uses the
references; ``compiled`` raises :class:`~dtxfast.errors.BackendUnavailable` instead of falling
back. :func:`use_backend` switches for a block of code (the one switch tests and benchmarks use).
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

from .errors import BackendUnavailable, ParameterError

__all__ = [
    "BackendInfo",
    "backend_info",
    "compiled_kernel",
    "load_kernel",
    "num_threads",
    "set_num_threads",
    "use_backend",
]

# Primitive modules whose import loads a kernel; backend_info() imports them to report.
_PRIMITIVES = ("dtxfast.crypto.paillier", "dtxfast.crypto.merkle", "dtxfast.protocols.mpc",
               "dtxfast.crypto.blind_rsa", "dtxfast.crypto.ot")


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
                fallback = getattr(module, "SIMD_FALLBACK", "GMP path")
                isa = getattr(module, "SIMD_NAME", "AVX-512 IFMA")
                reason += f"; {isa} in use" if simd() else f"; {fallback} (no {isa}, or DTXFAST_SIMD=0)"
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


#: kernel -> (pure-Python twin, compiled module, the (module, attribute) pairs that hold it)
_SWITCHES: dict[str, tuple[str, str, tuple[tuple[str, str], ...]]] = {
    "_paillier": ("dtxfast.crypto._paillier_py", "dtxfast._kernels._paillier",
                  (("dtxfast.crypto.paillier", "_kernel"),)),
    "_merkle": ("dtxfast.crypto._merkle_py", "dtxfast._kernels._merkle", (("dtxfast.crypto.merkle", "_kernel"),)),
    "_psi": ("dtxfast.crypto._psi_py", "dtxfast._kernels._psi",
             (("dtxfast.crypto.blind_rsa", "_kernel"), ("dtxfast.crypto.ecdh", "_kernel"),
              ("dtxfast.protocols._psi_ot", "_psi"))),
    "_ot": ("dtxfast.crypto._ot_py", "dtxfast._kernels._ot",
            (("dtxfast.crypto.ot", "_kernel"), ("dtxfast.protocols._psi_ot", "_ot"))),
    "_mpc": ("dtxfast.protocols.mpc._kernels_ref", "dtxfast.protocols.mpc._kernels", ()),
    "_prf": ("dtxfast.protocols.mpc._prf_ref", "dtxfast._kernels._prf",
             (("dtxfast.protocols.mpc.prf", "_kernel"),)),
}


def compiled_kernel(name: str) -> ModuleType:
    """The compiled module of kernel ``name`` (``"_paillier"``, ``"_merkle"``, ``"_psi"``, ``"_mpc"``,
    ``"_prf"``).

    Raises
    ------
    BackendUnavailable
        If it was not built (or Numba is missing, for ``"_mpc"``).
    """
    try:
        return importlib.import_module(_SWITCHES[name][1])
    except KeyError:
        raise ParameterError(f"no kernel named {name!r}; known: {', '.join(_SWITCHES)}") from None
    except ImportError as exc:
        raise BackendUnavailable(f"compiled kernel {name} is not available ({exc})") from exc


@contextlib.contextmanager
def use_backend(backend: Literal["compiled", "python"], kernels: Iterable[str] | None = None) -> Iterator[None]:
    """Run a block with the compiled kernels or with their pure-Python twins, then switch back.

    One switch for tests and benchmarks (a test runs the same code on both backends; a benchmark
    times the twin beside the kernel). Objects built inside the block keep the kernel they were
    built with where they bind one (Paillier keys); module-level calls use it while the block runs.
    Not thread-safe: it swaps module globals.

    Parameters
    ----------
    backend : {"compiled", "python"}
    kernels : iterable of str, optional
        Only these kernels (default: all of ``_paillier``, ``_merkle``, ``_psi``, ``_mpc``, ``_prf``).

    Raises
    ------
    BackendUnavailable
        ``"compiled"`` for a kernel that was not built; nothing is switched then.

    Examples
    --------
    >>> from dtxfast.crypto import merkle
    >>> before = merkle._kernel
    >>> with use_backend("python", ["_merkle"]):
    ...     merkle._kernel.__name__
    'dtxfast.crypto._merkle_py'
    >>> merkle._kernel is before
    True
    """
    if backend not in ("compiled", "python"):
        raise ParameterError(f"backend must be 'compiled' or 'python', not {backend!r}")
    names = list(_SWITCHES) if kernels is None else list(kernels)
    unknown = [n for n in names if n not in _SWITCHES]
    if unknown:
        raise ParameterError(f"no kernel named {unknown[0]!r}; known: {', '.join(_SWITCHES)}")
    wanted = {n: (compiled_kernel(n) if backend == "compiled" else importlib.import_module(_SWITCHES[n][0]))
              for n in names}
    saved: list[tuple[Any, str, Any]] = []
    saved_loaded = dict(_loaded)
    try:
        for n, module in wanted.items():
            for mod_name, attr in _SWITCHES[n][2]:
                holder = importlib.import_module(mod_name)
                saved.append((holder, attr, getattr(holder, attr)))
                setattr(holder, attr, module)
            if n == "_mpc":  # MPCParty asks protocols.mpc._select.kernels(), which reads _loaded
                _loaded[n] = (module, BackendInfo(n, backend, "use_backend()"))
        yield
    finally:
        for holder, attr, old in reversed(saved):
            setattr(holder, attr, old)
        _loaded.clear()
        _loaded.update(saved_loaded)
