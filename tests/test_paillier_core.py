"""Paillier: key generation, encoding, homomorphic laws; every property on both backends."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dtxfast.crypto.paillier import (
    EncryptedVector,
    PaillierPublicKey,
    concatenate,
    generate_keypair,
    matmul,
)
from dtxfast.errors import DtxError, EncodingOverflowError, KeyMismatch, ParameterError

from paillier_helpers import CountingRand, build_keys, rel_close

i64 = st.integers(min_value=-(2**62), max_value=2**62)
floats20 = st.floats(min_value=-(2.0**20), max_value=2.0**20, allow_nan=False, allow_infinity=False)
small_floats = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


# ----------------------------------------------------------------------------- keys


@pytest.mark.parametrize("bits", [1024, 1536])
def test_keypair_has_exact_bits_and_equal_primes(bits):
    pk, sk = generate_keypair(bits)
    assert pk.n.bit_length() == bits
    assert sk.p.bit_length() == sk.q.bit_length() == bits // 2
    assert sk.p != sk.q and sk.p * sk.q == pk.n


@pytest.mark.parametrize("bits", [512, 1023, 1000 + 1, 0, -2048])
def test_keypair_refuses_weak_or_odd_sizes(bits):
    with pytest.raises(ParameterError):
        generate_keypair(bits)
    with pytest.raises(ValueError):  # ParameterError is also a ValueError
        generate_keypair(bits)


@pytest.mark.parametrize("bad", [True, 2048.0, "2048"])
def test_keypair_refuses_non_int(bad):
    with pytest.raises(ParameterError):
        generate_keypair(bad)


def test_keypair_draws_from_the_given_randfunc():
    # The same random stream gives the same primes: nothing else feeds the generation.
    a = generate_keypair(1024, randfunc=CountingRand(b"seed"))
    b = generate_keypair(1024, randfunc=CountingRand(b"seed"))
    c = generate_keypair(1024, randfunc=CountingRand(b"other"))
    assert a[0].n == b[0].n != c[0].n


def test_public_key_rejects_small_or_even_modulus():
    with pytest.raises(ParameterError):
        PaillierPublicKey(2**600 + 1)
    with pytest.raises(ParameterError):
        PaillierPublicKey(2**1024)


# ------------------------------------------------------------------------- encoding


@given(xs=st.lists(floats20, min_size=1, max_size=20))
def test_float_round_trip_precision(keys, xs):
    x = np.array(xs)
    got = keys.sk.decrypt(keys.pk.encrypt(x))
    assert got.dtype == np.float64
    # documented: absolute error <= 2^-65, hence relative <= 2^-40 for |x| >= 2^-25
    assert np.all(np.abs(got - x) <= np.maximum(2.0**-40 * np.abs(x), 2.0**-64))


@given(xs=st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=20))
def test_int64_round_trip_exact(keys, xs):
    got = keys.sk.decrypt(keys.pk.encrypt(np.array(xs, dtype=np.int64)))
    assert got.dtype == np.int64
    assert got.tolist() == xs


@given(xs=st.lists(st.integers(-(2**300), 2**300), min_size=1, max_size=8))
def test_big_int_round_trip_exact(keys, xs):
    got = keys.sk.decrypt(keys.pk.encrypt(xs))
    assert [int(v) for v in got] == xs


def test_scalar_is_length_one(keys):
    ev = keys.pk.encrypt(7)
    assert len(ev) == 1
    assert keys.sk.decrypt(ev).tolist() == [7]
    assert keys.sk.decrypt(keys.pk.encrypt(0.5)).tolist() == [0.5]


def test_bool_and_small_int_dtypes(keys):
    assert keys.sk.decrypt(keys.pk.encrypt(np.array([True, False]))).tolist() == [1, 0]
    assert keys.sk.decrypt(keys.pk.encrypt(np.array([200, 3], dtype=np.uint8))).tolist() == [200, 3]
    assert keys.sk.decrypt(keys.pk.encrypt(np.array([2**64 - 1], dtype=np.uint64))).tolist() == [2**64 - 1]


def test_overflow_is_an_error_not_a_wrong_number(keys):
    with pytest.raises(EncodingOverflowError):
        keys.pk.encrypt([keys.pk.max_int + 1])
    with pytest.raises(EncodingOverflowError):
        keys.pk.encrypt([1.0e300])  # 1e300 * 2^64 exceeds a 1024-bit modulus
    with pytest.raises(OverflowError):  # also the built-in
        keys.pk.encrypt([-(keys.pk.max_int + 1)])
    # computation leaving the plaintext space is detected at decryption
    ev = keys.pk.encrypt([keys.pk.max_int // 2 + 1])
    with pytest.raises(EncodingOverflowError):
        keys.sk.decrypt(ev + ev)
    # a local chain that would wrap is refused before it computes
    big = keys.pk.encrypt([2.0**100])
    with pytest.raises(EncodingOverflowError):
        big * (2.0**500) * (2.0**500)
    with pytest.raises(EncodingOverflowError):
        np.array([[2**62]]) @ keys.pk.encrypt([2**1000])


def test_plaintext_range_is_exactly_plus_minus_max_int(keys):
    """Every integer in [-max_int, max_int] encrypts and decrypts exactly (the extremes included),
    alone or in a vector; max_int + 1 is refused by every path that encodes: encrypt, adding a
    plaintext, and a product that would reach it."""
    pk, sk = keys.pk, keys.sk
    m = pk.max_int
    assert m == pk.n // 3
    for v in (m, -m, m - 1, -(m - 1)):
        assert sk.decrypt(pk.encrypt(v)).tolist() == [v]
    vec = pk.encrypt(np.array([m, -m, 0, 1, -1], dtype=object))
    assert sk.decrypt(vec).tolist() == [m, -m, 0, 1, -1]
    assert sk.decrypt(-vec).tolist() == [-m, m, 0, -1, 1]
    assert sk.decrypt(vec * 1).tolist() == [m, -m, 0, 1, -1]
    assert sk.decrypt(concatenate([vec[:2], pk.encrypt([7])])).tolist() == [m, -m, 7]
    assert sk.decrypt(pk.encrypt(0) + m).tolist() == [m]
    assert sk.decrypt(pk.encrypt(1) + (m - 1)).tolist() == [m]
    assert sk.decrypt(pk.encrypt(-1) - (m - 1)).tolist() == [-m]
    half = pk.encrypt(np.array([m // 2, -(m // 2)], dtype=object))
    assert sk.decrypt(np.array([[1, -1], [-1, 1]]) @ half).tolist() == [2 * (m // 2), -2 * (m // 2)]
    # one past the range, whichever way it is reached
    for v in (m + 1, -(m + 1)):
        with pytest.raises(EncodingOverflowError):
            pk.encrypt(v)
        with pytest.raises(EncodingOverflowError):
            pk.encrypt(np.array([0, v], dtype=object))
    with pytest.raises(EncodingOverflowError):
        pk.encrypt(1) + m
    with pytest.raises(EncodingOverflowError):
        pk.encrypt(m) + pk.encrypt(1)
    with pytest.raises(EncodingOverflowError):
        pk.encrypt(-m) - 1
    with pytest.raises(EncodingOverflowError):
        pk.encrypt(m // 2 + 1) * 2
    with pytest.raises(EncodingOverflowError):
        np.array([[1, 1]]) @ pk.encrypt(np.array([m, 1], dtype=object))
    with pytest.raises(EncodingOverflowError):
        pk.encrypt(np.array([m, 1], dtype=object)).sum()


def test_float_range_extremes(keys):
    """Floats obey the same range: with ``frac_bits=0`` the largest float not above max_int
    encrypts, the next float up is refused; at 64 fractional bits the bound scales by 2^64."""
    pk, sk = keys.pk, keys.sk
    m = pk.max_int
    top = float(m)
    if int(top) > m:  # float(m) rounded up: take the float below it
        top = np.nextafter(top, 0.0)
    assert int(top) <= m < int(np.nextafter(top, np.inf))
    assert sk.decrypt(pk.encrypt([top, -top], frac_bits=0)).tolist() == [top, -top]
    with pytest.raises(EncodingOverflowError):
        pk.encrypt([float(np.nextafter(top, np.inf))], frac_bits=0)
    x = float(m >> 64)
    if int(x) << 64 > m:
        x = np.nextafter(x, 0.0)
    assert sk.decrypt(pk.encrypt([x])).tolist() == [x]
    with pytest.raises(EncodingOverflowError):
        pk.encrypt([float(np.nextafter(float((m >> 64) + 1), np.inf))])


def test_packing_reaches_the_top_slot(keys):
    """The packing batch path: ``pk.slots(s)`` slots all at their maximum pack below n and come
    back exactly through raw encryption; under encryption the packed sum of small values
    (what the VFL score step sends) also decrypts slot by slot."""
    from dtxfast.crypto.paillier import pack_ints, unpack_slots

    pk, sk = keys.pk, keys.sk
    for s in (33, 64, 100, 341):
        per = pk.slots(s)
        vals = [(1 << s) - 1] * per
        packed = pack_ints(vals, s, per)
        assert len(packed) == 1 and int(packed[0]) < pk.n
        assert unpack_slots(sk.raw_decrypt(pk.raw_encrypt(packed)), s, per, per) == vals


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_refused(keys, bad):
    with pytest.raises(ParameterError):
        keys.pk.encrypt([1.0, bad])


def test_refuses_non_numbers(keys):
    with pytest.raises(ParameterError):
        keys.pk.encrypt(["a"])
    with pytest.raises(ParameterError):
        keys.pk.encrypt(np.zeros((2, 2)))


# --------------------------------------------------------------------- homomorphic laws


@given(a=st.lists(i64, min_size=1, max_size=12), data=st.data())
def test_add_ciphertexts(keys, a, data):
    b = data.draw(st.lists(i64, min_size=len(a), max_size=len(a)))
    ea, eb = keys.pk.encrypt(a), keys.pk.encrypt(b)
    assert keys.sk.decrypt(ea + eb).tolist() == [x + y for x, y in zip(a, b)]
    assert keys.sk.decrypt(ea - eb).tolist() == [x - y for x, y in zip(a, b)]
    assert keys.sk.decrypt(-ea).tolist() == [-x for x in a]


@given(a=st.lists(small_floats, min_size=1, max_size=12), data=st.data())
def test_add_plaintexts_floats(keys, a, data):
    b = np.array(data.draw(st.lists(small_floats, min_size=len(a), max_size=len(a))))
    ea = keys.pk.encrypt(a)
    assert rel_close(keys.sk.decrypt(ea + b), np.array(a) + b, abs_=2.0**-50)
    assert rel_close(keys.sk.decrypt(b - ea), b - np.array(a), abs_=2.0**-50)
    assert rel_close(keys.sk.decrypt(ea + 2.5), np.array(a) + 2.5, abs_=2.0**-50)


def test_int_vector_plus_float_plaintext_becomes_float(keys):
    ev = keys.pk.encrypt([1, 2])
    got = keys.sk.decrypt(ev + 0.25)
    assert got.dtype == np.float64 and got.tolist() == [1.25, 2.25]
    mixed = keys.pk.encrypt([1, 2]) + keys.pk.encrypt([0.5, 0.5])
    assert keys.sk.decrypt(mixed).tolist() == [1.5, 2.5]


@given(a=st.lists(i64, min_size=1, max_size=10), data=st.data())
def test_scalar_and_elementwise_mul_ints(keys, a, data):
    k = data.draw(st.integers(-(2**40), 2**40))
    ks = data.draw(st.lists(st.integers(-(2**40), 2**40), min_size=len(a), max_size=len(a)))
    ea = keys.pk.encrypt(a)
    assert keys.sk.decrypt(ea * k).tolist() == [x * k for x in a]
    assert keys.sk.decrypt(k * ea).tolist() == [x * k for x in a]
    assert keys.sk.decrypt(ea * np.array(ks)).tolist() == [x * y for x, y in zip(a, ks)]


@given(a=st.lists(small_floats, min_size=1, max_size=10), k=small_floats)
def test_mul_floats(keys, a, k):
    got = keys.sk.decrypt(keys.pk.encrypt(a) * k)
    want = np.array(a) * k
    # operand keeps 53 significant bits, ciphertext side 2^-65 absolute
    assert np.all(np.abs(got - want) <= 2.0**-50 * np.abs(want) + 2.0**-40 * abs(k) + 2.0**-60)


def test_cannot_multiply_two_ciphertexts(keys):
    ev = keys.pk.encrypt([1])
    with pytest.raises(TypeError):
        ev * ev


@given(
    X=hnp.arrays(np.int64, st.tuples(st.integers(1, 5), st.integers(1, 9)), elements=st.integers(-(2**20), 2**20)),
    data=st.data(),
)
def test_matmul_ints_exact(keys, X, data):
    v = np.array(data.draw(st.lists(st.integers(-(2**30), 2**30), min_size=X.shape[1], max_size=X.shape[1])))
    got = keys.sk.decrypt(X @ keys.pk.encrypt(v))
    assert got.tolist() == [int(x) for x in (X.astype(object) @ v.astype(object))]


@given(
    X=hnp.arrays(np.int64, st.tuples(st.integers(1, 12), st.integers(1, 9)),
                 elements=st.integers(-(2**62), 2**62) | st.integers(-(2**20), 2**20)),
    data=st.data(),
)
def test_matmul_negative_entries_offset_or_inverted_give_the_same_ciphertexts(keys, X, data):
    """Both ways of handling negative entries (inverted columns; offset entries and one correction)
    give the same ciphertexts, bit for bit, and the exact product."""
    import dtxfast.crypto.paillier as paillier_mod

    v = np.array(data.draw(st.lists(st.integers(-(2**30), 2**30), min_size=X.shape[1], max_size=X.shape[1])))
    ev = keys.pk.encrypt(v)
    saved = paillier_mod._INVERT_COST
    try:
        paillier_mod._INVERT_COST = 0  # inversion is free: always invert
        inverted = matmul(X, ev)
        paillier_mod._INVERT_COST = 10**9  # inversion is dear: offset whenever the entries allow it
        offset = matmul(X, ev)
    finally:
        paillier_mod._INVERT_COST = saved
    assert np.array_equal(inverted.ciphertexts, offset.ciphertexts)
    assert keys.sk.decrypt(offset).tolist() == [int(x) for x in (X.astype(object) @ v.astype(object))]


@given(
    X=hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 8)), elements=st.floats(-100, 100)),
    data=st.data(),
)
def test_matmul_floats(keys, X, data):
    v = np.array(data.draw(st.lists(st.floats(-100, 100), min_size=X.shape[1], max_size=X.shape[1])))
    got = keys.sk.decrypt(X @ keys.pk.encrypt(v))
    want = X @ v
    scale = np.abs(X).max() * np.abs(v).max() * X.shape[1] + 1e-30
    assert np.all(np.abs(got - want) <= 2.0**-48 * scale + 2.0**-50)


def test_matmul_edge_cases(keys):
    pk, sk = keys.pk, keys.sk
    v = pk.encrypt([3, -4, 5])
    assert sk.decrypt(np.zeros((2, 3), dtype=np.int64) @ v).tolist() == [0, 0]
    assert sk.decrypt(np.array([[-1, -1, -1]]) @ v).tolist() == [-4]
    assert sk.decrypt(np.array([2**62, 1, 0]) @ v).tolist() == [3 * 2**62 - 4]
    assert sk.decrypt(v @ np.array([[1, 0], [0, 1], [1, 1]])).tolist() == [8, 1]
    with pytest.raises(ParameterError):
        np.ones((2, 4)) @ v
    with pytest.raises(ParameterError):
        matmul(np.ones((2, 3)), v, plaintext_bits=0)


def test_matmul_wide_row_uses_large_window(keys):
    rng = np.random.default_rng(5)
    X = rng.integers(-(2**40), 2**40, size=(3, 300))
    v = rng.integers(-1000, 1000, size=300)
    got = keys.sk.decrypt(X @ keys.pk.encrypt(v))
    assert got.tolist() == [int(x) for x in X.astype(object) @ v.astype(object)]


def test_sum_index_slice_concat(keys):
    pk, sk = keys.pk, keys.sk
    ev = pk.encrypt([1, 2, 3, 4])
    assert sk.decrypt(ev.sum()).tolist() == [10]
    assert sk.decrypt(ev[1]).tolist() == [2]
    assert sk.decrypt(ev[-1]).tolist() == [4]
    assert sk.decrypt(ev[1:3]).tolist() == [2, 3]
    assert sk.decrypt(ev[np.array([3, 0])]).tolist() == [4, 1]
    assert [sk.decrypt(x)[0] for x in ev] == [1, 2, 3, 4]
    with pytest.raises(IndexError):
        ev[4]
    joined = concatenate([ev[:2], pk.encrypt([0.5])])
    assert sk.decrypt(joined).tolist() == [1.0, 2.0, 0.5]
    assert sk.decrypt(EncryptedVector.concatenate([ev, ev])).tolist() == [1, 2, 3, 4] * 2
    assert sk.decrypt(pk.encrypt([]) .sum()).tolist() == [0]


def test_broadcast_length_one(keys):
    pk, sk = keys.pk, keys.sk
    ev = pk.encrypt([1, 2, 3])
    one = pk.encrypt([10])
    assert sk.decrypt(ev + one).tolist() == [11, 12, 13]
    assert sk.decrypt(one + ev).tolist() == [11, 12, 13]
    assert sk.decrypt(one * np.array([1, 2])).tolist() == [10, 20]
    assert sk.decrypt(one + np.array([1, 2])).tolist() == [11, 12]
    with pytest.raises(ParameterError):
        ev + pk.encrypt([1, 2])


def test_same_value_encrypts_differently_and_rerandomize(keys):
    pk, sk = keys.pk, keys.sk
    a, b = pk.encrypt([5, 5]), pk.encrypt([5, 5])
    cts = a.raw_ciphertexts() + b.raw_ciphertexts()
    assert len(set(cts)) == 4
    r = a.rerandomize()
    assert set(r.raw_ciphertexts()).isdisjoint(a.raw_ciphertexts())
    assert sk.decrypt(r).tolist() == [5, 5]


def test_key_mismatch(keys):
    other_pk, other_sk = generate_keypair(1024)
    ev = keys.pk.encrypt([1])
    with pytest.raises(KeyMismatch):
        other_sk.decrypt(ev)
    with pytest.raises(KeyMismatch):
        ev + other_pk.encrypt([1])
    with pytest.raises(DtxError):
        concatenate([ev, other_pk.encrypt([1])])


def test_standard_obfuscation(primes_1024):
    for backend in ("compiled", "compiled-gmp", "python"):
        k = build_keys(backend, *primes_1024, obfuscation="standard")
        ev = k.pk.encrypt([1.5, -3])
        assert k.sk.decrypt(ev).tolist() == [1.5, -3.0]
        assert k.sk.decrypt(ev.rerandomize() * 2).tolist() == [3.0, -6.0]


def test_precompute_pool(keys):
    pk, sk = keys.pk, keys.sk
    pk.precompute(6)
    assert pk.pool_size >= 6
    before = pk.pool_size
    ev = pk.encrypt(np.arange(4.0))
    assert pk.pool_size == before - 4
    assert sk.decrypt(ev).tolist() == [0.0, 1.0, 2.0, 3.0]
    t = pk.precompute(3, background=True)
    t.join()
    assert pk.pool_size == before - 4 + 3
    big = pk.encrypt(np.arange(20))  # drains the pool, then draws fresh
    assert pk.pool_size == 0
    assert sk.decrypt(big).tolist() == list(range(20))
    # pooled obfuscators are never reused
    assert len(set(big.raw_ciphertexts())) == 20


# --------------------------------------------------------- compiled == pure-Python twin


@given(x=st.lists(floats20, min_size=1, max_size=8), seed=st.binary(min_size=1, max_size=8))
def test_backends_produce_identical_ciphertexts(both_keys, x, seed):
    comp, ref = both_keys
    a = comp.pk.encrypt(x, randfunc=CountingRand(seed))
    b = ref.pk.encrypt(x, randfunc=CountingRand(seed))
    assert a.raw_ciphertexts() == b.raw_ciphertexts()
    X = np.arange(2 * len(x), dtype=np.float64).reshape(2, len(x)) - 3.5
    assert (X @ a).raw_ciphertexts() == (X @ b).raw_ciphertexts()
    assert (a * -3 + 1.25).raw_ciphertexts() == (b * -3 + 1.25).raw_ciphertexts()
    assert (-a).sum().raw_ciphertexts() == (-b).sum().raw_ciphertexts()
    assert comp.sk.raw_decrypt(a) == ref.sk.raw_decrypt(b)


def test_backends_identical_standard_mode(primes_1024):
    ref = build_keys("python", *primes_1024, obfuscation="standard")
    b = ref.pk.encrypt([1, -2, 3], randfunc=CountingRand(b"s"))
    for backend in ("compiled", "compiled-gmp"):
        comp = build_keys(backend, *primes_1024, obfuscation="standard")
        a = comp.pk.encrypt([1, -2, 3], randfunc=CountingRand(b"s"))
        assert a.raw_ciphertexts() == b.raw_ciphertexts()


@given(
    x=st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=24),
    k=st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=1),
    seed=st.binary(min_size=1, max_size=4),
)
def test_simd_batches_match_reference(both_keys, x, k, seed):
    """Batches longer than one 8-lane group, ragged tails, negative exponents, decrypt."""
    comp, ref = both_keys
    a = comp.pk.encrypt(x, randfunc=CountingRand(seed))
    b = ref.pk.encrypt(x, randfunc=CountingRand(seed))
    assert a.raw_ciphertexts() == b.raw_ciphertexts()
    ks = np.resize(np.array(k + x, dtype=np.int64), len(x))
    assert (a * ks).raw_ciphertexts() == (b * ks).raw_ciphertexts()
    assert (a + a[::-1]).raw_ciphertexts() == (b + b[::-1]).raw_ciphertexts()
    assert (a + ks).raw_ciphertexts() == (b + ks).raw_ciphertexts()
    assert (a + 7).raw_ciphertexts() == (b + 7).raw_ciphertexts()
    assert comp.sk.decrypt(a * ks).tolist() == [u * v for u, v in zip(x, ks.tolist())]
    rows = 4 + len(x) % 16  # 4..19 rows: whole 8-row groups, ragged groups and GMP tails
    X = (np.arange(rows * len(x)).reshape(rows, len(x)) % 7 - 3) * (1 + np.arange(len(x)) % 5)
    assert (X @ a).raw_ciphertexts() == (X @ b).raw_ciphertexts()


def test_simd_path_is_used_where_the_cpu_has_it(primes_1024):
    from dtxfast.crypto import paillier as mod

    k = build_keys("compiled", *primes_1024)
    if not hasattr(mod._kernel, "PublicContext") or mod._INFO.backend != "compiled":
        pytest.skip("compiled kernel not in use")
    cpu_flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    has_ifma = " avx512ifma" in cpu_flags and " avx512dq" in cpu_flags
    assert k.pk._ctx.simd == has_ifma
    assert k.sk._ctx.simd == has_ifma


def test_raw_encrypt_and_decrypt(keys):
    pk, sk = keys.pk, keys.sk
    ev = pk.raw_encrypt([0, 1, pk.n - 1])
    assert sk.raw_decrypt(ev) == [0, 1, pk.n - 1]
    det = pk.raw_encrypt([5], obfuscate=False)
    assert det.raw_ciphertexts() == [1 + 5 * pk.n]
    with pytest.raises(ParameterError):
        pk.raw_encrypt([pk.n])



# -- slot packing (several masked integers per plaintext) ----------------------------------------
@given(vals=st.lists(st.integers(0, 2**20 - 1), min_size=0, max_size=40), bits=st.integers(20, 64),
       per=st.integers(1, 9))
def test_pack_ints_and_unpack_slots_round_trip(vals, bits, per):
    from dtxfast.crypto.paillier import pack_ints, unpack_slots

    packed = pack_ints(vals, bits, per)
    assert len(packed) == -(-len(vals) // per)
    assert all(0 <= int(v) < 1 << (bits * per) for v in packed)
    assert unpack_slots(packed, bits, per, len(vals)) == vals


@given(u=st.lists(st.integers(-(2**98) + 1, 2**98 - 1), min_size=1, max_size=12), data=st.data())
def test_packed_products_decrypt_to_every_masked_slot(keys, u, data):
    """``X_packed @ [[w 2^(s j)]]`` plus packed masks decrypts to ``X w + mask`` slot by slot, for
    every value inside the slot's range (|v| < 2^(s-2), mask 2^(s-2) + U, U < 2^(s-1)), the
    extremes included; slots never borrow from each other."""
    from dtxfast.crypto.paillier import concatenate, pack_ints, unpack_slots

    pk, sk = keys.pk, keys.sk
    s = 100
    per = pk.slots(s)
    assert per == (pk.n_bits - 1) // s and per * s < pk.n_bits
    masks = [(1 << (s - 2)) + data.draw(st.integers(0, 2**(s - 1) - 1)) for _ in u]
    ev = pk.encrypt(np.array(u, dtype=object))  # the "weights": one value per row here
    rows = len(u)
    X = np.zeros((-(-rows // per), per * rows), dtype=np.int64)  # row g: the `per` rows side by side
    for i in range(rows):
        X[i // per, (i % per) * rows + i] = 1
    shifted = concatenate([ev * (1 << (s * j)) for j in range(per)])
    packed = (X @ shifted + pack_ints(masks, s, per)).rerandomize(statistical=True)
    assert len(packed) == -(-rows // per)
    assert unpack_slots(sk.raw_decrypt(packed), s, per, rows) == [v + m for v, m in zip(u, masks)]


def test_slots_refuses_what_does_not_fit(keys):
    pk = keys.pk
    with pytest.raises(ParameterError):
        pk.slots(pk.n_bits)
    with pytest.raises(ParameterError):
        pk.slots(0)
