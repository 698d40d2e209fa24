"""Paillier benchmarks: dtxfast against its pure-Python twin, python-paillier, HEU and the gmpy2 floor.

Groups ``paillier.encrypt``, ``paillier.encrypt_online`` (precomputed obfuscators),
``paillier.decrypt``, ``paillier.add``, ``paillier.scalar_mul`` and ``paillier.dot`` at
2048-bit keys, every implementation in the same run on the same data. Every row carries
``threads``: dtxfast rows run on all cores and on one; ``phe``, ``dtxfast-python`` and the gmpy2
rows on one; HEU on its own pool of all cores. Per-element cost in microseconds; the
``floor-gmpy2`` rows are the raw GMP cost of the minimum work of the standard method (encrypt:
``r^n mod n^2``; decrypt: the two CRT half-exponentiations; add: one mulmod; scalar multiply: one
powmod with the encoded scalar), timed through gmpy2 one element at a time.

Same work: dtxfast's default encryption draws its obfuscator with a short exponent (DJN);
python-paillier and the encrypt floor compute the full-length ``r^n``, so their rows compare with
``dtxfast-standard`` (``ref`` in the row), dtxfast's own full-length ``r^n``. In ``paillier.dot``
``naive-gmpy2`` (one powmod per entry, one mulmod per addition: not a floor, dtxfast's multi-
exponentiation does less) and ``phe`` run a sample of the rows (``sample`` in the row).

``paillier.compat`` runs python-paillier's idiomatic per-number loop (encrypt two lists, add,
multiply by scalars, decrypt) with ``phe`` and, unchanged but for the import, with
``dtxfast.compat.phe`` (``dtxfast``: its default DJN obfuscation; ``dtxfast-standard``: full-length
``r^n``, the row ``phe`` is compared with); ``paillier.compat.batch`` does the same work with the
drop-in's batch helpers (``encrypt_many``, ``to_vector`` / ``from_vector``, ``decrypt_many``)
against the same ``phe`` loop, beside ``dtxfast-vector``: the same work on ``EncryptedVector``.
``us/elem`` there is the cost of the whole script per element.

Run: ``dtx bench paillier`` (``--quick`` for the smallest sizes, ``--json`` for the JSON rows).
"""

from __future__ import annotations

import os

import gmpy2
import numpy as np
import pytest

from dtxfast._backend import use_backend
from dtxfast.crypto import paillier
from dtxfast.crypto.paillier import PaillierPrivateKey, PaillierPublicKey, generate_keypair

from ._util import CORES, QUICK, measure, sizes, thread_variants

BITS = 2048
N = sizes([256], [16])[0]
N_ADD = sizes([4096], [256])[0]
DOT_M, DOT_K = (16, 512) if QUICK else (256, 10_000)

try:
    import phe
except ImportError:  # pragma: no cover - optional peer
    phe = None
try:
    from heu import numpy as hnp
    from heu import phe as hphe
except ImportError:  # pragma: no cover - optional peer
    hnp = None


@pytest.fixture(scope="module")
def keys():
    pk, sk = generate_keypair(BITS)
    pk.encrypt([0])  # build the DJN table outside the timed part
    return pk, sk


@pytest.fixture(scope="module")
def py_keys(keys):
    """The same key on the pure-Python twin."""
    pk, sk = keys
    with use_backend("python", ["_paillier"]):
        ppk = PaillierPublicKey(pk.n)
        psk = PaillierPrivateKey(ppk, sk.p, sk.q)
    ppk.encrypt([0])
    return ppk, psk


@pytest.fixture(scope="module")
def phe_keys(keys):
    if phe is None:
        pytest.skip("python-paillier not installed")
    pk, sk = keys
    ppk = phe.PaillierPublicKey(pk.n)
    return ppk, phe.PaillierPrivateKey(ppk, sk.p, sk.q)


@pytest.fixture(scope="module")
def heu_kit():
    if hnp is None:
        pytest.skip("HEU (sf-heu) not installed")
    return hnp.setup(hphe.SchemaType.ZPaillier, BITS)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(20261124)
    return {
        "x": rng.normal(0, 100, N),
        "y": rng.normal(0, 100, N),
        "xa": rng.normal(0, 100, N_ADD),
        "k": rng.normal(0, 1, N),
        "X": rng.normal(0, 1, (DOT_M, DOT_K)),
        "v": rng.normal(0, 1, DOT_K),
    }


def _dtx_variants(impl: str = "dtxfast") -> list[tuple[str, int]]:
    return [(impl, t) for t in thread_variants()]


# --------------------------------------------------------------------------- encrypt


@pytest.mark.benchmark(group="paillier.encrypt")
@pytest.mark.parametrize("impl,threads", _dtx_variants() + [("dtxfast-python", 1)])
def test_encrypt_dtxfast(benchmark, keys, py_keys, data, impl, threads):
    pk = keys[0] if impl == "dtxfast" else py_keys[0]
    measure(benchmark, lambda: pk.encrypt(data["x"]), impl=impl, size=N, bits=BITS,
            threads=threads)


@pytest.mark.benchmark(group="paillier.encrypt")
@pytest.mark.parametrize("impl,threads", _dtx_variants("dtxfast-standard"))
def test_encrypt_dtxfast_standard(benchmark, keys, data, impl, threads):
    """The ``"standard"`` obfuscation (full-length r^n with GMP's side-channel-silent powm)."""
    pk = PaillierPublicKey(keys[0].n, obfuscation="standard")
    measure(benchmark, lambda: pk.encrypt(data["x"]), impl=impl, size=N, bits=BITS, threads=threads,
            note="standard r^n")


@pytest.mark.benchmark(group="paillier.encrypt")
def test_encrypt_phe(benchmark, phe_keys, data):
    ppk = phe_keys[0]
    xs = data["x"].tolist()
    measure(benchmark, lambda: [ppk.encrypt(v) for v in xs], impl="phe", size=N, bits=BITS, threads=1,
            ref="dtxfast-standard")


@pytest.mark.benchmark(group="paillier.encrypt")
def test_encrypt_heu(benchmark, heu_kit, data):
    enc = heu_kit.encryptor()
    pt = heu_kit.array(data["x"].reshape(-1, 1), hphe.FloatEncoderParams())
    measure(benchmark, lambda: enc.encrypt(pt), impl="heu", size=N, bits=BITS, threads=CORES)


@pytest.mark.benchmark(group="paillier.encrypt")
def test_encrypt_floor(benchmark, keys):
    pk = keys[0]
    n, nsq = gmpy2.mpz(pk.n), gmpy2.mpz(pk.nsq)
    rs = [gmpy2.mpz(int.from_bytes(os.urandom(BITS // 8), "big")) % n for _ in range(N)]
    measure(benchmark, lambda: [gmpy2.powmod(r, n, nsq) for r in rs], impl="floor-gmpy2", size=N,
            bits=BITS, threads=1, ref="dtxfast-standard")


@pytest.mark.benchmark(group="paillier.encrypt_online")
@pytest.mark.parametrize("impl,threads", _dtx_variants())
def test_encrypt_online_dtxfast(benchmark, keys, data, impl, threads):
    pk = keys[0]

    def setup():
        pk.precompute(N)
        return (), {}

    measure(benchmark, lambda: pk.encrypt(data["x"]), impl=impl, size=N, bits=BITS, setup=setup,
            rounds=5, threads=threads)


@pytest.mark.benchmark(group="paillier.encrypt_online")
def test_encrypt_online_floor(benchmark, keys, data):
    """One multiplication per element: (1 + m n) * obfuscator mod n^2."""
    pk = keys[0]
    n, nsq = gmpy2.mpz(pk.n), gmpy2.mpz(pk.nsq)
    ms = [gmpy2.mpz(int(v * 2**64)) % n for v in data["x"]]
    obf = [gmpy2.mpz(int.from_bytes(os.urandom(BITS // 4), "big")) % nsq for _ in range(N)]
    measure(benchmark, lambda: [(1 + m * n) * o % nsq for m, o in zip(ms, obf)], impl="floor-gmpy2",
            size=N, bits=BITS, rounds=5, threads=1)


# --------------------------------------------------------------------------- decrypt


@pytest.mark.benchmark(group="paillier.decrypt")
@pytest.mark.parametrize("impl,threads", _dtx_variants() + [("dtxfast-python", 1)])
def test_decrypt_dtxfast(benchmark, keys, py_keys, data, impl, threads):
    pk, sk = keys if impl == "dtxfast" else py_keys
    ev = pk.encrypt(data["x"])
    measure(benchmark, lambda: sk.decrypt(ev), impl=impl, size=N, bits=BITS, threads=threads)


@pytest.mark.benchmark(group="paillier.decrypt")
def test_decrypt_phe(benchmark, keys, phe_keys, data):
    from dtxfast.interop.phe import to_phe

    numbers = to_phe(keys[0].encrypt(data["x"]))
    psk = phe_keys[1]
    measure(benchmark, lambda: [psk.decrypt(x) for x in numbers], impl="phe", size=N, bits=BITS, threads=1)


@pytest.mark.benchmark(group="paillier.decrypt")
def test_decrypt_heu(benchmark, heu_kit, data):
    ct = heu_kit.encryptor().encrypt(heu_kit.array(data["x"].reshape(-1, 1), hphe.FloatEncoderParams()))
    dec = heu_kit.decryptor()
    measure(benchmark, lambda: dec.decrypt(ct), impl="heu", size=N, bits=BITS, threads=CORES)


@pytest.mark.benchmark(group="paillier.decrypt")
def test_decrypt_floor(benchmark, keys, data):
    pk, sk = keys
    p, q = gmpy2.mpz(sk.p), gmpy2.mpz(sk.q)
    psq, qsq = p * p, q * q
    cs = [gmpy2.mpz(c) for c in pk.encrypt(data["x"]).raw_ciphertexts()]

    def floor():
        return [(gmpy2.powmod(c, p - 1, psq), gmpy2.powmod(c, q - 1, qsq)) for c in cs]

    measure(benchmark, floor, impl="floor-gmpy2", size=N, bits=BITS, threads=1)


# ------------------------------------------------------------------------------- add


@pytest.mark.benchmark(group="paillier.add")
@pytest.mark.parametrize("impl,threads", _dtx_variants() + [("dtxfast-python", 1)])
def test_add_dtxfast(benchmark, keys, py_keys, data, impl, threads):
    pk = keys[0] if impl == "dtxfast" else py_keys[0]
    a, b = pk.encrypt(data["xa"]), pk.encrypt(data["xa"][::-1].copy())
    measure(benchmark, lambda: a + b, impl=impl, size=N_ADD, bits=BITS, rounds=5, threads=threads)


@pytest.mark.benchmark(group="paillier.add")
def test_add_phe(benchmark, keys, phe_keys, data):
    from dtxfast.interop.phe import to_phe

    a = to_phe(keys[0].encrypt(data["xa"]))
    b = to_phe(keys[0].encrypt(data["xa"][::-1].copy()))
    measure(benchmark, lambda: [x + y for x, y in zip(a, b)], impl="phe", size=N_ADD, bits=BITS, threads=1)


@pytest.mark.benchmark(group="paillier.add")
def test_add_heu(benchmark, heu_kit, data):
    enc, ev = heu_kit.encryptor(), heu_kit.evaluator()
    a = enc.encrypt(heu_kit.array(data["xa"].reshape(-1, 1), hphe.FloatEncoderParams()))
    b = enc.encrypt(heu_kit.array(data["xa"][::-1].reshape(-1, 1), hphe.FloatEncoderParams()))
    measure(benchmark, lambda: ev.add(a, b), impl="heu", size=N_ADD, bits=BITS, rounds=5, threads=CORES)


@pytest.mark.benchmark(group="paillier.add")
def test_add_floor(benchmark, keys, data):
    pk = keys[0]
    nsq = gmpy2.mpz(pk.nsq)
    a = [gmpy2.mpz(c) for c in pk.encrypt(data["xa"]).raw_ciphertexts()]
    b = a[::-1]
    measure(benchmark, lambda: [x * y % nsq for x, y in zip(a, b)], impl="floor-gmpy2", size=N_ADD,
            bits=BITS, rounds=5, threads=1)


# ------------------------------------------------------------------------ scalar_mul


@pytest.mark.benchmark(group="paillier.scalar_mul")
@pytest.mark.parametrize("impl,threads", _dtx_variants() + [("dtxfast-python", 1)])
def test_scalar_mul_dtxfast(benchmark, keys, py_keys, data, impl, threads):
    pk = keys[0] if impl == "dtxfast" else py_keys[0]
    ev = pk.encrypt(data["x"])
    k = data["k"]
    measure(benchmark, lambda: ev * k, impl=impl, size=N, bits=BITS, threads=threads)


@pytest.mark.benchmark(group="paillier.scalar_mul")
def test_scalar_mul_phe(benchmark, keys, phe_keys, data):
    from dtxfast.interop.phe import to_phe

    numbers = to_phe(keys[0].encrypt(data["x"]))
    ks = data["k"].tolist()
    measure(benchmark, lambda: [x * k for x, k in zip(numbers, ks)], impl="phe", size=N, bits=BITS, threads=1)


@pytest.mark.benchmark(group="paillier.scalar_mul")
def test_scalar_mul_heu(benchmark, heu_kit, data):
    enc, ev = heu_kit.encryptor(), heu_kit.evaluator()
    a = enc.encrypt(heu_kit.array(data["x"].reshape(-1, 1), hphe.FloatEncoderParams()))
    k = heu_kit.array(data["k"].reshape(-1, 1), hphe.FloatEncoderParams())
    # note: HEU's default float encoder keeps 6 decimal digits (~20-bit scalars); dtxfast 53 bits
    measure(benchmark, lambda: ev.mul(a, k), impl="heu", size=N, bits=BITS, threads=CORES,
            note="heu scalars ~20 bits")


@pytest.mark.benchmark(group="paillier.scalar_mul")
def test_scalar_mul_floor(benchmark, keys, data):
    pk = keys[0]
    nsq = gmpy2.mpz(pk.nsq)
    cs = [gmpy2.mpz(c) for c in pk.encrypt(data["x"]).raw_ciphertexts()]
    # the same 53-bit magnitudes dtxfast uses, as plain positive exponents (signs cost the floor nothing)
    frac = paillier.PLAINTEXT_BITS - int(np.frexp(np.max(np.abs(data["k"])))[1])
    es = [gmpy2.mpz(abs(int(np.rint(np.ldexp(k, frac))))) for k in data["k"]]
    measure(benchmark, lambda: [gmpy2.powmod(c, e, nsq) for c, e in zip(cs, es)], impl="floor-gmpy2",
            size=N, bits=BITS, threads=1)


# ------------------------------------------------------------------------------ dot


@pytest.mark.benchmark(group="paillier.dot")
@pytest.mark.parametrize("impl,threads", _dtx_variants())
def test_dot_dtxfast(benchmark, keys, data, impl, threads):
    pk = keys[0]
    ev = pk.encrypt(data["v"])
    X = data["X"]
    measure(benchmark, lambda: X @ ev, impl=impl, size=DOT_M * DOT_K, bits=BITS, rounds=1,
            threads=threads)


def _dot_rows(m: int) -> int:
    return max(1, min(m, 2 if not QUICK else 4))


@pytest.mark.benchmark(group="paillier.dot")
def test_dot_naive(benchmark, keys, data):
    """Naive: one powmod per entry (|x| as exponent, inverse base for negatives), one mulmod per add."""
    pk = keys[0]
    nsq = gmpy2.mpz(pk.nsq)
    ev = pk.encrypt(data["v"])
    cs = [gmpy2.mpz(c) for c in ev.raw_ciphertexts()]
    inv = [gmpy2.invert(c, nsq) for c in cs]  # outside the timed part: favours the floor
    rows = _dot_rows(DOT_M)
    X = data["X"][:rows]
    frac = paillier.PLAINTEXT_BITS - int(np.frexp(np.max(np.abs(data["X"])))[1])
    E = np.rint(np.ldexp(X, frac)).astype(np.int64)

    def naive():
        out = []
        for row in E:
            acc = gmpy2.mpz(1)
            for e, c, ci in zip(row.tolist(), cs, inv):
                acc = acc * gmpy2.powmod(c if e >= 0 else ci, abs(e), nsq) % nsq
            out.append(acc)
        return out

    measure(benchmark, naive, impl="naive-gmpy2", size=DOT_M * DOT_K, sample=rows * DOT_K, bits=BITS,
            rounds=1, threads=1, note=f"{rows} of {DOT_M} rows")


@pytest.mark.benchmark(group="paillier.dot")
def test_dot_phe(benchmark, keys, phe_keys, data):
    from dtxfast.interop.phe import to_phe

    numbers = to_phe(keys[0].encrypt(data["v"]))
    rows = 1
    X = data["X"][:rows].tolist()

    def naive():
        out = []
        for row in X:
            acc = numbers[0] * row[0]
            for x, c in zip(row[1:], numbers[1:]):
                acc = acc + c * x
            out.append(acc)
        return out

    measure(benchmark, naive, impl="phe", size=DOT_M * DOT_K, sample=rows * DOT_K, bits=BITS, rounds=1,
            threads=1, note=f"{rows} of {DOT_M} rows")


@pytest.mark.benchmark(group="paillier.dot")
def test_dot_heu(benchmark, heu_kit, data):
    enc, ev = heu_kit.encryptor(), heu_kit.evaluator()
    v = enc.encrypt(heu_kit.array(data["v"].reshape(-1, 1), hphe.FloatEncoderParams()))
    rows = _dot_rows(DOT_M)
    X = heu_kit.array(data["X"][:rows], hphe.FloatEncoderParams())
    measure(benchmark, lambda: ev.matmul(X, v), impl="heu", size=DOT_M * DOT_K, sample=rows * DOT_K,
            bits=BITS, rounds=1, threads=CORES, note=f"{rows} of {DOT_M} rows; heu scalars ~20 bits")


# ---------------------------------------------------------------------------- compat
#
# python-paillier's idiomatic per-number loop -- encrypt two lists, add them, multiply by
# scalars, decrypt -- run unchanged with ``phe`` and with ``dtxfast.compat.phe`` (only the
# import differs), and the same work through the drop-in's batch helpers. Same key, same data.
# The drop-in's keys are fresh: a DJN key builds its table during the warm-up round (after
# ``TABLE_AFTER`` obfuscators), as it would early in a long-running program.

N_COMPAT = sizes([128], [16])[0]


@pytest.fixture(scope="module")
def compat_data():
    rng = np.random.default_rng(20261130)
    return {k: rng.normal(0, s, N_COMPAT).tolist() for k, s in (("x", 100), ("y", 100), ("k", 1))}


def _per_number_script(pk, sk, xs, ys, ks):
    ex = [pk.encrypt(x) for x in xs]
    ey = [pk.encrypt(y) for y in ys]
    s = [a + b for a, b in zip(ex, ey)]
    p = [c * k for c, k in zip(s, ks)]
    return [sk.decrypt(c) for c in p]


def _batch_script(pk, sk, xs, ys, ks):
    from dtxfast.compat.phe.paillier import from_vector, to_vector

    v = (to_vector(pk.encrypt_many(xs)) + to_vector(pk.encrypt_many(ys))) * np.asarray(ks)
    return sk.decrypt_many(from_vector(v, pk))


def _vector_script(pk, sk, xs, ys, ks):
    v = (pk.encrypt(np.asarray(xs)) + pk.encrypt(np.asarray(ys))) * np.asarray(ks)
    return sk.decrypt(v).tolist()


def _compat_keys(keys, obfuscation):
    from dtxfast.compat.phe import paillier as cpaillier

    pk, sk = keys
    cpk = cpaillier.PaillierPublicKey(pk.n, obfuscation=obfuscation)
    return cpk, cpaillier.PaillierPrivateKey(cpk, sk.p, sk.q)


def _check_compat(out, d):
    want = [(x + y) * k for x, y, k in zip(d["x"], d["y"], d["k"])]
    assert np.allclose(out, want, rtol=1e-9, atol=1e-9)


_COMPAT_IMPLS = _dtx_variants() + _dtx_variants("dtxfast-standard")


@pytest.mark.benchmark(group="paillier.compat")
def test_compat_phe(benchmark, phe_keys, compat_data):
    d = compat_data
    out = measure(benchmark, lambda: _per_number_script(*phe_keys, d["x"], d["y"], d["k"]), impl="phe",
                  size=N_COMPAT, bits=BITS, rounds=1, threads=1, ref="dtxfast-standard",
                  note="per-number loop")
    _check_compat(out, d)


@pytest.mark.benchmark(group="paillier.compat")
@pytest.mark.parametrize("impl,threads", _COMPAT_IMPLS)
def test_compat_dtxfast(benchmark, keys, compat_data, impl, threads):
    d = compat_data
    ck = _compat_keys(keys, "standard" if impl == "dtxfast-standard" else "djn")
    out = measure(benchmark, lambda: _per_number_script(*ck, d["x"], d["y"], d["k"]), impl=impl,
                  size=N_COMPAT, bits=BITS, threads=threads, note="same loop, import changed")
    _check_compat(out, d)


@pytest.mark.benchmark(group="paillier.compat.batch")
def test_compat_batch_phe(benchmark, phe_keys, compat_data):
    d = compat_data
    out = measure(benchmark, lambda: _per_number_script(*phe_keys, d["x"], d["y"], d["k"]), impl="phe",
                  size=N_COMPAT, bits=BITS, rounds=1, threads=1, ref="dtxfast-standard",
                  note="per-number loop")
    _check_compat(out, d)


@pytest.mark.benchmark(group="paillier.compat.batch")
@pytest.mark.parametrize("impl,threads", _COMPAT_IMPLS)
def test_compat_batch_dtxfast(benchmark, keys, compat_data, impl, threads):
    d = compat_data
    ck = _compat_keys(keys, "standard" if impl == "dtxfast-standard" else "djn")
    out = measure(benchmark, lambda: _batch_script(*ck, d["x"], d["y"], d["k"]), impl=impl,
                  size=N_COMPAT, bits=BITS, threads=threads, note="encrypt_many, to_vector, decrypt_many")
    _check_compat(out, d)


@pytest.mark.benchmark(group="paillier.compat.batch")
@pytest.mark.parametrize("impl,threads", _dtx_variants("dtxfast-vector"))
def test_compat_batch_vector(benchmark, keys, compat_data, impl, threads):
    """The same work on dtxfast's own batch type (EncryptedVector, DJN table built): what the
    batch helpers can reach; their row over this one is the cost of keeping python-paillier's
    per-number exponents and objects."""
    d = compat_data
    out = measure(benchmark, lambda: _vector_script(*keys, d["x"], d["y"], d["k"]), impl=impl,
                  size=N_COMPAT, bits=BITS, threads=threads, note="EncryptedVector")
    _check_compat(out, d)
