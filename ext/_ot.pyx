# distutils: libraries = crypto
# cython: language_level=3
"""Batch kernels of OT extension and OT-based PSI (L0): OpenSSL libcrypto, GIL released, OpenMP.

Bit matrices are C-contiguous ``uint8`` arrays, one row per OT, bit ``c`` of a row being
``(row[c // 8] >> (c % 8)) & 1``. The PRG of an OT seed is AES-128-CTR keyed with the seed, the
128-bit big-endian counter starting at 0 for row 0 (128 rows per AES block), so rows ``[lo, lo+B)``
of a column are bytes ``[lo/8, (lo+B)/8)`` of that stream and any block of rows can be computed on
its own. The pseudorandom code of KKRT16 is four AES-128 blocks under a code key: block ``j`` of
the code of input ``x`` is ``AES(key, x with the low two bits of byte 15 set to j)``. The hash of a
512-bit row is SHA-256 (truncated).

No validation beyond memory safety, no policy and no randomness of its own (the caller passes the
seeds and random words). The pure-Python twin is :mod:`dtxfast.crypto._ot_py`; both produce
byte-identical results.
"""

from libc.stdint cimport uint8_t, int8_t, int64_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset, memcmp
from libc.stdlib cimport malloc, calloc, free
from cython.parallel cimport prange
import numpy as np


cdef extern from "openssl/sha.h" nogil:
    ctypedef struct SHA256_CTX:
        pass
    int SHA256_Init(SHA256_CTX *c)
    int SHA256_Update(SHA256_CTX *c, const void *data, size_t length)
    int SHA256_Final(unsigned char *md, SHA256_CTX *c)

cdef extern from "openssl/evp.h" nogil:
    ctypedef struct EVP_CIPHER:
        pass
    ctypedef struct EVP_CIPHER_CTX:
        pass
    ctypedef struct ENGINE:
        pass
    ctypedef struct OSSL_LIB_CTX:
        pass
    EVP_CIPHER *EVP_CIPHER_fetch(OSSL_LIB_CTX *ctx, const char *algorithm, const char *properties)
    void EVP_CIPHER_free(EVP_CIPHER *cipher)
    EVP_CIPHER_CTX *EVP_CIPHER_CTX_new()
    void EVP_CIPHER_CTX_free(EVP_CIPHER_CTX *c)
    int EVP_EncryptInit_ex(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *type, ENGINE *impl,
                           const unsigned char *key, const unsigned char *iv)
    int EVP_EncryptUpdate(EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl,
                          const unsigned char *inp, int inl)
    int EVP_CIPHER_CTX_set_padding(EVP_CIPHER_CTX *x, int padding)

cdef extern from "_ot_core.h" nogil:
    void dtx_bit_transpose(const uint8_t *inp, uint8_t *out, size_t nrows, size_t ncols,
                           size_t cb0, size_t cb1)
    uint64_t dtx_xorshift(uint64_t *s)
    uint64_t dtx_load64(const uint8_t *p)
    uint64_t dtx_slot(uint64_t key, uint64_t mask)
    void dtx_prefetch_row(const uint8_t *p)

#: bytes of a KKRT row (the 512-bit code width)
ROW = 64
DEF _ROW = 64
#: rows per scheduling chunk of the code/hash kernels
CHUNK = 256
DEF _CHUNK = 256
DEF _AHEAD = 16


cdef class _Ciphers:
    """AES-128-CTR and AES-128-ECB fetched once per call (an implicit fetch per init is slow)."""
    cdef EVP_CIPHER *ctr
    cdef EVP_CIPHER *ecb

    def __cinit__(self):
        self.ctr = EVP_CIPHER_fetch(NULL, b"AES-128-CTR", NULL)
        self.ecb = EVP_CIPHER_fetch(NULL, b"AES-128-ECB", NULL)
        if self.ctr == NULL or self.ecb == NULL:
            raise MemoryError("OpenSSL has no AES-128-CTR / AES-128-ECB")

    def __dealloc__(self):
        if self.ctr != NULL:
            EVP_CIPHER_free(self.ctr)
        if self.ecb != NULL:
            EVP_CIPHER_free(self.ecb)


cdef int _ctr(const EVP_CIPHER *ctr, const uint8_t *key, uint64_t block0, uint8_t *out,
              Py_ssize_t nbytes) noexcept nogil:
    """out[0:nbytes] = AES-128-CTR(key) keystream from counter block ``block0``."""
    cdef uint8_t iv[16]
    cdef int outl = 0, k
    cdef EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new()
    if c == NULL:
        return 1
    memset(iv, 0, 16)
    for k in range(8):
        iv[15 - k] = <uint8_t>((block0 >> (8 * k)) & 0xff)
    memset(out, 0, nbytes)
    if not EVP_EncryptInit_ex(c, ctr, NULL, key, iv) or not EVP_EncryptUpdate(c, out, &outl, out, <int>nbytes):
        EVP_CIPHER_CTX_free(c)
        return 1
    EVP_CIPHER_CTX_free(c)
    return 0


def prg_rows(const uint8_t[:, ::1] seeds, Py_ssize_t lo, uint8_t[:, ::1] out, int nthreads):
    """Rows ``[lo, lo + len(out))`` of the bit matrix whose column ``j`` is PRG(seeds[j]).

    ``seeds`` is ``(k, 16)`` with ``k % 16 == 0``; ``out`` is ``(B, k / 8)`` with ``B % 128 == 0``
    and ``lo % 128 == 0``. Returns 0, or 1 when OpenSSL failed.
    """
    cdef Py_ssize_t k = seeds.shape[0], rows = out.shape[0]
    if seeds.shape[1] != 16 or k % 16 or out.shape[1] * 8 != k or rows % 128 or lo % 128 or lo < 0:
        raise ValueError("prg_rows: seeds (k, 16) with k % 16 == 0, out (B, k/8), B and lo multiples of 128")
    if rows == 0:
        return 0
    cdef _Ciphers ciphers = _Ciphers()
    cdef Py_ssize_t colb = rows // 8, j, c, nch
    cdef uint8_t *cols = <uint8_t *>malloc(k * colb)
    cdef int64_t[::1] errs = np.zeros(k, dtype=np.int64)
    cdef uint64_t block0 = <uint64_t>(lo // 128)
    if cols == NULL:
        raise MemoryError()
    nch = (colb + 63) // 64
    with nogil:
        for j in prange(k, schedule="static", num_threads=max(nthreads, 1)):
            errs[j] = _ctr(ciphers.ctr, &seeds[j, 0], block0, cols + j * colb, colb)
        for c in prange(nch, schedule="static", num_threads=max(nthreads, 1)):
            dtx_bit_transpose(cols, &out[0, 0], k, rows, c * 64, min(c * 64 + 64, colb))
    free(cols)
    return 1 if np.any(np.asarray(errs)) else 0


cdef void _codes(EVP_CIPHER_CTX *c, const uint8_t *inputs, Py_ssize_t n, uint8_t *code) noexcept nogil:
    """code[i] (64 bytes) = the pseudorandom code of inputs[i] (16 bytes), i < n (ECB ctx ready)."""
    cdef Py_ssize_t i, j
    cdef int outl = 0
    for i in range(n):
        for j in range(4):
            memcpy(code + i * _ROW + j * 16, inputs + i * 16, 16)
            code[i * _ROW + j * 16 + 15] = <uint8_t>((inputs[i * 16 + 15] & 0xfc) | j)
    EVP_EncryptUpdate(c, code, &outl, code, <int>(n * _ROW))


cdef EVP_CIPHER_CTX *_ecb(const EVP_CIPHER *ecb, const uint8_t *key) noexcept nogil:
    cdef EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new()
    if c == NULL:
        return NULL
    if not EVP_EncryptInit_ex(c, ecb, NULL, key, NULL):
        EVP_CIPHER_CTX_free(c)
        return NULL
    EVP_CIPHER_CTX_set_padding(c, 0)
    return c


cdef int _encode_chunk(Py_ssize_t lo, Py_ssize_t hi, const EVP_CIPHER *ecb, const uint8_t *key,
                       const uint8_t *t0, const uint8_t *t1, const uint8_t *inputs, uint8_t *u,
                       uint8_t *vals) noexcept nogil:
    cdef uint8_t code[_CHUNK * _ROW]
    cdef uint8_t md[32]
    cdef SHA256_CTX h
    cdef Py_ssize_t i, b
    cdef EVP_CIPHER_CTX *c = _ecb(ecb, key)
    if c == NULL:
        return 1
    _codes(c, inputs + lo * 16, hi - lo, code)
    EVP_CIPHER_CTX_free(c)
    for i in range(lo, hi):
        for b in range(_ROW):
            u[i * _ROW + b] = t0[i * _ROW + b] ^ t1[i * _ROW + b] ^ code[(i - lo) * _ROW + b]
        SHA256_Init(&h)
        SHA256_Update(&h, t0 + i * _ROW, _ROW)
        SHA256_Final(md, &h)
        memcpy(vals + i * 16, md, 16)
    return 0


def kkrt_encode(const uint8_t[:, ::1] t0, const uint8_t[:, ::1] t1, const uint8_t[:, ::1] inputs,
                const uint8_t[::1] code_key, uint8_t[:, ::1] u, uint8_t[:, ::1] vals, int nthreads):
    """KKRT receiver: ``u = t0 ^ t1 ^ code(inputs)`` and ``vals = SHA-256(t0)[:16]`` per row.

    Returns 0, or 1 when OpenSSL failed.
    """
    cdef Py_ssize_t n = t0.shape[0]
    if (t0.shape[1] != _ROW or t1.shape[0] != n or t1.shape[1] != _ROW or inputs.shape[0] != n
            or inputs.shape[1] != 16 or u.shape[0] != n or u.shape[1] != _ROW or vals.shape[0] != n
            or vals.shape[1] != 16 or code_key.shape[0] != 16):
        raise ValueError("kkrt_encode: t0, t1, u (n, 64); inputs, vals (n, 16); a 16-byte code key")
    if n == 0:
        return 0
    cdef _Ciphers ciphers = _Ciphers()
    cdef Py_ssize_t nch = (n + _CHUNK - 1) // _CHUNK, c
    cdef int64_t[::1] errs = np.zeros(nch, dtype=np.int64)
    with nogil:
        for c in prange(nch, schedule="dynamic", num_threads=max(nthreads, 1)):
            errs[c] = _encode_chunk(c * _CHUNK, min(c * _CHUNK + _CHUNK, n), ciphers.ecb, &code_key[0],
                                    &t0[0, 0], &t1[0, 0], &inputs[0, 0], &u[0, 0], &vals[0, 0])
    return 1 if np.any(np.asarray(errs)) else 0


def kkrt_sender_q(uint8_t[:, ::1] ts, const uint8_t[:, ::1] u, const uint8_t[::1] s, int nthreads):
    """KKRT sender: ``ts ^= u & s`` per row (then ``ts`` holds the rows Q)."""
    cdef Py_ssize_t n = ts.shape[0], i, b
    if ts.shape[1] != _ROW or u.shape[0] != n or u.shape[1] != _ROW or s.shape[0] != _ROW:
        raise ValueError("kkrt_sender_q: ts, u (n, 64), s 64 bytes")
    if n == 0:
        return
    with nogil:
        for i in prange(n, schedule="static", num_threads=max(nthreads, 1)):
            for b in range(_ROW):
                ts[i, b] = ts[i, b] ^ (u[i, b] & s[b])


cdef int _eval_chunk(Py_ssize_t lo, Py_ssize_t hi, const EVP_CIPHER *ecb, const uint8_t *key,
                     const uint8_t *q, const uint8_t *s, const int64_t *bins, const uint8_t *inputs,
                     uint8_t *out, Py_ssize_t w) noexcept nogil:
    cdef uint8_t code[_CHUNK * _ROW]
    cdef uint8_t row[_ROW]
    cdef uint8_t md[32]
    cdef SHA256_CTX h
    cdef Py_ssize_t i, b
    cdef const uint8_t *qr
    cdef EVP_CIPHER_CTX *c = _ecb(ecb, key)
    if c == NULL:
        return 1
    for i in range(lo, min(lo + _AHEAD, hi)):
        dtx_prefetch_row(q + bins[i] * _ROW)
    _codes(c, inputs + lo * 16, hi - lo, code)
    EVP_CIPHER_CTX_free(c)
    for i in range(lo, hi):
        if i + _AHEAD < hi:  # random rows of q: keep a few cache misses in flight
            dtx_prefetch_row(q + bins[i + _AHEAD] * _ROW)
        qr = q + bins[i] * _ROW
        for b in range(_ROW):
            row[b] = qr[b] ^ (code[(i - lo) * _ROW + b] & s[b])
        SHA256_Init(&h)
        SHA256_Update(&h, row, _ROW)
        SHA256_Final(md, &h)
        memcpy(out + i * w, md, w)
    return 0


def kkrt_eval(const uint8_t[:, ::1] q, const uint8_t[::1] s, const int64_t[::1] bins,
              const uint8_t[:, ::1] inputs, const uint8_t[::1] code_key, uint8_t[:, ::1] out,
              int nthreads):
    """KKRT sender's OPRF: ``out[i] = SHA-256(q[bins[i]] ^ (code(inputs[i]) & s))[:w]``.

    Returns 0, or 1 when OpenSSL failed. ``bins`` must index rows of ``q`` (checked).
    """
    cdef Py_ssize_t n = bins.shape[0], m = q.shape[0], w = out.shape[1], i
    if (q.shape[1] != _ROW or s.shape[0] != _ROW or inputs.shape[0] != n or inputs.shape[1] != 16
            or out.shape[0] != n or not 1 <= w <= 32 or code_key.shape[0] != 16):
        raise ValueError("kkrt_eval: q (m, 64), s 64 bytes, inputs (n, 16), out (n, 1..32)")
    for i in range(n):
        if bins[i] < 0 or bins[i] >= m:
            raise ValueError("kkrt_eval: a bin is out of range")
    if n == 0:
        return 0
    cdef _Ciphers ciphers = _Ciphers()
    cdef Py_ssize_t nch = (n + _CHUNK - 1) // _CHUNK, c
    cdef int64_t[::1] errs = np.zeros(nch, dtype=np.int64)
    with nogil:
        for c in prange(nch, schedule="dynamic", num_threads=max(nthreads, 1)):
            errs[c] = _eval_chunk(c * _CHUNK, min(c * _CHUNK + _CHUNK, n), ciphers.ecb, &code_key[0],
                                  &q[0, 0], &s[0], &bins[0], &inputs[0, 0], &out[0, 0], w)
    return 1 if np.any(np.asarray(errs)) else 0


cdef int64_t _cuckoo(const uint32_t[:, ::1] bins, const uint8_t[:, ::1] items, int64_t[::1] table,
                     int8_t[::1] which, uint8_t[::1] dup, uint64_t st, int64_t max_kicks) noexcept nogil:
    cdef Py_ssize_t n = bins.shape[0], i, h
    cdef int64_t cur, kicks, e, b
    cdef int ch, prev, found
    for i in range(n):
        found = 0
        for h in range(3):
            e = table[bins[i, h]]
            if e >= 0 and memcmp(&items[e, 0], &items[i, 0], 16) == 0:
                found = 1
                break
        if found:
            dup[i] = 1
            continue
        cur = i
        prev = -1
        kicks = 0
        while True:
            found = 0
            for h in range(3):
                if table[bins[cur, h]] < 0:
                    table[bins[cur, h]] = cur
                    which[bins[cur, h]] = <int8_t>h
                    found = 1
                    break
            if found:
                break
            if kicks >= max_kicks:
                return i
            ch = <int>(dtx_xorshift(&st) % 3)
            if ch == prev:
                ch = (ch + 1) % 3
            b = bins[cur, ch]
            e = table[b]
            # the evicted item must not go straight back to the bin it was evicted from
            prev = which[b]
            table[b] = cur
            which[b] = <int8_t>ch
            cur = e
            kicks += 1
    return -1


cdef int _eval3_chunk(Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t n, const EVP_CIPHER *ecb,
                      const uint8_t *key, const uint8_t *q, const uint8_t *s, const uint32_t *bins3,
                      const uint8_t *items, uint8_t *out, Py_ssize_t w) noexcept nogil:
    cdef uint8_t inp[_CHUNK * 16]
    cdef int64_t bb[_CHUNK]
    cdef Py_ssize_t i, h
    cdef int err = 0
    for h in range(3):
        for i in range(lo, hi):
            memcpy(inp + (i - lo) * 16, items + i * 16, 16)
            inp[(i - lo) * 16 + 15] = <uint8_t>((items[i * 16 + 15] & 0xf0) | (h << 2))
            bb[i - lo] = bins3[i * 3 + h]
        err |= _eval_chunk(0, hi - lo, ecb, key, q, s, bb, inp, out + (h * n + lo) * w, w)
    return err


def kkrt_eval_ids(const uint8_t[:, ::1] q, const uint8_t[::1] s, const uint32_t[:, ::1] bins,
                  const uint8_t[:, ::1] items, const uint8_t[::1] code_key, uint8_t[:, ::1] out,
                  int nthreads):
    """:func:`kkrt_eval` of every item under each of its 3 hash functions: row ``h * n + i`` of
    ``out`` is the OPRF at row ``bins[i, h]`` of ``items[i]`` with the low nibble of byte 15
    replaced by ``h << 2`` (the input tag of hash function ``h``)."""
    cdef Py_ssize_t n = items.shape[0], m = q.shape[0], w = out.shape[1], i, h
    if (q.shape[1] != _ROW or s.shape[0] != _ROW or items.shape[1] != 16 or bins.shape[0] != n
            or bins.shape[1] != 3 or out.shape[0] != 3 * n or not 1 <= w <= 32 or code_key.shape[0] != 16):
        raise ValueError("kkrt_eval_ids: q (m, 64), s 64 bytes, items (n, 16), bins (n, 3), out (3n, 1..32)")
    for i in range(n):
        for h in range(3):
            if bins[i, h] >= m:
                raise ValueError("kkrt_eval_ids: a bin is out of range")
    if n == 0:
        return 0
    cdef _Ciphers ciphers = _Ciphers()
    cdef Py_ssize_t nch = (n + _CHUNK - 1) // _CHUNK, c
    cdef int64_t[::1] errs = np.zeros(nch, dtype=np.int64)
    with nogil:
        for c in prange(nch, schedule="dynamic", num_threads=max(nthreads, 1)):
            errs[c] = _eval3_chunk(c * _CHUNK, min(c * _CHUNK + _CHUNK, n), n, ciphers.ecb, &code_key[0],
                                   &q[0, 0], &s[0], &bins[0, 0], &items[0, 0], &out[0, 0], w)
    return 1 if np.any(np.asarray(errs)) else 0


def cuckoo_insert(const uint32_t[:, ::1] bins, const uint8_t[:, ::1] items, int64_t[::1] table,
                  int8_t[::1] which, uint8_t[::1] dup, uint64_t seed, int64_t max_kicks):
    """Insert items ``0..n-1`` into a cuckoo table of ``len(table)`` bins (3 hash functions).

    ``bins[i]`` holds item i's three bins; ``table`` (all -1 on entry) gets the item index per
    bin, ``which`` the hash function that put it there. An item equal (16 bytes) to one already in
    the table is not inserted: ``dup[i] = 1``. Evictions pick a random other function
    (xorshift64* seeded with ``seed``), at most ``max_kicks`` per item. Returns -1, or the index
    of the item whose insertion failed (the table is then incomplete: rehash with other bins).
    """
    cdef Py_ssize_t n = bins.shape[0], m = table.shape[0], i, h
    if bins.shape[1] != 3 or items.shape[0] != n or items.shape[1] != 16 or which.shape[0] != m or dup.shape[0] != n:
        raise ValueError("cuckoo_insert: bins (n, 3), items (n, 16), table and which (m,), dup (n,)")
    for i in range(n):
        for h in range(3):
            if bins[i, h] >= m:
                raise ValueError("cuckoo_insert: a bin is out of range")
    cdef int64_t failed
    with nogil:
        failed = _cuckoo(bins, items, table, which, dup, seed if seed else 1, max_kicks)
    return failed


cdef inline void _probe(const int64_t *tab, uint64_t mask, const uint8_t *mp, const uint8_t *v,
                        Py_ssize_t w, uint8_t *hit) noexcept nogil:
    cdef uint64_t slot = dtx_slot(dtx_load64(v), mask)
    cdef int64_t e
    while True:
        e = tab[slot]
        if e < 0:
            return
        if memcmp(mp + e * 16, v, w) == 0:
            hit[e] = 1
        slot = (slot + 1) & mask


def match_values(const uint8_t[:, ::1] mine, const uint8_t[::1] valid, const uint8_t[:, ::1] theirs,
                 uint8_t[::1] hit, int nthreads):
    """``hit[i] = 1`` where ``valid[i]`` and the first ``w`` bytes of ``mine[i]`` equal a row of
    ``theirs`` (``w = theirs.shape[1]``, 8..16): an open-addressing table of ``mine``'s rows keyed
    by their first 8 bytes, probed with every row of ``theirs``."""
    cdef Py_ssize_t m = mine.shape[0], t = theirs.shape[0], w = theirs.shape[1], i, nvalid = 0
    if mine.shape[1] != 16 or valid.shape[0] != m or hit.shape[0] != m or (t and not 8 <= w <= 16):
        raise ValueError("match_values: mine (m, 16), valid and hit (m,), theirs (t, 8..16)")
    for i in range(m):
        if valid[i]:
            nvalid += 1
    if nvalid == 0 or t == 0:
        return
    cdef uint64_t size = 16, mask, slot
    while size < 2 * <uint64_t>nvalid:
        size <<= 1
    mask = size - 1
    cdef int64_t *tab = <int64_t *>malloc(size * sizeof(int64_t))
    if tab == NULL:
        raise MemoryError()
    cdef const uint8_t *mp = &mine[0, 0]
    cdef const uint8_t *tp = &theirs[0, 0]
    with nogil:
        memset(tab, 0xff, size * sizeof(int64_t))
        for i in range(m):
            if valid[i]:
                slot = dtx_slot(dtx_load64(mp + i * 16), mask)
                while tab[slot] >= 0:
                    slot = (slot + 1) & mask
                tab[slot] = i
        for i in prange(t, schedule="static", num_threads=max(nthreads, 1)):
            if i + _AHEAD < t:
                dtx_prefetch_row(<const uint8_t *>(tab + dtx_slot(dtx_load64(tp + (i + _AHEAD) * w), mask)))
            _probe(tab, mask, mp, tp + i * w, w, &hit[0])
    free(tab)


def shuffle_rows(uint8_t[:, ::1] rows, const uint8_t[::1] key):
    """Fisher–Yates shuffle of the rows in place: for i = n-1 .. 1, swap rows i and
    ``r[i] % (i + 1)``, where ``r`` is the AES-128-CTR keystream of ``key`` (the caller's random
    16 bytes) read as little-endian 64-bit words (the modulo bias is below n / 2^64)."""
    cdef Py_ssize_t n = rows.shape[0], w = rows.shape[1], i, j
    if key.shape[0] != 16 or w > 64:
        raise ValueError("shuffle_rows: a 16-byte key, rows of at most 64 bytes")
    if n < 2:
        return
    cdef _Ciphers ciphers = _Ciphers()
    cdef uint64_t *rnd = <uint64_t *>malloc(n * 8)
    if rnd == NULL:
        raise MemoryError()
    cdef uint8_t tmp[64]
    cdef int err
    with nogil:
        err = _ctr(ciphers.ctr, &key[0], 0, <uint8_t *>rnd, n * 8)
        if not err:
            for i in range(n - 1, 0, -1):
                j = <Py_ssize_t>(rnd[i] % <uint64_t>(i + 1))
                if j != i:
                    memcpy(tmp, &rows[i, 0], w)
                    memcpy(&rows[i, 0], &rows[j, 0], w)
                    memcpy(&rows[j, 0], tmp, w)
    free(rnd)
    if err:
        raise MemoryError("OpenSSL failed in shuffle_rows")


def first_occurrence(const uint8_t[:, ::1] items, uint8_t[::1] first):
    """``first[i] = 1`` for the first row of each distinct 16-byte value of ``items``."""
    cdef Py_ssize_t n = items.shape[0], i
    if items.shape[1] != 16 or first.shape[0] != n:
        raise ValueError("first_occurrence: items (n, 16), first (n,)")
    if n == 0:
        return
    cdef uint64_t size = 16, mask, slot
    while size < 2 * <uint64_t>n:
        size <<= 1
    mask = size - 1
    cdef int64_t *tab = <int64_t *>malloc(size * sizeof(int64_t))
    if tab == NULL:
        raise MemoryError()
    cdef const uint8_t *ip = &items[0, 0]
    cdef int seen
    with nogil:
        memset(tab, 0xff, size * sizeof(int64_t))
        for i in range(n):
            slot = dtx_slot(dtx_load64(ip + i * 16), mask)
            seen = 0
            while tab[slot] >= 0:
                if memcmp(ip + tab[slot] * 16, ip + i * 16, 16) == 0:
                    seen = 1
                    break
                slot = (slot + 1) & mask
            if not seen:
                tab[slot] = i
                first[i] = 1
            else:
                first[i] = 0
    free(tab)
