# cython: language_level=3
"""AES-128-CTR keystream of 64-bit words on VAES / AES-NI (L0): the MPC parties' PRF streams.

Keys and counts in, ``uint64`` arrays out; no validation (``dtxfast.protocols.mpc.prf`` checks
the seed). The stream and its two code paths are described in ``ext/_prf_aes.h``; the pure twin
(OpenSSL's AES-CTR through ``cryptography``) is ``dtxfast.protocols.mpc._prf_ref``. Without
AVX-512 VAES (or with ``DTXFAST_SIMD=0``) the AES-NI path runs; without AES-NI,
:func:`aes_available` is False and the caller uses the twin.
"""

from libc.stdint cimport int64_t, uint8_t, uint64_t
from cpython.buffer cimport PyBUF_WRITABLE, PyObject_GetBuffer, PyBuffer_Release

import numpy as np

cdef extern from "_prf_aes.h":
    int dtx_prf_level() nogil
    void dtx_prf_expand(const uint8_t *key, uint8_t *rk) nogil
    void dtx_prf_words(const uint8_t *rk, uint64_t pos, int64_t n, uint64_t *out, int nthreads) nogil
    void dtx_prf_sub(const uint8_t *rka, uint64_t pa, const uint8_t *rkb, uint64_t pb, int64_t n,
                     uint64_t *out, int nthreads) nogil
    void dtx_prf_blocks(const uint8_t *rk, uint64_t hi, uint64_t lo, int64_t nb, uint8_t *out) nogil

#: what runs where the VAES path cannot (for dtxfast.backend_info)
SIMD_FALLBACK = "AES-NI path" if dtx_prf_level() >= 1 else "OpenSSL AES-CTR (no AES-NI)"
#: the instruction set of the fast path (for dtxfast.backend_info)
SIMD_NAME = "AVX-512 VAES"
#: from this many words a draw pays for a parallel region (callers pass ``nthreads`` from there)
PARALLEL_WORDS = 1 << 19

_empty = np.empty
_U64 = np.uint64


def simd_available():
    """True when the VAES path runs here (CPU and build, and ``DTXFAST_SIMD`` is not ``0``)."""
    return dtx_prf_level() == 2


def aes_available():
    """True when this CPU and build have AES-NI (else nothing in this module can run)."""
    return dtx_prf_level() >= 1


cdef inline uint64_t *_words_of(object out, Py_buffer *buf) except NULL:
    PyObject_GetBuffer(out, buf, PyBUF_WRITABLE)
    return <uint64_t *>buf.buf


cdef class Stream:
    """The AES-128-CTR keystream under ``key`` (zero initial counter block) as ``uint64`` words,
    drawn in order: :attr:`pos` words have been drawn."""

    cdef uint8_t rk[176]
    cdef readonly uint64_t pos

    def __init__(self, bytes key not None):
        if len(key) != 16:
            raise ValueError("an AES-128 key is 16 bytes")
        if dtx_prf_level() < 1:
            raise RuntimeError("AES-NI is not available here")
        dtx_prf_expand(<const uint8_t *>(<char *>key), self.rk)
        self.pos = 0

    def draw(self, Py_ssize_t n, int nthreads=1):
        """The next ``n`` words (a fresh array)."""
        cdef Py_buffer buf
        out = _empty(n, _U64)
        cdef uint64_t *p = _words_of(out, &buf)
        cdef uint64_t at = self.pos
        self.pos = at + <uint64_t>n  # claimed before the GIL is released: a concurrent draw gets other words
        try:
            with nogil:
                dtx_prf_words(self.rk, at, n, p, nthreads)
        finally:
            PyBuffer_Release(&buf)
        return out

    def draw_sub(self, Stream other not None, Py_ssize_t n, int nthreads=1):
        """The next ``n`` words of this stream minus the next ``n`` of ``other`` (mod 2^64), in one
        pass; both streams advance by ``n`` as if each had drawn them."""
        cdef Py_buffer buf
        out = _empty(n, _U64)
        cdef uint64_t *p = _words_of(out, &buf)
        cdef uint64_t pa = self.pos, pb = other.pos
        self.pos = pa + <uint64_t>n
        other.pos = pb + <uint64_t>n
        try:
            with nogil:
                dtx_prf_sub(self.rk, pa, other.rk, pb, n, p, nthreads)
        finally:
            PyBuffer_Release(&buf)
        return out


def ctr_blocks(bytes key not None, bytes counter not None, Py_ssize_t nblocks):
    """``nblocks`` keystream blocks (bytes) of AES-128-CTR under ``key`` from the 16-byte big-endian
    initial ``counter`` block (any value: the carry across the low 64 bits is handled)."""
    cdef uint8_t rk[176]
    cdef const uint8_t *c = <const uint8_t *>(<char *>counter)
    cdef uint64_t hi = 0, lo = 0
    cdef int i
    if len(key) != 16 or len(counter) != 16:
        raise ValueError("key and counter block are 16 bytes")
    if dtx_prf_level() < 1:
        raise RuntimeError("AES-NI is not available here")
    for i in range(8):
        hi = (hi << 8) | c[i]
        lo = (lo << 8) | c[8 + i]
    dtx_prf_expand(<const uint8_t *>(<char *>key), rk)
    out = bytearray(16 * nblocks)
    cdef uint8_t *p = <uint8_t *>(<char *>out)
    with nogil:
        dtx_prf_blocks(rk, hi, lo, nblocks, p)
    return bytes(out)
