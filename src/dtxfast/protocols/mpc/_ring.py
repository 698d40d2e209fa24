"""Exact matrix products over Z_2^64 on float64 BLAS: limb splitting and joining in Numba.

The same functions as :mod:`._ring_ref` (which explains the scheme), with the element-wise work
(splitting into limbs, joining the five products) in one pass each, on all threads for large
matrices. The float64 products are numpy's ``@`` (BLAS) in both.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit, prange

from . import _ring_ref
from ._ring_ref import KC, Right

__all__ = ["KC", "join", "matmul_sum", "split_left_into", "split_right_into", "split_right_sum_into"]

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


def matmul_sum(pairs: Sequence[tuple[np.ndarray, Right]], out: np.ndarray | None = None) -> np.ndarray:
    """``sum(x @ y for x, y in pairs)`` modulo 2^64 (see :func:`._ring_ref.matmul_sum`).

    Examples
    --------
    >>> x = np.array([[2**63 + 1, 3]], dtype=np.uint64); y = np.array([[2], [5]], dtype=np.uint64)
    >>> int(matmul_sum([(x, y)])[0, 0]) == ((2**63 + 1) * 2 + 15) % 2**64
    True
    """
    return _ring_ref.matmul_sum(pairs, out, kernels=_THIS)


_THIS = __import__("sys").modules[__name__]
