"""Pure-Python twin of the compiled ``dtxfast._kernels._merkle`` (hashlib SHA-256).

Same functions, same arguments, same results as ``ext/_merkle.pyx``; used when the compiled
kernel is not built or ``DTXFAST_BACKEND=python``. Buffers in, buffers out; no validation.
Hashing rules: leaf = SHA-256(0x00 || chunk), node = SHA-256(0x01 || left || right), an
unpaired last node is promoted unchanged (see :mod:`dtxfast.crypto.merkle`).
"""

from __future__ import annotations

from hashlib import sha256
from typing import Any

import numpy as np

__all__ = ["hash_leaves", "hash_level", "pack_digests", "verify_multiproofs"]

_HASH = 32
_LEAF = b"\x00"
_NODE = b"\x01"


def _leaf(chunk: Any) -> bytes:
    h = sha256(_LEAF)
    h.update(chunk)
    return h.digest()


def _node(left: bytes, right: bytes) -> bytes:
    return sha256(_NODE + left + right).digest()


def hash_leaves(data: Any, chunk_size: int, out: Any, nthreads: int = 1) -> None:
    """Write the leaf hash of every ``chunk_size`` chunk of ``data`` to ``out`` (see the kernel)."""
    src = memoryview(data).cast("B")
    dst = memoryview(out).cast("B")
    total = len(src)
    for i, start in enumerate(range(0, total, chunk_size)):
        dst[i * _HASH : (i + 1) * _HASH] = _leaf(src[start : start + chunk_size])


def hash_level(prev: Any, out: Any, nthreads: int = 1) -> None:
    """Hash one tree level into the next (see the kernel)."""
    src = bytes(memoryview(prev).cast("B"))
    dst = memoryview(out).cast("B")
    m = len(src) // _HASH
    for i in range(m // 2):
        a = 2 * i * _HASH
        dst[i * _HASH : (i + 1) * _HASH] = _node(src[a : a + _HASH], src[a + _HASH : a + 2 * _HASH])
    if m % 2 == 1:
        dst[(m // 2) * _HASH : (m // 2 + 1) * _HASH] = src[(m - 1) * _HASH : m * _HASH]


def _digest(h: Any) -> bytes | None:
    """``h`` as 32 bytes, or None (the compiled kernel's rule: bytes or any 32-byte buffer)."""
    if isinstance(h, bytes):
        return h if len(h) == _HASH else None
    try:
        mv = memoryview(h)
    except TypeError:
        return None
    return mv.tobytes() if mv.nbytes == _HASH else None


def pack_digests(items: list[Any], out: Any, bad: Any) -> int:
    """Twin of the compiled ``pack_digests``: 32-byte items into ``out``, ``bad`` marks the rest."""
    n = len(items)
    if len(out) != n * _HASH or len(bad) != n:
        raise ValueError("out holds 32 bytes and bad one byte per item")
    if set(map(type, items)) <= {bytes}:  # the common case, vectorised
        flags = np.fromiter(map(len, items), dtype=np.int64, count=n) != _HASH
        packed = items if not flags.any() else [bytes(_HASH) if f else h for h, f in zip(items, flags.tolist())]
    else:
        digests = [_digest(h) for h in items]
        flags = np.array([d is None for d in digests], dtype=bool)
        packed = [bytes(_HASH) if d is None else d for d in digests]
    memoryview(out).cast("B")[:] = b"".join(packed)
    memoryview(bad).cast("B")[:] = flags.view(np.uint8).tobytes()
    return int(flags.sum())


def _verify_one(
    chunks: list[bytes], leaf_idx: list[int], lo: int, hi: int, n: int,
    hashes: bytes, hlo: int, hhi: int, root: bytes,
) -> int:
    c = hi - lo
    if c <= 0 or n <= 0:
        return 0
    pos = leaf_idx[lo:hi]
    hs = [_leaf(chunks[lo + j]) for j in range(c)]
    h = hlo
    m = n
    while m > 1:
        npos: list[int] = []
        nhs: list[bytes] = []
        j = 0
        while j < c:
            p = pos[j]
            if p & 1 == 0:
                if p + 1 < m:
                    if j + 1 < c and pos[j + 1] == p + 1:
                        value = _node(hs[j], hs[j + 1])
                        j += 2
                    else:
                        if h >= hhi:
                            return 0
                        value = _node(hs[j], hashes[h * _HASH : (h + 1) * _HASH])
                        h += 1
                        j += 1
                else:
                    value = hs[j]
                    j += 1
            else:
                if h >= hhi:
                    return 0
                value = _node(hashes[h * _HASH : (h + 1) * _HASH], hs[j])
                h += 1
                j += 1
            npos.append(p >> 1)
            nhs.append(value)
        pos, hs, c = npos, nhs, len(npos)
        m = (m + 1) >> 1
    if c != 1 or h != hhi:
        return 0
    return 1 if hs[0] == root else 0


def _ints(a: Any) -> list[int]:
    return a.tolist() if hasattr(a, "tolist") else [int(x) for x in a]


def verify_multiproofs(
    chunks: list[bytes], leaf_idx: Any, leaf_start: Any, leaf_count: Any, hashes: Any,
    hash_start: Any, roots: Any, out: Any, scratch_pos: Any, scratch_hash: Any, nthreads: int = 1,
) -> None:
    """Verify a batch of Merkle multi-proofs (see the kernel for the layout)."""
    hbuf = bytes(memoryview(hashes).cast("B"))
    rbuf = bytes(memoryview(roots).cast("B"))
    res = memoryview(out).cast("B")
    leaf_idx, leaf_start, leaf_count, hash_start = (_ints(a) for a in (leaf_idx, leaf_start, leaf_count, hash_start))
    if len(chunks) != len(leaf_idx):
        raise ValueError("one chunk per leaf index")
    if any(type(c) is not bytes for c in chunks):
        raise TypeError("chunks must be bytes")
    for p in range(len(leaf_count)):
        res[p] = _verify_one(
            chunks, leaf_idx, leaf_start[p], leaf_start[p + 1], leaf_count[p],
            hbuf, hash_start[p], hash_start[p + 1], rbuf[p * _HASH : (p + 1) * _HASH],
        )
