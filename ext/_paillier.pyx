# distutils: libraries = gmp
# cython: language_level=3
"""Compiled Paillier kernel (L0): batch operations on fixed-width limb arrays.

Private module: use :mod:`dtxfast.crypto.paillier`. Ciphertexts are ``uint64`` arrays of shape
``(count, w)`` (little-endian limbs of a residue mod n^2), plaintext residues ``(count, wn)``.
No validation happens here beyond shapes: the primitives layer validates once, at its boundary.
The pure-Python twin, :mod:`dtxfast.crypto._paillier_py`, has the same classes and methods.
"""

import numpy as np
from libc.stdint cimport uint64_t, int64_t, uint8_t
from _paillier_core cimport *


__all__ = ["PublicContext", "PrivateContext", "int_to_limbs", "limbs_to_int", "simd_available"]

cdef extern from "_cpu_ifma.h" nogil:
    int dtx_ifma_cpu_ok()


def simd_available():
    """True when new contexts use the AVX-512 IFMA path (CPU support, and DTXFAST_SIMD != "0")."""
    return bool(dtx_ifma_cpu_ok())


def int_to_limbs(value, int width):
    """Little-endian uint64 limbs of a non-negative int, zero-padded to ``width``."""
    return np.frombuffer(int(value).to_bytes(width * 8, "little"), dtype=np.uint64).copy()


def limbs_to_int(limbs):
    """Inverse of :func:`int_to_limbs`."""
    return int.from_bytes(np.ascontiguousarray(limbs, dtype=np.uint64).tobytes(), "little")


cdef inline const uint64_t* _p2(const uint64_t[:, ::1] a) noexcept nogil:
    return &a[0, 0] if a.shape[0] > 0 else NULL


cdef class PublicContext:
    """Key constants of a public key n, and (after :meth:`build_table`) the DJN table."""
    cdef dtx_pub k
    cdef readonly int w, wn
    cdef readonly object n

    def __cinit__(self, n):
        cdef int wn = (int(n).bit_length() + 63) // 64
        cdef uint64_t[::1] limbs = int_to_limbs(n, wn)
        dtx_pub_init(&self.k, &limbs[0], wn)
        self.w = self.k.w
        self.wn = self.k.wn
        self.n = int(n)

    def __dealloc__(self):
        dtx_pub_clear(&self.k)

    @property
    def simd(self):
        """True when the AVX-512 IFMA path is in use (else GMP)."""
        return bool(self.k.simd)

    @property
    def has_table(self):
        return self.k.table != NULL or self.k.mtab != NULL

    def build_table(self, hs, int exp_bits, int window, int threads):
        cdef uint64_t[::1] h = int_to_limbs(hs, self.w)
        cdef int rc
        with nogil:
            rc = dtx_table_build(&self.k, &h[0], exp_bits, window, threads)
        if rc != 0:
            raise MemoryError("could not allocate the fixed-base table")

    def obf_djn(self, const uint64_t[:, ::1] exps, int threads):
        cdef long cnt = exps.shape[0]
        out = np.empty((cnt, self.w), dtype=np.uint64)
        cdef uint64_t[:, ::1] o = out
        if cnt:
            with nogil:
                dtx_obf_djn(&self.k, &exps[0, 0], <int>exps.shape[1], &o[0, 0], cnt, threads)
        return out

    def obf_standard(self, const uint64_t[:, ::1] r, int threads):
        cdef long cnt = r.shape[0]
        out = np.empty((cnt, self.w), dtype=np.uint64)
        cdef uint64_t[:, ::1] o = out
        if cnt:
            with nogil:
                dtx_obf_standard(&self.k, &r[0, 0], <int>r.shape[1], &o[0, 0], cnt, threads)
        return out

    def encrypt(self, const uint64_t[:, ::1] m, obf, int threads):
        cdef long cnt = m.shape[0]
        out = np.empty((cnt, self.w), dtype=np.uint64)
        cdef uint64_t[:, ::1] o = out
        cdef const uint64_t[:, ::1] ob
        cdef const uint64_t *obp = NULL
        if obf is not None:
            ob = obf
            obp = _p2(ob)
        if cnt:
            with nogil:
                dtx_encrypt(&self.k, &m[0, 0], obp, &o[0, 0], cnt, threads)
        return out

    def mul(self, const uint64_t[:, ::1] a, const uint64_t[:, ::1] b, int threads):
        """a * b mod n^2 elementwise; b may have one row (broadcast)."""
        cdef long cnt = a.shape[0]
        cdef long bstride = 0 if b.shape[0] == 1 else 1
        out = np.empty((cnt, self.w), dtype=np.uint64)
        cdef uint64_t[:, ::1] o = out
        if cnt:
            with nogil:
                dtx_mul(&self.k, &a[0, 0], &b[0, 0], bstride, &o[0, 0], cnt, threads)
        return out

    def add_plain(self, const uint64_t[:, ::1] c, const uint64_t[:, ::1] m, int threads):
        cdef long cnt = c.shape[0]
        cdef long mstride = 0 if m.shape[0] == 1 else 1
        out = np.empty((cnt, self.w), dtype=np.uint64)
        cdef uint64_t[:, ::1] o = out
        if cnt:
            with nogil:
                dtx_add_plain(&self.k, &c[0, 0], &m[0, 0], mstride, &o[0, 0], cnt, threads)
        return out

    def pow(self, const uint64_t[:, ::1] c, const uint64_t[:, ::1] e, const uint8_t[::1] eneg,
            int threads):
        """c^(+-e) elementwise; c or (e, eneg) may have one row (broadcast). Returns (out, bad)."""
        cdef long cnt = max(c.shape[0], e.shape[0])
        cdef long cstride = 0 if c.shape[0] == 1 else 1
        cdef long estride = 0 if e.shape[0] == 1 else 1
        out = np.empty((cnt, self.w), dtype=np.uint64)
        cdef uint64_t[:, ::1] o = out
        cdef long bad = -1
        if cnt:
            with nogil:
                bad = dtx_pow(&self.k, &c[0, 0], cstride, &e[0, 0], <int>e.shape[1], &eneg[0],
                              estride, &o[0, 0], cnt, threads)
        return out, bad

    def invert(self, const uint64_t[:, ::1] c, int threads):
        cdef long cnt = c.shape[0]
        out = np.empty((cnt, self.w), dtype=np.uint64)
        cdef uint64_t[:, ::1] o = out
        cdef long bad = -1
        if cnt:
            with nogil:
                bad = dtx_invert(&self.k, &c[0, 0], &o[0, 0], cnt, threads)
        return out, bad

    def prod(self, const uint64_t[:, ::1] c, int threads):
        out = np.empty((1, self.w), dtype=np.uint64)
        cdef uint64_t[:, ::1] o = out
        cdef long cnt = c.shape[0]
        with nogil:
            dtx_prod(&self.k, _p2(c), cnt, &o[0, 0], threads)
        return out

    def matmul(self, const uint64_t[:, ::1] xabs, xneg, const uint64_t[:, ::1] c, cinv,
               int bits, int window, int threads):
        cdef long m = xabs.shape[0], kk = xabs.shape[1]
        out = np.empty((m, self.w), dtype=np.uint64)
        cdef uint64_t[:, ::1] o = out
        cdef const uint8_t[:, ::1] xn
        cdef const uint8_t *xnp = NULL
        cdef const uint64_t[:, ::1] ci
        cdef const uint64_t *cip = NULL
        if xneg is not None:
            xn = xneg
            xnp = &xn[0, 0] if m and kk else NULL
            ci = cinv
            cip = _p2(ci)
        if m:
            with nogil:
                dtx_matmul(&self.k, _p2(xabs), xnp, _p2(c), cip, &o[0, 0], m, kk, bits, window,
                           threads)
        return out

    def encode_f64(self, const double[::1] x, int frac, int threads):
        cdef long cnt = x.shape[0]
        out = np.empty((cnt, self.wn), dtype=np.uint64)
        cdef uint64_t[:, ::1] o = out
        cdef long bad = -1
        if cnt:
            with nogil:
                bad = dtx_encode_f64(&self.k, &x[0], frac, &o[0, 0], cnt, threads)
        return out, bad

    def encode_i64(self, const int64_t[::1] x, int shift, int threads):
        cdef long cnt = x.shape[0]
        out = np.empty((cnt, self.wn), dtype=np.uint64)
        cdef uint64_t[:, ::1] o = out
        cdef long bad = -1
        if cnt:
            with nogil:
                bad = dtx_encode_i64(&self.k, &x[0], shift, &o[0, 0], cnt, threads)
        return out, bad

    def decode_f64(self, const uint64_t[:, ::1] m, int frac, int threads):
        cdef long cnt = m.shape[0]
        out = np.empty(cnt, dtype=np.float64)
        cdef double[::1] o = out
        cdef long bad = -1
        if cnt:
            with nogil:
                bad = dtx_decode_f64(&self.k, &m[0, 0], frac, &o[0], cnt, threads)
        return out, bad

    def decode_i64(self, const uint64_t[:, ::1] m, int threads):
        cdef long cnt = m.shape[0]
        out = np.empty(cnt, dtype=np.int64)
        status = np.empty(cnt, dtype=np.uint8)
        cdef int64_t[::1] o = out
        cdef uint8_t[::1] st = status
        if cnt:
            with nogil:
                dtx_decode_i64(&self.k, &m[0, 0], &o[0], &st[0], cnt, threads)
        return out, status

    @property
    def simd_one(self):
        """True when :meth:`pow_one` uses the single-number IFMA path (else GMP)."""
        return bool(self.k.hx)

    def pow_one(self, c, e, bint negative):
        """``c ** e`` (``c ** -e`` if ``negative``) mod n^2 for ints ``0 <= c < n^2``, ``e >= 0``;
        None when ``negative`` and ``c`` is not invertible. The GIL is released."""
        cdef bytes cb = int(c).to_bytes(self.w * 8, "little")
        e = int(e)
        cdef bytes eb = e.to_bytes(max(8, (e.bit_length() + 63) // 64 * 8), "little")
        cdef size_t olen = self.w * 8
        out = bytearray(olen)
        cdef const unsigned char *cp = cb
        cdef const unsigned char *ep = eb
        cdef unsigned char *op = out
        cdef size_t clen = len(cb), elen = len(eb)
        cdef int rc
        with nogil:
            rc = dtx_pow_one(&self.k, cp, clen, ep, elen, 1 if negative else 0, op, olen)
        if rc < 0:
            raise MemoryError("pow_one: out of memory")
        if rc == 1:
            return None
        return int.from_bytes(out, "little")

    def check_range(self, const uint64_t[:, ::1] c, bint ciphertext):
        cdef long cnt = c.shape[0]
        cdef long bad = -1
        if cnt:
            with nogil:
                bad = dtx_check_range(&self.k, &c[0, 0], 1 if ciphertext else 0, cnt)
        return bad


cdef class PrivateContext:
    """CRT constants of a private key (p, q) for :meth:`decrypt`."""
    cdef dtx_priv s
    cdef readonly PublicContext pub

    def __cinit__(self, PublicContext pub, p, q):
        cdef int wp = (int(p).bit_length() + 63) // 64
        cdef int wq = (int(q).bit_length() + 63) // 64
        cdef uint64_t[::1] pl = int_to_limbs(p, wp)
        cdef uint64_t[::1] ql = int_to_limbs(q, wq)
        self.pub = pub
        dtx_priv_init(&self.s, &pub.k, &pl[0], wp, &ql[0], wq)

    def __dealloc__(self):
        dtx_priv_clear(&self.s)

    @property
    def simd(self):
        """True when decryption uses the AVX-512 IFMA path (else GMP)."""
        return bool(self.s.simd)

    @property
    def simd_one(self):
        """True when :meth:`decrypt_one` uses the single-number IFMA path (else GMP)."""
        return bool(self.s.hx)

    def decrypt_one(self, c):
        """The residue in ``[0, n)`` of one ciphertext, an int in ``[0, n^2)``.

        Single-number AVX-512 IFMA where the CPU has it (the p and q halves interleaved on one
        core; fixed window, every table entry read for every digit), else GMP; the GIL is
        released.
        """
        cdef bytes cb = int(c).to_bytes(self.pub.w * 8, "little")
        cdef size_t olen = self.pub.wn * 8
        out = bytearray(olen)
        cdef const unsigned char *cp = cb
        cdef unsigned char *op = out
        cdef size_t clen = len(cb)
        cdef int rc
        with nogil:
            rc = dtx_decrypt_one(&self.pub.k, &self.s, cp, clen, op, olen)
        if rc != 0:
            raise MemoryError("decrypt_one: out of memory")
        return int.from_bytes(out, "little")

    def decrypt(self, const uint64_t[:, ::1] c, int threads):
        cdef long cnt = c.shape[0]
        out = np.empty((cnt, self.pub.wn), dtype=np.uint64)
        cdef uint64_t[:, ::1] o = out
        if cnt:
            with nogil:
                dtx_decrypt(&self.pub.k, &self.s, &c[0, 0], &o[0, 0], cnt, threads)
        return out
