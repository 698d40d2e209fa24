"""dtxfast.protocols.compare: the OT-based sign bit and multiplexer on shares (L2).

The oracles are plaintext: the sign of the reconstructed value (numpy), the exact integer product.
The transcript tests vary one party's inputs between extremes and check that what the other party
receives does not move (and check that the same statistic does move on a leaky variant, so the test
can fail).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp

from dtxfast.errors import MalformedInput, ParameterError, StateError
from dtxfast.protocols.compare import STAT_BITS, Multiplexer, OTPool, SignBit, and_count, plain_sign

MASK64 = (1 << 64) - 1


def _pools():
    a, b = OTPool(), OTPool()
    ra, rb = a.setup_reply(b.setup_message()), b.setup_reply(a.setup_message())
    a.setup_finish(rb)
    b.setup_finish(ra)
    return a, b


@pytest.fixture(scope="module")
def pools():
    return _pools()


def _extend(a, b, n):
    ua, ub = a.extend(n), b.extend(n)
    a.accept(ub, n)
    b.accept(ua, n)


def _split(x: list[int], bits: int, rng) -> tuple[np.ndarray, np.ndarray]:
    mod = (1 << bits) - 1
    r = [int(v) for v in rng.integers(0, 1 << 62, size=len(x))]
    r = [(v * 4 + 3) & mod for v in r]
    return (np.array([(v - s) & mod for v, s in zip(x, r)], dtype=np.uint64),
            np.array(r, dtype=np.uint64))


def _extend2(a, b, na, nb):
    """OTs sent by a (na) and by b (nb)."""
    ua, ub = a.extend(nb), b.extend(na)
    a.accept(ub, na)
    b.accept(ua, nb)


def _sign(a, b, xa, xb, bits, record=None):
    _extend2(a, b, *SignBit.ots_needed(len(xa), bits))
    sa, sb = SignBit(a, True, xa, bits), SignBit(b, False, xb, bits)
    ma, mb = sa.message(), sb.message()
    rounds = 0  # messages each party sends
    while ma is not None:
        if record is not None:
            record.append(mb)  # what the first party receives
        ma, mb = sa.receive(mb), sb.receive(ma)
        rounds += 1
    assert mb is None
    return sa.result ^ sb.result, rounds


def _signed_to_ring(v: int, bits: int) -> int:
    return v & ((1 << bits) - 1)


@pytest.mark.parametrize("bits", [2, 3, 8, 38, 63, 64])
def test_sign_bit_equals_the_plaintext_comparison_on_the_edges(pools, bits):
    a, b = pools
    half = 1 << (bits - 1)
    edge = [0, 1, -1, 2, -2, half - 1, -half, half - 2, -half + 1]
    bound = 2 << 12  # the VFL's bound +-2 at its comparison scale: c - z around z = c, one unit either side
    if bits > 16:
        edge += [bound - (bound + d) for d in (-1, 0, 1)] + [(-bound + d) + bound for d in (-1, 0, 1)]
    edge = [v for v in edge if -half <= v < half]  # the values the ring 2^bits represents
    x = [_signed_to_ring(v, bits) for v in edge]
    rng = np.random.default_rng(bits)
    xa, xb = _split(x, bits, rng)
    got, rounds = _sign(a, b, xa, xb, bits)
    assert got.tolist() == plain_sign(np.array(x, dtype=np.uint64), bits).tolist()
    assert got.tolist() == [1 if v < 0 else 0 for v in edge]
    assert rounds == 1 + int(np.ceil(np.log2(bits - 1)))  # the leaves, then one round per tree level


@settings(max_examples=25, deadline=None)
@given(bits=st.integers(2, 64), data=st.data())
def test_sign_bit_equals_the_plaintext_comparison(pools, bits, data):
    a, b = pools
    vals = data.draw(st.lists(st.integers(0, (1 << bits) - 1), min_size=1, max_size=40))
    shares = data.draw(st.lists(st.integers(0, (1 << bits) - 1), min_size=len(vals), max_size=len(vals)))
    mod = (1 << bits) - 1
    xa = np.array([(v - s) & mod for v, s in zip(vals, shares)], dtype=np.uint64)
    xb = np.array(shares, dtype=np.uint64)
    got, _ = _sign(a, b, xa, xb, bits)
    assert got.tolist() == plain_sign(np.array(vals, dtype=np.uint64), bits).tolist()


def test_and_count_is_what_the_protocol_takes(pools):
    # leaves + per tree level 2 ANDs per pair but the lowest pair's second
    assert [and_count(w) for w in (1, 2, 37, 63)] == [1, 3, 103, 63 + 61 + 31 + 15 + 7 + 3 + 1]
    assert SignBit.ots_needed(10, 38) == (10 * 103, 10 * 66)
    a, b = pools
    na, nb = SignBit.ots_needed(128, 38)  # multiples of 128: no rounding up
    _extend2(a, b, na, nb - 128)  # one block of OTs short
    sa = SignBit(a, True, np.zeros(128, np.uint64), 38)
    sb = SignBit(b, False, np.zeros(128, np.uint64), 38)
    ma, mb = sa.message(), sb.message()
    with pytest.raises(StateError, match="fewer"):
        while ma is not None:
            ma, mb = sa.receive(mb), sb.receive(ma)


def _mux(a, b, ba, bb, va, vb, vbits):
    _extend(a, b, len(ba))
    xa, xb = Multiplexer(a, ba, va, vbits), Multiplexer(b, bb, vb, vbits)
    r2a, r2b = xa.receive(xb.message()), xb.receive(xa.message())
    return xa.finish(r2b), xb.finish(r2a), (r2a, r2b)


def test_multiplexer_gives_exact_integer_shares_of_the_product(pools):
    a, b = pools
    vbits = 100
    top = (1 << vbits) - 1
    rng = np.random.default_rng(5)
    va = [top, -top, 0, 1, -1, 12345, top, -top]
    vb = [-top, top, top, 0, -1, -(1 << 99), top, -top]
    bits = np.array([0, 1, 1, 0, 1, 1, 1, 0], np.uint8)
    ba = rng.integers(0, 2, size=len(bits)).astype(np.uint8)
    fa, fb, _ = _mux(a, b, ba, bits ^ ba, va, vb, vbits)
    assert [x + y for x, y in zip(fa, fb)] == [int(t) * (x + y) for t, x, y in zip(bits, va, vb)]
    with pytest.raises(ParameterError, match="bound"):
        Multiplexer(a, np.zeros(1, np.uint8), [1 << vbits], vbits)
    with pytest.raises(ParameterError):
        Multiplexer(a, np.array([2], np.uint8), [0], vbits)


def test_tampered_or_truncated_messages_raise_typed_errors(pools):
    a, b = pools
    na, nb = SignBit.ots_needed(4, 38)
    ua, ub = a.extend(nb), b.extend(na)
    with pytest.raises(MalformedInput):
        a.accept(ub[:-16], na)
    a.accept(ub, na)
    b.accept(ua, nb)
    sa = SignBit(a, True, np.arange(4, dtype=np.uint64), 38)
    sb = SignBit(b, False, np.arange(4, dtype=np.uint64), 38)
    ma, mb = sa.message(), sb.message()
    with pytest.raises(MalformedInput):
        sa.receive(mb[:-1])
    with pytest.raises(MalformedInput):
        sa.receive(mb + b"\x00")
    while ma is not None:
        ma, mb = sa.receive(mb), sb.receive(ma)
    with pytest.raises(StateError):
        sa.receive(b"")
    with pytest.raises(MalformedInput):
        OTPool().setup_reply(b"\x01" * 64)  # not a point of Ed25519
    with pytest.raises(StateError):
        OTPool().extend(128)  # not set up
    _extend(a, b, 3)
    xa = Multiplexer(a, np.zeros(3, np.uint8), [1, 2, 3], 8)
    with pytest.raises(MalformedInput):
        xa.receive(b"")
    with pytest.raises(StateError):
        xa.finish(b"")
    r = xa.receive(b"\x00")
    assert len(r) == 2 * 3 * ((8 + STAT_BITS + 2 + 7) // 8)
    with pytest.raises(MalformedInput):
        xa.finish(r[:-1])


def _bits_received(rec: list[bytes]) -> np.ndarray:
    return np.concatenate([np.unpackbits(np.frombuffer(m, np.uint8)) for m in rec])


def test_sign_bit_transcript_does_not_depend_on_the_other_partys_input(pools):
    """The first party's input fixed; the second's all 0 or all ones (extremes): the bits the first
    receives are uniform in both runs (per round), and a two-sample test cannot tell them apart."""
    a, b = pools
    bits, n = 38, 600
    mod = (1 << bits) - 1
    xa = np.full(n, 12345, np.uint64)
    views = []
    for xb_val in (0, mod):
        rec: list[bytes] = []
        _sign(a, b, xa, np.full(n, xb_val, np.uint64), bits, record=rec)
        v = _bits_received(rec)
        assert abs(v.mean() - 0.5) < 5 * 0.5 / np.sqrt(v.size)
        views.append(v)
    # first rounds of the two runs, as bytes: no difference in distribution
    r0 = [np.frombuffer(bytes(np.packbits(v[:8000])), np.uint8) for v in views]
    assert ks_2samp(r0[0], r0[1]).pvalue > 1e-3
    # the check can fail: the leaf round's first-party openings without the triple's random bit
    # (x itself) would be all zeros or all ones
    leaky = [np.zeros(n * (bits - 1), np.uint8), np.ones(n * (bits - 1), np.uint8)]
    assert abs(leaky[0].mean() - 0.5) > 5 * 0.5 / np.sqrt(leaky[0].size)


def test_multiplexer_transcript_does_not_depend_on_the_other_partys_bit_or_value(pools):
    """What the first party opens from the second's messages (b v_B + r) under the extremes of the
    second's value and bit: the same distribution; with a mask of the value's width only it differs."""
    a, b = pools
    vbits, n = 40, 1500
    top = (1 << vbits) - 1
    opened = []
    for vb, bb in ((0, 0), (top, 1)):
        _extend(a, b, n)
        xa = Multiplexer(a, np.zeros(n, np.uint8), [0] * n, vbits)
        xb = Multiplexer(b, np.full(n, bb, np.uint8), [vb] * n, vbits)
        r2a, r2b = xa.receive(xb.message()), xb.receive(xa.message())
        # the first party's share: what it opened from the second's messages, b v_B + r_B, minus its own r_A
        opened.append(np.array([float(v) for v in xa.finish(r2b)]))
        xb.finish(r2a)
    # the shares are b v_B + r_B - r_A: offsets of 2^vbits out of 2^(vbits + 66): indistinguishable
    assert ks_2samp(opened[0], opened[1]).pvalue > 1e-3
    # leaky variant: the same statistic on masks only as wide as the value tells them apart
    rng = np.random.default_rng(1)
    small = [rng.integers(0, 1 << vbits, size=n).astype(np.float64) + off for off in (0.0, float(top))]
    assert ks_2samp(small[0], small[1]).pvalue < 1e-3
