"""The compiled OT kernel (ext/_ot.pyx) against its pure-Python twin (dtxfast.crypto._ot_py)."""

from __future__ import annotations

import numpy as np
import pytest
from backends import compiled_or_none
from hypothesis import given
from hypothesis import strategies as st

from dtxfast.crypto import _ot_py as P


K = compiled_or_none("_ot")
needs_compiled = pytest.mark.skipif(K is None, reason="compiled OT kernel not built")


def _rand(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def test_transpose_twin_is_a_transpose():
    rng = np.random.default_rng(1)
    m = _rand(rng, 32, 3)  # 32 rows of 24 bits
    t = P.transpose(m)
    for r in range(32):
        for c in range(24):
            assert (m[r, c // 8] >> (c % 8)) & 1 == (t[c, r // 8] >> (r % 8)) & 1
    np.testing.assert_array_equal(P.transpose(t), m)


@needs_compiled
@given(st.sampled_from([16, 128, 512]), st.integers(0, 3), st.integers(0, 5), st.integers(1, 3),
       st.integers(0, 2**32))
def test_prg_rows_matches_twin(k, blocks, lo_blocks, threads, seed):
    rng = np.random.default_rng(seed)
    seeds = _rand(rng, k, 16)
    outs = []
    for mod in (K, P):
        out = np.zeros((128 * blocks, k // 8), np.uint8)
        assert mod.prg_rows(seeds, 128 * lo_blocks, out, threads) == 0
        outs.append(out)
    np.testing.assert_array_equal(*outs)


@needs_compiled
def test_prg_rows_blocks_compose():
    """Rows [0, 384) in one call equal rows [0, 128) and [128, 384) in two (the CTR counter)."""
    seeds = _rand(np.random.default_rng(2), 512, 16)
    whole = np.zeros((384, 64), np.uint8)
    K.prg_rows(seeds, 0, whole, 2)
    a, b = np.zeros((128, 64), np.uint8), np.zeros((256, 64), np.uint8)
    K.prg_rows(seeds, 0, a, 1)
    K.prg_rows(seeds, 128, b, 2)
    np.testing.assert_array_equal(whole, np.concatenate([a, b]))


@needs_compiled
@given(st.integers(0, 700), st.integers(1, 3), st.integers(8, 16), st.integers(0, 2**32))
def test_kkrt_kernels_match_twin(n, threads, w, seed):
    rng = np.random.default_rng(seed)
    t0, t1, inputs, key = _rand(rng, n, 64), _rand(rng, n, 64), _rand(rng, n, 16), _rand(rng, 16)
    s = _rand(rng, 64)
    bins = rng.integers(0, max(n, 1), size=n, dtype=np.int64)
    res = []
    for mod in (K, P):
        u, vals = np.zeros((n, 64), np.uint8), np.zeros((n, 16), np.uint8)
        assert mod.kkrt_encode(t0, t1, inputs, key, u, vals, threads) == 0
        q = t1.copy()
        mod.kkrt_sender_q(q, u, s, threads)
        out = np.zeros((n, w), np.uint8)
        assert mod.kkrt_eval(q if n else np.zeros((1, 64), np.uint8), s, bins, inputs, key, out, threads) == 0
        res.append((u, vals, q, out))
    for a, b in zip(*res):
        np.testing.assert_array_equal(a, b)


@needs_compiled
@given(st.integers(0, 300), st.integers(0, 2**32), st.booleans())
def test_cuckoo_matches_twin(n, seed, tight):
    rng = np.random.default_rng(seed)
    m = max(n + (0 if tight else n // 2), 4)
    items = _rand(rng, n, 16)
    if n > 3:
        items[1] = items[0]  # a duplicate
    bins = rng.integers(0, m, size=(n, 3), dtype=np.uint32)
    if n > 3:
        bins[1] = bins[0]
    res = []
    for mod in (K, P):
        table, which = np.full(m, -1, np.int64), np.full(m, -1, np.int8)
        dup = np.zeros(n, np.uint8)
        failed = mod.cuckoo_insert(bins, items, table, which, dup, seed, 50)
        res.append((failed, table, which, dup))
    assert res[0][0] == res[1][0]
    for a, b in zip(res[0][1:], res[1][1:]):
        np.testing.assert_array_equal(a, b)
    failed, table, which, dup = res[0]
    if failed == -1:  # every item sits at one of its bins, once; duplicates are skipped
        placed = table[table >= 0]
        assert sorted(placed.tolist()) == [i for i in range(n) if not dup[i]]
        for b in np.flatnonzero(table >= 0):
            assert bins[table[b], which[b]] == b
        if n > 3:
            assert dup[1] == 1


@needs_compiled
@given(st.integers(0, 400), st.integers(0, 400), st.integers(8, 16), st.integers(0, 2**32))
def test_match_shuffle_first_match_twin(m, t, w, seed):
    rng = np.random.default_rng(seed)
    mine = _rand(rng, m, 16)
    valid = rng.integers(0, 2, size=m, dtype=np.uint8)
    theirs = _rand(rng, t, w)
    k = min(m, t) // 2
    theirs[:k] = mine[:k, :w]
    hits = []
    for mod in (K, P):
        hit = np.zeros(m, np.uint8)
        mod.match_values(mine, valid, theirs, hit, 2)
        hits.append(hit)
    np.testing.assert_array_equal(*hits)
    assert hits[0][:k].tolist() == valid[:k].tolist()
    key = _rand(rng, 16)
    a, b = theirs.copy(), theirs.copy()
    K.shuffle_rows(a, key)
    P.shuffle_rows(b, key)
    np.testing.assert_array_equal(a, b)
    assert sorted(map(bytes, a)) == sorted(map(bytes, theirs))
    items = mine.copy()
    if m > 2:
        items[m - 1] = items[0]
    f1, f2 = np.zeros(m, np.uint8), np.zeros(m, np.uint8)
    K.first_occurrence(items, f1)
    P.first_occurrence(items, f2)
    np.testing.assert_array_equal(f1, f2)
    assert int(f1.sum()) == len({bytes(r) for r in items})


@needs_compiled
@given(st.integers(0, 300), st.integers(1, 3), st.integers(8, 16), st.integers(0, 2**32))
def test_kkrt_eval_ids_matches_twin_and_eval(n, threads, w, seed):
    rng = np.random.default_rng(seed)
    m = 256
    q, s, key = _rand(rng, m, 64), _rand(rng, 64), _rand(rng, 16)
    items = _rand(rng, n, 16)
    bins = rng.integers(0, m, size=(n, 3), dtype=np.uint32)
    outs = []
    for mod in (K, P):
        out = np.zeros((3 * n, w), np.uint8)
        assert mod.kkrt_eval_ids(q, s, bins, items, key, out, threads) == 0
        outs.append(out)
    np.testing.assert_array_equal(*outs)
    for h in range(3):  # the same as kkrt_eval on the tagged items
        tagged = items.copy()
        tagged[:, 15] = (tagged[:, 15] & 0xF0) | (h << 2)
        one = np.zeros((n, w), np.uint8)
        K.kkrt_eval(q, s, bins[:, h].astype(np.int64), tagged, key, one, threads)
        np.testing.assert_array_equal(one, outs[0][h * n:(h + 1) * n])
