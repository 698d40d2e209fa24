"""The kernel's single-number calls equal the pure-Python twin: ``PrivateContext.decrypt_one`` and
``PublicContext.pow_one``, on the single-number IFMA path ("compiled"), on GMP ("compiled-gmp")
and across modulus sizes, so every digit count the IFMA code is instantiated for is exercised
(3 to 15 vectors of 8 digits) as well as the GMP fallback for moduli it does not take.
"""

from __future__ import annotations

import importlib
import random

import gmpy2
import pytest
from backends import compiled_or_skip, paillier_contexts
from hypothesis import given
from hypothesis import strategies as st

twin = importlib.import_module("dtxfast.crypto._paillier_py")


def _edge_ciphertexts(n: int, p: int, q: int) -> list[int]:
    nsq = n * n
    return [0, 1, 2, nsq - 1, p, q, p * p, q * q, n, nsq - p, n + 1]


@given(data=st.data())
def test_decrypt_one_equals_twin_and_batch(both_keys, data):
    comp, ref = both_keys
    n, p, q = comp.pk.n, comp.sk.p, comp.sk.q
    c = data.draw(st.one_of(st.integers(0, n * n - 1), st.sampled_from(_edge_ciphertexts(n, p, q))))
    got = comp.sk._ctx.decrypt_one(c)
    assert got == ref.sk._ctx.decrypt_one(c)
    row = comp.module.int_to_limbs(c, comp.pk._ctx.w).reshape(1, -1)
    assert got == comp.module.limbs_to_int(comp.sk._ctx.decrypt(row, 1)[0])


@given(data=st.data())
def test_pow_one_equals_twin(both_keys, data):
    comp, ref = both_keys
    n, p, q = comp.pk.n, comp.sk.p, comp.sk.q
    c = data.draw(st.one_of(st.integers(0, n * n - 1), st.sampled_from(_edge_ciphertexts(n, p, q))))
    e = data.draw(st.one_of(st.integers(0, 2**70), st.integers(0, 2**2100), st.sampled_from([0, 1, 2, 31, 32, 2**64 - 1])))
    negative = data.draw(st.booleans())
    assert comp.pk._ctx.pow_one(c, e, negative) == ref.pk._ctx.pow_one(c, e, negative)


def test_pow_one_refuses_non_invertible_only_for_negative_exponents(both_keys):
    comp, ref = both_keys
    p = comp.sk.p
    for ctx in (comp.pk._ctx, ref.pk._ctx):
        assert ctx.pow_one(p, 5, True) is None
        assert ctx.pow_one(p, 0, True) == 1
        assert ctx.pow_one(p, 5, False) == pow(p, 5, comp.pk.n**2)


@pytest.mark.parametrize("bits", [1536, 2048, 3072, 4096])
def test_single_number_kernels_across_key_sizes(bits):
    """2048: p^2 in 5 vectors, n^2 in 10; 3072: 8 and 15; 4096: p^2 in 10, n^2 beyond the IFMA
    single-number range (GMP)."""
    mod = compiled_or_skip("_paillier")
    rng = random.Random(bits)
    p = int(gmpy2.next_prime(rng.getrandbits(bits // 2) | (1 << (bits // 2 - 1))))
    q = int(gmpy2.next_prime(rng.getrandbits(bits // 2) | (1 << (bits // 2 - 1))))
    n = p * q
    tpub, tpriv = paillier_contexts(twin, n, p, q, False)
    fast = paillier_contexts(mod, n, p, q, True)
    gmp = paillier_contexts(mod, n, p, q, False)
    if mod.simd_available():
        assert fast[1].simd_one and fast[0].simd_one == (bits <= 3072)
    assert not gmp[0].simd_one and not gmp[1].simd_one
    samples = [rng.randrange(n * n) for _ in range(2)] + [p * rng.randrange(1, q)]
    for c in samples:
        want = tpriv.decrypt_one(c)
        assert fast[1].decrypt_one(c) == gmp[1].decrypt_one(c) == want
    for c, e, neg in [(samples[0], rng.getrandbits(56), True), (samples[1], rng.getrandbits(1030), False),
                      (samples[0], n, False)]:
        want = tpub.pow_one(c, e, neg)
        assert fast[0].pow_one(c, e, neg) == gmp[0].pow_one(c, e, neg) == want
