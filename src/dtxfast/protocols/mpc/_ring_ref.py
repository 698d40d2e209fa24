"""Exact matrix products over Z_2^64 on float64 BLAS: the pure-numpy form.

A product of ``uint64`` matrices modulo 2^64 is rebuilt from five float64 BLAS products of
21/21/22-bit limbs per block of at most :data:`KC` inner terms. Every float64 product here is an
exact integer (each dot product stays at or below 2^53 in magnitude), so the result is exact.

The scheme
----------
Each operand is written with signed limbs ``x = X0 + 2^21 X1 + 2^42 X2 (mod 2^64)``, where
``X0, X1`` lie in ``[-2^20, 2^20)`` and ``X2`` in ``[-2^21, 2^21)``. Of the nine limb products,
those at position 2^63 and below matter modulo 2^64; five BLAS products cover them:

* ``D0 = X0 Y0`` and ``D1 = X1 Y1``;
* ``P = (X0 + X1)(Y0 + Y1)``, so ``X0 Y1 + X1 Y0 = P - D0 - D1`` (Karatsuba);
* ``Q = U Y2 + X2 V`` with ``U = (X0 + 2^21 X1) mod± 2^22`` and ``V = (Y0 + 2^21 Y1) mod± 2^22``:
  one product of ``[U | X2]`` by ``[Y2 ; V]``. Position 2^42 needs its terms only modulo 2^22,
  and position 2^63 (``X1 Y2 + X2 Y1``) only modulo 2, which is 2^21 times it at 2^42.

``x @ y = D0 + 2^21 (P - D0 - D1) + 2^42 (D1 + Q) (mod 2^64)``. Every limb (and limb sum) is at
most 2^21 in magnitude, so a dot product of ``k`` terms is at most ``k 2^42``, and ``Q`` (``2k``
terms) at most ``k 2^43``: exact in float64 for ``k <= KC = 1024``. Longer products are cut into
blocks of ``KC`` and their results added modulo 2^64. Three limbs are the fewest for 64 bits (a
limb product must stay below 2^53), and five products the fewest of the schemes tried; plain
22-bit limbs need six.

:mod:`._ring` does the limb splitting and recombination in Numba (same functions, same
results); the products themselves are numpy's ``@`` on float64 (BLAS) in both.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, Union

import numpy as np

from ._select import blas_threads

__all__ = ["IFMA_KC", "KC", "Right", "ifma_matmul_sum", "join", "matmul_sum", "split_left_into", "split_right_into",
           "split_right_sum_into"]

#: largest inner dimension of one block (keeps every float64 dot product exact)
KC = 1024
#: multiply-adds from which the float64 products run on all BLAS threads (fewer: on one)
PARALLEL_BLAS = 1 << 24

_M20 = np.uint64((1 << 21) - 1)
_H20 = np.uint64(1 << 20)
_M21 = np.uint64((1 << 22) - 1)
_H21 = np.uint64(1 << 21)
_S21 = np.uint64(21)


def _limbs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signed limbs ``(X0, X1, X2)`` of ``x`` as int64 arrays (``x = X0 + 2^21 X1 + 2^42 X2``)."""
    x0 = ((x + _H20) & _M20).view(np.int64) - np.int64(1 << 20)
    r = (x - x0.view(np.uint64)) >> _S21
    x1 = ((r + _H20) & _M20).view(np.int64) - np.int64(1 << 20)
    r = (r - x1.view(np.uint64)) >> _S21
    x2 = ((r + _H21) & _M21).view(np.int64) - np.int64(1 << 21)
    return x0, x1, x2


def _smod22(v: np.ndarray) -> np.ndarray:
    """``v`` reduced into ``[-2^21, 2^21)`` modulo 2^22 (int64 in, int64 out)."""
    return ((v.view(np.uint64) + _H21) & _M21).view(np.int64) - np.int64(1 << 21)


def split_left_into(x: np.ndarray, x0: np.ndarray, x1: np.ndarray, xs: np.ndarray, q: np.ndarray, c: int) -> None:
    """Write the limbs of ``x`` (n x kx) into columns ``c .. c+kx`` of the block's left buffers.

    The buffers of a block of ``k`` columns are ``X0, X1, X0+X1`` (n x k) and ``[U | X2]``
    (n x 2k), all float64.
    """
    l0, l1, l2 = _limbs(x)
    kx = x.shape[1]
    k = x0.shape[1]
    x0[:, c:c + kx] = l0
    x1[:, c:c + kx] = l1
    xs[:, c:c + kx] = l0 + l1
    q[:, c:c + kx] = _smod22(l0 + (l1 << np.int64(21)))
    q[:, k + c:k + c + kx] = l2


def split_right_into(y: np.ndarray, y0: np.ndarray, y1: np.ndarray, ys: np.ndarray, q: np.ndarray, r: int) -> None:
    """Write the limbs of ``y`` (ky x m) into rows ``r .. r+ky`` of the block's right buffers.

    The buffers of a block of ``k`` rows are ``Y0, Y1, Y0+Y1`` (k x m) and ``[Y2 ; V]``
    (2k x m), all float64.
    """
    l0, l1, l2 = _limbs(y)
    ky = y.shape[0]
    k = y0.shape[0]
    y0[r:r + ky] = l0
    y1[r:r + ky] = l1
    ys[r:r + ky] = l0 + l1
    q[r:r + ky] = l2
    q[k + r:k + r + ky] = _smod22(l0 + (l1 << np.int64(21)))


def split_right_sum_into(y: np.ndarray, z: np.ndarray, y0: np.ndarray, y1: np.ndarray, ys: np.ndarray, q: np.ndarray, r: int) -> None:
    """:func:`split_right_into` of ``y + z`` (mod 2^64)."""
    split_right_into(y + z, y0, y1, ys, q, r)


def join(out: np.ndarray, d0: np.ndarray, d1: np.ndarray, p: np.ndarray, q: np.ndarray) -> None:
    """``out += D0 + 2^21 (P - D0 - D1) + 2^42 (D1 + Q)`` modulo 2^64 (``out`` is ``uint64``)."""
    a = d0.astype(np.int64).view(np.uint64)
    b = d1.astype(np.int64).view(np.uint64)
    mid = p.astype(np.int64).view(np.uint64) - a - b
    top = b + q.astype(np.int64).view(np.uint64)
    out += a + (mid << _S21) + (top << np.uint64(42))


#: a right factor: a ``uint64`` matrix, or a pair of them standing for their sum
Right = Union[np.ndarray, tuple[np.ndarray, np.ndarray]]


def _rows(y: Right) -> int:
    return int((y[0] if isinstance(y, tuple) else y).shape[0])


def _blocks(pairs: Sequence[tuple[np.ndarray, Right]]) -> list[list[tuple[np.ndarray, Right]]]:
    """Cut the inner dimension of all pairs, laid end to end, into blocks of at most KC."""
    blocks: list[list[tuple[np.ndarray, Right]]] = [[]]
    used = 0
    for x, y in pairs:
        k, s = x.shape[1], 0
        while s < k:
            if used == KC:
                blocks.append([])
                used = 0
            t = min(k, s + KC - used)
            ys = (y[0][s:t], y[1][s:t]) if isinstance(y, tuple) else y[s:t]
            blocks[-1].append((x[:, s:t], ys))
            used += t - s
            s = t
    return [b for b in blocks if b]


def matmul_sum(pairs: Sequence[tuple[np.ndarray, Right]], out: np.ndarray | None = None, kernels: Any = None) -> np.ndarray:
    """``sum(x @ y for x, y in pairs)`` modulo 2^64, added to ``out`` if given (and returned).

    Every ``x`` is ``n x k_i`` and every ``y`` is ``k_i x m`` (or a pair ``(y, z)`` standing for
    ``y + z``), all ``uint64``. The pairs are laid end to end along the inner dimension and cut
    into blocks of at most :data:`KC`; each block costs the five float64 products of the scheme.
    ``kernels`` supplies the split and join functions (default: this module's).

    Examples
    --------
    >>> x = np.array([[2**63 + 1, 3]], dtype=np.uint64); y = np.array([[2], [5]], dtype=np.uint64)
    >>> int(matmul_sum([(x, y)])[0, 0]) == ((2**63 + 1) * 2 + 15) % 2**64
    True
    """
    kern = kernels if kernels is not None else _THIS
    n, m = pairs[0][0].shape[0], (pairs[0][1][0] if isinstance(pairs[0][1], tuple) else pairs[0][1]).shape[1]
    if out is None:
        out = np.zeros((n, m), dtype=np.uint64)
    with blas_threads(None if n * m * sum(x.shape[1] for x, _ in pairs) >= PARALLEL_BLAS else 1):
        for block in _blocks(pairs):
            _block(kern, block, out, n, m)
    return out


def _block(kern: Any, block: list[tuple[np.ndarray, Right]], out: np.ndarray, n: int, m: int) -> None:
    k = sum(x.shape[1] for x, _ in block)
    x0, x1, xs = (np.empty((n, k)) for _ in range(3))
    xq = np.empty((n, 2 * k))
    y0, y1, ys = (np.empty((k, m)) for _ in range(3))
    yq = np.empty((2 * k, m))
    c = 0
    for x, y in block:
        kern.split_left_into(x, x0, x1, xs, xq, c)
        if isinstance(y, tuple):
            kern.split_right_sum_into(y[0], y[1], y0, y1, ys, yq, c)
        else:
            kern.split_right_into(y, y0, y1, ys, yq, c)
        c += x.shape[1]
    kern.join(out, x0 @ y0, x1 @ y1, xs @ ys, xq @ yq)


#: inner terms the IFMA kernel (``ext/_ring_ifma.h``) sums in registers before adding to the result
IFMA_KC = 256
_M52 = np.uint64((1 << 52) - 1)
_M26 = np.uint64((1 << 26) - 1)
_M12 = np.uint64((1 << 12) - 1)


def _mul52(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Low and high 52 bits of the products of the low 52 bits of ``a`` and ``b`` (what AVX-512
    IFMA's ``vpmadd52luq`` / ``vpmadd52huq`` add), element-wise on ``uint64`` arrays."""
    a = a & _M52
    b = b & _M52
    al, ah, bl, bh = a & _M26, a >> np.uint64(26), b & _M26, b >> np.uint64(26)
    mid = ah * bl + al * bh  # < 2^53
    t = al * bl + ((mid & _M26) << np.uint64(26))  # < 2^53
    return t & _M52, ah * bh + (mid >> np.uint64(26)) + (t >> np.uint64(52))


def _p(v: np.ndarray) -> np.ndarray:
    """The IFMA kernel's second operand: ``(v >> 52) + 2^40 (v mod 2^12)``."""
    return (v >> np.uint64(52)) | ((v & _M12) << np.uint64(40))


def ifma_matmul_sum(pairs: Sequence[tuple[np.ndarray, Right]], out: np.ndarray | None = None) -> np.ndarray:
    """``sum(x @ y for x, y in pairs)`` modulo 2^64 with exactly the AVX-512 IFMA kernel's arithmetic.

    The numpy twin of ``dtxfast._kernels._ring`` (``ext/_ring_ifma.h`` explains the scheme):
    per block of :data:`IFMA_KC` inner terms it sums ``lo52(x y)``, ``hi52(x y)`` and
    ``lo52(P(x) P(y))`` with ``P(v) = (v >> 52) + 2^40 (v mod 2^12)`` in wrapping 64-bit
    accumulators and adds ``acc0 + 2^52 (acc1 + (acc2 >> 40))``. Element-wise over
    ``n x IFMA_KC x m`` arrays: for checking the scheme on small matrices, not for speed.

    Examples
    --------
    >>> x = np.array([[2**64 - 1, 3]], dtype=np.uint64); y = np.array([[2**63 + 5], [2**52]], dtype=np.uint64)
    >>> int(ifma_matmul_sum([(x, y)])[0, 0]) == ((2**64 - 1) * (2**63 + 5) + 3 * 2**52) % 2**64
    True
    """
    x = np.concatenate([np.asarray(a, dtype=np.uint64) for a, _ in pairs], axis=1)
    y = np.concatenate([np.asarray(b[0] + b[1] if isinstance(b, tuple) else b, dtype=np.uint64) for _, b in pairs])
    if out is None:
        out = np.zeros((x.shape[0], y.shape[1]), dtype=np.uint64)
    for k0 in range(0, x.shape[1], IFMA_KC):
        xb = x[:, k0:k0 + IFMA_KC, None]
        yb = y[None, k0:k0 + IFMA_KC, :]
        lo, hi = _mul52(xb, yb)
        mid, _ = _mul52(_p(xb), _p(yb))
        acc0, acc1, acc2 = (v.sum(axis=1, dtype=np.uint64) for v in (lo, hi, mid))
        out += acc0 + ((acc1 + (acc2 >> np.uint64(40))) << np.uint64(52))
    return out


_THIS = sys.modules[__name__]
