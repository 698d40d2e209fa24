"""Pure-numpy reference of :mod:`._kernels` (same functions, same results, no compiler needed)."""

from __future__ import annotations

import numpy as np

__all__ = ["and_local", "ks_level", "matmul_local", "mul_local", "trunc_ceil_sub", "trunc_floor"]


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


def matmul_local(xa: np.ndarray, xb: np.ndarray, ya: np.ndarray, yb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """z = xa @ (ya + yb) + xb @ ya + alpha (the 3-out-of-3 share of a matrix product)."""
    return xa @ (ya + yb) + xb @ ya + alpha


def trunc_floor(z: np.ndarray, d: int) -> np.ndarray:
    """floor(z / 2^d) with z read as a signed 64-bit integer."""
    return (z.view(np.int64) >> np.int64(d)).view(np.uint64)


def trunc_ceil_sub(z1: np.ndarray, z2: np.ndarray, r: np.ndarray, d: int) -> np.ndarray:
    """ceil((z1 + z2) / 2^d) - r with z1 + z2 read as a signed 64-bit integer."""
    neg = (np.uint64(0) - (z1 + z2)).view(np.int64) >> np.int64(d)
    return np.uint64(0) - neg.view(np.uint64) - r
