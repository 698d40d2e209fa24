"""MPCParty.mul_public_many: several public-factor products with one truncation round."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mpc_helpers import run3

from dtxfast.errors import ParameterError
from dtxfast.protocols.mpc import decode, encode

factors = st.one_of(st.just(0.0), st.floats(1e-6, 10.0), st.floats(-10.0, -1e-6))


@settings(max_examples=15, deadline=None)
@given(cs=st.lists(factors, min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_mul_public_many_matches_the_products(cs: list[float], seed: int) -> None:
    rng = np.random.default_rng(seed)
    xs = [rng.uniform(-50, 50, size=(k + 1, 3)) for k in range(len(cs))]

    def prog(p):
        shares = []
        for x in xs:
            shares.append((yield from p.share_input(0, encode(x) if p.index == 0 else None, x.shape)))
        rounds = p.rounds
        out = yield from p.mul_public_many(list(zip(shares, cs)))
        assert p.rounds - rounds <= 1  # one truncation round for all (none if every factor is 0)
        revealed = []
        for o in out:
            revealed.append((yield from p.reveal(o)))
        return revealed

    out, _ = run3(prog)
    big = max(abs(c) for c in cs)
    for x, c, got in zip(xs, cs, out[0]):
        assert got.shape == x.shape
        # ~15 significant bits for the largest factor: error <= |x| * big * 2^-15 plus two ulps
        tol = 50 * big * 2.0**-15 + 3 * 2.0**-16
        assert np.allclose(decode(got), x * c, atol=tol, rtol=0)


def test_mul_public_many_rejects_non_finite_factors() -> None:
    def prog(p):
        x = yield from p.share_input(0, encode([1.0]) if p.index == 0 else None, (1,))
        yield from p.mul_public_many([(x, float("nan"))])

    with pytest.raises(ParameterError):
        run3(prog)
