"""Numba kernels of the replicated-sharing protocol (one party's local work).

Integers in, integers out: every array is ``uint64`` (elements of Z_2^64, arithmetic wraps) and
C-contiguous; element-wise kernels take flat arrays. No validation and no randomness here: the
correlated randomness (``alpha``, ``r``) is drawn by the caller from the pairwise PRF streams.
:mod:`._kernels_ref` is the pure-numpy twin with the same functions; both pass the same tests.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from numba import njit, prange

from . import _kernels_ref, _ring
from ._kernels_ref import TRUNC_OFFSET, _trunc_consts, matmul_terms

__all__ = ["IFMA_MATMUL", "RING_MATMUL", "and_local", "backprop_mask", "bit_planes", "dabit_close", "dabit_mask",
           "dabit_p0", "encode_rows", "gather_rows", "matmul_local", "mul_local", "open_drelu", "open_relu", "relu_products",
           "transpose", "tree_join", "tree_level", "trunc_p0_close", "trunc_p0_open", "trunc_p1", "trunc_p2"]
_RB = 8    # rows of the result per task (the register block)
#: multiply-adds from which a share matmul runs on all threads (smaller ones run on one thread:
#: a parallel region's barrier costs milliseconds when the cores are shared with other work)
PARALLEL_MATMUL = 1 << 24
_JB = 512  # columns of the result per tile


def _mul_local(xa: np.ndarray, xb: np.ndarray, ya: np.ndarray, yb: np.ndarray, rn: np.ndarray, rp: np.ndarray) -> np.ndarray:  # pragma: no cover
    """z = xa*ya + xa*yb + xb*ya + (rn - rp): the 3-out-of-3 product share, masked by a zero sharing."""
    n = xa.shape[0]
    z = np.empty(n, dtype=np.uint64)
    for k in prange(n):
        z[k] = xa[k] * (ya[k] + yb[k]) + xb[k] * ya[k] + (rn[k] - rp[k])
    return z


def _and_local(xa: np.ndarray, xb: np.ndarray, ya: np.ndarray, yb: np.ndarray, rn: np.ndarray, rp: np.ndarray) -> np.ndarray:  # pragma: no cover
    """z = (xa&ya) ^ (xa&yb) ^ (xb&ya) ^ rn ^ rp: boolean product share (64 bits per word)."""
    n = xa.shape[0]
    z = np.empty(n, dtype=np.uint64)
    for k in prange(n):
        z[k] = (xa[k] & (ya[k] ^ yb[k])) ^ (xb[k] & ya[k]) ^ rn[k] ^ rp[k]
    return z


def _dabit_p0(ra: np.ndarray, rb: np.ndarray, m: np.ndarray, mp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    n = 64 * ra.shape[0]
    w = np.empty(n, dtype=np.uint64)
    wp = np.empty(n, dtype=np.uint64)
    one = np.uint64(1)
    for k in prange(n):
        u = ((ra[k >> 6] ^ rb[k >> 6]) >> np.uint64(k & 63)) & one
        w[k] = u - m[k]
        wp[k] = u - mp[k]
    return w, wp


def _dabit_mask(r2: np.ndarray, m: np.ndarray, alpha: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    n = m.shape[0]
    out = np.empty(n, dtype=np.uint64)
    one = np.uint64(1)
    for k in prange(n):
        b = (r2[k >> 6] >> np.uint64(k & 63)) & one
        out[k] = (one - (b << one)) * m[k] - alpha[k]
    return out


def _dabit_close(r2: np.ndarray, w: np.ndarray, x: np.ndarray, beta: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    n = w.shape[0]
    out = np.empty(n, dtype=np.uint64)
    one = np.uint64(1)
    for k in prange(n):
        b = (r2[k >> 6] >> np.uint64(k & 63)) & one
        out[k] = (one - (b << one)) * w[k] + x[k] + b - beta[k]
    return out


def _relu_products(xa: np.ndarray, xb: np.ndarray, ra: np.ndarray, rb: np.ndarray, wa: np.ndarray, wb: np.ndarray,
                   mask: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    n = xa.shape[0]
    h, m = wa.shape
    z = np.empty(n + n * m, dtype=np.uint64)
    for k in prange(n):
        z[k] = xa[k] * (ra[k] + rb[k]) + xb[k] * ra[k] + mask[k]
    if m == 0:
        return z
    ws = wa + wb
    if m == 1:  # one output (the last hidden layer's usual case): a loop over h that vectorises
        zq = z[n:]
        mq = mask[n:]
        for b in prange(n // h):
            o = b * h
            for j in range(h):
                zq[o + j] = ra[o + j] * ws[j, 0] + rb[o + j] * wa[j, 0] + mq[o + j]
        return z
    for b in prange(n // h):
        for j in range(h):
            k = b * h + j
            at = n + k * m
            for o in range(m):
                z[at + o] = ra[k] * ws[j, o] + rb[k] * wa[j, o] + mask[at + o]
    return z


@njit(cache=True, nogil=True, inline="always")
def _bits(c: np.ndarray, n: int) -> np.ndarray:  # pragma: no cover - compiled
    """Bit ``k`` of the packed words ``c`` (bit ``k & 63`` of word ``k >> 6``) as element ``k``, 0
    or 1, for the first ``n``: a loop over each word's 64 bits, which the compiler vectorises.

    The element-wise kernels that select by a bit read it from here rather than shifting a word
    per element, and write each output in a loop of its own: a loop with several outputs and a
    per-element variable shift is left scalar (the vectoriser gives up on its aliasing checks).
    """
    out = np.empty(n, dtype=np.uint64)
    one = np.uint64(1)
    full = n // 64
    for w in range(full):
        cw = c[w]
        o = out[64 * w:64 * w + 64]
        for r in range(64):
            o[r] = (cw >> np.uint64(r)) & one
    for k in range(64 * full, n):
        out[k] = (c[k >> 6] >> np.uint64(k & 63)) & one
    return out


@njit(cache=True, nogil=True)
def backprop_mask(c: np.ndarray, zb: np.ndarray, da: np.ndarray, db: np.ndarray, qa: np.ndarray, qb: np.ndarray,
                  mask: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """The 3-out-of-3 share of ``(delta W^T) d`` (see :func:`._kernels_ref.backprop_mask`)."""
    rows, h, m = qa.shape
    bits = _bits(c, rows * h)
    z = np.empty((rows, h), dtype=np.uint64)
    one = np.uint64(1)
    if m == 1:  # one output: the sum over o is one product, and the loop over h vectorises
        for b in range(rows):
            x, y = da[b, 0], db[b, 0]
            zr, zbr, q1, q2 = z[b], zb[b], qa[b, :, 0], qb[b, :, 0]
            o = b * h
            for j in range(h):
                s = mask[o + j] + x * (q1[j] + q2[j]) + y * q1[j]
                zr[j] = s + bits[o + j] * (zbr[j] - (s << one))
        return z
    for b in range(rows):
        for j in range(h):
            k = b * h + j
            s = mask[k]
            for o in range(m):
                s += da[b, o] * (qa[b, j, o] + qb[b, j, o]) + db[b, o] * qa[b, j, o]
            z[b, j] = s + bits[k] * (zb[b, j] - (s << one))
    return z


def _open_drelu(c: np.ndarray, ra: np.ndarray, rb: np.ndarray, role: int) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    n = ra.shape[0]
    bits = _bits(c, n)
    da = np.empty(n, dtype=np.uint64)
    db = np.empty(n, dtype=np.uint64)
    one = np.uint64(1)
    ea = one if role == 0 else np.uint64(0)
    eb = one if role == 2 else np.uint64(0)
    for k in prange(n):
        da[k] = ra[k] + bits[k] * (ea - (ra[k] << one))
    for k in prange(n):
        db[k] = rb[k] + bits[k] * (eb - (rb[k] << one))
    return da, db


def _open_relu(c: np.ndarray, xa: np.ndarray, xb: np.ndarray, pa: np.ndarray, pb: np.ndarray, ra: np.ndarray,
               rb: np.ndarray, role: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    n = xa.shape[0]
    bits = _bits(c, n)
    ya = np.empty(n, dtype=np.uint64)
    yb = np.empty(n, dtype=np.uint64)
    da = np.empty(n, dtype=np.uint64)
    db = np.empty(n, dtype=np.uint64)
    one = np.uint64(1)
    ea = one if role == 0 else np.uint64(0)
    eb = one if role == 2 else np.uint64(0)
    for k in prange(n):  # one loop per output: see _bits
        ya[k] = pa[k] + bits[k] * (xa[k] - (pa[k] << one))
    for k in prange(n):
        yb[k] = pb[k] + bits[k] * (xb[k] - (pb[k] << one))
    for k in prange(n):
        da[k] = ra[k] + bits[k] * (ea - (ra[k] << one))
    for k in prange(n):
        db[k] = rb[k] + bits[k] * (eb - (rb[k] << one))
    return ya, yb, da, db


_M32 = np.uint64(0x00000000FFFFFFFF)


@njit(cache=True, nogil=True)
def _bit_planes(x: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """out[k, b] = bit k of words 64b .. 64b+63 (word 64b + r in bit r): a 64x64 bit transpose
    per block by the six swap stages of Hacker's Delight (7-3), all blocks at once (row ``r`` of
    ``out`` starts as word ``r`` of every block, so each stage is a loop over blocks that the
    compiler vectorises)."""
    n = x.shape[0]
    nb = out.shape[1]
    for r in range(64):
        for b in range(nb):
            e = 64 * b + r
            out[r, b] = x[e] if e < n else np.uint64(0)
    j = 32
    m = _M32
    while j != 0:
        sj = np.uint64(j)
        k = 0
        while k < 64:
            # swap bits [j, 2j) of row k (within each 2j-bit group) with bits [0, j) of row k + j
            lo = out[k]
            hi = out[k + j]
            for b in range(nb):
                t = ((lo[b] >> sj) ^ hi[b]) & m
                lo[b] ^= t << sj
                hi[b] ^= t
            k = (k + j + 1) & ~j
        j >>= 1
        m ^= m << np.uint64(j)


@njit(cache=True, nogil=True)
def _encode_rows_into(x: np.ndarray, order: np.ndarray, scale: float, limit: float, out: np.ndarray) -> bool:  # pragma: no cover - compiled
    """out[i] = rint(x[order[i]] * scale) (int64); False at a value not finite or |v| >= limit."""
    n, d = x.shape
    for i in range(order.shape[0]):
        r = order[i]
        if r < 0:
            r += n
        if r < 0 or r >= n:
            raise IndexError("row index out of range")
        for j in range(d):
            v = x[r, j]
            if not abs(v) < limit:  # NaN fails this too
                return False
            out[i, j] = np.int64(np.rint(v * scale))
    return True


def encode_rows(x: np.ndarray, order: np.ndarray, frac_bits: int) -> np.ndarray:
    """``encode(x[order], frac_bits)`` in one pass (see :func:`._kernels_ref.encode_rows`), where
    numpy's gather, finiteness and range checks, scaling, rounding and conversion make six."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        return _kernels_ref.encode_rows(a, order, frac_bits)
    out = np.empty((order.shape[0], a.shape[1]), dtype=np.int64)
    if not _encode_rows_into(a, order, float(1 << frac_bits), 2.0 ** (40 - frac_bits), out):
        return _kernels_ref.encode_rows(a, order, frac_bits)  # raises its error
    return out.view(np.uint64)


@njit(cache=True, nogil=True)
def _gather_into(a: np.ndarray, b: np.ndarray, idx: np.ndarray, oa: np.ndarray, ob: np.ndarray, col: int) -> int:  # pragma: no cover - compiled
    """oa[i, col:col+d] = a[idx[i]] and the same for b (rows of one column block).

    Two passes: the first loads one word of every cache line of the rows (independent loads,
    many misses in flight at once), the second copies them from cache. The copy loop alone
    waits for a few rows' misses at a time (~1.4x slower at 100k-row blocks). Returns the sum
    of the words loaded, so the compiler keeps the loads.
    """
    n, d = a.shape
    m = idx.shape[0]
    touched = np.uint64(0)
    if d == 0:
        return touched
    for i in range(m):
        r = idx[i]
        if r < 0:
            r += n
        if r < 0 or r >= n:
            raise IndexError("row index out of range")
        for j in range(0, d, 8):  # a row of d words: a word every 64 bytes and the last one
            touched += a[r, j] + b[r, j]
        touched += a[r, d - 1] + b[r, d - 1]
    for i in range(m):
        r = idx[i]
        if r < 0:
            r += n
        for j in range(d):
            oa[i, col + j] = a[r, j]
            ob[i, col + j] = b[r, j]
    return touched


def gather_rows(blocks: Sequence[tuple[np.ndarray, np.ndarray]], idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``idx`` of column blocks, joined (see :func:`._kernels_ref.gather_rows`): each row
    is written once, where fancy indexing per block and a join copy twice; per block, a first
    pass loads every cache line of the rows before the copy (see :func:`_gather_into`)."""
    m = idx.shape[0]
    width = sum(a.shape[1] for a, _ in blocks)
    oa = np.empty((m, width), dtype=np.uint64)
    ob = np.empty((m, width), dtype=np.uint64)
    col = 0
    for a, b in blocks:
        _gather_into(a, b, idx, oa, ob, col)
        col += a.shape[1]
    return oa, ob


_TB = 32  # tile side of the transpose (two 8 KiB tiles stay in L1)


@njit(cache=True, nogil=True)
def _transpose_into(x: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    n, m = x.shape
    for i0 in range(0, n, _TB):
        i1 = min(i0 + _TB, n)
        for j0 in range(0, m, _TB):
            j1 = min(j0 + _TB, m)
            for j in range(j0, j1):
                for i in range(i0, i1):
                    out[j, i] = x[i, j]


def transpose(x: np.ndarray) -> np.ndarray:
    """``x.T`` as a new C-contiguous array, in tiles (see :func:`._kernels_ref.transpose`; numpy's
    copy of a transposed view walks the source with a large stride)."""
    out = np.empty((x.shape[1], x.shape[0]), dtype=np.uint64)
    _transpose_into(x, out)
    return out


@njit(cache=True, nogil=True)
def tree_level(ga: np.ndarray, gb: np.ndarray, pa: np.ndarray, pb: np.ndarray, rn: np.ndarray, rp: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """The ANDs of one level of the carry tree (see :func:`._kernels_ref.tree_level`)."""
    q = ga.shape[0] // 2
    nb = ga.shape[1]
    z = np.empty((2 * q - 1, nb), dtype=np.uint64)
    for j in range(2 * q - 1):
        if j < q:
            xa, xb, ya, yb = pa[2 * j + 1], pb[2 * j + 1], ga[2 * j], gb[2 * j]
        else:
            i = 2 * (j - q) + 3
            xa, xb, ya, yb = pa[i], pb[i], pa[i - 1], pb[i - 1]
        o = j * nb
        for c in range(nb):
            z[j, c] = (xa[c] & (ya[c] ^ yb[c])) ^ (xb[c] & ya[c]) ^ rn[o + c] ^ rp[o + c]
    return z


@njit(cache=True, nogil=True)
def tree_join(g: np.ndarray, p: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """One component of the next level's groups (see :func:`._kernels_ref.tree_join`)."""
    m, nb = g.shape
    q = m // 2
    mm = q + m % 2
    new_g = np.empty((mm, nb), dtype=np.uint64)
    new_p = np.empty((mm, nb), dtype=np.uint64)
    for j in range(q):
        for c in range(nb):
            new_g[j, c] = g[2 * j + 1, c] ^ r[j, c]
            new_p[j, c] = p[0, c] if j == 0 else r[q + j - 1, c]
    if m % 2:
        for c in range(nb):
            new_g[q, c] = g[m - 1, c]
            new_p[q, c] = p[m - 1, c]
    return new_g, new_p


@njit(cache=True, nogil=True)
def _matmul2_rows(a0: np.ndarray, b0: np.ndarray, a1: np.ndarray, b1: np.ndarray, c: np.ndarray, i0: int) -> None:  # pragma: no cover - compiled
    # rows i0 .. i0+7 of c += a0 @ b0 + a1 @ b1 over Z_2^64: the eight rows share every load of
    # the right operands (register blocking); columns in tiles that stay in L1/L2
    n, kk = a0.shape
    m = b0.shape[1]
    if i0 + _RB > n:
        for i in range(i0, n):
            for k in range(kk):
                p = a0[i, k]
                q = a1[i, k]
                for j in range(m):
                    c[i, j] += p * b0[k, j] + q * b1[k, j]
        return
    for j0 in range(0, m, _JB):
        j1 = min(m, j0 + _JB)
        for k in range(kk):
            p0 = a0[i0 + 0, k]
            q0 = a1[i0 + 0, k]
            p1 = a0[i0 + 1, k]
            q1 = a1[i0 + 1, k]
            p2 = a0[i0 + 2, k]
            q2 = a1[i0 + 2, k]
            p3 = a0[i0 + 3, k]
            q3 = a1[i0 + 3, k]
            p4 = a0[i0 + 4, k]
            q4 = a1[i0 + 4, k]
            p5 = a0[i0 + 5, k]
            q5 = a1[i0 + 5, k]
            p6 = a0[i0 + 6, k]
            q6 = a1[i0 + 6, k]
            p7 = a0[i0 + 7, k]
            q7 = a1[i0 + 7, k]
            for j in range(j0, j1):
                b = b0[k, j]
                d = b1[k, j]
                c[i0 + 0, j] += p0 * b + q0 * d
                c[i0 + 1, j] += p1 * b + q1 * d
                c[i0 + 2, j] += p2 * b + q2 * d
                c[i0 + 3, j] += p3 * b + q3 * d
                c[i0 + 4, j] += p4 * b + q4 * d
                c[i0 + 5, j] += p5 * b + q5 * d
                c[i0 + 6, j] += p6 * b + q6 * d
                c[i0 + 7, j] += p7 * b + q7 * d


@njit(parallel=True, cache=True, nogil=True)
def _matmul2(a0: np.ndarray, b0: np.ndarray, a1: np.ndarray, b1: np.ndarray, c: np.ndarray) -> None:  # pragma: no cover - compiled
    for ib in prange((a0.shape[0] + _RB - 1) // _RB):
        _matmul2_rows(a0, b0, a1, b1, c, ib * _RB)


@njit(cache=True, nogil=True)
def _matmul2_serial(a0: np.ndarray, b0: np.ndarray, a1: np.ndarray, b1: np.ndarray, c: np.ndarray) -> None:  # pragma: no cover - compiled
    for ib in range((a0.shape[0] + _RB - 1) // _RB):
        _matmul2_rows(a0, b0, a1, b1, c, ib * _RB)


#: multiply-adds from which a share matmul runs on :func:`._ring.matmul_sum` (AVX-512 IFMA, or
#: float64 BLAS limb products without it, see :mod:`._ring_ref`) instead of the register-blocked
#: ``uint64`` kernel above
RING_MATMUL = 1 << 20


#: multiply-adds from which a share matmul of at least :data:`IFMA_MIN_COLS` result columns runs on
#: the AVX-512 IFMA kernel where the CPU has it (about 3x the uint64 kernel below from here; a
#: narrower result wastes most of the kernel's 16-column tiles)
IFMA_MATMUL = 1 << 13
IFMA_MIN_COLS = 8


def _contiguous(x: np.ndarray) -> np.ndarray:
    if x.flags.c_contiguous:
        return x
    if x.ndim == 2 and x.flags.f_contiguous and x.dtype == np.uint64:
        return transpose(x.T)
    return np.ascontiguousarray(x, dtype=np.uint64)


def matmul_local(xa: np.ndarray, xb: np.ndarray, ya: np.ndarray, yb: np.ndarray, alpha: np.ndarray, role: int = -1) -> np.ndarray:
    """z = (this party's products, see :func:`._kernels_ref.matmul_terms`) + alpha.

    The operands may be transposed views (a weight gradient's ``acts.T``): the register-blocked
    kernel reads them in place (eight rows of a transposed view are adjacent in memory), and so
    does the IFMA kernel a transposed left operand (four of its rows are adjacent); the BLAS
    limb products get C-contiguous copies from :func:`transpose`.
    """
    work = xa.shape[0] * xa.shape[1] * ya.shape[1]
    if work >= RING_MATMUL or (work >= IFMA_MATMUL and ya.shape[1] >= IFMA_MIN_COLS and _ring.ifma_available()):
        c = _contiguous
        if not _ring.ifma_available():  # IFMA packs a transposed left operand in place, BLAS cannot
            xa, xb = c(xa), c(xb)
        return _ring.matmul_sum(matmul_terms(xa, xb, c(ya), c(yb), role), alpha.copy())
    c = alpha.copy()
    kern = _matmul2 if work >= PARALLEL_MATMUL else _matmul2_serial
    if role == 0:  # (xa + xb) @ (ya + yb): the two halves of the inner dimension, the odd column apart
        s, t = xa + xb, ya + yb
        h = s.shape[1] // 2
        kern(s[:, :h], t[:h], s[:, h:2 * h], t[h:2 * h], c)
        if s.shape[1] % 2:
            c += np.outer(s[:, -1], t[-1])
    elif role == 1:
        kern(xa, yb, xb, ya + yb, c)
    elif role == 2:
        kern(xa, yb, xb, ya, c)
    else:
        kern(xa, ya + yb, xb, ya, c)
    return c


def _trunc_p0_open(z: np.ndarray, r0: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    n = z.shape[0]
    e = np.empty(n, dtype=np.uint64)
    off = np.uint64(TRUNC_OFFSET)
    one = np.uint64(1)
    for k in prange(n):
        e[k] = (((z[k] + off) >> np.uint64(63)) ^ one) - r0[k]
    return e


def _trunc_p0_close(z: np.ndarray, e1: np.ndarray, m: np.ndarray, mask: np.ndarray, d: int, hi: np.uint64,
                    const: np.uint64) -> np.ndarray:  # pragma: no cover - compiled
    n = z.shape[0]
    y = np.empty(n, dtype=np.uint64)
    off = np.uint64(TRUNC_OFFSET)
    one = np.uint64(1)
    sd = np.uint64(d)
    for k in prange(n):
        v = z[k] + off
        alpha = (v >> np.uint64(63)) ^ one
        y[k] = (v >> sd) + (alpha * e1[k] + m[k]) * hi + const - mask[k]
    return y


def _trunc_p1(z1: np.ndarray, z2: np.ndarray, cm: np.ndarray, e0: np.ndarray, r1: np.ndarray, r: np.ndarray,
              mp: np.ndarray, d: int, hi: np.uint64) -> np.ndarray:  # pragma: no cover - compiled
    n = z1.shape[0]
    out = np.empty(2 * n, dtype=np.uint64)
    lo, up = out[:n], out[n:]  # one loop per half: two outputs in one loop are left scalar
    one = np.uint64(1)
    sd = np.uint64(d)
    low = (one << sd) - one
    for k in prange(n):
        w = z1[k] + z2[k]
        lo[k] = (w >> sd) + np.uint64((w & low) != np.uint64(0)) + (e0[k] * r1[k] + cm[k]) * hi - r[k] + mp[k]
    for k in prange(n):
        up[k] = (((z1[k] + z2[k]) >> np.uint64(63)) ^ one) - r1[k]
    return out


def _trunc_p2(z: np.ndarray, r0: np.ndarray, r1: np.ndarray, m: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    n = z.shape[0]
    out = np.empty(2 * n, dtype=np.uint64)
    out[:n] = z
    up = out[n:]
    for k in prange(n):
        up[k] = r0[k] * r1[k] - m[k]
    return out


#: elements from which an element-wise kernel runs on all threads (a parallel region's wake-up
#: costs more than the whole loop below this)
PARALLEL_ELEMS = 1 << 17


def _compiled(fn: Callable[..., Any], size_arg: int = 0) -> tuple[Any, Any]:
    """A parallel and a serial compiled version of a loop written with ``prange``.

    The serial one is compiled from a copy of the function under another name, so the two have
    separate on-disk cache entries.
    """
    twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial", fn.__defaults__, fn.__closure__)
    twin.__qualname__ = fn.__qualname__ + "_serial"
    return njit(parallel=True, cache=True, nogil=True)(fn), njit(cache=True, nogil=True)(twin)


_MUL = _compiled(_mul_local)
_AND = _compiled(_and_local)
_T0O = _compiled(_trunc_p0_open)
_T0C = _compiled(_trunc_p0_close)
_T1 = _compiled(_trunc_p1)
_T2 = _compiled(_trunc_p2)
_DP0 = _compiled(_dabit_p0)
_DMASK = _compiled(_dabit_mask)
_DCLOSE = _compiled(_dabit_close)
_RPROD = _compiled(_relu_products)
_ODRELU = _compiled(_open_drelu)
_ORELU = _compiled(_open_relu)


def dabit_p0(ra: np.ndarray, rb: np.ndarray, m: np.ndarray, mp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Party 0's two messages of the daBit conversion (see :func:`._kernels_ref.dabit_p0`)."""
    return _DP0[64 * ra.shape[0] < PARALLEL_ELEMS](ra, rb, m, mp)  # type: ignore[no-any-return]


def dabit_mask(r2: np.ndarray, m: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``s m - alpha`` with ``s = 1 - 2 r2`` (see :func:`._kernels_ref.dabit_mask`)."""
    return _DMASK[m.shape[0] < PARALLEL_ELEMS](r2, m, alpha)  # type: ignore[no-any-return]


def dabit_close(r2: np.ndarray, w: np.ndarray, x: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """``s w + x + r2 - beta`` with ``s = 1 - 2 r2`` (see :func:`._kernels_ref.dabit_close`)."""
    return _DCLOSE[w.shape[0] < PARALLEL_ELEMS](r2, w, x, beta)  # type: ignore[no-any-return]


def relu_products(xa: np.ndarray, xb: np.ndarray, ra: np.ndarray, rb: np.ndarray, wa: np.ndarray, wb: np.ndarray,
                  mask: np.ndarray) -> np.ndarray:
    """The products ``x r`` and ``r w`` (see :func:`._kernels_ref.relu_products`)."""
    return _RPROD[xa.shape[0] < PARALLEL_ELEMS](xa, xb, ra, rb, wa, wb, mask)  # type: ignore[no-any-return]


def open_drelu(c: np.ndarray, ra: np.ndarray, rb: np.ndarray, role: int) -> tuple[np.ndarray, np.ndarray]:
    """The components of ``d = c + r - 2 c r`` (see :func:`._kernels_ref.open_drelu`)."""
    return _ODRELU[ra.shape[0] < PARALLEL_ELEMS](c, ra, rb, role)  # type: ignore[no-any-return]


def open_relu(c: np.ndarray, xa: np.ndarray, xb: np.ndarray, pa: np.ndarray, pb: np.ndarray, ra: np.ndarray,
              rb: np.ndarray, role: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The components of ``x d`` and ``d`` (see :func:`._kernels_ref.open_relu`)."""
    return _ORELU[xa.shape[0] < PARALLEL_ELEMS](c, xa, xb, pa, pb, ra, rb, role)  # type: ignore[no-any-return]


def mul_local(xa: np.ndarray, xb: np.ndarray, ya: np.ndarray, yb: np.ndarray, rn: np.ndarray, rp: np.ndarray) -> np.ndarray:
    """z = xa*ya + xa*yb + xb*ya + (rn - rp): the 3-out-of-3 product share, masked by a zero sharing."""
    return _MUL[xa.shape[0] < PARALLEL_ELEMS](xa, xb, ya, yb, rn, rp)  # type: ignore[no-any-return]


def and_local(xa: np.ndarray, xb: np.ndarray, ya: np.ndarray, yb: np.ndarray, rn: np.ndarray, rp: np.ndarray) -> np.ndarray:
    """z = (xa&ya) ^ (xa&yb) ^ (xb&ya) ^ rn ^ rp: boolean product share (64 bits per word)."""
    return _AND[xa.shape[0] < PARALLEL_ELEMS](xa, xb, ya, yb, rn, rp)  # type: ignore[no-any-return]


def bit_planes(x: np.ndarray) -> np.ndarray:
    """Bit-slice ``x`` in blocks of 64 words: ``out[k, b]`` is bit ``k`` of words ``64 b ..
    64 b + 63`` (word ``64 b + r`` in bit ``r``), missing words 0; shape ``(64, ceil(n / 64))``."""
    n = x.shape[0]
    out = np.empty((64, (n + 63) // 64), dtype=np.uint64)
    _bit_planes(x, out)
    return out


def trunc_p0_open(z: np.ndarray, r0: np.ndarray) -> np.ndarray:
    """Party 0's first message of the exact truncation (see :func:`._kernels_ref.trunc_p0_open`)."""
    return _T0O[z.shape[0] < PARALLEL_ELEMS](z, r0)  # type: ignore[no-any-return]


def trunc_p0_close(z: np.ndarray, e1: np.ndarray, m: np.ndarray, mask: np.ndarray, d: int) -> np.ndarray:
    """Party 0's new component (see :func:`._kernels_ref.trunc_p0_close`)."""
    hi, const = _trunc_consts(d)
    return _T0C[z.shape[0] < PARALLEL_ELEMS](z, e1, m, mask, d, hi, const)  # type: ignore[no-any-return]


def trunc_p1(z1: np.ndarray, z2: np.ndarray, cm: np.ndarray, e0: np.ndarray, r1: np.ndarray, r: np.ndarray,
             mp: np.ndarray, d: int) -> np.ndarray:
    """Party 1's message to party 0 (see :func:`._kernels_ref.trunc_p1`)."""
    hi, _ = _trunc_consts(d)
    return _T1[z1.shape[0] < PARALLEL_ELEMS](z1, z2, cm, e0, r1, r, mp, d, hi)  # type: ignore[no-any-return]


def trunc_p2(z: np.ndarray, r0: np.ndarray, r1: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Party 2's message to party 1 (see :func:`._kernels_ref.trunc_p2`)."""
    return _T2[z.shape[0] < PARALLEL_ELEMS](z, r0, r1, m)  # type: ignore[no-any-return]
