"""Numba kernels of the replicated-sharing protocol (one party's local work).

Integers in, integers out: every array is ``uint64`` (elements of Z_2^64, arithmetic wraps) and
C-contiguous; element-wise kernels take flat arrays. No validation and no randomness here: the
correlated randomness (``alpha``, ``r``) is drawn by the caller from the pairwise PRF streams.
:mod:`._kernels_ref` is the pure-numpy twin with the same functions; both pass the same tests.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["mul_local", "and_local", "matmul_local", "trunc_floor", "trunc_ceil_sub"]

_IB = 16   # rows of the result per parallel task
_JB = 512  # columns of the result kept in L1/L2
_KB = 128  # inner-dimension block (rows of the right operand kept in L2)


@njit(parallel=True, cache=True, nogil=True)
def mul_local(xa, xb, ya, yb, alpha):  # pragma: no cover - compiled
    """z = xa*ya + xa*yb + xb*ya + alpha (the 3-out-of-3 product share)."""
    n = xa.shape[0]
    z = np.empty(n, dtype=np.uint64)
    for k in prange(n):
        z[k] = xa[k] * (ya[k] + yb[k]) + xb[k] * ya[k] + alpha[k]
    return z


@njit(parallel=True, cache=True, nogil=True)
def and_local(xa, xb, ya, yb, alpha):  # pragma: no cover - compiled
    """z = (xa&ya) ^ (xa&yb) ^ (xb&ya) ^ alpha (boolean product share, 64 bits per word)."""
    n = xa.shape[0]
    z = np.empty(n, dtype=np.uint64)
    for k in prange(n):
        z[k] = (xa[k] & (ya[k] ^ yb[k])) ^ (xb[k] & ya[k]) ^ alpha[k]
    return z


@njit(parallel=True, cache=True, nogil=True)
def _matmul2(a0, b0, a1, b1, c):  # pragma: no cover - compiled
    # c += a0 @ b0 + a1 @ b1 over Z_2^64, tiled for the caches, rows in parallel
    n, kk = a0.shape
    m = b0.shape[1]
    nib = (n + _IB - 1) // _IB
    for ib in prange(nib):
        i0 = ib * _IB
        i1 = min(n, i0 + _IB)
        for j0 in range(0, m, _JB):
            j1 = min(m, j0 + _JB)
            for k0 in range(0, kk, _KB):
                k1 = min(kk, k0 + _KB)
                for i in range(i0, i1):
                    for k in range(k0, k1):
                        p = a0[i, k]
                        q = a1[i, k]
                        for j in range(j0, j1):
                            c[i, j] += p * b0[k, j] + q * b1[k, j]


def matmul_local(xa, xb, ya, yb, alpha):
    """z = xa @ (ya + yb) + xb @ ya + alpha (the 3-out-of-3 share of a matrix product)."""
    c = alpha.copy()
    _matmul2(xa, ya + yb, xb, ya, c)
    return c


@njit(parallel=True, cache=True, nogil=True)
def trunc_floor(z, d):  # pragma: no cover - compiled
    """floor(z / 2^d) with z read as a signed 64-bit integer."""
    n = z.shape[0]
    out = np.empty(n, dtype=np.uint64)
    for k in prange(n):
        out[k] = np.uint64(np.int64(z[k]) >> d)
    return out


@njit(parallel=True, cache=True, nogil=True)
def trunc_ceil_sub(z1, z2, r, d):  # pragma: no cover - compiled
    """ceil((z1 + z2) / 2^d) - r with z1 + z2 read as a signed 64-bit integer."""
    n = z1.shape[0]
    out = np.empty(n, dtype=np.uint64)
    for k in prange(n):
        t = np.int64(np.uint64(0) - (z1[k] + z2[k])) >> d
        out[k] = np.uint64(0) - np.uint64(t) - r[k]
    return out
