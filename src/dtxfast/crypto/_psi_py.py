"""Pure-Python twin of the compiled PSI kernel ``dtxfast._kernels._psi`` (L0 reference).

Same functions, same arguments, byte-identical results; used when the compiled kernel is not
built or ``DTXFAST_BACKEND=python``. Big integers use gmpy2 (a runtime dependency), X25519 uses
the ``cryptography`` package (OpenSSL). ``nthreads`` is accepted and ignored.
"""

from __future__ import annotations

import hashlib
from typing import Any

import gmpy2
import numpy as np

__all__ = [
    "CHUNK",
    "TAG_SIZE",
    "FDH_EXTRA",
    "RAND_EXTRA",
    "fdh",
    "blind",
    "sign",
    "sign_tag",
    "unblind_tag",
    "tag_rows",
    "hash_to_u",
    "x25519",
]

CHUNK = 64
TAG_SIZE = 16
FDH_EXTRA = 16
RAND_EXTRA = 8

_sha256 = hashlib.sha256


def _ids(ids: Any, offsets: Any, rows: int) -> list[bytes]:
    buf = bytes(np.asarray(ids, dtype=np.uint8))
    off = np.asarray(offsets, dtype=np.int64)
    if off.shape[0] != rows + 1:
        raise ValueError("offsets must have one more entry than there are rows")
    if rows and (off[0] < 0 or off[rows] > len(buf) or np.any(np.diff(off) < 0)):
        raise ValueError("offsets out of range of the id buffer")
    return [buf[off[i] : off[i + 1]] for i in range(rows)]


def _fdh_int(prefix: bytes, ident: bytes, n: Any, k: int) -> Any:
    seed = _sha256(prefix + ident).digest()
    want = k + FDH_EXTRA
    out = bytearray()
    j = 0
    while len(out) < want:
        out += _sha256(seed + j.to_bytes(4, "big")).digest()
        j += 1
    return gmpy2.mpz(int.from_bytes(bytes(out[:want]), "big")) % n


def _row(value: Any, k: int) -> bytes:
    return int(value).to_bytes(k, "big")


def _tag(prefix: bytes, value: bytes) -> bytes:
    return _sha256(prefix + value).digest()[:TAG_SIZE]


def fdh(ids: Any, offsets: Any, prefix: Any, n_be: bytes, out: Any, nthreads: int) -> int:
    """out[i] = FDH(ids[i]) as k big-endian bytes. Returns -1, or the index of a failure."""
    rows, k = out.shape
    pre = bytes(prefix)
    n = gmpy2.mpz(int.from_bytes(n_be, "big"))
    for i, ident in enumerate(_ids(ids, offsets, rows)):
        out[i] = np.frombuffer(_row(_fdh_int(pre, ident, n, k), k), dtype=np.uint8)
    return -1


def blind(ids: Any, offsets: Any, prefix: Any, n_be: bytes, e: int, rnd: Any, blinded: Any,
          rinv: Any, nthreads: int) -> int:
    """Hash and blind a batch of ids; keep the inverses of the blinding factors."""
    rows, k = blinded.shape
    if rnd.shape[0] != rows or rinv.shape != blinded.shape:
        raise ValueError("rnd, blinded and rinv must have one row per id")
    pre = bytes(prefix)
    n = gmpy2.mpz(int.from_bytes(n_be, "big"))
    for i, ident in enumerate(_ids(ids, offsets, rows)):
        r = gmpy2.mpz(int.from_bytes(bytes(rnd[i]), "big")) % n
        if r == 0 or gmpy2.gcd(r, n) != 1:
            return i
        h = _fdh_int(pre, ident, n, k)
        blinded[i] = np.frombuffer(_row(h * gmpy2.powmod(r, e, n) % n, k), dtype=np.uint8)
        rinv[i] = np.frombuffer(_row(gmpy2.invert(r, n), k), dtype=np.uint8)
    return -1


def _crt(x: Any, p: Any, q: Any, dp: Any, dq: Any, qinv: Any) -> Any:
    m1 = gmpy2.powmod(x % p, dp, p)
    m2 = gmpy2.powmod(x % q, dq, q)
    return m2 + ((m1 - m2) * qinv % p) * q


def _key(*parts: bytes) -> list[Any]:
    return [gmpy2.mpz(int.from_bytes(b, "big")) for b in parts]


def sign(inp: Any, n: bytes, p: bytes, q: bytes, dp: bytes, dq: bytes, qinv: bytes, out: Any,
         nthreads: int) -> int:
    """out[i] = inp[i]^d mod n (CRT). Returns -1, or the index of the first value not in [1, n)."""
    rows, k = inp.shape
    if out.shape != inp.shape:
        raise ValueError("out must have the shape of inp")
    nn, pp, qq, dpp, dqq, qi = _key(n, p, q, dp, dq, qinv)
    for i in range(rows):
        x = gmpy2.mpz(int.from_bytes(bytes(inp[i]), "big"))
        if x == 0 or x >= nn:
            return i
        out[i] = np.frombuffer(_row(_crt(x, pp, qq, dpp, dqq, qi), k), dtype=np.uint8)
    return -1


def sign_tag(ids: Any, offsets: Any, fdh_prefix: Any, n: bytes, p: bytes, q: bytes, dp: bytes,
             dq: bytes, qinv: bytes, tag_prefix: Any, tags: Any, nthreads: int) -> int:
    """tags[i] = SHA-256(tag_prefix || FDH(ids[i])^d mod n)[:16]: the signer's own tags."""
    rows = tags.shape[0]
    if tags.shape[1] != TAG_SIZE:
        raise ValueError("tags must have 16 columns")
    k = len(n)
    nn, pp, qq, dpp, dqq, qi = _key(n, p, q, dp, dq, qinv)
    fpre, tpre = bytes(fdh_prefix), bytes(tag_prefix)
    for i, ident in enumerate(_ids(ids, offsets, rows)):
        s = _crt(_fdh_int(fpre, ident, nn, k), pp, qq, dpp, dqq, qi)
        tags[i] = np.frombuffer(_tag(tpre, _row(s, k)), dtype=np.uint8)
    return -1


def unblind_tag(signed_: Any, rinv: Any, blinded: Any, n_be: bytes, e: int, tag_prefix: Any,
                tags: Any, nthreads: int, each: bool = True) -> int:
    """Verify the blind signatures, unblind them and hash each to a 16-byte tag.

    ``each=False`` screens each chunk of :data:`CHUNK` elements with one product check.
    """
    rows, k = signed_.shape
    if rinv.shape != signed_.shape or blinded.shape != signed_.shape or tags.shape != (rows, TAG_SIZE):
        raise ValueError("signed, rinv, blinded and tags must have one row per id")
    n = gmpy2.mpz(int.from_bytes(n_be, "big"))
    tpre = bytes(tag_prefix)
    acc_s = acc_m = gmpy2.mpz(1)
    for i in range(rows):
        if i % CHUNK == 0:
            acc_s = acc_m = gmpy2.mpz(1)
        s = gmpy2.mpz(int.from_bytes(bytes(signed_[i]), "big"))
        if s >= n:
            return i
        m = gmpy2.mpz(int.from_bytes(bytes(blinded[i]), "big"))
        if each:
            if gmpy2.powmod(s, e, n) != m:
                return i
        else:
            acc_s, acc_m = acc_s * s % n, acc_m * m % n
            if (i % CHUNK == CHUNK - 1 or i == rows - 1) and gmpy2.powmod(acc_s, e, n) != acc_m:
                return i - i % CHUNK
        ri = gmpy2.mpz(int.from_bytes(bytes(rinv[i]), "big"))
        tags[i] = np.frombuffer(_tag(tpre, _row(s * ri % n, k)), dtype=np.uint8)
    return -1


def tag_rows(values: Any, tag_prefix: Any, tags: Any, nthreads: int) -> None:
    """tags[i] = SHA-256(tag_prefix || values[i])[:16]."""
    rows = values.shape[0]
    if tags.shape != (rows, TAG_SIZE):
        raise ValueError("tags must have one 16-byte row per value")
    tpre = bytes(tag_prefix)
    for i in range(rows):
        tags[i] = np.frombuffer(_tag(tpre, bytes(values[i])), dtype=np.uint8)


def hash_to_u(ids: Any, offsets: Any, prefix: Any, out: Any, nthreads: int) -> None:
    """out[i] = SHA-256(prefix || ids[i]) with the top bit cleared: an X25519 u-coordinate."""
    rows = out.shape[0]
    if out.shape[1] != 32:
        raise ValueError("out must have 32 columns")
    pre = bytes(prefix)
    for i, ident in enumerate(_ids(ids, offsets, rows)):
        d = bytearray(_sha256(pre + ident).digest())
        d[31] &= 0x7F
        out[i] = np.frombuffer(bytes(d), dtype=np.uint8)


def x25519(scalar: Any, points: Any, out: Any, nthreads: int) -> int:
    """out[i] = X25519(scalar, points[i]) (RFC 7748). Returns -1, or the first failing index."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

    rows = points.shape[0]
    if len(scalar) != 32 or points.shape[1] != 32 or out.shape != (rows, 32):
        raise ValueError("X25519 scalars and points are 32 bytes")
    sk = X25519PrivateKey.from_private_bytes(bytes(scalar))
    for i in range(rows):
        try:
            shared = sk.exchange(X25519PublicKey.from_public_bytes(bytes(points[i])))
        except ValueError:  # all-zero result: a small-order input point
            return i
        out[i] = np.frombuffer(shared, dtype=np.uint8)
    return -1
