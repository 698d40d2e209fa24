"""Pure-Python twin of the compiled OT kernel ``dtxfast._kernels._ot`` (L0 reference).

Same functions, same arguments, byte-identical results; used when the compiled kernel is not
built or ``DTXFAST_BACKEND=python``. AES comes from the ``cryptography`` package (OpenSSL), bit
matrices are transposed with ``np.unpackbits`` / ``np.packbits`` (``bitorder="little"``), the
loops are plain Python (slow: meant for small batches and for testing the kernel). ``nthreads``
is accepted and ignored.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "CHUNK",
    "ROW",
    "cuckoo_insert",
    "first_occurrence",
    "kkrt_encode",
    "kkrt_eval",
    "kkrt_eval_ids",
    "kkrt_sender_q",
    "match_values",
    "prg_rows",
    "shuffle_rows",
    "transpose",
]

ROW = 64
CHUNK = 256
_MASK64 = (1 << 64) - 1


def transpose(bits: np.ndarray) -> np.ndarray:
    """The transposed bit matrix: ``(r, c/8)`` bytes in, ``(c, r/8)`` out (little bit order)."""
    unpacked = np.unpackbits(np.ascontiguousarray(bits), axis=1, bitorder="little")
    return np.packbits(np.ascontiguousarray(unpacked.T), axis=1, bitorder="little")


def _ctr(key: bytes, block0: int, nbytes: int) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.CTR(block0.to_bytes(16, "big"))).encryptor()
    return enc.update(bytes(nbytes)) + enc.finalize()


def prg_rows(seeds: Any, lo: int, out: Any, nthreads: int) -> int:
    k, rows = seeds.shape[0], out.shape[0]
    if seeds.shape[1] != 16 or k % 16 or out.shape[1] * 8 != k or rows % 128 or lo % 128 or lo < 0:
        raise ValueError("prg_rows: seeds (k, 16) with k % 16 == 0, out (B, k/8), B and lo multiples of 128")
    if rows == 0:
        return 0
    cols = np.frombuffer(b"".join(_ctr(bytes(seeds[j]), lo // 128, rows // 8) for j in range(k)),
                         dtype=np.uint8).reshape(k, rows // 8)
    out[...] = transpose(cols)
    return 0


def _codes(inputs: np.ndarray, key: bytes) -> np.ndarray:
    n = inputs.shape[0]
    blocks = np.repeat(np.ascontiguousarray(inputs, dtype=np.uint8)[:, None, :], 4, axis=1)
    blocks[:, :, 15] = (blocks[:, :, 15] & 0xFC) | np.arange(4, dtype=np.uint8)[None, :]
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    raw = enc.update(blocks.tobytes()) + enc.finalize()
    return np.frombuffer(raw, dtype=np.uint8).reshape(n, ROW)


def _sha_rows(rows: np.ndarray, w: int) -> np.ndarray:
    out = np.zeros((rows.shape[0], w), dtype=np.uint8)
    for i in range(rows.shape[0]):
        out[i] = np.frombuffer(hashlib.sha256(rows[i].tobytes()).digest()[:w], dtype=np.uint8)
    return out


def kkrt_encode(t0: Any, t1: Any, inputs: Any, code_key: Any, u: Any, vals: Any, nthreads: int) -> int:
    n = t0.shape[0]
    if (t0.shape[1] != ROW or t1.shape != (n, ROW) or inputs.shape != (n, 16) or u.shape != (n, ROW)
            or vals.shape != (n, 16) or len(code_key) != 16):
        raise ValueError("kkrt_encode: t0, t1, u (n, 64); inputs, vals (n, 16); a 16-byte code key")
    if n == 0:
        return 0
    u[...] = t0 ^ t1 ^ _codes(inputs, bytes(code_key))
    vals[...] = _sha_rows(np.asarray(t0), 16)
    return 0


def kkrt_sender_q(ts: Any, u: Any, s: Any, nthreads: int) -> None:
    if ts.shape[1] != ROW or u.shape != ts.shape or len(s) != ROW:
        raise ValueError("kkrt_sender_q: ts, u (n, 64), s 64 bytes")
    ts ^= u & np.asarray(s, dtype=np.uint8)[None, :]


def kkrt_eval(q: Any, s: Any, bins: Any, inputs: Any, code_key: Any, out: Any, nthreads: int) -> int:
    n, m, w = bins.shape[0], q.shape[0], out.shape[1]
    if (q.shape[1] != ROW or len(s) != ROW or inputs.shape != (n, 16) or out.shape[0] != n
            or not 1 <= w <= 32 or len(code_key) != 16):
        raise ValueError("kkrt_eval: q (m, 64), s 64 bytes, inputs (n, 16), out (n, 1..32)")
    if n and (np.min(bins) < 0 or np.max(bins) >= m):
        raise ValueError("kkrt_eval: a bin is out of range")
    if n == 0:
        return 0
    rows = np.asarray(q)[np.asarray(bins)] ^ (_codes(inputs, bytes(code_key)) & np.asarray(s, np.uint8)[None, :])
    out[...] = _sha_rows(rows, w)
    return 0


def _xorshift(st: int) -> tuple[int, int]:
    x = st
    x ^= x >> 12
    x ^= (x << 25) & _MASK64
    x ^= x >> 27
    return x, (x * 0x2545F4914F6CDD1D) & _MASK64


def cuckoo_insert(bins: Any, items: Any, table: Any, which: Any, dup: Any, seed: int, max_kicks: int) -> int:
    n, m = bins.shape[0], table.shape[0]
    if bins.shape[1] != 3 or items.shape != (n, 16) or which.shape[0] != m or dup.shape[0] != n:
        raise ValueError("cuckoo_insert: bins (n, 3), items (n, 16), table and which (m,), dup (n,)")
    if n and int(np.max(bins)) >= m:
        raise ValueError("cuckoo_insert: a bin is out of range")
    b3 = [[int(v) for v in row] for row in bins]
    it = [bytes(r) for r in items]
    st = seed if seed else 1
    for i in range(n):
        if any(table[b] >= 0 and it[int(table[b])] == it[i] for b in b3[i]):
            dup[i] = 1
            continue
        cur, prev, kicks = i, -1, 0
        while True:
            placed = False
            for h in range(3):
                b = b3[cur][h]
                if table[b] < 0:
                    table[b], which[b], placed = cur, h, True
                    break
            if placed:
                break
            if kicks >= max_kicks:
                return i
            st, r = _xorshift(st)
            ch = r % 3
            if ch == prev:
                ch = (ch + 1) % 3
            b = b3[cur][ch]
            e = int(table[b])
            prev = int(which[b])
            table[b], which[b] = cur, ch
            cur = e
            kicks += 1
    return -1


def match_values(mine: Any, valid: Any, theirs: Any, hit: Any, nthreads: int) -> None:
    m, t = mine.shape[0], theirs.shape[0]
    w = theirs.shape[1]
    if mine.shape[1] != 16 or valid.shape[0] != m or hit.shape[0] != m or (t and not 8 <= w <= 16):
        raise ValueError("match_values: mine (m, 16), valid and hit (m,), theirs (t, 8..16)")
    if t == 0:
        return
    theirs_set = {bytes(r) for r in theirs}
    for i in range(m):
        if valid[i] and bytes(mine[i, :w]) in theirs_set:
            hit[i] = 1


def shuffle_rows(rows: Any, key: Any) -> None:
    n, w = rows.shape
    if len(key) != 16 or w > 64:
        raise ValueError("shuffle_rows: a 16-byte key, rows of at most 64 bytes")
    if n < 2:
        return
    rnd = np.frombuffer(_ctr(bytes(key), 0, 8 * n), dtype="<u8")
    for i in range(n - 1, 0, -1):
        j = int(rnd[i]) % (i + 1)
        if j != i:
            rows[[i, j]] = rows[[j, i]]


def kkrt_eval_ids(q: Any, s: Any, bins: Any, items: Any, code_key: Any, out: Any, nthreads: int) -> int:
    n = items.shape[0]
    if (q.shape[1] != ROW or len(s) != ROW or items.shape[1] != 16 or bins.shape != (n, 3)
            or out.shape[0] != 3 * n or not 1 <= out.shape[1] <= 32 or len(code_key) != 16):
        raise ValueError("kkrt_eval_ids: q (m, 64), s 64 bytes, items (n, 16), bins (n, 3), out (3n, 1..32)")
    if n and int(np.max(bins)) >= q.shape[0]:
        raise ValueError("kkrt_eval_ids: a bin is out of range")
    for h in range(3):
        tagged = np.array(items, dtype=np.uint8, copy=True)
        tagged[:, 15] = (tagged[:, 15] & 0xF0) | (h << 2)
        part = np.zeros((n, out.shape[1]), np.uint8)
        kkrt_eval(q, s, np.asarray(bins[:, h], dtype=np.int64), tagged, code_key, part, nthreads)
        out[h * n:(h + 1) * n] = part
    return 0


def first_occurrence(items: Any, first: Any) -> None:
    n = items.shape[0]
    if items.shape[1] != 16 or first.shape[0] != n:
        raise ValueError("first_occurrence: items (n, 16), first (n,)")
    seen: set[bytes] = set()
    for i in range(n):
        key = bytes(items[i])
        first[i] = key not in seen
        seen.add(key)
