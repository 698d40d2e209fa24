"""Exact matrix products over Z_2^64: AVX-512 IFMA where the CPU has it, else float64 BLAS.

:func:`matmul_sum` runs the compiled IFMA kernel ``dtxfast._kernels._ring`` (three IFMA
instructions per 8 multiply-adds, ``ext/_ring_ifma.h``; numpy twin
:func:`._ring_ref.ifma_matmul_sum`) when it was built and the CPU has AVX-512 IFMA, and
:func:`blas_matmul_sum` otherwise: the float64 limb products of :mod:`._ring_ref` (which explains
that scheme) with the element-wise work (splitting into limbs, joining the five products) in
Numba, one pass each, on all threads for large matrices; the float64 products are numpy's ``@``
(BLAS).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numba import njit, prange

from . import _ring_ref
from ._ring_ref import KC, Right
from ._select import _threads

_ifma: Any
try:
    from ..._kernels import _ring as _ifma
except ImportError:  # not built: the BLAS path
    _ifma = None

__all__ = ["KC", "blas_matmul_sum", "ifma_available", "join", "matmul_sum", "split_left_into", "split_right_into",
           "split_right_sum_into"]

#: multiply-adds from which the IFMA kernel runs on all threads (fewer: on one)
PARALLEL_IFMA = 1 << 22

#: elements from which a split or join runs on all threads
PARALLEL_ELEMS = 1 << 18

_M20 = np.uint64((1 << 21) - 1)
_H20 = np.uint64(1 << 20)
_M21 = np.uint64((1 << 22) - 1)
_H21 = np.uint64(1 << 21)
_S21 = np.uint64(21)
_S42 = np.uint64(42)


@njit(inline="always")
def _limbs(v):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    a = np.int64((v + _H20) & _M20) - np.int64(1 << 20)
    r = (v - np.uint64(a)) >> _S21
    b = np.int64((r + _H20) & _M20) - np.int64(1 << 20)
    r = (r - np.uint64(b)) >> _S21
    c = np.int64((r + _H21) & _M21) - np.int64(1 << 21)
    u = np.int64((np.uint64(a + (b << 21)) + _H21) & _M21) - np.int64(1 << 21)
    return a, b, c, u


@njit(inline="always")
def _left_row(x, x0, x1, xs, q, c, k, i):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    for j in range(x.shape[1]):
        a, b, d, u = _limbs(x[i, j])
        x0[i, c + j] = a
        x1[i, c + j] = b
        xs[i, c + j] = a + b
        q[i, c + j] = u
        q[i, k + c + j] = d


@njit(parallel=True, cache=True, nogil=True)
def _left_par(x, x0, x1, xs, q, c):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    k = x0.shape[1]
    for i in prange(x.shape[0]):
        _left_row(x, x0, x1, xs, q, c, k, i)


@njit(cache=True, nogil=True)
def _left_ser(x, x0, x1, xs, q, c):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    k = x0.shape[1]
    for i in range(x.shape[0]):
        _left_row(x, x0, x1, xs, q, c, k, i)


@njit(inline="always")
def _right_row(y, z, y0, y1, ys, q, r, k, i):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    for j in range(y.shape[1]):
        a, b, d, u = _limbs(y[i, j] + z[i, j])
        y0[r + i, j] = a
        y1[r + i, j] = b
        ys[r + i, j] = a + b
        q[r + i, j] = d
        q[k + r + i, j] = u


@njit(parallel=True, cache=True, nogil=True)
def _right_par(y, z, y0, y1, ys, q, r):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    k = y0.shape[0]
    for i in prange(y.shape[0]):
        _right_row(y, z, y0, y1, ys, q, r, k, i)


@njit(cache=True, nogil=True)
def _right_ser(y, z, y0, y1, ys, q, r):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    k = y0.shape[0]
    for i in range(y.shape[0]):
        _right_row(y, z, y0, y1, ys, q, r, k, i)


@njit(inline="always")
def _join_row(out, d0, d1, p, q, i):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    for j in range(out.shape[1]):
        a = np.uint64(np.int64(d0[i, j]))
        b = np.uint64(np.int64(d1[i, j]))
        mid = np.uint64(np.int64(p[i, j])) - a - b
        top = b + np.uint64(np.int64(q[i, j]))
        out[i, j] += a + (mid << _S21) + (top << _S42)


@njit(parallel=True, cache=True, nogil=True)
def _join_par(out, d0, d1, p, q):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    for i in prange(out.shape[0]):
        _join_row(out, d0, d1, p, q, i)


@njit(cache=True, nogil=True)
def _join_ser(out, d0, d1, p, q):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    for i in range(out.shape[0]):
        _join_row(out, d0, d1, p, q, i)


_ZERO = np.zeros((1, 1), dtype=np.uint64)


def split_left_into(x: np.ndarray, x0: np.ndarray, x1: np.ndarray, xs: np.ndarray, q: np.ndarray, c: int) -> None:
    """Write the limbs of ``x`` into columns ``c .. c+kx`` of the block's left buffers."""
    (_left_par if x.size >= PARALLEL_ELEMS else _left_ser)(x, x0, x1, xs, q, c)


def split_right_sum_into(y: np.ndarray, z: np.ndarray, y0: np.ndarray, y1: np.ndarray, ys: np.ndarray, q: np.ndarray, r: int) -> None:
    """Write the limbs of ``y + z`` into rows ``r .. r+ky`` of the block's right buffers."""
    (_right_par if y.size >= PARALLEL_ELEMS else _right_ser)(y, z, y0, y1, ys, q, r)


def split_right_into(y: np.ndarray, y0: np.ndarray, y1: np.ndarray, ys: np.ndarray, q: np.ndarray, r: int) -> None:
    """Write the limbs of ``y`` into rows ``r .. r+ky`` of the block's right buffers."""
    z = np.broadcast_to(_ZERO, y.shape)
    split_right_sum_into(y, z, y0, y1, ys, q, r)


def join(out: np.ndarray, d0: np.ndarray, d1: np.ndarray, p: np.ndarray, q: np.ndarray) -> None:
    """``out += D0 + 2^21 (P - D0 - D1) + 2^42 (D1 + Q)`` modulo 2^64."""
    (_join_par if out.size >= PARALLEL_ELEMS else _join_ser)(out, d0, d1, p, q)


def ifma_available() -> bool:
    """True when :func:`matmul_sum` runs on the AVX-512 IFMA kernel (built, CPU has it, and
    ``DTXFAST_SIMD`` is not ``0``)."""
    return _ifma is not None and bool(_ifma.simd_available())


def _u64(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.uint64)


def _left(a: np.ndarray) -> np.ndarray:
    """A left operand as the IFMA kernel takes it: C- or F-contiguous ``uint64`` (the transpose
    of a C-contiguous array, such as a weight gradient's ``acts.T``, is read in place)."""
    if a.dtype == np.uint64 and (a.flags.c_contiguous or a.flags.f_contiguous):
        return a
    return _u64(a)


def ifma_matmul_sum(pairs: Sequence[tuple[np.ndarray, Right]], out: np.ndarray | None = None) -> np.ndarray:
    """:func:`matmul_sum` on the IFMA kernel (raises RuntimeError where it cannot run)."""
    if _ifma is None:
        raise RuntimeError("dtxfast._kernels._ring was not built")
    first = pairs[0][1]
    n, m = pairs[0][0].shape[0], (first[0] if isinstance(first, tuple) else first).shape[1]
    if out is None:
        out = np.zeros((n, m), dtype=np.uint64)
    work = n * m * sum(x.shape[1] for x, _ in pairs)
    xs = [_left(x) for x, _ in pairs]
    ys = [_u64(y[0] if isinstance(y, tuple) else y) for _, y in pairs]
    y2s = [_u64(y[1]) if isinstance(y, tuple) else None for _, y in pairs]
    _ifma.matmul_sum(xs, ys, y2s, out, _threads() if work >= PARALLEL_IFMA else 1)
    return out


def blas_matmul_sum(pairs: Sequence[tuple[np.ndarray, Right]], out: np.ndarray | None = None) -> np.ndarray:
    """:func:`matmul_sum` on float64 BLAS limb products (see :func:`._ring_ref.matmul_sum`)."""
    return _ring_ref.matmul_sum(pairs, out, kernels=_THIS)


def matmul_sum(pairs: Sequence[tuple[np.ndarray, Right]], out: np.ndarray | None = None) -> np.ndarray:
    """``sum(x @ y for x, y in pairs)`` modulo 2^64, added to ``out`` if given (and returned).

    Every ``x`` is ``n x k_i`` and every ``y`` is ``k_i x m`` (or a pair ``(y, z)`` standing for
    ``y + z``), all ``uint64``. Runs on AVX-512 IFMA when :func:`ifma_available`, else on float64
    BLAS (:func:`blas_matmul_sum`); both give the exact product.

    Examples
    --------
    >>> x = np.array([[2**63 + 1, 3]], dtype=np.uint64); y = np.array([[2], [5]], dtype=np.uint64)
    >>> int(matmul_sum([(x, y)])[0, 0]) == ((2**63 + 1) * 2 + 15) % 2**64
    True
    """
    if ifma_available():
        return ifma_matmul_sum(pairs, out)
    return blas_matmul_sum(pairs, out)


_THIS = __import__("sys").modules[__name__]
