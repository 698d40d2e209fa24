"""Pure-numpy reference of :mod:`._kernels` (same functions, same results, no compiler needed)."""

from __future__ import annotations

import numpy as np

__all__ = ["mul_local", "and_local", "matmul_local", "trunc_floor", "trunc_ceil_sub"]


def mul_local(xa, xb, ya, yb, alpha):
    """z = xa*ya + xa*yb + xb*ya + alpha (the 3-out-of-3 product share)."""
    return xa * (ya + yb) + xb * ya + alpha


def and_local(xa, xb, ya, yb, alpha):
    """z = (xa&ya) ^ (xa&yb) ^ (xb&ya) ^ alpha (boolean product share, 64 bits per word)."""
    return (xa & (ya ^ yb)) ^ (xb & ya) ^ alpha


def matmul_local(xa, xb, ya, yb, alpha):
    """z = xa @ (ya + yb) + xb @ ya + alpha (the 3-out-of-3 share of a matrix product)."""
    return xa @ (ya + yb) + xb @ ya + alpha


def trunc_floor(z, d):
    """floor(z / 2^d) with z read as a signed 64-bit integer."""
    return (z.view(np.int64) >> np.int64(d)).view(np.uint64)


def trunc_ceil_sub(z1, z2, r, d):
    """ceil((z1 + z2) / 2^d) - r with z1 + z2 read as a signed 64-bit integer."""
    neg = (np.uint64(0) - (z1 + z2)).view(np.int64) >> np.int64(d)
    return np.uint64(0) - neg.view(np.uint64) - r
