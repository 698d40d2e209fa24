"""The kernel's batch exponentiations equal the pure-Python twin and GMP on the 8-lane AVX-512
IFMA path: ``PrivateContext.decrypt`` (two CRT half-exponentiations) and ``PublicContext.pow``
(positive and negative exponents), whose squarings run through ``ifma_sqr`` (cross products
formed once, rows reduced two at a time).

Key sizes are chosen so both parities of the digit count meet the squaring: 52-bit digits of
p^2 and n^2 are 20 / 40 (1024-bit keys), 22 / 43 (1100) and 40 / 79 (2048). Batches of 17 rows
take two whole 8-lane groups (a tail of one row goes to the single-number path); inputs include
the largest residues (``n^2 - 1``, ``p^2 - 1`` mod p^2) where the almost-reduced range
(below 2N) is reached.
"""

from __future__ import annotations

import importlib
import random

import gmpy2
import numpy as np
import pytest
from backends import compiled_or_skip, paillier_contexts
from hypothesis import given, settings
from hypothesis import strategies as st

twin = importlib.import_module("dtxfast.crypto._paillier_py")

ROWS = 17


_KEYS: dict[int, tuple] = {}


def _setup(bits: int):
    if bits not in _KEYS:
        mod = compiled_or_skip("_paillier")
        rng = random.Random(bits)
        half = bits // 2
        p = int(gmpy2.next_prime(rng.getrandbits(half) | (1 << (half - 1))))
        q = int(gmpy2.next_prime(rng.getrandbits(half) | (1 << (half - 1))))
        n = p * q
        _KEYS[bits] = (mod, n, p, q, paillier_contexts(twin, n, p, q, False), paillier_contexts(mod, n, p, q, True),
                       paillier_contexts(mod, n, p, q, False))
    return _KEYS[bits]


def _rows(mod, values: list[int], w: int) -> np.ndarray:
    return np.stack([mod.int_to_limbs(v, w) for v in values])


def _ints(mod, rows: np.ndarray) -> list[int]:
    return [mod.limbs_to_int(r) for r in rows]


def _ciphertexts(data, n: int, p: int, q: int) -> list[int]:
    nsq = n * n
    edge = [1, 2, nsq - 1, nsq - 2, p * p - 1, q * q - 1, (p * p - 1) * (q * q + 1) % nsq, n + 1]
    return data.draw(st.lists(st.one_of(st.integers(1, nsq - 1), st.sampled_from(edge)),
                              min_size=ROWS, max_size=ROWS))


@pytest.mark.parametrize("bits", [1024, 1100, 2048])
@settings(max_examples=6, deadline=None)
@given(data=st.data())
def test_batch_decrypt_equals_twin_and_gmp(bits, data):
    mod, n, p, q, (tpub, tpriv), (fpub, fpriv), (gpub, gpriv) = _setup(bits)
    cs = _ciphertexts(data, n, p, q)
    rows = _rows(mod, cs, fpub.w)
    want = _ints(twin, tpriv.decrypt(rows.copy(), 1))
    assert _ints(mod, fpriv.decrypt(rows, 2)) == want
    assert _ints(mod, gpriv.decrypt(rows, 1)) == want


@pytest.mark.parametrize("bits", [1024, 1100, 2048])
@settings(max_examples=6, deadline=None)
@given(data=st.data())
def test_batch_pow_equals_twin_and_gmp(bits, data):
    mod, n, p, q, (tpub, _), (fpub, _), (gpub, _) = _setup(bits)
    nsq = n * n
    cs = [c if gmpy2.gcd(c, n) == 1 else c + 1 for c in _ciphertexts(data, n, p, q)]
    cs = [c if c < nsq and gmpy2.gcd(c, n) == 1 else 2 for c in cs]
    width = data.draw(st.sampled_from([1, 2, 8, n.bit_length() // 64 + 1]))
    es = data.draw(st.lists(st.one_of(st.integers(0, 2 ** (64 * width) - 1), st.sampled_from([0, 1, 2, 31])),
                            min_size=ROWS, max_size=ROWS))
    neg = np.array(data.draw(st.lists(st.booleans(), min_size=ROWS, max_size=ROWS)), dtype=np.uint8)
    rows = _rows(mod, cs, fpub.w)
    exps = _rows(mod, es, width)
    want, wbad = tpub.pow(rows.copy(), exps.copy(), neg.copy(), 1)
    got, bad = fpub.pow(rows, exps, neg, 2)
    gmp, gbad = gpub.pow(rows, exps, neg, 1)
    assert bad == gbad == wbad == -1
    assert _ints(mod, got) == _ints(mod, gmp) == _ints(twin, want)
    for c, e, ng, g in zip(cs, es, neg, _ints(mod, got)):
        assert g == pow(pow(c, -1, nsq) if ng else c, e, nsq)


@pytest.mark.parametrize("bits", [1024, 2048])
def test_batch_pow_reports_the_first_non_invertible_base(bits):
    """Negative exponents invert their bases all at once (Montgomery's trick); a base sharing a
    factor with n is still found, reported as the first bad row, and its output is 1, as on GMP
    and in the twin. A zero exponent needs no inverse, so a bad base with ``-0`` is not an error."""
    mod, n, p, q, (tpub, _), (fpub, _), (gpub, _) = _setup(bits)
    rng = random.Random(bits + 1)
    cs = [rng.randrange(1, n * n) | 1 for _ in range(ROWS)]
    cs = [c if gmpy2.gcd(c, n) == 1 else 3 for c in cs]
    cs[11], cs[5], cs[2] = p * 7, q * q, p
    es = [rng.getrandbits(60) + 1 for _ in range(ROWS)]
    es[2] = 0
    neg = np.array([1] * ROWS, dtype=np.uint8)
    rows, exps = _rows(mod, cs, fpub.w), _rows(mod, es, 1)
    want, wbad = tpub.pow(rows.copy(), exps.copy(), neg.copy(), 1)
    got, bad = fpub.pow(rows, exps, neg, 2)
    gmp, gbad = gpub.pow(rows, exps, neg, 1)
    assert bad == gbad == wbad == 5, (
        f"first bad row {bad} (GMP {gbad}, twin {wbad}): a compiled kernel built before the batch "
        "inversion reports row 2 (bad base, exponent -0); rebuild the kernels (pip install -e .)")
    assert _ints(mod, got) == _ints(mod, gmp) == _ints(twin, want)
    assert _ints(mod, got)[11] == _ints(mod, got)[5] == 1 and _ints(mod, got)[2] == 1
