"""The PRF streams of the MPC parties: AES-128-CTR from counter 0, however the draws are cut."""

from __future__ import annotations

import numpy as np
from Crypto.Cipher import AES
from hypothesis import given, settings
from hypothesis import strategies as st

from dtxfast.protocols.mpc import PRFStream


@settings(max_examples=30, deadline=None)
@given(key=st.binary(min_size=16, max_size=16),
       sizes=st.lists(st.one_of(st.integers(0, 50), st.integers(0, 3 * PRFStream.CHUNK)), min_size=1, max_size=12))
def test_draws_are_the_aes_ctr_keystream_of_an_independent_implementation(key: bytes, sizes: list[int]) -> None:
    s = PRFStream(key)
    got = np.concatenate([s.draw(n).copy() for n in sizes])
    want = AES.new(key, AES.MODE_CTR, nonce=b"", initial_value=0).encrypt(bytes(8 * sum(sizes)))
    assert got.tobytes() == want
    assert s.drawn == sum(sizes)


def test_a_draw_is_not_changed_by_later_draws() -> None:
    s = PRFStream(b"x" * 16)
    small = s.draw(10)
    kept = small.copy()
    s.draw(3 * PRFStream.CHUNK)
    s.draw(5)
    assert np.array_equal(small, kept)
