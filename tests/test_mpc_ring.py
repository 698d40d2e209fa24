"""Exact ring matrix products against Python integers: float64 BLAS limbs (``_ring_ref`` and
``_ring.blas_matmul_sum``), the AVX-512 IFMA kernel (``_ring.ifma_matmul_sum``) and its numpy
twin (``_ring_ref.ifma_matmul_sum``)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from mpc_helpers import kernel_module

from dtxfast.protocols.mpc import _kernels_ref, _ring_ref

MOD = 1 << 64


class _Path:
    """One implementation of ``matmul_sum`` under test (a module or one path of it)."""

    def __init__(self, name: str, fn) -> None:
        self.__name__ = name
        self.matmul_sum = fn


def _ring_modules() -> list:
    mods = [_ring_ref, _Path("ifma_ref", _ring_ref.ifma_matmul_sum)]
    try:
        from dtxfast.protocols.mpc import _ring
    except ImportError:  # pragma: no cover - numba missing
        return mods
    mods += [_ring, _Path("blas", _ring.blas_matmul_sum)]
    if _ring.ifma_available():
        mods.append(_Path("ifma", _ring.ifma_matmul_sum))
    return mods


RINGS = _ring_modules()

#: limbs at the ends of their ranges: the largest dot products the scheme must keep exact
_EDGE0 = [-(1 << 20), (1 << 20) - 1, 0, 1]
_EDGE2 = [-(1 << 21), (1 << 21) - 1, 0]


def _from_limbs(a: int, b: int, c: int) -> int:
    return (a + (b << 21) + (c << 42)) % MOD


@st.composite
def matrices(draw: st.DrawFn, rows: int, cols: int) -> np.ndarray:
    """uint64 matrices: uniform, constant extreme-limb, or a mix of both."""
    kind = draw(st.sampled_from(["uniform", "edge", "mixed"]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    uni = rng.integers(0, MOD, size=(rows, cols), dtype=np.uint64)
    if kind == "uniform":
        return uni
    v = _from_limbs(draw(st.sampled_from(_EDGE0)), draw(st.sampled_from(_EDGE0)), draw(st.sampled_from(_EDGE2)))
    edge = np.full((rows, cols), v, dtype=np.uint64)
    if kind == "edge":
        return edge
    return np.where(rng.random((rows, cols)) < 0.5, edge, uni)


def exact(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x @ y mod 2^64 with Python integers (an independent, obviously right product)."""
    xs = [[int(v) for v in row] for row in x]
    ys = [[int(v) for v in col] for col in y.T]
    return np.array([[sum(a * b for a, b in zip(r, c)) % MOD for c in ys] for r in xs], dtype=np.uint64).reshape(
        x.shape[0], y.shape[1])


@pytest.mark.parametrize("mod", RINGS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
@settings(max_examples=40, deadline=None)
@given(data=st.data(), n=st.integers(1, 5), k=st.integers(1, 2600), m=st.integers(1, 5))
@example(data=None, n=2, k=_ring_ref.KC, m=3)
@example(data=None, n=1, k=_ring_ref.KC + 1, m=2)
@example(data=None, n=3, k=2 * _ring_ref.KC + 7, m=1)
def test_ring_matmul_equals_integer_product(mod, data, n: int, k: int, m: int) -> None:
    if data is None:  # the explicit examples: both factors at the worst-case limbs
        v = _from_limbs(-(1 << 20), -(1 << 20), -(1 << 21))
        x = np.full((n, k), v, dtype=np.uint64)
        y = np.full((k, m), v, dtype=np.uint64)
    else:
        x = data.draw(matrices(n, k))
        y = data.draw(matrices(k, m))
    assert np.array_equal(mod.matmul_sum([(x, y)]), exact(x, y))


@pytest.mark.parametrize("mod", RINGS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
@settings(max_examples=4, deadline=None)
@given(data=st.data(), k=st.integers(30_000, 100_000))
@example(data=None, k=100_000)
def test_ring_matmul_long_inner_dimension(mod, data, k: int) -> None:
    if data is None:
        v = _from_limbs((1 << 20) - 1, (1 << 20) - 1, (1 << 21) - 1)
        x = np.full((1, k), v, dtype=np.uint64)
        y = np.full((k, 2), v, dtype=np.uint64)
    else:
        x = data.draw(matrices(2, k))
        y = data.draw(matrices(k, 1))
    assert np.array_equal(mod.matmul_sum([(x, y)]), exact(x, y))


@pytest.mark.parametrize("mod", RINGS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
@settings(max_examples=25, deadline=None)
@given(data=st.data(), n=st.integers(1, 4), ks=st.lists(st.integers(1, 1500), min_size=1, max_size=3), m=st.integers(1, 4))
def test_ring_matmul_sum_of_pairs_and_right_sums(mod, data, n: int, ks: list[int], m: int) -> None:
    """Sums of products, some of them with a right sum ``(y, z)`` or a column-major left operand."""
    pairs, want = [], np.zeros((n, m), dtype=np.uint64)
    base = data.draw(matrices(n, m))
    for k in ks:
        x = data.draw(matrices(n, k))
        if data.draw(st.booleans()):  # a transposed view (column-major), as a weight gradient's acts.T
            x = np.ascontiguousarray(x.T).T
        y, z = data.draw(matrices(k, m)), data.draw(matrices(k, m))
        if data.draw(st.booleans()):
            pairs.append((x, (y, z)))
            want += exact(x, y + z)
        else:
            pairs.append((x, y))
            want += exact(x, y)
    assert np.array_equal(mod.matmul_sum(pairs, base.copy()), want + base)


#: 64-bit values at the edges of the IFMA kernel's split x = x0 + 2^52 x1 (x0 < 2^52, x1 < 2^12)
_IFMA_EDGE = [0, 1, (1 << 52) - 1, 1 << 52, (1 << 64) - 1, ((1 << 12) - 1) << 52, (1 << 63) + (1 << 52) - 1,
              0xFFF, (1 << 63) | 0xFFF]


@pytest.mark.parametrize("mod", RINGS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
@settings(max_examples=30, deadline=None)
@given(data=st.data(), n=st.integers(1, 9), k=st.integers(1, 700), m=st.integers(1, 40))
@example(data=None, n=5, k=_ring_ref.IFMA_KC, m=17)
@example(data=None, n=4, k=_ring_ref.IFMA_KC + 1, m=16)
@example(data=None, n=1, k=3 * _ring_ref.IFMA_KC - 1, m=33)
def test_ring_matmul_ifma_split_edges(mod, data, n: int, k: int, m: int) -> None:
    """Values at the 52/12-bit split and all-ones factors (the largest x1 y1 sums the kernel's
    middle accumulator must keep below 2^40 per block), at tile edges (4 rows, 16 columns) and
    block edges (IFMA_KC terms)."""
    if data is None:
        x = np.full((n, k), (1 << 64) - 1, dtype=np.uint64)
        y = np.full((k, m), ((1 << 12) - 1) << 52 | 0xFFF, dtype=np.uint64)
    else:
        seed = data.draw(st.integers(0, 2**32 - 1))
        rng = np.random.default_rng(seed)
        edge = np.array(_IFMA_EDGE, dtype=np.uint64)
        x = edge[rng.integers(0, len(edge), size=(n, k))]
        y = edge[rng.integers(0, len(edge), size=(k, m))]
        if data.draw(st.booleans()):
            x = np.where(rng.random((n, k)) < 0.5, x, rng.integers(0, MOD, size=(n, k), dtype=np.uint64))
    assert np.array_equal(mod.matmul_sum([(x, y)]), exact(x, y))


def test_ring_matmul_ifma_large_matrices_match_blas() -> None:
    """Sizes with many tiles on every thread (rows and columns not multiples of the tile, K not a
    multiple of the block, a right factor given as a sum): the IFMA kernel equals the BLAS path."""
    from dtxfast.protocols.mpc import _ring
    if not _ring.ifma_available():
        pytest.skip("no AVX-512 IFMA kernel here")
    rng = np.random.default_rng(7)
    x, x2 = (rng.integers(0, MOD, size=(203, kk), dtype=np.uint64) for kk in (517, 260))
    y, y2, z2 = (rng.integers(0, MOD, size=s, dtype=np.uint64) for s in ((517, 301), (260, 301), (260, 301)))
    base = rng.integers(0, MOD, size=(203, 301), dtype=np.uint64)
    pairs = [(x, y), (x2, (y2, z2))]
    saved = _ring.PARALLEL_IFMA
    _ring.PARALLEL_IFMA = 0  # all threads, even for this size
    try:
        got = _ring.ifma_matmul_sum(pairs, base.copy())
    finally:
        _ring.PARALLEL_IFMA = saved
    assert np.array_equal(got, _ring.blas_matmul_sum(pairs, base.copy()))
    assert np.array_equal(got[:3, :4], (exact(x[:3], y[:, :4]) + exact(x2[:3], y2[:, :4] + z2[:, :4]) + base[:3, :4]))


def test_ring_matmul_falls_back_to_blas_without_simd(monkeypatch) -> None:
    """DTXFAST_SIMD=0 switches the IFMA kernel off at run time; matmul_sum then runs on BLAS."""
    from dtxfast.protocols.mpc import _ring
    monkeypatch.setenv("DTXFAST_SIMD", "0")
    assert not _ring.ifma_available()
    calls = []
    monkeypatch.setattr(_ring, "blas_matmul_sum", lambda pairs, out=None: calls.append(1) or _ring_ref.matmul_sum(pairs, out))
    x = np.array([[2**64 - 1, 7]], dtype=np.uint64)
    y = np.array([[2**63 + 3], [2**52]], dtype=np.uint64)
    assert np.array_equal(_ring.matmul_sum([(x, y)]), exact(x, y)) and calls == [1]


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@settings(max_examples=20, deadline=None)
@given(data=st.data(), n=st.integers(1, 40), k=st.integers(1, 700), m=st.integers(1, 40), big=st.booleans())
def test_party_products_add_up_to_the_product(backend: str, data, n: int, k: int, m: int, big: bool) -> None:
    """The three parties' local products (five in all) plus a zero sharing sum to x @ y, on the
    uint64 path and on the BLAS path alike."""
    mod = kernel_module(backend)
    s = [data.draw(matrices(n, k)) for _ in range(3)]
    t = [data.draw(matrices(k, m)) for _ in range(3)]
    zero = np.zeros((n, m), dtype=np.uint64)
    saved = mod.RING_MATMUL, getattr(mod, "IFMA_MATMUL", None)
    mod.RING_MATMUL = 0 if big else 1 << 62
    if saved[1] is not None:
        mod.IFMA_MATMUL = 1 << 62  # big: every size on _ring.matmul_sum; else: the uint64 path
    try:
        z = [mod.matmul_local(s[i], s[(i + 1) % 3], t[i], t[(i + 1) % 3], zero, role=i) for i in range(3)]
        aby3 = [mod.matmul_local(s[i], s[(i + 1) % 3], t[i], t[(i + 1) % 3], zero) for i in range(3)]
    finally:
        mod.RING_MATMUL = saved[0]
        if saved[1] is not None:
            mod.IFMA_MATMUL = saved[1]
    want = (s[0] + s[1] + s[2]) @ (t[0] + t[1] + t[2])
    assert np.array_equal(z[0] + z[1] + z[2], want)
    assert np.array_equal(aby3[0] + aby3[1] + aby3[2], want)
    for i in range(3):  # each party's own share equals the numpy twin's on the same path
        assert np.array_equal(z[i], _kernels_ref.matmul_local(s[i], s[(i + 1) % 3], t[i], t[(i + 1) % 3], zero, role=i))


def test_five_ring_products_are_the_fewest() -> None:
    """The README's claim that five products of share components are the fewest over Z_2^64: no
    choice of at most four, each ``(a s_i + b s_{i+1})(c t_i + d t_{i+1})`` for a party ``i``,
    sums to ``(s0 + s1 + s2)(t0 + t1 + t2)`` even modulo 2 (searched exhaustively), while the
    parties' five do."""
    import itertools

    def term(i: int, u: tuple[int, int], v: tuple[int, int]) -> tuple[int, ...]:
        m = [[0] * 3 for _ in range(3)]
        for a, ua in zip((i, (i + 1) % 3), u):
            for b, vb in zip((i, (i + 1) % 3), v):
                m[a][b] = ua * vb % 2
        return tuple(x for row in m for x in row)

    pairs = [(1, 0), (0, 1), (1, 1)]
    terms = sorted({term(i, u, v) for i in range(3) for u in pairs for v in pairs})
    target = (1,) * 9
    for count in range(1, 5):
        for combo in itertools.combinations_with_replacement(terms, count):
            assert tuple(sum(c) % 2 for c in zip(*combo)) != target
    five = [term(0, (1, 1), (1, 1)), term(1, (1, 0), (0, 1)), term(1, (0, 1), (1, 1)),
            term(2, (1, 0), (0, 1)), term(2, (0, 1), (1, 0))]  # _kernels_ref.matmul_terms
    assert tuple(sum(c) for c in zip(*five)) == target


def test_numba_thread_count_follows_the_setting() -> None:
    """set_numba_threads skips Numba's check while the setting is unchanged, and still applies a
    changed setting (and a new thread starts from its own state)."""
    import threading

    numba = pytest.importorskip("numba")
    import dtxfast
    from dtxfast.protocols.mpc._select import set_numba_threads

    try:
        for n in (1, 2, 1):
            dtxfast.set_num_threads(n)
            set_numba_threads()
            assert numba.get_num_threads() == min(n, numba.config.NUMBA_NUM_THREADS)
        seen = []

        def other() -> None:
            set_numba_threads()
            seen.append(numba.get_num_threads())

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert seen == [1]
    finally:
        dtxfast.set_num_threads(None)
        set_numba_threads()
