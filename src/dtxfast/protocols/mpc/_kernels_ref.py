"""Pure-numpy reference of :mod:`._kernels` (same functions, same results, no compiler needed)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import _ring_ref
from .fixedpoint import encode

__all__ = ["RING_MATMUL", "and_local", "backprop_mask", "bit_planes", "dabit_close", "dabit_mask", "dabit_p0",
           "encode_rows", "gather_rows", "matmul_local", "matmul_terms", "mul_local", "open_drelu", "open_relu", "relu_products",
           "transpose", "tree_join", "tree_level", "trunc_p0_close", "trunc_p0_open", "trunc_p1", "trunc_p2"]


def mul_local(xa: np.ndarray, xb: np.ndarray, ya: np.ndarray, yb: np.ndarray, rn: np.ndarray, rp: np.ndarray) -> np.ndarray:
    """z = xa*ya + xa*yb + xb*ya + (rn - rp): the 3-out-of-3 product share, masked by a zero sharing."""
    return xa * (ya + yb) + xb * ya + (rn - rp)


def and_local(xa: np.ndarray, xb: np.ndarray, ya: np.ndarray, yb: np.ndarray, rn: np.ndarray, rp: np.ndarray) -> np.ndarray:
    """z = (xa&ya) ^ (xa&yb) ^ (xb&ya) ^ rn ^ rp: boolean product share (64 bits per word)."""
    return (xa & (ya ^ yb)) ^ (xb & ya) ^ rn ^ rp


def gather_rows(blocks: Sequence[tuple[np.ndarray, np.ndarray]], idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``idx`` of a sharing stored as column blocks, joined: ``blocks[i]`` is one party's pair
    of components ``(a_i, b_i)`` of block ``i`` (``n x d_i`` each); returns the ``len(idx) x sum d_i``
    components ``(a, b)`` of the rows ``idx`` of the blocks side by side.

    Raises IndexError for an index outside ``-n .. n-1``.

    Examples
    --------
    >>> a = np.arange(6, dtype=np.uint64).reshape(3, 2); b = a + np.uint64(10)
    >>> ra, rb = gather_rows([(a, b), (a[:, :1], b[:, :1])], np.array([2, 0]))
    >>> ra.tolist(), rb.tolist()
    ([[4, 5, 4], [0, 1, 0]], [[14, 15, 14], [10, 11, 10]])
    """
    return (np.concatenate([np.take(a, idx, axis=0) for a, _ in blocks], axis=1),
            np.concatenate([np.take(b, idx, axis=0) for _, b in blocks], axis=1))


def encode_rows(x: np.ndarray, order: np.ndarray, frac_bits: int) -> np.ndarray:
    """The fixed-point encoding (:func:`.fixedpoint.encode`) of the rows ``order`` of the 2-D
    array ``x``: ``encode(x[order], frac_bits)``, with its errors.

    Examples
    --------
    >>> encode_rows(np.array([[0.5], [-1.0]]), np.array([1, 0]), 16).view(np.int64).tolist()
    [[-65536], [32768]]
    """
    return encode(np.take(np.asarray(x, dtype=np.float64), order, axis=0), frac_bits)


def transpose(x: np.ndarray) -> np.ndarray:
    """``x.T`` as a new C-contiguous array (``x`` a C-contiguous 2-D array).

    Examples
    --------
    >>> transpose(np.arange(6, dtype=np.uint64).reshape(2, 3)).tolist()
    [[0, 3], [1, 4], [2, 5]]
    """
    return np.ascontiguousarray(x.T)


def bit_planes(x: np.ndarray) -> np.ndarray:
    """Bit-slice ``x`` (flat ``uint64``) in blocks of 64 words: ``out[k, b]`` holds bit ``k`` of
    the words ``64 b .. 64 b + 63`` (word ``64 b + r`` in bit ``r``); missing words are 0.

    Shape ``(64, ceil(n / 64))``. The map is linear over XOR, so it turns a boolean sharing of the
    words into a boolean sharing of the planes. A 64x64 bit transpose per block by the six swap
    stages of Hacker's Delight (7-3), each stage one numpy operation over all blocks.
    """
    n = x.shape[0]
    nb = (n + 63) // 64
    padded = np.zeros(64 * nb, dtype=np.uint64)
    padded[:n] = x
    out = np.ascontiguousarray(padded.reshape(nb, 64).T)  # row r: word r of every block
    j, m = 32, 0x00000000FFFFFFFF
    while j:
        rows = out.reshape(64 // (2 * j), 2, j, nb)  # rows with bit j of the index clear / set
        lo, hi = rows[:, 0], rows[:, 1]
        sj = np.uint64(j)
        t = ((lo >> sj) ^ hi) & np.uint64(m)
        lo ^= t << sj
        hi ^= t
        j >>= 1
        m ^= m << j
    return out


def tree_level(ga: np.ndarray, gb: np.ndarray, pa: np.ndarray, pb: np.ndarray, rn: np.ndarray, rp: np.ndarray) -> np.ndarray:
    """The ANDs of one level of the carry tree over ``m`` groups (rows of ``g``, ``p``), q = m // 2.

    Row ``j < q`` shares ``p[2j + 1] & g[2j]``, row ``q + j`` (``j < q - 1``) shares
    ``p[2j + 3] & p[2j + 2]``; ``rn``, ``rp`` mask the ``2q - 1`` rows (flat).
    """
    q = ga.shape[0] // 2
    xa = np.concatenate([pa[1:2 * q:2], pa[3:2 * q:2]])
    xb = np.concatenate([pb[1:2 * q:2], pb[3:2 * q:2]])
    ya = np.concatenate([ga[0:2 * q:2], pa[2:2 * q:2]])
    yb = np.concatenate([gb[0:2 * q:2], pb[2:2 * q:2]])
    return and_local(xa.reshape(-1), xb.reshape(-1), ya.reshape(-1), yb.reshape(-1), rn, rp).reshape(2 * q - 1, -1)


def tree_join(g: np.ndarray, p: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One component of the next level's groups from the level's AND results ``r`` (rows as
    :func:`tree_level`): ``g'[j] = g[2j + 1] ^ r[j]``, ``p'[j] = r[q + j - 1]`` (``p'[0]``, the
    lowest group's, is never read: ``p[0]``); an odd last group moves up unchanged."""
    m = g.shape[0]
    q = m // 2
    new_g = [g[1:2 * q:2] ^ r[:q]]
    new_p = [p[:1], r[q:]]
    if m % 2:
        new_g.append(g[m - 1:])
        new_p.append(p[m - 1:])
    return np.concatenate(new_g), np.concatenate(new_p)


def _open_bits(c: np.ndarray, n: int) -> np.ndarray:
    """Bit ``r`` of word ``w`` of ``c`` as element ``64 w + r`` (0 or 1), the first ``n``."""
    return np.unpackbits(np.ascontiguousarray(c, dtype=np.uint64).view(np.uint8), bitorder="little")[:n].astype(np.uint64)


def dabit_p0(ra: np.ndarray, rb: np.ndarray, m: np.ndarray, mp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Party 0's two messages of the daBit conversion: ``u - m`` and ``u - mp`` with ``u`` the bits
    of ``ra ^ rb`` (packed words in, one element per bit out, ``64 len(ra)`` of them)."""
    u = _open_bits(ra ^ rb, 64 * ra.shape[0])
    return u - m, u - mp


def dabit_mask(r2: np.ndarray, m: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``s m - alpha`` with ``s = 1 - 2 r2`` (``r2`` packed bits, one element per bit)."""
    s = np.uint64(1) - np.uint64(2) * _open_bits(r2, m.shape[0])
    return s * m - alpha


def dabit_close(r2: np.ndarray, w: np.ndarray, x: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """``s w + x + r2 - beta`` with ``s = 1 - 2 r2`` (``r2`` packed bits, one element per bit)."""
    b = _open_bits(r2, w.shape[0])
    return (np.uint64(1) - np.uint64(2) * b) * w + x + b - beta


def relu_products(xa: np.ndarray, xb: np.ndarray, ra: np.ndarray, rb: np.ndarray, wa: np.ndarray, wb: np.ndarray,
                  mask: np.ndarray) -> np.ndarray:
    """3-out-of-3 shares of ``x r`` (``n`` words) then of ``q[b, j, o] = r[b, j] w[j, o]`` (``n m``
    words, ``w`` of shape ``(h, m)``, ``n = rows h``; ``m = 0``: none), as :func:`mul_local` of
    ``(x, r)`` and ``(r, w)``, plus ``mask`` (a zero sharing, ``n + n m`` words)."""
    n = xa.shape[0]
    h, m = wa.shape
    if m == 0:
        return xa * (ra + rb) + xb * ra + mask
    rq = np.repeat(ra, m).reshape(-1, h, m)
    rbq = np.repeat(rb, m).reshape(-1, h, m)
    q = rq * (wa + wb)[None] + rbq * wa[None]
    return np.concatenate([xa * (ra + rb) + xb * ra, q.reshape(-1)]) + mask[:n + q.size]


def backprop_mask(c: np.ndarray, zb: np.ndarray, da: np.ndarray, db: np.ndarray, qa: np.ndarray, qb: np.ndarray,
                  mask: np.ndarray) -> np.ndarray:
    """``c zb + (1 - 2 c) (sum_o (da (qa + qb) + db qa)[b, j, o] + mask)``: the 3-out-of-3 share of
    ``(delta W^T) d`` from ``zb`` (that of ``delta W^T``), ``delta``'s components ``(da, db)``
    (``rows x m``), ``q``'s (``rows x h x m``) and the opened bits ``c`` (packed, element
    ``b h + j``); ``mask`` a zero sharing of ``rows h`` words. Shape ``(rows, h)``."""
    rows, h, m = qa.shape
    cb = _open_bits(c, rows * h).reshape(rows, h)
    zq = (da[:, None, :] * (qa + qb) + db[:, None, :] * qa).sum(axis=2, dtype=np.uint64) + mask.reshape(rows, h)
    return cb * zb + (np.uint64(1) - np.uint64(2) * cb) * zq


def open_drelu(c: np.ndarray, ra: np.ndarray, rb: np.ndarray, role: int) -> tuple[np.ndarray, np.ndarray]:
    """This party's components of ``d = c + r - 2 c r`` (``c ^ r`` for bits): ``c`` the opened bits
    (packed, bit ``r`` of word ``w`` is element ``64 w + r``), ``(ra, rb)`` the daBits' arithmetic
    components; the public ``c`` is added to component 0 (``ra`` at party 0, ``rb`` at party 2)."""
    b = _open_bits(c, ra.shape[0])
    ea, eb = np.uint64(role == 0), np.uint64(role == 2)
    two = np.uint64(2)
    return ra + b * (ea - two * ra), rb + b * (eb - two * rb)


def open_relu(c: np.ndarray, xa: np.ndarray, xb: np.ndarray, pa: np.ndarray, pb: np.ndarray, ra: np.ndarray,
              rb: np.ndarray, role: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(ya, yb, da, db)``: the components of ``x d = c x + (1 - 2 c) x r`` (``(pa, pb)`` those of
    ``x r``) and of ``d`` as :func:`open_drelu`."""
    b = _open_bits(c, xa.shape[0])
    two = np.uint64(2)
    da, db = open_drelu(c, ra, rb, role)
    return pa + b * (xa - two * pa), pb + b * (xb - two * pb), da, db


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


#: offset every exact truncation adds first: ``x + 2^62`` is non-negative for ``|x| < 2^62``
TRUNC_OFFSET = 1 << 62


def _trunc_consts(d: int) -> tuple[np.uint64, np.uint64]:
    """``2^(64 - d)`` and ``-2^(64 - d) - 2^(62 - d)`` in the ring (the wrap's weight; the offset undone)."""
    return (np.uint64((1 << (64 - d)) & 0xFFFFFFFFFFFFFFFF),
            np.uint64((-(1 << (64 - d)) - (1 << (62 - d))) & 0xFFFFFFFFFFFFFFFF))


def trunc_p0_open(z: np.ndarray, r0: np.ndarray) -> np.ndarray:
    """Party 0's first message of the exact truncation: ``alpha - r0`` with
    ``alpha = 1[z + 2^62 < 2^63]`` (``z + 2^62`` read unsigned)."""
    alpha = ((z + np.uint64(TRUNC_OFFSET)) >> np.uint64(63)) ^ np.uint64(1)
    return alpha - r0


def trunc_p0_close(z: np.ndarray, e1: np.ndarray, m: np.ndarray, mask: np.ndarray, d: int) -> np.ndarray:
    """Party 0's new component: ``floor(v / 2^d) + (alpha e1 + m) 2^(64-d) + const - mask`` with
    ``v = z + 2^62``, ``alpha`` as in :func:`trunc_p0_open`."""
    hi, const = _trunc_consts(d)
    v = z + np.uint64(TRUNC_OFFSET)
    alpha = (v >> np.uint64(63)) ^ np.uint64(1)
    return (v >> np.uint64(d)) + (alpha * e1 + m) * hi + const - mask


def trunc_p1(z1: np.ndarray, z2: np.ndarray, cm: np.ndarray, e0: np.ndarray, r1: np.ndarray, r: np.ndarray,
             mp: np.ndarray, d: int) -> np.ndarray:
    """Party 1's message to party 0 (``2n`` words): its new component
    ``ceil(w / 2^d) + (e0 r1 + cm) 2^(64-d) - r + mp`` with ``w = z1 + z2``, then ``beta - r1``
    with ``beta = 1[w < 2^63]``. The first half is also party 1's own component."""
    hi, _ = _trunc_consts(d)
    w = z1 + z2
    up = ((w & np.uint64((1 << d) - 1)) != 0).astype(np.uint64)
    beta = (w >> np.uint64(63)) ^ np.uint64(1)
    return np.concatenate([(w >> np.uint64(d)) + up + (e0 * r1 + cm) * hi - r + mp, beta - r1])


def trunc_p2(z: np.ndarray, r0: np.ndarray, r1: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Party 2's message to party 1 (``2n`` words): ``z``, then the triple's ``r0 r1 - m``."""
    return np.concatenate([z, r0 * r1 - m])
