"""The compiled PSI kernel against its pure-Python twin and against independent references."""

from __future__ import annotations

import os

import gmpy2
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from hypothesis import given
from hypothesis import strategies as st

from dtxfast.crypto import _psi_py
from dtxfast.crypto.blind_rsa import IdBatch

from backends import compiled_or_none
from psi_helpers import rsa_key

K = compiled_or_none("_psi")
needs_compiled = pytest.mark.skipif(K is None, reason="compiled PSI kernel not built")  # K is None: never under
# DTX_REQUIRE_EXTENSIONS, where compiled_or_none() raises instead

ids_strategy = st.lists(st.binary(max_size=300), max_size=150)


def _parts():
    key = rsa_key()
    return key._parts, key.public_key()


def _rows(ids: list[bytes]) -> IdBatch:
    return IdBatch.from_bytes(ids)


@needs_compiled
@given(ids_strategy, st.integers(1, 3))
def test_fdh_blind_sign_unblind_match_twin(ids, threads):
    parts, pub = _parts()
    b = _rows(ids)
    k, n = pub.k, len(ids)
    rnd = np.frombuffer(os.urandom(n * (k + 8)), dtype=np.uint8).reshape(n, k + 8)
    out = {}
    for name, mod in (("c", K), ("py", _psi_py)):
        h = np.zeros((n, k), np.uint8)
        bl, ri, sg = (np.zeros((n, k), np.uint8) for _ in range(3))
        tg, st_ = np.zeros((n, 16), np.uint8), np.zeros((n, 16), np.uint8)
        mod.fdh(b.buffer, b.offsets, pub._fdh_prefix, pub._n_be, h, threads)
        assert mod.blind(b.buffer, b.offsets, pub._fdh_prefix, pub._n_be, pub.e, rnd, bl, ri, threads) == -1
        assert mod.sign(bl, *parts, sg, threads) == -1
        for each in (True, False):
            assert mod.unblind_tag(sg, ri, bl, pub._n_be, pub.e, pub._tag_prefix, tg, threads, each) == -1
        assert mod.sign_tag(b.buffer, b.offsets, pub._fdh_prefix, *parts, pub._tag_prefix, st_, threads) == -1
        out[name] = (h, bl, ri, sg, tg, st_)
    for a, c in zip(out["c"], out["py"]):
        np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(out["c"][4], out["c"][5])  # unblinded tags == signer's own tags


def test_sign_is_rsa_and_blind_math():
    """Independent check with gmpy2: s = m^d mod n, blinded = h * r^e, rinv = r^-1."""
    key = rsa_key()
    pub = key.public_key()
    from Crypto.PublicKey import RSA

    d = RSA.import_key(key.to_der()).d
    b = IdBatch.from_strings(["x", "y", "z"])
    batch = pub.blind(b)
    h = pub.hash_ids(b)
    signed = key.sign_blinded(batch.blinded)
    n = pub.n
    for i in range(3):
        m = int.from_bytes(batch.blinded[i].tobytes(), "big")
        s = int.from_bytes(signed[i].tobytes(), "big")
        assert s == pow(m, d, n)
        r = pow(int.from_bytes(batch.rinv[i].tobytes(), "big"), -1, n)
        assert m == int.from_bytes(h[i].tobytes(), "big") * pow(r, pub.e, n) % n


@pytest.mark.parametrize("mod", ["c", "py"])
def test_sign_refuses_out_of_range(mod):
    m = K if mod == "c" else _psi_py
    if m is None:
        pytest.skip("compiled PSI kernel not built")
    parts, pub = _parts()
    vals = np.zeros((3, pub.k), np.uint8)
    vals[:] = np.frombuffer(pub._n_be, np.uint8)
    vals[0, -1] -= 2  # n - 2: fine
    out = np.zeros_like(vals)
    assert m.sign(vals, *parts, out, 2) == 1  # row 1 == n
    vals[1:] = 0
    vals[1, -1] = 5
    assert m.sign(vals, *parts, out, 2) == 2  # row 2 == 0


@pytest.mark.parametrize("mod", ["c", "py"])
def test_unblind_detects_bad_signature(mod):
    m = K if mod == "c" else _psi_py
    if m is None:
        pytest.skip("compiled PSI kernel not built")
    key = rsa_key()
    pub = key.public_key()
    b = IdBatch.from_strings([f"id{i}" for i in range(100)])
    batch = pub.blind(b)
    signed = key.sign_blinded(batch.blinded)
    signed[70, -1] ^= 1
    tags = np.zeros((100, 16), np.uint8)
    assert m.unblind_tag(signed, batch.rinv, batch.blinded, pub._n_be, pub.e, pub._tag_prefix, tags, 2, True) == 70
    assert m.unblind_tag(signed, batch.rinv, batch.blinded, pub._n_be, pub.e, pub._tag_prefix, tags, 2, False) == 64


X25519_PATHS = ["compiled", "compiled-openssl", "compiled-ifma", "python"]


def _x25519_fn(name: str):
    """``f(scalar, points, out, threads) -> first bad index or -1`` for one X25519 path: the kernel's
    default, its OpenSSL one-at-a-time path, its 8-lane AVX-512 IFMA ladder, the pure-Python twin."""
    if name == "python":
        return _psi_py.x25519
    if K is None:
        if os.environ.get("DTX_REQUIRE_EXTENSIONS"):
            raise AssertionError("DTX_REQUIRE_EXTENSIONS is set but the compiled PSI kernel is missing")
        pytest.skip("compiled PSI kernel not built")
    if name == "compiled":
        return K.x25519
    path = name.split("-", 1)[1]
    if path == "ifma" and not K.simd_available():
        pytest.skip("no AVX-512 IFMA on this CPU (or DTXFAST_SIMD=0)")
    return lambda scalar, pts, out, threads: K.x25519(scalar, pts, out, threads, path=path)


def _u(value: int) -> bytes:
    return value.to_bytes(32, "little")


_P = 2**255 - 19
#: u-coordinates whose X25519 product is zero for every scalar: points of order 1, 2, 4 and 8 on
#: Curve25519 and its twist, canonical and not (u + p), and with bit 255 set (X25519 ignores it);
#: the test checks that pyca/cryptography refuses each of them too
SMALL_ORDER = [
    _u(0), _u(1), _u(_P - 1), _u(_P), _u(_P + 1),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880"),
    _u(2**255), _u(2**255 + 1),
]


@pytest.mark.parametrize("mod", X25519_PATHS)
@given(st.lists(st.binary(min_size=32, max_size=32), max_size=40), st.binary(min_size=32, max_size=32),
       st.integers(1, 3))
def test_x25519_matches_cryptography(mod, points, scalar, threads):
    """Every path (the twin wraps pyca/cryptography: scalar and point buffers, clamping left to
    X25519, the index of the first small-order point) agrees with pyca/cryptography, on batches
    that fill 8-lane groups partly or wholly, on any number of threads."""
    pts = np.frombuffer(b"".join(points), np.uint8).reshape(len(points), 32)
    out = np.zeros_like(pts)
    bad = _x25519_fn(mod)(np.frombuffer(scalar, np.uint8), pts, out, threads)
    sk = X25519PrivateKey.from_private_bytes(scalar)
    for i, p in enumerate(points):
        try:
            ref = sk.exchange(X25519PublicKey.from_public_bytes(p))
        except ValueError:  # small-order point
            assert bad >= 0 and bad <= i
            return
        assert out[i].tobytes() == ref
    assert bad == -1


@pytest.mark.parametrize("mod", X25519_PATHS)
@given(st.integers(0, 2**256 - 1), st.binary(min_size=32, max_size=32))
def test_x25519_any_u_encoding(mod, u, scalar):
    """Any 32 bytes are a u-coordinate as RFC 7748 reads them (bit 255 dropped, then mod p, so
    p <= u < 2^255 is accepted): the answer equals pyca/cryptography's."""
    pts = np.frombuffer(_u(u), np.uint8).reshape(1, 32)
    out = np.zeros_like(pts)
    bad = _x25519_fn(mod)(np.frombuffer(scalar, np.uint8), pts, out, 1)
    try:
        ref = X25519PrivateKey.from_private_bytes(scalar).exchange(X25519PublicKey.from_public_bytes(_u(u)))
    except ValueError:
        assert bad == 0
        return
    assert bad == -1 and out[0].tobytes() == ref


@pytest.mark.parametrize("mod", X25519_PATHS)
def test_x25519_rfc7748_vectors(mod):
    """RFC 7748, section 5.2: both single test vectors (the second has bit 255 of u set) and the
    iterated one after 1 and 1,000 iterations: independent of every implementation here."""
    f = _x25519_fn(mod)

    def x(k: bytes, u: bytes) -> bytes:
        out = np.zeros((1, 32), np.uint8)
        assert f(np.frombuffer(k, np.uint8), np.frombuffer(u, np.uint8).reshape(1, 32), out, 1) == -1
        return out[0].tobytes()

    for k, u, want in [
        ("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
         "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
         "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"),
        ("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
         "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
         "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"),
    ]:
        assert x(bytes.fromhex(k), bytes.fromhex(u)).hex() == want
    k = u = _u(9)
    for i in range(1, 1001):
        k, u = x(k, u), k
        if i == 1:
            assert k.hex() == "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079"
    assert k.hex() == "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"


@pytest.mark.parametrize("mod", X25519_PATHS)
@pytest.mark.parametrize("threads", [1, 2])
def test_x25519_refuses_small_order_points(mod, threads):
    """Each small-order point gives the all-zero value, refused with the index of the first one,
    wherever it sits in a batch (first lane, inside a later 8-lane group, the last chunk's tail)."""
    f = _x25519_fn(mod)
    scalar = np.frombuffer(os.urandom(32), np.uint8)
    sk = X25519PrivateKey.from_private_bytes(scalar.tobytes())
    good = [X25519PrivateKey.generate().public_key().public_bytes_raw() for _ in range(140)]
    for low in SMALL_ORDER:
        with pytest.raises(ValueError):  # independent check that the point is of small order
            sk.exchange(X25519PublicKey.from_public_bytes(low))
        for at in (0, 13, 139):
            rows = list(good)
            rows[at] = low
            pts = np.frombuffer(b"".join(rows), np.uint8).reshape(-1, 32)
            assert f(scalar, pts, np.zeros_like(pts), threads) == at
    rows = good[:20] + [SMALL_ORDER[5], SMALL_ORDER[0]] + good[20:100] + [SMALL_ORDER[1]]
    pts = np.frombuffer(b"".join(rows), np.uint8).reshape(-1, 32)
    assert f(scalar, pts, np.zeros_like(pts), threads) == 20


@needs_compiled
def test_x25519_path_choice(monkeypatch):
    """``DTXFAST_SIMD=0`` turns the IFMA path off at run time (the default is then OpenSSL's, and
    asking for IFMA is an error); an unknown path is refused."""
    pts = np.frombuffer(_u(9), np.uint8).reshape(1, 32)
    out = np.zeros_like(pts)
    scalar = np.frombuffer(os.urandom(32), np.uint8)
    with pytest.raises(ValueError, match="path"):
        K.x25519(scalar, pts, out, 1, path="gpu")
    monkeypatch.setenv("DTXFAST_SIMD", "0")
    assert K.simd_available() is False
    with pytest.raises(ValueError, match="IFMA"):
        K.x25519(scalar, pts, out, 1, path="ifma")
    assert K.x25519(scalar, pts, out, 1) == -1
    assert out[0].tobytes() == X25519PrivateKey.from_private_bytes(scalar.tobytes()).public_key().public_bytes_raw()


def _libcrypto_queue():
    """The system libcrypto the kernel links (same soname, so the same loaded library), with the
    calls that read and fill this thread's OpenSSL error queue."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("crypto")
    if name is None:
        pytest.skip("libcrypto not found by ctypes")
    lib = ctypes.CDLL(name)
    lib.ERR_peek_error.restype = ctypes.c_ulong
    lib.EVP_PKEY_new_raw_public_key.restype = ctypes.c_void_p
    lib.EVP_PKEY_new_raw_public_key.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    return lib


@needs_compiled
def test_x25519_small_order_point_leaves_no_openssl_error():
    """A refused small-order point must not leave its error on OpenSSL's thread-local queue, where the
    next unrelated OpenSSL call on that thread (``ssl``, ``hashlib``) would report it as its own.

    One thread: OpenMP runs the batch on the calling thread, whose queue the probe reads.
    """
    lib = _libcrypto_queue()
    lib.ERR_clear_error()
    # the probe reads the queue the kernel writes to: a failing libcrypto call is seen
    assert lib.EVP_PKEY_new_raw_public_key(1034, None, b"x", 1) is None  # 1034 = X25519, wrong length
    assert lib.ERR_peek_error() != 0
    lib.ERR_clear_error()
    scalar = np.frombuffer(os.urandom(32), np.uint8)
    for low_order in (bytes(32), (1).to_bytes(32, "little")):
        pts = np.frombuffer(low_order, np.uint8).reshape(1, 32)
        assert K.x25519(scalar, pts, np.zeros_like(pts), 1) == 0
        assert lib.ERR_peek_error() == 0
    # and a good operation afterwards is right and leaves the queue empty
    base = (9).to_bytes(32, "little")
    out = np.zeros((1, 32), np.uint8)
    assert K.x25519(scalar, np.frombuffer(base, np.uint8).reshape(1, 32), out, 1) == -1
    assert out[0].tobytes() == X25519PrivateKey.from_private_bytes(scalar.tobytes()).public_key().public_bytes_raw()
    assert lib.ERR_peek_error() == 0


@needs_compiled
@given(ids_strategy)
def test_hash_to_u_and_tags_match_twin(ids):
    b = _rows(ids)
    pre = np.frombuffer(b"p", np.uint8)
    a1, a2 = np.zeros((len(ids), 32), np.uint8), np.zeros((len(ids), 32), np.uint8)
    K.hash_to_u(b.buffer, b.offsets, pre, a1, 2)
    _psi_py.hash_to_u(b.buffer, b.offsets, pre, a2, 2)
    np.testing.assert_array_equal(a1, a2)
    t1, t2 = np.zeros((len(ids), 16), np.uint8), np.zeros((len(ids), 16), np.uint8)
    K.tag_rows(a1, pre, t1, 2)
    _psi_py.tag_rows(a1, pre, t2, 2)
    np.testing.assert_array_equal(t1, t2)


@pytest.mark.parametrize("mod", ["c", "py"])
def test_bad_offsets_raise(mod):
    m = K if mod == "c" else _psi_py
    if m is None:
        pytest.skip("compiled PSI kernel not built")
    out = np.zeros((2, 32), np.uint8)
    with pytest.raises(ValueError):
        m.hash_to_u(np.zeros(3, np.uint8), np.array([0, 2, 9], np.int64), np.zeros(0, np.uint8), out, 1)
    with pytest.raises(ValueError):
        m.hash_to_u(np.zeros(3, np.uint8), np.array([0, 2], np.int64), np.zeros(0, np.uint8), out, 1)


@given(ids=st.lists(st.binary(max_size=12), max_size=20), picks=st.lists(st.integers(-25, 25), max_size=10))
def test_id_batch_take_indexes_like_a_list(ids: list[bytes], picks: list[int]) -> None:
    batch = IdBatch.from_bytes(ids)
    if all(-len(ids) <= i < len(ids) for i in picks):
        assert batch.take(np.array(picks, dtype=np.int64)).to_list() == [ids[i] for i in picks]
    else:
        with pytest.raises(IndexError):
            batch.take(np.array(picks, dtype=np.int64))
