"""Replicated 2-out-of-3 sharing: kernels, sharing, arithmetic, truncation, comparison, ReLU."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from mpc_helpers import BACKENDS, NAMES, kernel_module, run3, u64

from dtxfast.errors import EncodingOverflowError, ParameterError, ProtocolError
from dtxfast.protocols.mpc import (
    MPCParty,
    PRFStream,
    _kernels_ref,
    decode,
    encode,
    run_blocking,
    run_local,
)
from dtxfast.transport.channel import InMemoryNetwork

ULP = 2.0**-16
reals = st.floats(min_value=-1000.0, max_value=1000.0, allow_nan=False, allow_infinity=False)
small_reals = st.floats(min_value=-30.0, max_value=30.0, allow_nan=False, allow_infinity=False)


# -- kernels: compiled equals reference ---------------------------------------------------------
@given(n=st.integers(1, 300), seed=st.integers(0, 2**32 - 1), d=st.integers(1, 40))
def test_numba_kernels_equal_numpy_reference(n: int, seed: int, d: int) -> None:
    k = kernel_module("numba")
    rng = np.random.default_rng(seed)
    a, b, c, e, f, g = (u64(rng, n) for _ in range(6))
    for name in ("mul_local", "and_local"):
        assert np.array_equal(getattr(k, name)(a, b, c, e, f, g), getattr(_kernels_ref, name)(a, b, c, e, f, g))
    assert np.array_equal(k.bit_planes(a), _kernels_ref.bit_planes(a))
    h = u64(rng, n)
    assert np.array_equal(k.trunc_p0_open(a, b), _kernels_ref.trunc_p0_open(a, b))
    assert np.array_equal(k.trunc_p0_close(a, b, c, e, d), _kernels_ref.trunc_p0_close(a, b, c, e, d))
    assert np.array_equal(k.trunc_p1(a, b, c, e, f, g, h, d), _kernels_ref.trunc_p1(a, b, c, e, f, g, h, d))
    assert np.array_equal(k.trunc_p2(a, b, c, e), _kernels_ref.trunc_p2(a, b, c, e))
    # values around the 2^62 offset and the 2^63 bound reach every branch of the bits
    edge = np.array([0, 2**62 - 1, 2**62, 2**63 - 1, 2**63, 3 * 2**62, 2**64 - 1, 1 << d], dtype=np.uint64)
    zero = np.zeros_like(edge)
    assert np.array_equal(k.trunc_p0_open(edge, zero), _kernels_ref.trunc_p0_open(edge, zero))
    assert np.array_equal(k.trunc_p1(edge, zero, zero, zero, zero, zero, zero, d),
                          _kernels_ref.trunc_p1(edge, zero, zero, zero, zero, zero, zero, d))


@given(x=hnp.arrays(np.uint64, st.integers(0, 200), elements=st.integers(0, 2**64 - 1)))
def test_bit_planes_put_bit_k_of_word_r_in_bit_r_of_plane_k(x: np.ndarray) -> None:
    planes = kernel_module("numba").bit_planes(x)
    assert planes.shape == (64, (x.size + 63) // 64)
    for e, v in enumerate(x.tolist()):
        for bit in range(64):
            assert (int(planes[bit, e // 64]) >> (e % 64)) & 1 == (v >> bit) & 1
    assert np.array_equal(planes, _kernels_ref.bit_planes(x))
    if x.size % 64:  # only the words given: the rest of the last block is 0
        assert all(int(w) >> (x.size % 64) == 0 for w in planes[:, -1])


@given(m=st.integers(2, 63), nb=st.integers(1, 5), seed=st.integers(0, 2**32 - 1))
def test_carry_tree_kernels_equal_numpy_reference(m: int, nb: int, seed: int) -> None:
    k = kernel_module("numba")
    rng = np.random.default_rng(seed)
    ga, gb, pa, pb = (u64(rng, (m, nb)) for _ in range(4))
    rows = m // 2 * 2 - 1
    rn, rp = u64(rng, rows * nb), u64(rng, rows * nb)
    z = k.tree_level(ga, gb, pa, pb, rn, rp)
    assert np.array_equal(z, _kernels_ref.tree_level(ga, gb, pa, pb, rn, rp))
    for got, want in zip(k.tree_join(ga, pa, z), _kernels_ref.tree_join(ga, pa, z)):
        assert np.array_equal(got, want)


@given(n=st.integers(1, 150), m=st.integers(1, 150), seed=st.integers(0, 2**32 - 1))
def test_transpose_equals_numpy_reference(n: int, m: int, seed: int) -> None:
    x = u64(np.random.default_rng(seed), (n, m))
    got = kernel_module("numba").transpose(x)
    assert got.flags.c_contiguous and np.array_equal(got, x.T)
    assert np.array_equal(_kernels_ref.transpose(x), x.T)


@given(n=st.integers(1, 40), kk=st.integers(1, 300), m=st.integers(1, 40), seed=st.integers(0, 2**32 - 1))
def test_numba_matmul_equals_numpy_reference(n: int, kk: int, m: int, seed: int) -> None:
    k = kernel_module("numba")
    rng = np.random.default_rng(seed)
    xa, xb = u64(rng, (n, kk)), u64(rng, (n, kk))
    ya, yb = u64(rng, (kk, m)), u64(rng, (kk, m))
    al = u64(rng, (n, m))
    assert np.array_equal(k.matmul_local(xa, xb, ya, yb, al), _kernels_ref.matmul_local(xa, xb, ya, yb, al))
    # transposed views (a weight gradient's acts.T) give the same products, for every role
    xt = [np.ascontiguousarray(v.T).T for v in (xa, xb, ya, yb)]
    assert not xt[0].flags.c_contiguous or min(n, kk) == 1
    for role in (-1, 0, 1, 2):
        assert np.array_equal(k.matmul_local(*xt, al, role=role), _kernels_ref.matmul_local(xa, xb, ya, yb, al, role=role))


@given(n=st.integers(1, 60), widths=st.lists(st.integers(1, 9), min_size=1, max_size=4), m=st.integers(0, 80),
       seed=st.integers(0, 2**32 - 1))
def test_gather_rows_equals_numpy_reference(n: int, widths: list[int], m: int, seed: int) -> None:
    k = kernel_module("numba")
    rng = np.random.default_rng(seed)
    blocks = [(u64(rng, (n, d)), u64(rng, (n, d))) for d in widths]
    idx = rng.integers(-n, n, size=m)  # repeats and negative indices, as numpy allows
    got, want = k.gather_rows(blocks, idx), _kernels_ref.gather_rows(blocks, idx)
    for g, w, side in zip(got, want, range(2)):
        assert g.shape == w.shape == (m, sum(widths)) and np.array_equal(g, w)
        assert np.array_equal(w, np.concatenate([blk[side] for blk in blocks], axis=1)[idx])
    for bad in (n, -n - 1):
        for mod in (k, _kernels_ref):
            with pytest.raises(IndexError):
                mod.gather_rows(blocks, np.array([0, bad]))


# -- fixed point and PRF ------------------------------------------------------------------------
@given(hnp.arrays(np.float64, st.integers(0, 20), elements=reals))
def test_encode_decode_round_trip(x: np.ndarray) -> None:
    assert np.all(np.abs(decode(encode(x)) - x) <= ULP / 2 + 1e-12)


def test_encode_rejects_overflow_and_nan() -> None:
    with pytest.raises(EncodingOverflowError):
        encode([2.0**30])
    with pytest.raises(EncodingOverflowError):
        encode([np.nan])


def test_prf_streams_agree_and_differ_by_key() -> None:
    a, b, c = PRFStream(b"k" * 16), PRFStream(b"k" * 16), PRFStream(b"j" * 16)
    x = a.draw(1000)
    assert np.array_equal(x, b.draw(1000)) and not np.array_equal(x, c.draw(1000))
    assert not np.array_equal(a.draw(10), x[:10])  # the stream moves on
    bits = np.unpackbits(x.view(np.uint8))
    assert abs(bits.mean() - 0.5) < 0.01
    with pytest.raises(ParameterError):
        PRFStream(b"short")


# -- protocol properties, both backends ---------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@given(data=hnp.arrays(np.uint64, st.integers(1, 50)), owner=st.integers(0, 2), seed=st.integers(0, 1000))
def test_share_reconstruct(backend: str, data: np.ndarray, owner: int, seed: int) -> None:
    def fn(p: MPCParty):
        s = yield from p.share_input(owner, data if p.index == owner else None, data.shape)
        everyone = yield from p.reveal(s)
        only = yield from p.reveal(s, to=(owner + 1) % 3)
        return s, everyone, only

    out, _ = run3(fn, backend=backend, seed=seed)
    shares = [o[0] for o in out]
    for i in range(3):  # replication: party i's second component is party i+1's first
        assert np.array_equal(shares[i].b, shares[(i + 1) % 3].a)
        assert np.array_equal(out[i][1], data)
        assert (out[i][2] is None) == (i != (owner + 1) % 3)
    assert np.array_equal(shares[0].a + shares[1].a + shares[2].a, data)


@pytest.mark.parametrize("backend", BACKENDS)
@given(xs=st.lists(st.tuples(reals, reals), min_size=1, max_size=30), seed=st.integers(0, 1000))
def test_add_sub_public(backend: str, xs: list, seed: int) -> None:
    x = np.array([a for a, _ in xs])
    y = np.array([b for _, b in xs])

    def fn(p: MPCParty):
        sx = yield from p.share_input(0, encode(x) if p.index == 0 else None, x.shape)
        sy = yield from p.share_input(2, encode(y) if p.index == 2 else None, y.shape)
        s = p.add_public(sx + sy - sx.mul_int(3), encode(1.5))
        return (yield from p.reveal(s))

    out, _ = run3(fn, backend=backend, seed=seed)
    assert np.all(np.abs(decode(out[1]) - (y - 2 * x + 1.5)) <= 3 * ULP)


@pytest.mark.parametrize("backend", BACKENDS)
@given(xs=st.lists(st.tuples(small_reals, small_reals), min_size=1, max_size=40), seed=st.integers(0, 1000))
def test_multiply_within_fixed_point_error(backend: str, xs: list, seed: int) -> None:
    x = decode(encode(np.array([a for a, _ in xs])))
    y = decode(encode(np.array([b for _, b in xs])))

    def fn(p: MPCParty):
        sx = yield from p.share_input(0, encode(x) if p.index == 0 else None, x.shape)
        sy = yield from p.share_input(1, encode(y) if p.index == 1 else None, y.shape)
        z = yield from p.mul(sx, sy)
        w = yield from p.mul_public(sx, 0.3)
        return (yield from p.reveal(z)), (yield from p.reveal(w))

    out, _ = run3(fn, backend=backend, seed=seed)
    z, w = decode(out[0][0]), decode(out[0][1])
    assert np.all(np.abs(z - x * y) <= ULP)  # probabilistic truncation: at most one unit off
    assert np.all(np.abs(w - 0.3 * x) <= 2 * ULP + np.abs(x) * 2.0**-18)  # 0.3 has 17 fraction bits


def _normal_pair(n: int, k: int, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An n x k and a k x m matrix of normal values, exactly representable in fixed point."""
    rng = np.random.default_rng(seed)
    return decode(encode(rng.normal(0, 3, (n, k)))), decode(encode(rng.normal(0, 3, (k, m))))


def _share_pair(p: MPCParty, x: np.ndarray, y: np.ndarray):
    """Party 2 shares x, party 0 shares y."""
    sx = yield from p.share_input(2, encode(x) if p.index == 2 else None, x.shape)
    sy = yield from p.share_input(0, encode(y) if p.index == 0 else None, y.shape)
    return sx, sy


@pytest.mark.parametrize("backend", BACKENDS)
@given(n=st.integers(1, 12), k=st.integers(1, 20), m=st.integers(1, 12), seed=st.integers(0, 2**31))
def test_matmul_within_fixed_point_error(backend: str, n: int, k: int, m: int, seed: int) -> None:
    x, y = _normal_pair(n, k, m, seed)

    def fn(p: MPCParty):
        sx, sy = yield from _share_pair(p, x, y)
        z = yield from p.matmul(sx, sy)
        zt = yield from p.matmul(sy.T, sx.T)
        return (yield from p.reveal(z)), (yield from p.reveal(zt))

    out, _ = run3(fn, backend=backend, seed=seed % 1000)
    assert np.all(np.abs(decode(out[2][0]) - x @ y) <= ULP)
    assert np.all(np.abs(decode(out[2][1]) - (x @ y).T) <= ULP)


@pytest.mark.parametrize("backend", BACKENDS)
@given(n=st.integers(1, 12), k=st.integers(1, 20), m=st.integers(1, 12), seed=st.integers(0, 2**31))
def test_matmul_many_truncates_all_products_in_one_round(backend: str, n: int, k: int, m: int, seed: int) -> None:
    x, y = _normal_pair(n, k, m, seed)

    def fn(p: MPCParty):
        sx, sy = yield from _share_pair(p, x, y)
        before = p.rounds
        z, zt = yield from p.matmul_many([(sx, sy), (sy.T, sx.T)])
        return p.rounds - before, (yield from p.reveal(z)), (yield from p.reveal(zt))

    out, _ = run3(fn, backend=backend, seed=seed % 1000)
    assert [o[0] for o in out] == [1, 1, 1]  # each party waits for messages once
    assert np.all(np.abs(decode(out[2][1]) - x @ y) <= ULP)
    assert np.all(np.abs(decode(out[2][2]) - (x @ y).T) <= ULP)


def test_truncation_is_unbiased() -> None:
    # the exact product is not a multiple of 2^-16: each result is its floor or ceiling, and
    # the mean over many products is the exact value (no drift in long SGD runs)
    x = np.full(20000, 2.0**-8)
    y = np.full(20000, 77 * 2.0**-16)

    def fn(p: MPCParty):
        sx = yield from p.share_input(0, encode(x) if p.index == 0 else None, x.shape)
        sy = yield from p.share_input(1, encode(y) if p.index == 1 else None, y.shape)
        z = yield from p.mul(sx, sy)
        return (yield from p.reveal(z))

    out, _ = run3(fn)
    exact = 77 * 2.0**-24  # = 0.30078125 units of 2^-16
    z = decode(out[0])
    assert set(np.unique(z)) == {0.0, ULP}
    assert abs(z.mean() - exact) < 0.02 * ULP


def _old_truncation_failures(x: np.ndarray, d: int, rng: np.random.Generator) -> int:
    """How many of ``x`` SecureML / ABY3's probabilistic truncation (floor of one uniform
    additive part plus ceiling of the other, read signed) gets wrong by ``2^(64-d)``."""
    z0 = rng.integers(0, 2**64, size=x.size, dtype=np.uint64)
    w = x.view(np.uint64) - z0
    floor0 = (z0.view(np.int64) >> d).view(np.uint64)
    ceil1 = np.uint64(0) - ((np.uint64(0) - w).view(np.int64) >> d).view(np.uint64)
    return int(np.sum(floor0 + ceil1 - (x >> d).view(np.uint64) > 1))  # neither floor nor ceiling


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("d", [1, 16, 40])
def test_truncation_is_exact_where_probabilistic_truncation_fails(backend: str, d: int) -> None:
    """The attack on the truncation: values whose size makes the probabilistic truncation fail on
    about one element in eight (|x| near 2^61, failure probability |x| / 2^64); the exact one
    must be right on every element, up to the rounding unit, for every |x| < 2^62."""
    rng = np.random.default_rng(d)
    n = 20000
    x = rng.integers(-(2**62) + 1, 2**62, size=n, dtype=np.int64)
    x[:4] = [2**62 - 1, -(2**62) + 1, 0, -1]
    assert _old_truncation_failures(x, d, rng) > n // 20  # the inputs do break the old protocol

    def fn(p: MPCParty):
        s = yield from p.share_input(1, x.view(np.uint64) if p.index == 1 else None, x.shape)
        t = yield from p.trunc(s, d)
        return (yield from p.reveal(t))

    out, _ = run3(fn, backend=backend, seed=d)
    diff = out[0].view(np.int64) - (x >> d)
    assert set(np.unique(diff)) <= {0, 1}  # floor or ceiling, nothing else


@settings(max_examples=30, deadline=None)
@given(vals=st.lists(st.integers(-(2**62) + 1, 2**62 - 1), min_size=1, max_size=50),
       d=st.integers(0, 60), seed=st.integers(0, 1000))
def test_truncation_is_floor_or_ceiling(vals: list, d: int, seed: int) -> None:
    x = np.array(vals, dtype=np.int64)

    def fn(p: MPCParty):
        s = yield from p.share_input(2, x.view(np.uint64) if p.index == 2 else None, x.shape)
        return (yield from p.reveal((yield from p.trunc(s, d))))

    out, _ = run3(fn, seed=seed)
    assert set(np.unique(out[0].view(np.int64) - (x >> d))) <= {0, 1}
    assert all(np.array_equal(o, out[0]) for o in out)


def test_truncation_shift_out_of_range_is_refused() -> None:
    def fn(p: MPCParty):
        s = yield from p.share_input(0, encode([1.0]) if p.index == 0 else None, (1,))
        yield from p.trunc(s, 61)

    with pytest.raises(ParameterError):
        run3(fn)


encoded_edges = st.sampled_from([0, 1, -1, 2**16, -(2**16), 2**39 - 1, -(2**39)])


@pytest.mark.parametrize("backend", BACKENDS)
@given(vals=st.lists(st.one_of(st.integers(-(2**40), 2**40), encoded_edges), min_size=1, max_size=60),
       seed=st.integers(0, 1000))
def test_comparison_and_relu_are_exact(backend: str, vals: list, seed: int) -> None:
    v = np.array(vals, dtype=np.int64)

    def fn(p: MPCParty):
        s = yield from p.share_input(1, v.view(np.uint64) if p.index == 1 else None, v.shape)
        bit = yield from p.msb(s)
        neg = yield from p.b2a(bit)
        r, d = yield from p.relu(s)
        out = []
        for t in (neg, r, d):
            out.append((yield from p.reveal(t)))
        return out

    out, _ = run3(fn, backend=backend, seed=seed)
    neg, r, d = out[0]
    assert np.array_equal(neg, (v < 0).astype(np.uint64))
    assert np.array_equal(d, (v >= 0).astype(np.uint64))
    assert np.array_equal(r.view(np.int64), np.maximum(v, 0))


@pytest.mark.parametrize("backend", BACKENDS)
@given(words=st.lists(st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 2**63 - 1, 2**63, 2**64 - 1, 1])),
                      min_size=1, max_size=150),
       seed=st.integers(0, 1000))
def test_msb_is_bit_63_of_every_word(backend: str, words: list, seed: int) -> None:
    # the whole ring, not only fixed-point values: the carry tree must be right for every sum of
    # three components (blocks of 64 values, a partial last block)
    v = np.array(words, dtype=np.uint64)

    def fn(p: MPCParty):
        s = yield from p.share_input(2, v if p.index == 2 else None, v.shape)
        bit = yield from p.msb(s)
        return (yield from p.reveal((yield from p.b2a(bit))))

    out, _ = run3(fn, backend=backend, seed=seed)
    assert np.array_equal(out[0], v >> np.uint64(63))


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigmoid_approximation(backend: str) -> None:
    x = np.linspace(-10, 10, 401)

    def fn(p: MPCParty):
        s = yield from p.share_input(0, encode(x) if p.index == 0 else None, x.shape)
        return (yield from p.reveal((yield from p.sigmoid(s))))

    out, _ = run3(fn, backend=backend)
    y = decode(out[0])
    assert np.abs(y - 1 / (1 + np.exp(-x))).max() < 0.01
    assert np.all(np.diff(y) >= -2 * ULP)  # monotone up to rounding
    assert y[0] == 0 and abs(y[-1] - 1) <= 2 * ULP


# -- the channel and the runners ----------------------------------------------------------------
def test_channel_counts_bytes_and_keeps_order() -> None:
    net = InMemoryNetwork(["A", "B", "C"], record=True)
    a, b = net.channel("A"), net.channel("B")
    buf = bytearray(b"xyz")
    a.send("B", buf)
    buf[:] = b"___"  # send copied the message
    a.send("B", np.arange(4, dtype=np.uint64))
    assert b.recv("A") == b"xyz"
    assert np.array_equal(np.frombuffer(b.recv("A"), dtype=np.uint64), np.arange(4))
    assert (net.bytes_sent("A"), net.bytes_received("B"), net.bytes_sent("C")) == (35, 35, 0)
    assert [t[:2] for t in net.transcript] == [("A", "B"), ("A", "B")]
    with pytest.raises(ProtocolError):
        b.recv("C", timeout=0.01)
    with pytest.raises(ParameterError):
        net.channel("D")
    net.reset_counters()
    assert a.bytes_sent == 0


def test_operations_need_setup_and_deadlocks_are_reported() -> None:
    net = InMemoryNetwork(NAMES)
    parties = [MPCParty(i, net.channel(n), NAMES) for i, n in enumerate(NAMES)]

    def early(p: MPCParty):
        return (yield from p.share_input(0, np.zeros(2, np.uint64) if p.index == 0 else None, 2))

    with pytest.raises(ProtocolError, match="setup"):
        run_local([early(p) for p in parties], [p.channel for p in parties])

    def lonely(p: MPCParty):  # everybody waits, nobody sends
        yield NAMES[(p.index + 1) % 3]

    net2 = InMemoryNetwork(NAMES)
    with pytest.raises(ProtocolError, match="deadlock"):
        run_local([lonely(p) for p in parties], [net2.channel(n) for n in NAMES])
    with pytest.raises(ParameterError):
        MPCParty(3, net.channel("P0"), NAMES)


def test_threads_with_run_blocking_match_run_local() -> None:
    import threading

    x = np.arange(12, dtype=np.float64).reshape(3, 4) / 7
    net = InMemoryNetwork(NAMES)
    parties = [MPCParty(i, net.channel(n), NAMES) for i, n in enumerate(NAMES)]
    results: dict[int, np.ndarray] = {}

    def program(p: MPCParty):
        yield from p.setup()
        s = yield from p.share_input(0, encode(x) if p.index == 0 else None, x.shape)
        return (yield from p.reveal((yield from p.matmul(s, s.T))))

    def worker(p: MPCParty) -> None:
        results[p.index] = run_blocking(program(p), p.channel, timeout=60)

    threads = [threading.Thread(target=worker, args=(p,)) for p in parties]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(3):
        assert np.allclose(decode(results[i]), x @ x.T, atol=2 * ULP)


def test_wrong_message_length_is_a_protocol_error() -> None:
    net = InMemoryNetwork(NAMES)
    p0 = MPCParty(0, net.channel("P0"), NAMES)
    gen = p0.setup(b"0" * 16)
    assert next(gen) == "P2"
    with pytest.raises(ProtocolError):
        gen.send(b"short")


@given(st.lists(st.integers(0, 40000), min_size=1, max_size=12))
def test_prf_buffering_keeps_the_aes_ctr_stream(sizes: list) -> None:
    from Crypto.Cipher import AES

    key = b"0123456789abcdef"
    s = PRFStream(key)
    got = np.concatenate([s.draw(n) for n in sizes])
    want = np.frombuffer(AES.new(key, AES.MODE_CTR, nonce=b"", initial_value=0).encrypt(bytes(8 * sum(sizes))),
                         dtype=np.uint64)
    assert np.array_equal(got, want) and s.drawn == sum(sizes)


def test_numba_parallel_matmul_path_equals_reference() -> None:
    k = kernel_module("numba")
    rng = np.random.default_rng(3)
    n, kk, m = 259, 260, 261  # above PARALLEL_MATMUL, rows not a multiple of the register block
    assert n * kk * m >= k.PARALLEL_MATMUL
    xa, xb, ya, yb, al = u64(rng, (n, kk)), u64(rng, (n, kk)), u64(rng, (kk, m)), u64(rng, (kk, m)), u64(rng, (n, m))
    assert np.array_equal(k.matmul_local(xa, xb, ya, yb, al), _kernels_ref.matmul_local(xa, xb, ya, yb, al))


@given(n=st.integers(1, 40), d=st.integers(1, 6), m=st.integers(0, 60), frac_bits=st.integers(8, 30),
       seed=st.integers(0, 2**32 - 1), bad=st.sampled_from([None, np.nan, np.inf, -np.inf, "limit", "-limit"]))
def test_encode_rows_equals_numpy_reference(n: int, d: int, m: int, frac_bits: int, seed: int,
                                            bad: float | str | None) -> None:
    k = kernel_module("numba")
    rng = np.random.default_rng(seed)
    limit = 2.0 ** (40 - frac_bits)
    x = rng.uniform(-limit, limit, size=(n, d)) * rng.choice([1e-12, 1e-4, 1.0], size=(n, d))
    halves = rng.random((n, d)) < 0.3  # exact half units: the rounding (half to even) shows
    x[halves] = (rng.integers(-99, 99, size=int(halves.sum())) + 0.5) / 2.0**frac_bits
    idx = rng.integers(-n, n, size=m)  # repeats and negative indices, as numpy allows
    if bad is None:
        got = k.encode_rows(x, idx, frac_bits)
        assert got.dtype == np.uint64 and got.shape == (m, d)
        assert np.array_equal(got, _kernels_ref.encode_rows(x, idx, frac_bits))
        assert np.array_equal(got, encode(x[idx], frac_bits))
        # a column slice (not C-contiguous) and float32 input give the same
        assert np.array_equal(k.encode_rows(x[:, :1], idx, frac_bits), encode(x[idx, :1], frac_bits))
        x32 = (x / 2).astype(np.float32)  # (halved: no value rounds up to the limit)
        assert np.array_equal(k.encode_rows(x32, idx, frac_bits), encode(x32[idx], frac_bits))
    else:
        value = {"limit": limit, "-limit": -limit}.get(bad, bad)  # type: ignore[arg-type]
        x[int(rng.integers(n)), int(rng.integers(d))] = value
        idx = np.arange(n)
        for mod in (k, _kernels_ref):
            with pytest.raises(EncodingOverflowError):
                mod.encode_rows(x, idx, frac_bits)
    for mod in (k, _kernels_ref):
        with pytest.raises(IndexError):
            mod.encode_rows(np.zeros((n, d)), np.array([0, n]), frac_bits)


def test_a_message_handed_over_cannot_be_written_while_in_flight() -> None:
    net = InMemoryNetwork(NAMES)
    p0 = MPCParty(0, net.channel("P0"), NAMES)
    base = np.arange(12, dtype=np.uint64)
    msg = base.reshape(3, 4)[1:]  # a view: it and the array it views are frozen
    p0._hand(1, msg)
    assert not msg.flags.writeable and not base.flags.writeable
    with pytest.raises(ValueError):
        base[5] = 0
    with pytest.raises(ValueError):
        base[4:8].reshape(2, 2)[0, 0] = 0  # a view made afterwards is read-only too
    assert np.array_equal(np.frombuffer(net.channel("P1").recv("P0"), dtype=np.uint64), np.arange(4, 12))
    # reveal sends a copy: the caller keeps its (writable) share
    share = np.ones(3, dtype=np.uint64)
    p0._send(1, share)
    share[0] = 7
    assert np.frombuffer(net.channel("P1").recv("P0"), dtype=np.uint64).tolist() == [1, 1, 1]
