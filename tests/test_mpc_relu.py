"""ReLU with daBits: the kernels against their numpy twin, the daBits, exactness, rounds, and what
each party sees (every test of a view also runs a leaky variant and checks that it is caught)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mpc_helpers import BACKENDS, kernel_module, run3, u64

from dtxfast.protocols.mpc import MPCParty, _kernels_ref, encode
from dtxfast.protocols.mpc import party as party_mod
from dtxfast.protocols.mpc.party import ArithShare, BoolShare


# -- kernels: compiled equals reference ---------------------------------------------------------
@given(nw=st.integers(1, 6), cut=st.integers(0, 63), role=st.integers(0, 2), seed=st.integers(0, 2**32 - 1))
def test_dabit_and_open_kernels_equal_numpy_reference(nw: int, cut: int, role: int, seed: int) -> None:
    k = kernel_module("numba")
    rng = np.random.default_rng(seed)
    n = 64 * nw
    wa, wb = u64(rng, nw), u64(rng, nw)
    m, mp, x, y, z = (u64(rng, n) for _ in range(5))
    for got, want in ((k.dabit_p0(wa, wb, m, mp), _kernels_ref.dabit_p0(wa, wb, m, mp)),
                      ((k.dabit_mask(wa, m, mp),), (_kernels_ref.dabit_mask(wa, m, mp),)),
                      ((k.dabit_close(wa, m, mp, x),), (_kernels_ref.dabit_close(wa, m, mp, x),))):
        assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))
    size = n - cut  # the opened words cover a partial last block
    args = [a[:size] for a in (m, mp, x, y, z)]
    got = k.open_relu(wa, *args, args[0], role)
    want = _kernels_ref.open_relu(wa, *args, args[0], role)
    assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))
    assert all(np.array_equal(g, w) for g, w in zip(k.open_drelu(wa, m[:size], mp[:size], role),
                                                     _kernels_ref.open_drelu(wa, m[:size], mp[:size], role),
                                                     strict=True))


@given(rows=st.integers(1, 9), h=st.integers(1, 9), m=st.integers(0, 3), seed=st.integers(0, 2**32 - 1))
def test_relu_products_and_backprop_mask_equal_numpy_reference(rows: int, h: int, m: int, seed: int) -> None:
    k = kernel_module("numba")
    rng = np.random.default_rng(seed)
    n = rows * h
    xa, xb, ra, rb = (u64(rng, n) for _ in range(4))
    wa, wb = u64(rng, (h, m)), u64(rng, (h, m))
    mask = u64(rng, n + n * m)
    got = k.relu_products(xa, xb, ra, rb, wa, wb, mask)
    assert np.array_equal(got, _kernels_ref.relu_products(xa, xb, ra, rb, wa, wb, mask))
    # against mul_local of the two products written out
    rr = np.repeat(ra, m), np.repeat(rb, m)
    ww = np.tile(wa, (rows, 1)).reshape(-1), np.tile(wb, (rows, 1)).reshape(-1)
    want = _kernels_ref.mul_local(np.concatenate([xa, rr[0]]), np.concatenate([xb, rr[1]]),
                                  np.concatenate([ra, ww[0]]), np.concatenate([rb, ww[1]]), mask, np.zeros_like(mask))
    assert np.array_equal(got, want)
    if m:
        c = u64(rng, (n + 63) // 64)
        zb, da, db, qa, qb = u64(rng, (rows, h)), u64(rng, (rows, m)), u64(rng, (rows, m)), u64(rng, (rows, h, m)), \
            u64(rng, (rows, h, m))
        got = k.backprop_mask(c, zb, da, db, qa, qb, mask[:n])
        assert np.array_equal(got, _kernels_ref.backprop_mask(c, zb, da, db, qa, qb, mask[:n]))


def test_open_kernels_compute_c_xor_r_and_the_relu() -> None:
    # the three parties' components of d = c ^ r and of x d, summed, against plain integers
    rng = np.random.default_rng(1)
    n = 200
    c = u64(rng, 4)
    cb = np.unpackbits(c.view(np.uint8), bitorder="little")[:n].astype(np.uint64)
    r = rng.integers(0, 2, n, dtype=np.uint64)
    x = u64(rng, n)
    rc = [u64(rng, n), u64(rng, n)]
    rc.append(r - rc[0] - rc[1])
    xc = [u64(rng, n), u64(rng, n)]
    xc.append(x - xc[0] - xc[1])
    xr = x * r
    pc = [u64(rng, n), u64(rng, n)]
    pc.append(xr - pc[0] - pc[1])
    y = np.zeros(n, np.uint64)
    d = np.zeros(n, np.uint64)
    for i in range(3):
        j = (i + 1) % 3
        ya, _, da, _ = _kernels_ref.open_relu(c, xc[i], xc[j], pc[i], pc[j], rc[i], rc[j], i)
        y += ya
        d += da
    assert np.array_equal(d, cb ^ r)
    assert np.array_equal(y, x * (cb ^ r))


# -- daBits -------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@given(sizes=st.lists(st.integers(1, 300), min_size=1, max_size=4), seed=st.integers(0, 1000))
def test_dabits_are_one_bit_in_both_forms(backend: str, sizes: list, seed: int) -> None:

    def fn(p: MPCParty):
        out = []
        for n in sizes:
            rb, ra = yield from p._dabits(n)
            out.append((rb, (yield from p.reveal(ra))))
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(party_mod, "DABIT_BLOCK", 256)  # refills mid-sequence, with leftovers
        out, _ = run3(fn, backend=backend, seed=seed)
    for k, n in enumerate(sizes):
        comps = [out[i][k][0] for i in range(3)]
        for i in range(3):  # replicated: party i's second component is party i+1's first
            assert np.array_equal(comps[i].b, comps[(i + 1) % 3].a)
        words = comps[0].a ^ comps[1].a ^ comps[2].a
        assert words.size == (n + 63) // 64
        bits = np.unpackbits(words.view(np.uint8), bitorder="little").astype(np.uint64)
        assert np.array_equal(out[0][k][1], bits)  # the arithmetic form is the same bits, as 0/1


# -- exactness across pool refills --------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@given(sizes=st.lists(st.integers(1, 200), min_size=1, max_size=4), seed=st.integers(0, 1000))
def test_relu_and_drelu_stay_exact_across_refills(backend: str, sizes: list, seed: int) -> None:
    rng = np.random.default_rng(seed)
    vals = [rng.integers(-(2**40), 2**40, n) for n in sizes]

    def fn(p: MPCParty):
        out = []
        for v in vals:
            s = yield from p.share_input(0, v.view(np.uint64) if p.index == 0 else None, v.shape)
            y, d = yield from p.relu(s)
            d2 = yield from p.drelu(s)
            opened = []
            for t in (y, d, d2):
                opened.append((yield from p.reveal(t)))
            out.append(opened)
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(party_mod, "DABIT_BLOCK", 128)
        out, _ = run3(fn, backend=backend, seed=seed)
    for v, (y, d, d2) in zip(vals, out[0], strict=True):
        assert np.array_equal(y.view(np.int64), np.maximum(v, 0))
        assert np.array_equal(d, (v >= 0).astype(np.uint64))
        assert np.array_equal(d2, d)


def test_relu_and_drelu_take_seven_rounds_with_a_warm_pool() -> None:
    v = np.arange(-500, 500, dtype=np.int64)

    def fn(p: MPCParty):
        s = yield from p.share_input(1, v.view(np.uint64) if p.index == 1 else None, v.shape)
        yield from p.relu(s)  # fills the pool
        counts = []
        for op in (p.relu, p.drelu, p.msb):
            before = p.rounds
            yield from op(s)
            counts.append(p.rounds - before)
        return counts

    out, _ = run3(fn)
    # was 11 (ReLU), 10 (its derivative) and 8 (msb): one round for the generate and propagate
    # bits (party 0 only sends in it, unless the ReLU's products ride along), six tree levels,
    # the last one opening the masked derivative
    assert out == [[7, 6, 6], [7, 7, 7], [7, 7, 7]]


# -- what each party sees -----------------------------------------------------------------------
def _after_setup(net) -> list:
    """The transcript without the three PRF seeds of :meth:`MPCParty.setup` (its first messages)."""
    assert all(len(m) == 16 for _, _, m in net.transcript[:3])
    return net.transcript[3:]


def _received(net, name: str) -> np.ndarray:
    return np.concatenate([np.frombuffer(m, dtype=np.uint64) for s, r, m in _after_setup(net) if r == name])


def _looks_uniform(words: np.ndarray) -> bool:
    """Uniform ring elements: almost never below 2^40 as signed values, bits balanced."""
    small = np.mean(np.abs(words.view(np.int64).astype(np.float64)) < 2.0**40)
    bits = np.unpackbits(words.view(np.uint8))
    return bool(small < 0.01 and abs(bits.mean() - 0.5) < 0.01)


def _opened(net) -> np.ndarray:
    """The public ``c = d ^ r``: the XOR of the last message each party sent (its share of c)."""
    last = {}
    for s, _, m in net.transcript:
        last[s] = np.frombuffer(m, dtype=np.uint64)
    return last["P0"] ^ last["P1"] ^ last["P2"]


def _relu_view(v: np.ndarray, seed: int):
    def fn(p: MPCParty):
        s = yield from p.share_input(0, encode(v) if p.index == 0 else None, v.shape)
        y, d = yield from p.relu(s)
        return y

    _, net = run3(fn, record=True, seed=seed)
    return net


def _check_relu_view(net, d: np.ndarray) -> None:
    c = np.unpackbits(_opened(net).view(np.uint8), bitorder="little")[:d.size]
    # c = d ^ r is uniform and independent of d (here d = 1 for most elements)
    assert abs(c.mean() - 0.5) < 0.05
    assert abs(np.mean(c == d) - 0.5) < 0.05
    for name in ("P0", "P1", "P2"):
        assert _looks_uniform(_received(net, name)), name


def test_relu_view_is_uniform_and_a_leaky_variant_is_caught(monkeypatch) -> None:
    rng = np.random.default_rng(3)
    v = np.abs(rng.normal(size=4096)) + 0.5
    v[:512] *= -1  # some negatives, so c's independence of d is tested too
    d = (v >= 0).astype(np.uint8)
    _check_relu_view(_relu_view(v, seed=1), d)

    # leaky variant: daBits that are all 0 open d itself
    def no_mask(self: MPCParty, n: int):
        nw = (n + 63) // 64
        z = np.zeros(nw, np.uint64)
        za = np.zeros(64 * nw, np.uint64)
        return BoolShare(z, z.copy()), ArithShare(za, za.copy())
        yield  # pragma: no cover

    monkeypatch.setattr(MPCParty, "_dabits", no_mask)
    with pytest.raises(AssertionError):
        _check_relu_view(_relu_view(v, seed=1), d)


def _dabit_view(seed: int):
    def fn(p: MPCParty):
        return (yield from p._dabits(1 << 14))

    return run3(fn, record=True, seed=seed)


def test_dabit_conversion_view_is_uniform_and_a_leaky_variant_is_caught(monkeypatch) -> None:
    out, net = _dabit_view(seed=2)
    words = out[0][0].a ^ out[1][0].a ^ out[2][0].a
    assert abs(np.unpackbits(words.view(np.uint8)).mean() - 0.5) < 0.02  # the daBits are random bits
    assert not any(r == "P0" for _, r, _ in _after_setup(net))  # party 0 receives nothing
    for name in ("P1", "P2"):
        assert _looks_uniform(_received(net, name)), name

    # leaky variant: party 0 sends its bits u without the masks m, m'
    k = kernel_module("numba")
    real = k.dabit_p0

    def unmasked(ra, rb, m, mp):
        w, wp = real(ra, rb, m, mp)
        return w + m, wp + mp

    monkeypatch.setattr(k, "dabit_p0", unmasked)
    _, net = _dabit_view(seed=2)
    assert not _looks_uniform(_received(net, "P1"))


# -- back-propagation through the ReLU without a round of its own -------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@given(rows=st.integers(1, 12), h=st.integers(1, 9), m=st.integers(1, 3), seed=st.integers(0, 1000))
def test_backprop_relu_is_the_masked_product_in_one_round(backend: str, rows: int, h: int, m: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, w, delta, acts = (rng.normal(size=s) for s in ((rows, h), (h, m), (rows, m), (rows, 4)))

    def fn(p: MPCParty):
        def share(v, owner):
            return (yield from p.share_input(owner, encode(v) if p.index == owner else None, v.shape))
        xs, ws, ds, a_s = (yield from share(x, 0)), (yield from share(w, 1)), (yield from share(delta, 2)), \
            (yield from share(acts, 0))
        y, grad = yield from p.relu_layer(xs, ws)
        before = p.rounds
        (gw,), back = yield from p.backprop_relu([(a_s.T, ds)], ds, ws, grad)
        rounds = p.rounds - before
        out = []
        for t in (y, grad.d, gw, back):
            out.append((yield from p.reveal(t)))
        return out, rounds

    out, _ = run3(fn, backend=backend, seed=seed)
    (y, d, gw, back), rounds = out[0]
    assert [o[1] for o in out] == [1, 1, 1]  # one truncation round for the gradient and the error
    from dtxfast.protocols.mpc import decode
    xe = decode(encode(x))
    assert np.array_equal(d, (xe >= 0).astype(np.uint64))
    assert np.array_equal(decode(y), np.maximum(xe, 0))
    tol = 2.0**-16 * (2 + 4 * max(h, 4, rows))
    assert np.abs(decode(gw) - acts.T @ delta).max() < tol
    assert np.abs(decode(back) - (delta @ w.T) * (xe >= 0)).max() < tol


def _attack_backprop(seed: int) -> float:
    """Party 1 tries to read the error ``delta`` from party 2's truncation message: where the
    opened ``c`` is 0 the combined share is ``z2 = delta q2 + mask``, and party 1 holds ``q2``."""
    rows, h = 64, 16
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, h))
    delta = encode(rng.normal(size=(rows, 1)))
    w = encode(rng.normal(size=(h, 1)))

    def fn(p: MPCParty):
        xs = yield from p.share_input(0, encode(x) if p.index == 0 else None, x.shape)
        ws, ds = p.share_public(w), p.share_public(delta)  # components 1 and 2 are 0
        _, grad = yield from p.relu_layer(xs, ws)
        yield from p.backprop_relu([], ds, ws, grad)
        return grad

    out, net = run3(fn, record=True, seed=seed)
    q2 = out[1].q.b[:, :, 0]  # party 1's second component is component 2
    last = [np.frombuffer(m, dtype=np.uint64) for s, r, m in net.transcript if (s, r) == ("P2", "P1")][-1]
    z2 = last[:rows * h].reshape(rows, h)
    guess = delta * q2  # delta broadcast over the h columns
    return float(np.mean((z2 == guess) | (z2 == np.uint64(0) - guess)))


def test_backprop_relu_hides_the_error_and_a_leaky_variant_is_caught(monkeypatch) -> None:
    assert _attack_backprop(4) == 0.0
    # leaky variant: no fresh zero sharing on the combined share (the result stays correct)
    monkeypatch.setattr(MPCParty, "_zero_arith", lambda self, n: np.zeros(n, np.uint64))
    assert _attack_backprop(4) > 0.3


# -- the generate/propagate round of the sign circuit -------------------------------------------
def _words_from_planes(planes: np.ndarray, n: int) -> np.ndarray:
    """Inverse of ``bit_planes``: the ``n`` words whose bit ``k`` is bit ``r`` of ``planes[k, b]``."""
    nb = planes.shape[1]
    bits = np.unpackbits(np.ascontiguousarray(planes).view(np.uint8).reshape(64, nb, 8), axis=2, bitorder="little")
    words = np.zeros((nb, 64), dtype=np.uint64)
    for k in range(64):
        words |= bits[k].astype(np.uint64) << np.uint64(k)
    return words.reshape(-1)[:n]


def _attack_sign_round(seed: int) -> float:
    """Party 1 adds its component ``s2`` to what party 0 sent it in the sign circuit's first
    round (``W ^ mu``, the planes of ``w = s0 + s1`` masked): without the mask that is ``x``."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2**64, 300, dtype=np.uint64, endpoint=False)

    def fn(p: MPCParty):
        s = yield from p.share_input(2, x if p.index == 2 else None, x.shape)
        yield from p.msb(s)
        return s

    out, net = run3(fn, record=True, seed=seed)
    first = [np.frombuffer(m, dtype=np.uint64) for s, r, m in _after_setup(net) if (s, r) == ("P0", "P1")][0]
    guess = _words_from_planes(first.reshape(64, -1), x.size) + out[1].b  # party 1's b is s2
    return float(np.mean(guess == x))


def test_sign_round_hides_w_and_a_leaky_variant_is_caught(monkeypatch) -> None:
    assert _words_from_planes(kernel_module("numba").bit_planes(np.arange(70, dtype=np.uint64)), 70).tolist() \
        == list(range(70))
    assert _attack_sign_round(5) == 0.0
    # leaky variant: PRF streams of zeros (no masks anywhere; the results stay correct)
    from dtxfast.protocols.mpc.prf import PRFStream
    monkeypatch.setattr(PRFStream, "draw", lambda self, n: np.zeros(n, np.uint64))
    monkeypatch.setattr(PRFStream, "draw_sub", lambda self, other, n: np.zeros(n, np.uint64))
    assert _attack_sign_round(5) == 1.0


def test_parallel_paths_of_the_relu_kernels_equal_numpy_reference() -> None:
    k = kernel_module("numba")
    rng = np.random.default_rng(9)
    nw = k.PARALLEL_ELEMS // 64 + 3
    n = 64 * nw
    wa, wb = u64(rng, nw), u64(rng, nw)
    m, mp, x, y, z = (u64(rng, n) for _ in range(5))
    w2a, w2b = u64(rng, (8, 2)), u64(rng, (8, 2))
    mask = u64(rng, 3 * n)
    pairs = [(k.dabit_p0(wa, wb, m, mp), _kernels_ref.dabit_p0(wa, wb, m, mp)),
             ((k.dabit_mask(wa, m, mp),), (_kernels_ref.dabit_mask(wa, m, mp),)),
             ((k.dabit_close(wa, m, mp, x),), (_kernels_ref.dabit_close(wa, m, mp, x),)),
             ((k.relu_products(m, mp, x, y, w2a, w2b, mask),), (_kernels_ref.relu_products(m, mp, x, y, w2a, w2b, mask),)),
             (k.open_drelu(wa, m, mp, 0), _kernels_ref.open_drelu(wa, m, mp, 0)),
             (k.open_relu(wa, m, mp, x, y, z, m, 2), _kernels_ref.open_relu(wa, m, mp, x, y, z, m, 2))]
    for got, want in pairs:
        assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))
