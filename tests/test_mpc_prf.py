"""The PRF streams of the MPC parties: AES-128-CTR from counter 0, however the draws are cut, on
the compiled VAES / AES-NI kernel and on its OpenSSL twin."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from backends import compiled_or_none, compiled_or_skip
from Crypto.Cipher import AES
from hypothesis import given, settings
from hypothesis import strategies as st

from dtxfast._backend import use_backend
from dtxfast.errors import ParameterError
from dtxfast.protocols.mpc import PRFStream, _prf_ref, prf


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


# -- the compiled keystream kernel (ext/_prf.pyx) against its twin and pycryptodome ----------------

_PRF = compiled_or_none("_prf")
needs_kernel = pytest.mark.skipif(_PRF is None or not _PRF.aes_available(), reason="no compiled PRF kernel / AES-NI")
#: the kernel's two paths: VAES (where the CPU has it) and AES-NI (DTXFAST_SIMD=0, read at every call)
PATHS = ["vaes", "aesni"]


@contextmanager
def _path(path: str) -> Iterator[None]:
    if path == "vaes" and not _PRF.simd_available():
        pytest.skip("no AVX-512 VAES on this CPU")
    saved = os.environ.get("DTXFAST_SIMD")
    os.environ["DTXFAST_SIMD"] = "1" if path == "vaes" else "0"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("DTXFAST_SIMD", None)
        else:
            os.environ["DTXFAST_SIMD"] = saved


def _pycryptodome_words(key: bytes, start: int, n: int) -> np.ndarray:
    """Words ``start .. start + n - 1`` of AES-128-CTR from counter 0, by an independent implementation."""
    blk = start // 2
    raw = AES.new(key, AES.MODE_CTR, nonce=b"", initial_value=blk).encrypt(bytes(16 * ((start + n + 1) // 2 - blk)))
    return np.frombuffer(raw, dtype=np.uint64)[start % 2:start % 2 + n]


def test_the_kernel_is_built_and_chosen_where_the_cpu_has_aes_ni() -> None:
    mod = compiled_or_skip("_prf")
    if os.environ.get("DTXFAST_BACKEND", "").strip().lower() == "python":
        assert prf._kernel is _prf_ref
    elif mod.aes_available():
        assert prf._kernel is mod
        assert type(PRFStream(bytes(16))._s) is mod.Stream


_OPS = st.lists(st.tuples(st.sampled_from(["a", "b", "sub", "bsub"]),
                          st.one_of(st.integers(0, 40), st.integers(0, 3000), st.integers(0, 70000))),
                min_size=1, max_size=10)


@needs_kernel
@pytest.mark.parametrize("path", PATHS)
@settings(max_examples=25, deadline=None)
@given(ka=st.binary(min_size=16, max_size=16), kb=st.binary(min_size=16, max_size=16), ops=_OPS)
def test_kernel_streams_equal_the_twin_and_pycryptodome(path: str, ka: bytes, kb: bytes, ops: list) -> None:
    """Any mix of draws and fused differences, at any (odd or even) word position, on both paths."""
    with _path(path):
        ca, cb = _PRF.Stream(ka), _PRF.Stream(kb)
        ra, rb = _prf_ref.Stream(ka), _prf_ref.Stream(kb)
        for op, n in ops:
            pa, pb = ca.pos, cb.pos
            if op == "a":
                got, want, ind = ca.draw(n), ra.draw(n), _pycryptodome_words(ka, pa, n)
            elif op == "b":
                got, want, ind = cb.draw(n), rb.draw(n), _pycryptodome_words(kb, pb, n)
            elif op == "sub":
                got, want = ca.draw_sub(cb, n), ra.draw_sub(rb, n)
                ind = _pycryptodome_words(ka, pa, n) - _pycryptodome_words(kb, pb, n)
            else:
                got, want = cb.draw_sub(ca, n), rb.draw_sub(ra, n)
                ind = _pycryptodome_words(kb, pb, n) - _pycryptodome_words(ka, pa, n)
            assert got.dtype == np.uint64 and got.shape == (n,)
            assert np.array_equal(got, want) and np.array_equal(got, ind)
            assert (ca.pos, cb.pos) == (ra.pos, rb.pos)


@needs_kernel
@pytest.mark.parametrize("path", PATHS)
@settings(max_examples=25, deadline=None)
@given(key=st.binary(min_size=16, max_size=16),
       start=st.one_of(st.integers(2**64 - 80, 2**64 + 5), st.integers(2**128 - 40, 2**128 - 1),
                       st.integers(0, 2**128 - 1)),
       nblocks=st.integers(0, 100))
def test_kernel_counter_carries_across_the_low_64_bits_like_openssl(path: str, key: bytes, start: int,
                                                                     nblocks: int) -> None:
    """The 128-bit counter block: past 2^64 - 1 the carry goes into the high word (and past
    2^128 - 1 it wraps), on the 32-block VAES steps, the 4-block tail and the AES-NI path alike."""
    counter = start.to_bytes(16, "big")
    with _path(path):
        got = _PRF.ctr_blocks(key, counter, nblocks)
    assert got == _prf_ref.ctr_blocks(key, counter, nblocks)
    if start + nblocks <= 2**128:  # pycryptodome refuses to wrap the counter
        assert got == AES.new(key, AES.MODE_CTR, nonce=b"", initial_value=start).encrypt(bytes(16 * nblocks))


@needs_kernel
def test_large_draws_on_two_threads_are_the_same_stream() -> None:
    n = _PRF.PARALLEL_WORDS + 777
    key = b"t" * 16
    one, two = _PRF.Stream(key), _PRF.Stream(key)
    one.draw(3)
    two.draw(3)  # odd start: the ranges of the two threads begin inside a block
    assert np.array_equal(two.draw(n, 2), one.draw(n, 1))
    other1, other2 = _PRF.Stream(b"u" * 16), _PRF.Stream(b"u" * 16)
    assert np.array_equal(two.draw_sub(other2, n, 2), one.draw_sub(other1, n, 1))
    assert np.array_equal(two.draw(5), _pycryptodome_words(key, 3 + 2 * n, 5))


@settings(max_examples=30, deadline=None)
@given(na=st.integers(0, 9), nb=st.integers(0, 9), n=st.integers(0, 5000), after=st.integers(1, 9))
def test_a_fused_draw_keeps_each_seed_holders_stream(na: int, nb: int, n: int, after: int) -> None:
    """The other holder of each seed draws the same words separately: ``draw_sub`` must take this
    stream's next ``n`` words and ``other``'s next ``n``, in order, and leave both just past them
    (a fused draw that interleaved the streams, or advanced one by 2n, fails here)."""
    mine_a, mine_b = PRFStream(b"a" * 16), PRFStream(b"b" * 16)
    peer_a, peer_b = PRFStream(b"a" * 16), PRFStream(b"b" * 16)  # the other holder of each seed
    mine_a.draw(na), peer_a.draw(na), mine_b.draw(nb), peer_b.draw(nb)
    fused = mine_a.draw_sub(mine_b, n)
    assert np.array_equal(fused, peer_a.draw(n) - peer_b.draw(n))
    assert mine_a.drawn == peer_a.drawn and mine_b.drawn == peer_b.drawn
    assert np.array_equal(mine_a.draw(after), peer_a.draw(after))
    assert np.array_equal(mine_b.draw(after), peer_b.draw(after))


def test_the_openssl_fallback_draws_the_same_stream() -> None:
    """``use_backend("python", ["_prf"])``: streams built in the block use OpenSSL's AES-CTR; a fused
    draw between streams of the two backends still gives the difference of the two streams."""
    fast = PRFStream(b"f" * 16)
    with use_backend("python", ["_prf"]):
        slow = PRFStream(b"f" * 16)
        assert isinstance(slow._s, _prf_ref.Stream)
    assert np.array_equal(fast.draw(12345), slow.draw(12345))
    other = PRFStream(b"g" * 16)
    want = _pycryptodome_words(b"f" * 16, 12345, 100) - _pycryptodome_words(b"g" * 16, 0, 100)
    assert np.array_equal(slow.draw_sub(other, 100), want)
    assert np.array_equal(fast.draw(7), _pycryptodome_words(b"f" * 16, 12345, 7))
    assert (fast.drawn, slow.drawn, other.drawn) == (12352, 12445, 100)


def test_draws_are_fresh_arrays() -> None:
    s = PRFStream(b"z" * 16)
    a = s.draw(10)
    a[:] = 0  # a caller may write into its draw
    assert np.array_equal(s.draw(10), _pycryptodome_words(b"z" * 16, 10, 10))
    with pytest.raises(ParameterError):
        PRFStream(b"z" * 15)


@needs_kernel
def test_threads_drawing_from_one_stream_get_different_words() -> None:
    """A draw takes its words before it releases the GIL: draws racing from several threads each
    get a distinct range of the stream (in some order), never the same words twice."""
    import threading

    key, n, per = b"r" * 16, 1 << 16, 8
    s = _PRF.Stream(key)
    got: list = []

    def work() -> None:
        for _ in range(per):
            got.append(s.draw(n))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ref = _pycryptodome_words(key, 0, 3 * per * n).reshape(3 * per, n)
    index = {r.tobytes(): i for i, r in enumerate(ref)}
    assert sorted(index[g.tobytes()] for g in got) == list(range(3 * per))
    assert s.pos == 3 * per * n
