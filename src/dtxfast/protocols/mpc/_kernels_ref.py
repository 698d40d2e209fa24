"""Pure-numpy reference of :mod:`._kernels` (same functions, same results, no compiler needed)."""

from __future__ import annotations

import numpy as np

from . import _ring_ref

__all__ = ["RING_MATMUL", "and_local", "ks_level", "matmul_local", "matmul_terms", "mul_local", "trunc_ceil_sub", "trunc_floor"]


def mul_local(xa: np.ndarray, xb: np.ndarray, ya: np.ndarray, yb: np.ndarray, rn: np.ndarray, rp: np.ndarray) -> np.ndarray:
    """z = xa*ya + xa*yb + xb*ya + (rn - rp): the 3-out-of-3 product share, masked by a zero sharing."""
    return xa * (ya + yb) + xb * ya + (rn - rp)


def and_local(xa: np.ndarray, xb: np.ndarray, ya: np.ndarray, yb: np.ndarray, rn: np.ndarray, rp: np.ndarray) -> np.ndarray:
    """z = (xa&ya) ^ (xa&yb) ^ (xb&ya) ^ rn ^ rp: boolean product share (64 bits per word)."""
    return (xa & (ya ^ yb)) ^ (xb & ya) ^ rn ^ rp


def ks_level(ga: np.ndarray, gb: np.ndarray, pa: np.ndarray, pb: np.ndarray, s: int, rn: np.ndarray, rp: np.ndarray) -> np.ndarray:
    """Both ANDs of a Kogge-Stone level: z[:n] shares p & (g << s), z[n:] shares p & (p << s)."""
    sh = np.uint64(s)
    a = np.concatenate([pa, pa])
    b = np.concatenate([pb, pb])
    ya = np.concatenate([ga << sh, pa << sh])
    yb = np.concatenate([gb << sh, pb << sh])
    return and_local(a, b, ya, yb, rn, rp)


#: multiply-adds from which a share matmul runs on float64 BLAS (exact limb products, see
#: :mod:`._ring_ref`) instead of numpy's ``uint64`` matmul (a plain loop, no BLAS)
RING_MATMUL = 1 << 20


def matmul_terms(xa: np.ndarray, xb: np.ndarray, ya: np.ndarray, yb: np.ndarray, role: int) -> list[tuple[np.ndarray, _ring_ref.Right]]:
    """The products whose sum is this party's 3-out-of-3 share of ``x @ y`` (before masking).

    Party ``i`` holds ``(xa, xb) = (s_i, s_{i+1})`` and ``(ya, yb) = (t_i, t_{i+1})``; the nine
    products ``s_a t_b`` of ``x @ y`` are split so that the three parties together compute five
    ring products instead of ABY3's six: party 0 ``(s0 + s1)(t0 + t1)``, party 1
    ``s1 t2 + s2 (t1 + t2)``, party 2 ``s2 t0 + s0 t2``. ``role=-1`` is ABY3's
    ``xa (ya + yb) + xb ya`` (the same for every party). A pair ``(y, z)`` stands for ``y + z``.
    """
    if role == 0:
        return [(xa + xb, (ya, yb))]
    if role == 1:
        return [(xa, yb), (xb, (ya, yb))]
    if role == 2:
        return [(xa, yb), (xb, ya)]
    return [(xa, (ya, yb)), (xb, ya)]


def matmul_local(xa: np.ndarray, xb: np.ndarray, ya: np.ndarray, yb: np.ndarray, alpha: np.ndarray, role: int = -1) -> np.ndarray:
    """z = (this party's products, see :func:`matmul_terms`) + alpha: its 3-out-of-3 share of ``x @ y``."""
    terms = matmul_terms(xa, xb, ya, yb, role)
    if xa.shape[0] * xa.shape[1] * ya.shape[1] >= RING_MATMUL:
        return _ring_ref.matmul_sum(terms, alpha.copy())
    z = alpha.copy()
    for x, y in terms:
        z += x @ (y[0] + y[1] if isinstance(y, tuple) else y)
    return z


def trunc_floor(z: np.ndarray, d: int) -> np.ndarray:
    """floor(z / 2^d) with z read as a signed 64-bit integer."""
    return (z.view(np.int64) >> np.int64(d)).view(np.uint64)


def trunc_ceil_sub(z1: np.ndarray, z2: np.ndarray, r: np.ndarray, d: int) -> np.ndarray:
    """ceil((z1 + z2) / 2^d) - r with z1 + z2 read as a signed 64-bit integer."""
    neg = (np.uint64(0) - (z1 + z2)).view(np.int64) >> np.int64(d)
    return np.uint64(0) - neg.view(np.uint64) - r
