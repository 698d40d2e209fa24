"""dtxfast.compat.phe against python-paillier itself: same encodings, interchangeable ciphertexts,
the batch helpers, zero-copy list <-> vector, and the re-randomisation claims (by attack).

python-paillier's own suite runs against the drop-in in ``test_phe_upstream.py``.
"""

from __future__ import annotations

import importlib
import math
import pickle

import numpy as np
import phe
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dtxfast.compat.phe import EncodedNumber, paillier, util
from dtxfast.crypto import paillier as dtx
from dtxfast.errors import DtxError, EncodingOverflowError, KeyMismatch, WrongType


@pytest.fixture(scope="module")
def keys():
    pk, sk = paillier.generate_paillier_keypair(n_length=1024)
    ppk = phe.PaillierPublicKey(pk.n)
    return pk, sk, ppk, phe.PaillierPrivateKey(ppk, sk.p, sk.q)


finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300)
scalars = st.one_of(st.integers(min_value=-(2**200), max_value=2**200), finite)


# ------------------------------------------------------------------ encoding == phe's


@given(x=scalars, max_exponent=st.one_of(st.none(), st.integers(-40, 5)))
def test_encoding_is_python_paillier_encoding(keys, x, max_exponent):
    pk, _, ppk, _ = keys
    try:
        theirs = phe.EncodedNumber.encode(ppk, x, max_exponent=max_exponent)
    except ValueError:
        with pytest.raises(ValueError):
            EncodedNumber.encode(pk, x, max_exponent=max_exponent)
        return
    ours = EncodedNumber.encode(pk, x, max_exponent=max_exponent)
    assert (ours.encoding, ours.exponent) == (theirs.encoding, theirs.exponent)
    assert ours.decode() == theirs.decode()


@given(x=finite, precision=st.floats(min_value=1e-30, max_value=1e3))
def test_encoding_with_precision_is_python_paillier_encoding(keys, x, precision):
    pk, _, ppk, _ = keys
    try:
        theirs = phe.EncodedNumber.encode(ppk, x, precision=precision)
    except ValueError:
        with pytest.raises(ValueError):
            EncodedNumber.encode(pk, x, precision=precision)
        return
    ours = EncodedNumber.encode(pk, x, precision=precision)
    assert (ours.encoding, ours.exponent) == (theirs.encoding, theirs.exponent)


def test_ties_round_to_even_like_python_paillier(keys):
    pk, _, ppk, _ = keys
    for x, prec in [(0.5, 1.0), (1.5, 1.0), (2.5, 1.0), (-2.5, 1.0), (0.03125, 1 / 16)]:
        ours = EncodedNumber.encode(pk, x, precision=prec)
        theirs = phe.EncodedNumber.encode(ppk, x, precision=prec)
        assert (ours.encoding, ours.exponent) == (theirs.encoding, theirs.exponent)


# --------------------------------------------------- ciphertexts interchangeable both ways


@given(x=st.one_of(st.integers(-(2**60), 2**60), st.floats(-1e12, 1e12, allow_nan=False)))
def test_ciphertexts_move_both_ways(keys, x):
    pk, sk, ppk, psk = keys
    ours = pk.encrypt(x)
    assert psk.decrypt(phe.EncryptedNumber(ppk, ours.ciphertext(), ours.exponent)) == x
    theirs = ppk.encrypt(x)
    assert sk.decrypt(paillier.EncryptedNumber(pk, theirs.ciphertext(), theirs.exponent)) == x


def test_mixed_arithmetic_decrypts_in_both(keys):
    pk, sk, ppk, psk = keys
    a = pk.encrypt(2.5)
    b_theirs = ppk.encrypt(-0.75)
    b = paillier.EncryptedNumber(pk, b_theirs.ciphertext(), b_theirs.exponent)
    r = (a + b) * 4 - 1
    assert sk.decrypt(r) == 6.0
    assert psk.decrypt(phe.EncryptedNumber(ppk, r.ciphertext(), r.exponent)) == 6.0
    r_theirs = (phe.EncryptedNumber(ppk, a.ciphertext(), a.exponent) + b_theirs) * 4 - 1
    assert sk.decrypt(paillier.EncryptedNumber(pk, r_theirs.ciphertext(), r_theirs.exponent)) == 6.0


def test_r_value_gives_python_paillier_exact_ciphertext(keys):
    pk, _, ppk, _ = keys
    r = pk.get_random_lt_n()
    for x in (0, 17, -3, 1.25, 123456.789):
        assert pk.encrypt(x, r_value=r).ciphertext(False) == ppk.encrypt(x, r_value=r).ciphertext(False)
    assert pk.raw_encrypt(99, r_value=r) == ppk.raw_encrypt(99, r_value=r)


def test_operation_results_equal_python_paillier(keys):
    """Unobfuscated results are the same numbers as python-paillier's (same r, same ops)."""
    pk, _, ppk, _ = keys
    r = 12345
    a, pa = pk.encrypt(1.5, r_value=r), ppk.encrypt(1.5, r_value=r)
    b, pb = pk.encrypt(-7, r_value=r), ppk.encrypt(-7, r_value=r)
    for op in (lambda u, v: u + v, lambda u, v: u * -3.25, lambda u, v: v - u, lambda u, v: u + 2.0,
               lambda u, v: u.decrease_exponent_to(u.exponent - 3), lambda u, v: u / 8):
        ours, theirs = op(a, b), op(pa, pb)
        assert (ours.ciphertext(False), ours.exponent) == (theirs.ciphertext(False), theirs.exponent)


@given(a=st.one_of(st.integers(-(2**60), 2**60), st.floats(-1e9, 1e9, allow_nan=False)),
       k=st.one_of(st.integers(-(2**80), 2**80), st.floats(-1e6, 1e6, allow_nan=False)))
def test_scalar_products_and_decryptions_equal_python_paillier(keys, a, k):
    """The single-number kernel calls (a power mod n^2 per product, one CRT decryption) give
    python-paillier's numbers: the same ciphertext for the same r, the same residue."""
    pk, sk, ppk, psk = keys
    r = 98765
    ours, theirs = pk.encrypt(a, r_value=r) * k, ppk.encrypt(a, r_value=r) * k
    assert (ours.ciphertext(False), ours.exponent) == (theirs.ciphertext(False), theirs.exponent)
    assert sk.raw_decrypt(ours.ciphertext(False)) == psk.raw_decrypt(theirs.ciphertext(False))
    c = theirs.ciphertext()
    assert sk.raw_decrypt(c) == psk.raw_decrypt(c)


# -------------------------------------------------------------- batch helpers, vectors


def test_encrypt_many_decrypt_many_equal_per_number(keys):
    pk, sk, _, psk = keys
    values = [0, 1, -1, 2.5, -1e-6, 2**70, 3.0e15, 7]
    numbers = pk.encrypt_many(values)
    assert [x.exponent for x in numbers] == [pk.encrypt(v).exponent for v in values]
    assert sk.decrypt_many(numbers) == values
    assert [sk.decrypt(x) for x in numbers] == values
    assert [psk.decrypt(phe.EncryptedNumber(phe.PaillierPublicKey(pk.n), x.ciphertext(), x.exponent))
            for x in numbers] == values
    mixed = [numbers[3] * 2, pk.encrypt(5), numbers[0] + 1]
    assert sk.decrypt_many(mixed) == [5.0, 5, 1]


def test_encrypt_many_with_precision_and_encoded(keys):
    pk, sk, _, _ = keys
    enc = EncodedNumber.encode(pk, 0.1, precision=1e-3)
    out = pk.encrypt_many([0.1, 0.2], precision=1e-3) + pk.encrypt_many([enc, enc])
    assert {x.exponent for x in out} == {enc.exponent}
    assert [round(v, 3) for v in sk.decrypt_many(out)] == [0.1, 0.2, 0.1, 0.1]


def test_lists_and_vectors_share_the_buffer(keys):
    pk, sk, _, _ = keys
    numbers = pk.encrypt_many([1.5, -2.0, 3.25])
    vec = paillier.to_vector(numbers)
    assert np.shares_memory(vec._c, numbers[0]._row[0])  # no copy
    assert list(sk.dtxfast_key.decrypt(vec)) == [1.5, -2.0, 3.25]
    back = paillier.from_vector(vec * 2, public_key=pk)
    assert sk.decrypt_many(back) == [3.0, -4.0, 6.5]
    again = paillier.to_vector(back)
    assert np.shares_memory(again._c, back[0]._row[0])
    # a sub-range of consecutive rows is still a view
    assert np.shares_memory(paillier.to_vector(numbers[1:])._c, numbers[0]._row[0])


def test_to_vector_aligns_mixed_exponents(keys):
    pk, sk, _, _ = keys
    numbers = [pk.encrypt(3), pk.encrypt(0.125), pk.encrypt(-2.5)]
    assert list(sk.dtxfast_key.decrypt(paillier.to_vector(numbers))) == [3, 0.125, -2.5]


@given(values=st.lists(st.one_of(st.floats(-1e9, 1e9).filter(lambda v: v == 0 or abs(v) > 1e-6),
                                 st.integers(-(2**40), 2**40)),
                       min_size=1, max_size=12))
def test_to_vector_aligns_as_from_phe(keys, values):
    """Aligned on the kernel rows, the vector holds the same ciphertexts (and exponent) as
    interop's from_phe gives for the same numbers, and decrypts to the values."""
    from dtxfast.interop.phe import from_phe

    pk, sk, _, _ = keys
    numbers = pk.encrypt_many(values)
    vec = paillier.to_vector(numbers)
    ref = from_phe(numbers, pk.dtxfast_key)
    assert (vec.exponent, vec.is_float) == (ref.exponent, ref.is_float)
    assert vec.raw_ciphertexts() == ref.raw_ciphertexts()
    assert np.allclose(sk.dtxfast_key.decrypt(vec), values, rtol=1e-12, atol=0)


def test_to_vector_aligns_positive_exponents_and_refuses_far_apart_ones(keys):
    pk, sk, _, _ = keys
    coarse = [pk.encrypt(EncodedNumber(pk, 3, 2)), pk.encrypt(EncodedNumber(pk, 5, 0))]  # 3 * 16^2, 5
    assert list(sk.dtxfast_key.decrypt(paillier.to_vector(coarse))) == [768, 5]
    far = [pk.encrypt(EncodedNumber(pk, 1, 0)), pk.encrypt(EncodedNumber(pk, 1, -250))]
    with pytest.raises(EncodingOverflowError):
        paillier.to_vector(far)


def test_obfuscated_number_leaves_the_shared_buffer(keys):
    pk, sk, _, _ = keys
    numbers = pk.encrypt_many([4, 5])
    before = numbers[0].ciphertext(False)
    numbers[0].obfuscate()
    assert numbers[0]._row is None and numbers[0].ciphertext(False) != before
    assert int.from_bytes(numbers[1]._row[0][0].tobytes(), "little") == before  # buffer untouched
    assert sk.decrypt_many(numbers) == [4, 5]


def test_from_vector_rescales_odd_exponents(keys):
    pk, sk, _, _ = keys
    dk = pk.dtxfast_key
    v = dk.encrypt([0.5, 1.0], frac_bits=3)  # binary exponent 3: not a multiple of 4
    assert sk.decrypt_many(paillier.from_vector(v, pk)) == [0.5, 1.0]


# --------------------------------------------------------- re-randomisation (attacks)


def test_results_are_rerandomised_before_they_leave(keys):
    """The attack python-paillier's docs describe: from E(a) and the published E(a * k),
    recover k by trying candidates. It works on the unobfuscated result and fails on
    ``ciphertext()`` (be_secure=True)."""
    pk, sk, _, _ = keys
    a = pk.encrypt(1337)
    secret = 271
    product = a * secret
    candidates = range(1, 1000)

    def attack(published: int) -> list[int]:
        return [k for k in candidates if (a * k).ciphertext(be_secure=False) == published]

    assert attack(product.ciphertext(be_secure=False)) == [secret]
    assert attack(product.ciphertext()) == []
    assert sk.decrypt(product) == 1337 * secret


def test_encryptions_are_randomised(keys):
    pk, _, _, _ = keys
    cts = {pk.encrypt(1).ciphertext() for _ in range(40)}
    cts |= {x.ciphertext() for x in pk.encrypt_many([1] * 40)}
    assert len(cts) == 80
    assert 1 + pk.n not in cts  # never the deterministic 1 + n


def test_djn_table_is_built_only_after_heavy_use():
    pk, sk = paillier.generate_paillier_keypair(n_length=1024)
    pk.encrypt(1)
    assert not pk.dtxfast_key._ctx.has_table
    out = pk.encrypt_many(range(paillier.TABLE_AFTER))
    assert pk.dtxfast_key._ctx.has_table
    assert sk.decrypt_many(out[:5]) == [0, 1, 2, 3, 4]


def test_standard_obfuscation_is_python_paillier_r_to_the_n():
    pk, sk = paillier.generate_paillier_keypair(n_length=1024, obfuscation="standard")
    x = pk.encrypt_many([7, 8]) + [pk.encrypt(9)]
    assert pk.obfuscation == "standard" and not pk.dtxfast_key._ctx.has_table
    assert sk.decrypt_many(x) == [7, 8, 9]
    # an obfuscator r^n is an n-th residue: raising it to n^-1 mod phi(n) gives r mod n, and r^n
    # recomputed from that r reproduces it
    phi = (sk.p - 1) * (sk.q - 1)
    obf = x[2].ciphertext(False) * pow(1 + 9 * pk.n, -1, pk.nsquare) % pk.nsquare
    r = pow(obf % pk.n, pow(pk.n, -1, phi), pk.n)
    assert pow(r, pk.n, pk.nsquare) == obf


def test_small_keys_use_python_paillier_obfuscation():
    pk = paillier.PaillierPublicKey(126869)
    assert pk.obfuscation == "standard"
    with pytest.raises(ValueError):
        pk.dtxfast_key


# -------------------------------------------------------- kernel == pure-Python twin


def test_kernel_and_python_twin_agree(keys):
    pk, sk, _, _ = keys
    twin = importlib.import_module("dtxfast.crypto._paillier_py")
    saved = dtx._kernel
    dtx._kernel = twin
    try:
        tpk = paillier.PaillierPublicKey(pk.n)
        tsk = paillier.PaillierPrivateKey(tpk, sk.p, sk.q)
        assert isinstance(tsk.dtxfast_key._ctx, twin.PrivateContext)
    finally:
        dtx._kernel = saved
    r = 987654321
    a, ta = pk.encrypt(-2.75, r_value=r), tpk.encrypt(-2.75, r_value=r)
    for op in (lambda u: u * 3.5, lambda u: u * -123456789, lambda u: u.decrease_exponent_to(u.exponent - 9)):
        assert op(a).ciphertext(False) == op(ta).ciphertext(False)
    nums = [pk.encrypt(v) for v in (1, -2.5, 2**40)]
    moved = [paillier.EncryptedNumber(tpk, x.ciphertext(), x.exponent) for x in nums]
    assert tsk.decrypt_many(moved) == sk.decrypt_many(nums) == [1, -2.5, 2**40]
    assert [tsk.decrypt(x) for x in moved] == [1, -2.5, 2**40]
    assert tsk.decrypt_many(tpk.encrypt_many([3, 4])) == [3, 4]


# ------------------------------------------------------------------------ util == phe's


@given(a=st.integers(1, 2**300), b=st.integers(0, 2**64), c=st.integers(2, 2**300))
def test_util_matches_python_paillier(a, b, c):
    assert util.powmod(a, b, c) == phe.util.powmod(a, b, c)
    assert util.mulmod(a, b, c) == phe.util.mulmod(a, b, c)
    assert util.isqrt(a) == util.improved_i_sqrt(a) == math.isqrt(a)
    assert util.extended_euclidean_algorithm(a, c) == phe.util.extended_euclidean_algorithm(a, c)
    if math.gcd(a, c) == 1:
        assert util.invert(a, c) == phe.util.invert(a, c)
    else:
        with pytest.raises(ZeroDivisionError):
            util.invert(a, c)


@given(n=st.integers(-10, 10**7))
def test_is_prime_matches_python_paillier(n):
    assert util.is_prime(n) == phe.util.is_prime(n)


# ----------------------------------------------------------------- python-paillier API


def test_pickle_round_trip(keys):
    pk, sk, _, _ = keys
    x = pk.encrypt_many([1.5, 2])[0] * 2
    pk2, sk2, x2 = pickle.loads(pickle.dumps((pk, sk, x)))
    assert pk2 == pk and sk2 == sk and sk2.decrypt(x2) == 3.0
    assert x2.ciphertext(False) == x.ciphertext(False)


def test_errors_are_dtx_errors_with_the_builtin_types(keys):
    pk, sk, _, _ = keys
    other_pk, other_sk = paillier.generate_paillier_keypair(n_length=1024)
    with pytest.raises(WrongType) as info:
        pk.encrypt("1")
    assert isinstance(info.value, TypeError) and isinstance(info.value, DtxError)
    with pytest.raises(KeyMismatch):
        other_sk.decrypt(pk.encrypt(1))
    with pytest.raises(KeyMismatch):
        other_sk.decrypt_many([pk.encrypt(1), pk.encrypt(2)])
    with pytest.raises(ValueError):
        paillier.EncryptedNumber(pk, pk.nsquare)
    with pytest.raises(OverflowError):
        sk.decrypt(pk.encrypt(pk.max_int) + 1)
    with pytest.raises(KeyError):
        paillier.PaillierPrivateKeyring().decrypt(pk.encrypt(1))
    with pytest.raises(NotImplementedError):
        pk.encrypt(1) * pk.encrypt(2)


def test_public_key_equality_with_python_paillier_keys(keys):
    pk, _, ppk, _ = keys
    assert pk == ppk and ppk == pk
    assert hash(pk) == hash(ppk)
    assert {pk: 1}[paillier.PaillierPublicKey(pk.n)] == 1
