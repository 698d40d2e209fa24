# distutils: libraries = crypto
# cython: language_level=3
"""Batch kernels of private set intersection (L0): OpenSSL libcrypto, GIL released, OpenMP.

Big integers travel as fixed-width big-endian rows of a C-contiguous ``uint8`` array (one row per
element, ``k`` bytes = the byte length of the RSA modulus). Ids travel as one ``uint8`` buffer plus
``int64`` offsets (``len(offsets) == count + 1``). Every function takes the thread count to use and
splits the batch into chunks of :data:`CHUNK` elements scheduled dynamically over the threads.

No validation beyond what is needed for memory safety, no policy and no randomness of its own: the
random bytes for blinding come from the caller. Functions that can meet a bad element return the
index of the first one, or -1 when the whole batch went through. The pure-Python twin is
:mod:`dtxfast.crypto._psi_py`; both produce byte-identical results.
"""

from libc.stdint cimport uint8_t, int64_t, uint32_t
from libc.string cimport memcpy, memset
from libc.stdlib cimport malloc, free
from cython.parallel cimport prange
import numpy as np


cdef extern from "openssl/bn.h" nogil:
    ctypedef struct BIGNUM:
        pass
    ctypedef struct BN_CTX:
        pass
    ctypedef struct BN_MONT_CTX:
        pass
    BIGNUM *BN_new()
    void BN_free(BIGNUM *a)
    void BN_clear_free(BIGNUM *a)
    BIGNUM *BN_bin2bn(const unsigned char *s, int len, BIGNUM *ret)
    int BN_bn2binpad(const BIGNUM *a, unsigned char *to, int tolen)
    int BN_num_bits(const BIGNUM *a)
    BN_CTX *BN_CTX_new()
    void BN_CTX_free(BN_CTX *c)
    BN_MONT_CTX *BN_MONT_CTX_new()
    void BN_MONT_CTX_free(BN_MONT_CTX *m)
    int BN_MONT_CTX_set(BN_MONT_CTX *mont, const BIGNUM *mod, BN_CTX *ctx)
    int BN_mod_exp_mont(BIGNUM *r, const BIGNUM *a, const BIGNUM *p, const BIGNUM *m,
                        BN_CTX *ctx, BN_MONT_CTX *m_ctx)
    int BN_mod_exp_mont_consttime_x2(BIGNUM *rr1, const BIGNUM *a1, const BIGNUM *p1,
                                     const BIGNUM *m1, BN_MONT_CTX *in_mont1,
                                     BIGNUM *rr2, const BIGNUM *a2, const BIGNUM *p2,
                                     const BIGNUM *m2, BN_MONT_CTX *in_mont2, BN_CTX *ctx)
    int BN_nnmod(BIGNUM *r, const BIGNUM *m, const BIGNUM *d, BN_CTX *ctx)
    int BN_mod_mul(BIGNUM *r, const BIGNUM *a, const BIGNUM *b, const BIGNUM *m, BN_CTX *ctx)
    int BN_mod_mul_montgomery(BIGNUM *r, const BIGNUM *a, const BIGNUM *b, BN_MONT_CTX *mont,
                              BN_CTX *ctx)
    int BN_to_montgomery(BIGNUM *r, const BIGNUM *a, BN_MONT_CTX *mont, BN_CTX *ctx)
    int BN_from_montgomery(BIGNUM *r, const BIGNUM *a, BN_MONT_CTX *mont, BN_CTX *ctx)
    int BN_is_bit_set(const BIGNUM *a, int n)
    int BN_mod_sub(BIGNUM *r, const BIGNUM *a, const BIGNUM *b, const BIGNUM *m, BN_CTX *ctx)
    int BN_mul(BIGNUM *r, const BIGNUM *a, const BIGNUM *b, BN_CTX *ctx)
    int BN_add(BIGNUM *r, const BIGNUM *a, const BIGNUM *b)
    BIGNUM *BN_mod_inverse(BIGNUM *ret, const BIGNUM *a, const BIGNUM *n, BN_CTX *ctx)
    int BN_cmp(const BIGNUM *a, const BIGNUM *b)
    int BN_is_zero(const BIGNUM *a)
    int BN_set_word(BIGNUM *a, unsigned long w)
    BIGNUM *BN_copy(BIGNUM *a, const BIGNUM *b)
    void BN_set_flags(BIGNUM *b, int n)
    int BN_FLG_CONSTTIME

cdef extern from "openssl/sha.h" nogil:
    # The low-level calls (deprecated in OpenSSL 3, still exported) skip the provider lookup
    # that the one-shot SHA256() does on every call: several times faster for short inputs.
    ctypedef struct SHA256_CTX:
        pass
    int SHA256_Init(SHA256_CTX *c)
    int SHA256_Update(SHA256_CTX *c, const void *data, size_t length)
    int SHA256_Final(unsigned char *md, SHA256_CTX *c)

cdef extern from "openssl/evp.h" nogil:
    ctypedef struct EVP_PKEY:
        pass
    ctypedef struct EVP_PKEY_CTX:
        pass
    ctypedef struct ENGINE:
        pass
    EVP_PKEY *EVP_PKEY_new_raw_private_key(int type, ENGINE *e, const unsigned char *priv,
                                           size_t len)
    EVP_PKEY *EVP_PKEY_new_raw_public_key(int type, ENGINE *e, const unsigned char *pub,
                                          size_t len)
    void EVP_PKEY_free(EVP_PKEY *key)
    EVP_PKEY_CTX *EVP_PKEY_CTX_new(EVP_PKEY *pkey, ENGINE *e)
    void EVP_PKEY_CTX_free(EVP_PKEY_CTX *ctx)
    int EVP_PKEY_derive_init(EVP_PKEY_CTX *ctx)
    int EVP_PKEY_derive_set_peer(EVP_PKEY_CTX *ctx, EVP_PKEY *peer)
    int EVP_PKEY_derive(EVP_PKEY_CTX *ctx, unsigned char *key, size_t *keylen)
    int EVP_PKEY_X25519

cdef extern from "openssl/err.h" nogil:
    void ERR_clear_error()

cdef extern from "_cpu_ifma.h" nogil:
    int dtx_ifma_cpu_ok()

cdef extern from "_x25519_ifma.h" nogil:
    const uint8_t X8_BASE_U[32]
    void x25519_x8(const uint8_t *scalar, const uint8_t **pts, uint8_t **out)

#: what X25519 batches run on without AVX-512 IFMA (``dtxfast.backend_info()`` says it)
SIMD_FALLBACK = "OpenSSL one point at a time"


def simd_available():
    """True when :func:`x25519` batches run 8 points at a time on AVX-512 IFMA (CPU support, and
    ``DTXFAST_SIMD`` is not ``"0"``); else one at a time through OpenSSL."""
    return bool(dtx_ifma_cpu_ok())


#: elements per scheduling chunk (per-chunk contexts amortise over this many elements)
CHUNK = 64
DEF _CHUNK = 64
#: bytes of a tag (truncated SHA-256)
TAG_SIZE = 16
DEF _TAG = 16
#: extra bytes hashed beyond the modulus length before reducing, so that FDH is statistically uniform
FDH_EXTRA = 16
DEF _FDH_EXTRA = 16
#: extra random bytes beyond the modulus length for a blinding factor
RAND_EXTRA = 8


# ----------------------------------------------------------------------------------------------
# helpers (nogil)

cdef int _hash_prefixed(const uint8_t *prefix, Py_ssize_t plen, const uint8_t *data,
                        Py_ssize_t dlen, uint8_t *scratch, uint8_t *out) noexcept nogil:
    """out[0:32] = SHA-256(prefix || data)."""
    cdef SHA256_CTX c
    SHA256_Init(&c)
    SHA256_Update(&c, prefix, plen)
    SHA256_Update(&c, data, dlen)
    SHA256_Final(out, &c)
    return 0


cdef inline void SHA256(const uint8_t *d, size_t n, uint8_t *md) noexcept nogil:
    cdef SHA256_CTX c
    SHA256_Init(&c)
    SHA256_Update(&c, d, n)
    SHA256_Final(md, &c)


cdef int _expand(const uint8_t *seed, uint8_t *out, Py_ssize_t outlen) noexcept nogil:
    """out = SHA-256(seed || be32(0)) || SHA-256(seed || be32(1)) || ... truncated to outlen."""
    cdef uint8_t block[36]
    cdef uint8_t digest[32]
    cdef uint32_t j = 0
    cdef Py_ssize_t pos = 0, take
    memcpy(block, seed, 32)
    while pos < outlen:
        block[32] = <uint8_t>((j >> 24) & 0xff)
        block[33] = <uint8_t>((j >> 16) & 0xff)
        block[34] = <uint8_t>((j >> 8) & 0xff)
        block[35] = <uint8_t>(j & 0xff)
        SHA256(block, 36, digest)
        take = outlen - pos
        if take > 32:
            take = 32
        memcpy(out + pos, digest, take)
        pos += take
        j += 1
    return 0


cdef int _fdh(const uint8_t *prefix, Py_ssize_t plen, const uint8_t *idp, Py_ssize_t idlen,
              const BIGNUM *n, int k, uint8_t *scratch, uint8_t *wide, BIGNUM *h,
              BN_CTX *ctx) noexcept nogil:
    """h = int(expand(SHA-256(prefix || id), k + 16)) mod n."""
    cdef uint8_t seed[32]
    _hash_prefixed(prefix, plen, idp, idlen, scratch, seed)
    _expand(seed, wide, k + _FDH_EXTRA)
    if BN_bin2bn(wide, k + _FDH_EXTRA, h) == NULL:
        return 1
    if not BN_nnmod(h, h, n, ctx):
        return 1
    return 0


cdef void _tag(const uint8_t *prefix, Py_ssize_t plen, const uint8_t *value, Py_ssize_t vlen,
               uint8_t *scratch, uint8_t *out) noexcept nogil:
    cdef uint8_t digest[32]
    _hash_prefixed(prefix, plen, value, vlen, scratch, digest)
    memcpy(out, digest, _TAG)


cdef BIGNUM *_bn(bytes data) except NULL:
    cdef const unsigned char *p = data
    cdef BIGNUM *b = BN_bin2bn(p, len(data), NULL)
    if b == NULL:
        raise MemoryError("BN_bin2bn failed")
    return b


cdef Py_ssize_t _max_len(const int64_t[::1] offsets):
    cdef Py_ssize_t i, m = 0, d
    for i in range(offsets.shape[0] - 1):
        d = offsets[i + 1] - offsets[i]
        if d > m:
            m = d
    return m


cdef int _first_error(int64_t[::1] errs):
    cdef Py_ssize_t c
    cdef int64_t best = -1
    for c in range(errs.shape[0]):
        if errs[c] >= 0 and (best < 0 or errs[c] < best):
            best = errs[c]
    return <int>best


cdef void _check_ids(const uint8_t[::1] ids, const int64_t[::1] offsets, Py_ssize_t rows) except *:
    cdef Py_ssize_t i
    if offsets.shape[0] != rows + 1:
        raise ValueError("offsets must have one more entry than there are rows")
    if rows and (offsets[0] < 0 or offsets[rows] > ids.shape[0]):
        raise ValueError("offsets out of range of the id buffer")
    for i in range(rows):
        if offsets[i + 1] < offsets[i]:
            raise ValueError("offsets must be non-decreasing")


# ----------------------------------------------------------------------------------------------
# RSA: full-domain hash, blinding, signing, unblinding, tags

cdef int64_t _fdh_chunk(Py_ssize_t lo, Py_ssize_t hi, const uint8_t *ids, const int64_t *offs,
                        const uint8_t *prefix, Py_ssize_t plen, const BIGNUM *n, int k,
                        uint8_t *out, Py_ssize_t maxlen) noexcept nogil:
    cdef BN_CTX *ctx = BN_CTX_new()
    cdef BIGNUM *h = BN_new()
    cdef uint8_t *scratch = <uint8_t *>malloc(plen + maxlen + 1)
    cdef uint8_t *wide = <uint8_t *>malloc(k + _FDH_EXTRA)
    cdef Py_ssize_t i
    cdef int64_t err = -1
    if ctx == NULL or h == NULL or scratch == NULL or wide == NULL:
        err = lo
    else:
        for i in range(lo, hi):
            if _fdh(prefix, plen, ids + offs[i], offs[i + 1] - offs[i], n, k, scratch, wide, h, ctx):
                err = i
                break
            BN_bn2binpad(h, out + i * k, k)
    free(scratch); free(wide); BN_free(h); BN_CTX_free(ctx)
    return err


def fdh(const uint8_t[::1] ids, const int64_t[::1] offsets, const uint8_t[::1] prefix,
        bytes n_be, uint8_t[:, ::1] out, int nthreads):
    """out[i] = FDH(ids[i]) as k big-endian bytes. Returns -1, or the index of a failure."""
    cdef Py_ssize_t rows = out.shape[0]
    cdef int k = out.shape[1]
    _check_ids(ids, offsets, rows)
    cdef BIGNUM *n = _bn(n_be)
    cdef Py_ssize_t nch = (rows + _CHUNK - 1) // _CHUNK, c, lo, hi
    cdef Py_ssize_t maxlen = _max_len(offsets), plen = prefix.shape[0]
    cdef int64_t[::1] errs = np.zeros(max(nch, 1), dtype=np.int64)
    cdef const uint8_t *idp = &ids[0] if ids.shape[0] else <const uint8_t *>b""
    cdef const uint8_t *pp = &prefix[0] if plen else <const uint8_t *>b""
    cdef uint8_t *op = &out[0, 0] if rows else NULL
    with nogil:
        for c in prange(nch, schedule="dynamic", num_threads=max(nthreads, 1)):
            lo = c * _CHUNK
            hi = min(lo + _CHUNK, rows)
            errs[c] = _fdh_chunk(lo, hi, idp, &offsets[0], pp, plen, n, k, op, maxlen)
    BN_free(n)
    return _first_error(errs) if nch else -1


cdef int _mont_pow(BIGNUM *x, const BIGNUM *baseM, const BIGNUM *e, BN_MONT_CTX *mont,
                   BN_CTX *ctx) noexcept nogil:
    """x = baseM^e in the Montgomery domain (left-to-right square and multiply; e is public)."""
    cdef int b = BN_num_bits(e) - 2
    if BN_copy(x, baseM) == NULL:
        return 1
    while b >= 0:
        if not BN_mod_mul_montgomery(x, x, x, mont, ctx):
            return 1
        if BN_is_bit_set(e, b) and not BN_mod_mul_montgomery(x, x, baseM, mont, ctx):
            return 1
        b -= 1
    return 0


cdef int64_t _blind_chunk(Py_ssize_t lo, Py_ssize_t hi, const uint8_t *ids, const int64_t *offs,
                          const uint8_t *prefix, Py_ssize_t plen, const BIGNUM *n,
                          const BIGNUM *e, BN_MONT_CTX *mont, int k, const uint8_t *rnd,
                          int rlen, uint8_t *blinded, uint8_t *rinv,
                          Py_ssize_t maxlen) noexcept nogil:
    """blinded[i] = FDH(id_i) * r_i^e mod n, rinv[i] = r_i^-1 mod n, r_i = rnd[i] mod n.

    Works in the Montgomery domain (one REDC per product); the inverses come from Montgomery's
    batch-inversion trick: one modular inverse per chunk, three products per element.
    """
    cdef Py_ssize_t m = hi - lo, i, j
    cdef BN_CTX *ctx = BN_CTX_new()
    cdef BIGNUM *h = BN_new()
    cdef BIGNUM *x = BN_new()
    cdef BIGNUM *inv = BN_new()
    cdef BIGNUM *tmp = BN_new()
    cdef BIGNUM **rm = <BIGNUM **>malloc(m * sizeof(BIGNUM *))
    cdef BIGNUM **pre = <BIGNUM **>malloc(m * sizeof(BIGNUM *))
    cdef uint8_t *scratch = <uint8_t *>malloc(plen + maxlen + 1)
    cdef uint8_t *wide = <uint8_t *>malloc(k + _FDH_EXTRA)
    cdef int64_t err = -1
    if rm != NULL:
        for j in range(m):
            rm[j] = NULL
    if pre != NULL:
        for j in range(m):
            pre[j] = NULL
    if (ctx == NULL or h == NULL or x == NULL or inv == NULL or tmp == NULL or rm == NULL
            or pre == NULL or scratch == NULL or wide == NULL):
        err = lo
    else:
        # forward: r_j (Montgomery form), blinded_j, prefix products of r (Montgomery form)
        for j in range(m):
            i = lo + j
            rm[j] = BN_new()
            pre[j] = BN_new()
            if (rm[j] == NULL or pre[j] == NULL or BN_bin2bn(rnd + i * rlen, rlen, tmp) == NULL
                    or not BN_nnmod(tmp, tmp, n, ctx) or BN_is_zero(tmp)
                    or not BN_to_montgomery(rm[j], tmp, mont, ctx)):
                err = i
                break
            if _fdh(prefix, plen, ids + offs[i], offs[i + 1] - offs[i], n, k, scratch, wide, h, ctx):
                err = i
                break
            # x = (r^e)M ; h * (r^e)M / M = h r^e
            if _mont_pow(x, rm[j], e, mont, ctx) or not BN_mod_mul_montgomery(h, h, x, mont, ctx):
                err = i
                break
            BN_bn2binpad(h, blinded + i * k, k)
            if j == 0:
                BN_copy(pre[j], rm[j])
            elif not BN_mod_mul_montgomery(pre[j], pre[j - 1], rm[j], mont, ctx):
                err = i
                break
        # backward: Montgomery's batch inversion
        if err < 0 and m > 0:
            if (not BN_from_montgomery(tmp, pre[m - 1], mont, ctx)
                    or BN_mod_inverse(inv, tmp, n, ctx) == NULL
                    or not BN_to_montgomery(inv, inv, mont, ctx)):
                err = lo  # some r shares a factor with n (negligible unless n is malformed)
            else:
                for j in range(m - 1, -1, -1):
                    i = lo + j
                    if j > 0:
                        BN_mod_mul_montgomery(tmp, inv, pre[j - 1], mont, ctx)
                        BN_from_montgomery(tmp, tmp, mont, ctx)
                        BN_bn2binpad(tmp, rinv + i * k, k)
                        BN_mod_mul_montgomery(inv, inv, rm[j], mont, ctx)
                    else:
                        BN_from_montgomery(tmp, inv, mont, ctx)
                        BN_bn2binpad(tmp, rinv + i * k, k)
    if rm != NULL:
        for j in range(m):
            if rm[j] != NULL:
                BN_clear_free(rm[j])
    if pre != NULL:
        for j in range(m):
            if pre[j] != NULL:
                BN_clear_free(pre[j])
    free(rm); free(pre); free(scratch); free(wide)
    BN_clear_free(inv); BN_clear_free(tmp); BN_clear_free(x); BN_free(h); BN_CTX_free(ctx)
    return err


def blind(const uint8_t[::1] ids, const int64_t[::1] offsets, const uint8_t[::1] prefix,
          bytes n_be, unsigned long e, const uint8_t[:, ::1] rnd, uint8_t[:, ::1] blinded,
          uint8_t[:, ::1] rinv, int nthreads):
    """Hash and blind a batch of ids; keep the inverses of the blinding factors.

    ``rnd`` has one row of ``k + 8`` uniformly random bytes per id. Returns -1, or the index of an
    element whose blinding failed (the caller retries with fresh randomness).
    """
    cdef Py_ssize_t rows = blinded.shape[0]
    cdef int k = blinded.shape[1]
    _check_ids(ids, offsets, rows)
    if rnd.shape[0] != rows or rinv.shape[0] != rows or rinv.shape[1] != k:
        raise ValueError("rnd, blinded and rinv must have one row per id")
    cdef int rlen = rnd.shape[1]
    cdef BIGNUM *n = _bn(n_be)
    cdef BIGNUM *eb = BN_new()
    BN_set_word(eb, e)
    cdef BN_CTX *ctx = BN_CTX_new()
    cdef BN_MONT_CTX *mont = BN_MONT_CTX_new()
    BN_MONT_CTX_set(mont, n, ctx)
    BN_CTX_free(ctx)
    cdef Py_ssize_t nch = (rows + _CHUNK - 1) // _CHUNK, c, lo, hi
    cdef Py_ssize_t maxlen = _max_len(offsets), plen = prefix.shape[0]
    cdef int64_t[::1] errs = np.zeros(max(nch, 1), dtype=np.int64)
    cdef const uint8_t *idp = &ids[0] if ids.shape[0] else <const uint8_t *>b""
    cdef const uint8_t *pp = &prefix[0] if plen else <const uint8_t *>b""
    cdef const uint8_t *rp = &rnd[0, 0] if rows else NULL
    cdef uint8_t *bp = &blinded[0, 0] if rows else NULL
    cdef uint8_t *ip = &rinv[0, 0] if rows else NULL
    with nogil:
        for c in prange(nch, schedule="dynamic", num_threads=max(nthreads, 1)):
            lo = c * _CHUNK
            hi = min(lo + _CHUNK, rows)
            errs[c] = _blind_chunk(lo, hi, idp, &offsets[0], pp, plen, n, eb, mont, k, rp, rlen,
                                   bp, ip, maxlen)
    BN_MONT_CTX_free(mont); BN_free(eb); BN_free(n)
    return _first_error(errs) if nch else -1


cdef struct _RSAKey:
    BIGNUM *n
    BIGNUM *p
    BIGNUM *q
    BIGNUM *dp
    BIGNUM *dq
    BIGNUM *qinv
    BN_MONT_CTX *mp
    BN_MONT_CTX *mq


cdef int _key_init(_RSAKey *key, bytes n, bytes p, bytes q, bytes dp, bytes dq, bytes qinv) except -1:
    key.n = _bn(n)
    key.p = _bn(p)
    key.q = _bn(q)
    key.dp = _bn(dp)
    key.dq = _bn(dq)
    key.qinv = _bn(qinv)
    BN_set_flags(key.p, BN_FLG_CONSTTIME)
    BN_set_flags(key.q, BN_FLG_CONSTTIME)
    BN_set_flags(key.dp, BN_FLG_CONSTTIME)
    BN_set_flags(key.dq, BN_FLG_CONSTTIME)
    BN_set_flags(key.qinv, BN_FLG_CONSTTIME)
    cdef BN_CTX *ctx = BN_CTX_new()
    key.mp = BN_MONT_CTX_new()
    key.mq = BN_MONT_CTX_new()
    BN_MONT_CTX_set(key.mp, key.p, ctx)
    BN_MONT_CTX_set(key.mq, key.q, ctx)
    BN_CTX_free(ctx)
    return 0


cdef void _key_free(_RSAKey *key) noexcept:
    BN_free(key.n)
    BN_clear_free(key.p); BN_clear_free(key.q); BN_clear_free(key.dp); BN_clear_free(key.dq)
    BN_clear_free(key.qinv)
    BN_MONT_CTX_free(key.mp); BN_MONT_CTX_free(key.mq)


cdef int _crt(const _RSAKey *key, BIGNUM *x, BIGNUM *s, BIGNUM *xp, BIGNUM *xq, BIGNUM *mp_,
              BIGNUM *mq_, BN_CTX *ctx) noexcept nogil:
    """s = x^d mod n by CRT (Garner); x < n."""
    if not BN_nnmod(xp, x, key.p, ctx) or not BN_nnmod(xq, x, key.q, ctx):
        return 1
    if not BN_mod_exp_mont_consttime_x2(mp_, xp, key.dp, key.p, key.mp,
                                        mq_, xq, key.dq, key.q, key.mq, ctx):
        return 1
    # h = (m_p - m_q) * qinv mod p ; s = m_q + h * q
    if not BN_mod_sub(xp, mp_, mq_, key.p, ctx) or not BN_mod_mul(xp, xp, key.qinv, key.p, ctx):
        return 1
    if not BN_mul(xq, xp, key.q, ctx) or not BN_add(s, xq, mq_):
        return 1
    return 0


cdef int64_t _sign_chunk(Py_ssize_t lo, Py_ssize_t hi, const _RSAKey *key, int k,
                         const uint8_t *inp, uint8_t *out) noexcept nogil:
    cdef BN_CTX *ctx = BN_CTX_new()
    cdef BIGNUM *x = BN_new()
    cdef BIGNUM *s = BN_new()
    cdef BIGNUM *xp = BN_new()
    cdef BIGNUM *xq = BN_new()
    cdef BIGNUM *m1 = BN_new()
    cdef BIGNUM *m2 = BN_new()
    cdef Py_ssize_t i
    cdef int64_t err = -1
    if ctx == NULL or x == NULL or s == NULL or xp == NULL or xq == NULL or m1 == NULL or m2 == NULL:
        err = lo
    else:
        for i in range(lo, hi):
            if BN_bin2bn(inp + i * k, k, x) == NULL or BN_is_zero(x) or BN_cmp(x, key.n) >= 0:
                err = i
                break
            if _crt(key, x, s, xp, xq, m1, m2, ctx):
                err = i
                break
            BN_bn2binpad(s, out + i * k, k)
    BN_clear_free(x); BN_clear_free(s); BN_clear_free(xp); BN_clear_free(xq)
    BN_clear_free(m1); BN_clear_free(m2); BN_CTX_free(ctx)
    return err


def sign(const uint8_t[:, ::1] inp, bytes n, bytes p, bytes q, bytes dp, bytes dq, bytes qinv,
         uint8_t[:, ::1] out, int nthreads):
    """out[i] = inp[i]^d mod n (CRT). Returns -1, or the index of the first value not in [1, n)."""
    cdef Py_ssize_t rows = inp.shape[0]
    cdef int k = inp.shape[1]
    if out.shape[0] != rows or out.shape[1] != k:
        raise ValueError("out must have the shape of inp")
    cdef _RSAKey key
    _key_init(&key, n, p, q, dp, dq, qinv)
    cdef Py_ssize_t nch = (rows + _CHUNK - 1) // _CHUNK, c, lo, hi
    cdef int64_t[::1] errs = np.zeros(max(nch, 1), dtype=np.int64)
    cdef const uint8_t *ip = &inp[0, 0] if rows else NULL
    cdef uint8_t *op = &out[0, 0] if rows else NULL
    with nogil:
        for c in prange(nch, schedule="dynamic", num_threads=max(nthreads, 1)):
            lo = c * _CHUNK
            hi = min(lo + _CHUNK, rows)
            errs[c] = _sign_chunk(lo, hi, &key, k, ip, op)
    _key_free(&key)
    return _first_error(errs) if nch else -1


cdef int64_t _sign_tag_chunk(Py_ssize_t lo, Py_ssize_t hi, const uint8_t *ids, const int64_t *offs,
                             const uint8_t *fprefix, Py_ssize_t fplen, const _RSAKey *key, int k,
                             const uint8_t *tprefix, Py_ssize_t tplen, uint8_t *tags,
                             Py_ssize_t maxlen) noexcept nogil:
    cdef BN_CTX *ctx = BN_CTX_new()
    cdef BIGNUM *x = BN_new()
    cdef BIGNUM *s = BN_new()
    cdef BIGNUM *xp = BN_new()
    cdef BIGNUM *xq = BN_new()
    cdef BIGNUM *m1 = BN_new()
    cdef BIGNUM *m2 = BN_new()
    cdef Py_ssize_t big = maxlen if maxlen > k else k
    cdef Py_ssize_t pl = fplen if fplen > tplen else tplen
    cdef uint8_t *scratch = <uint8_t *>malloc(pl + big + 1)
    cdef uint8_t *wide = <uint8_t *>malloc(k + _FDH_EXTRA)
    cdef uint8_t *sig = <uint8_t *>malloc(k)
    cdef Py_ssize_t i
    cdef int64_t err = -1
    if (ctx == NULL or x == NULL or s == NULL or xp == NULL or xq == NULL or m1 == NULL
            or m2 == NULL or scratch == NULL or wide == NULL or sig == NULL):
        err = lo
    else:
        for i in range(lo, hi):
            if _fdh(fprefix, fplen, ids + offs[i], offs[i + 1] - offs[i], key.n, k, scratch, wide,
                    x, ctx):
                err = i
                break
            if _crt(key, x, s, xp, xq, m1, m2, ctx):
                err = i
                break
            BN_bn2binpad(s, sig, k)
            _tag(tprefix, tplen, sig, k, scratch, tags + i * _TAG)
    free(scratch); free(wide); free(sig)
    BN_clear_free(x); BN_clear_free(s); BN_clear_free(xp); BN_clear_free(xq)
    BN_clear_free(m1); BN_clear_free(m2); BN_CTX_free(ctx)
    return err


def sign_tag(const uint8_t[::1] ids, const int64_t[::1] offsets, const uint8_t[::1] fdh_prefix,
             bytes n, bytes p, bytes q, bytes dp, bytes dq, bytes qinv,
             const uint8_t[::1] tag_prefix, uint8_t[:, ::1] tags, int nthreads):
    """tags[i] = SHA-256(tag_prefix || FDH(ids[i])^d mod n)[:16]: the signer's own tags."""
    cdef Py_ssize_t rows = tags.shape[0]
    if tags.shape[1] != _TAG:
        raise ValueError("tags must have 16 columns")
    _check_ids(ids, offsets, rows)
    cdef int k = len(n)
    cdef _RSAKey key
    _key_init(&key, n, p, q, dp, dq, qinv)
    cdef Py_ssize_t nch = (rows + _CHUNK - 1) // _CHUNK, c, lo, hi
    cdef Py_ssize_t maxlen = _max_len(offsets), fplen = fdh_prefix.shape[0], tplen = tag_prefix.shape[0]
    cdef int64_t[::1] errs = np.zeros(max(nch, 1), dtype=np.int64)
    cdef const uint8_t *idp = &ids[0] if ids.shape[0] else <const uint8_t *>b""
    cdef const uint8_t *fp = &fdh_prefix[0] if fplen else <const uint8_t *>b""
    cdef const uint8_t *tp = &tag_prefix[0] if tplen else <const uint8_t *>b""
    cdef uint8_t *op = &tags[0, 0] if rows else NULL
    with nogil:
        for c in prange(nch, schedule="dynamic", num_threads=max(nthreads, 1)):
            lo = c * _CHUNK
            hi = min(lo + _CHUNK, rows)
            errs[c] = _sign_tag_chunk(lo, hi, idp, &offsets[0], fp, fplen, &key, k, tp, tplen, op,
                                      maxlen)
    _key_free(&key)
    return _first_error(errs) if nch else -1


cdef int64_t _unblind_chunk(Py_ssize_t lo, Py_ssize_t hi, const uint8_t *signed_, const uint8_t *rinv,
                            const uint8_t *blinded, const BIGNUM *n, const BIGNUM *e,
                            BN_MONT_CTX *mont, int k, const uint8_t *tprefix, Py_ssize_t tplen,
                            uint8_t *tags, int each) noexcept nogil:
    cdef BN_CTX *ctx = BN_CTX_new()
    cdef BIGNUM *s = BN_new()
    cdef BIGNUM *m = BN_new()
    cdef BIGNUM *v = BN_new()
    cdef BIGNUM *ri = BN_new()
    cdef BIGNUM *sm = BN_new()
    cdef BIGNUM *acc_s = BN_new()
    cdef BIGNUM *acc_m = BN_new()
    cdef uint8_t *scratch = <uint8_t *>malloc(tplen + k + 1)
    cdef uint8_t *sig = <uint8_t *>malloc(k)
    cdef Py_ssize_t i
    cdef int64_t err = -1
    if (ctx == NULL or s == NULL or m == NULL or v == NULL or ri == NULL or sm == NULL
            or acc_s == NULL or acc_m == NULL or scratch == NULL or sig == NULL):
        err = lo
    elif (not BN_set_word(v, 1) or not BN_to_montgomery(acc_s, v, mont, ctx)
            or BN_copy(acc_m, acc_s) == NULL):
        err = lo
    else:
        for i in range(lo, hi):
            if BN_bin2bn(signed_ + i * k, k, s) == NULL or BN_cmp(s, n) >= 0:
                err = i
                break
            BN_bin2bn(blinded + i * k, k, m)
            if not BN_to_montgomery(sm, s, mont, ctx):
                err = i
                break
            if each:
                # the signature must verify: s^e == blinded (mod n)
                if (_mont_pow(v, sm, e, mont, ctx) or not BN_from_montgomery(v, v, mont, ctx)
                        or BN_cmp(v, m) != 0):
                    err = i
                    break
            else:
                # screening: (prod s)^e == prod blinded over the chunk, checked after the loop
                if (not BN_to_montgomery(v, m, mont, ctx)
                        or not BN_mod_mul_montgomery(acc_m, acc_m, v, mont, ctx)
                        or not BN_mod_mul_montgomery(acc_s, acc_s, sm, mont, ctx)):
                    err = i
                    break
            # unblind: s * r^-1 = mont(sM, r^-1)
            BN_bin2bn(rinv + i * k, k, ri)
            if not BN_mod_mul_montgomery(s, sm, ri, mont, ctx):
                err = i
                break
            BN_bn2binpad(s, sig, k)
            _tag(tprefix, tplen, sig, k, scratch, tags + i * _TAG)
        if err < 0 and not each and hi > lo:
            if _mont_pow(v, acc_s, e, mont, ctx) or BN_cmp(v, acc_m) != 0:
                err = lo
    free(scratch); free(sig)
    BN_clear_free(s); BN_clear_free(m); BN_clear_free(v); BN_clear_free(ri); BN_clear_free(sm)
    BN_clear_free(acc_s); BN_clear_free(acc_m)
    BN_CTX_free(ctx)
    return err


def unblind_tag(const uint8_t[:, ::1] signed_, const uint8_t[:, ::1] rinv,
                const uint8_t[:, ::1] blinded, bytes n_be, unsigned long e,
                const uint8_t[::1] tag_prefix, uint8_t[:, ::1] tags, int nthreads, bint each=True):
    """Verify the blind signatures, unblind them and hash each to a 16-byte tag.

    ``each=True`` checks ``s^e == blinded`` for every element; ``each=False`` screens each chunk
    of :data:`CHUNK` elements with one product check ``(prod s)^e == prod blinded``.
    Returns -1, or the index of the first bad response (of its chunk's first element when
    screening).
    """
    cdef Py_ssize_t rows = signed_.shape[0]
    cdef int k = signed_.shape[1]
    if (rinv.shape[0] != rows or blinded.shape[0] != rows or tags.shape[0] != rows
            or rinv.shape[1] != k or blinded.shape[1] != k or tags.shape[1] != _TAG):
        raise ValueError("signed, rinv, blinded and tags must have one row per id")
    cdef BIGNUM *n = _bn(n_be)
    cdef BIGNUM *eb = BN_new()
    BN_set_word(eb, e)
    cdef BN_CTX *ctx = BN_CTX_new()
    cdef BN_MONT_CTX *mont = BN_MONT_CTX_new()
    BN_MONT_CTX_set(mont, n, ctx)
    BN_CTX_free(ctx)
    cdef Py_ssize_t nch = (rows + _CHUNK - 1) // _CHUNK, c, lo, hi
    cdef Py_ssize_t tplen = tag_prefix.shape[0]
    cdef int64_t[::1] errs = np.zeros(max(nch, 1), dtype=np.int64)
    cdef const uint8_t *tp = &tag_prefix[0] if tplen else <const uint8_t *>b""
    cdef const uint8_t *sp = &signed_[0, 0] if rows else NULL
    cdef const uint8_t *ip = &rinv[0, 0] if rows else NULL
    cdef const uint8_t *bp = &blinded[0, 0] if rows else NULL
    cdef uint8_t *op = &tags[0, 0] if rows else NULL
    with nogil:
        for c in prange(nch, schedule="dynamic", num_threads=max(nthreads, 1)):
            lo = c * _CHUNK
            hi = min(lo + _CHUNK, rows)
            errs[c] = _unblind_chunk(lo, hi, sp, ip, bp, n, eb, mont, k, tp, tplen, op, each)
    BN_MONT_CTX_free(mont); BN_free(eb); BN_free(n)
    return _first_error(errs) if nch else -1


# ----------------------------------------------------------------------------------------------
# generic tags and X25519 (ECDH mode)

cdef void _tag_chunk(Py_ssize_t lo, Py_ssize_t hi, const uint8_t *vals, int w,
                     const uint8_t *tprefix, Py_ssize_t tplen, uint8_t *tags) noexcept nogil:
    cdef uint8_t *scratch = <uint8_t *>malloc(tplen + w + 1)
    cdef Py_ssize_t i
    if scratch == NULL:
        return
    for i in range(lo, hi):
        _tag(tprefix, tplen, vals + i * w, w, scratch, tags + i * _TAG)
    free(scratch)


def tag_rows(const uint8_t[:, ::1] values, const uint8_t[::1] tag_prefix, uint8_t[:, ::1] tags,
             int nthreads):
    """tags[i] = SHA-256(tag_prefix || values[i])[:16]."""
    cdef Py_ssize_t rows = values.shape[0]
    cdef int w = values.shape[1]
    if tags.shape[0] != rows or tags.shape[1] != _TAG:
        raise ValueError("tags must have one 16-byte row per value")
    cdef Py_ssize_t nch = (rows + _CHUNK - 1) // _CHUNK, c, lo, hi, tplen = tag_prefix.shape[0]
    cdef const uint8_t *tp = &tag_prefix[0] if tplen else <const uint8_t *>b""
    cdef const uint8_t *vp = &values[0, 0] if rows and w else <const uint8_t *>b""
    cdef uint8_t *op = &tags[0, 0] if rows else NULL
    with nogil:
        for c in prange(nch, schedule="dynamic", num_threads=max(nthreads, 1)):
            lo = c * _CHUNK
            hi = min(lo + _CHUNK, rows)
            _tag_chunk(lo, hi, vp, w, tp, tplen, op)


cdef void _h2p_chunk(Py_ssize_t lo, Py_ssize_t hi, const uint8_t *ids, const int64_t *offs,
                     const uint8_t *prefix, Py_ssize_t plen, uint8_t *out,
                     Py_ssize_t maxlen) noexcept nogil:
    cdef uint8_t *scratch = <uint8_t *>malloc(plen + maxlen + 1)
    cdef Py_ssize_t i
    if scratch == NULL:
        return
    for i in range(lo, hi):
        _hash_prefixed(prefix, plen, ids + offs[i], offs[i + 1] - offs[i], scratch, out + i * 32)
        out[i * 32 + 31] &= 0x7f  # RFC 7748: the top bit of a u-coordinate is ignored
    free(scratch)


def hash_to_u(const uint8_t[::1] ids, const int64_t[::1] offsets, const uint8_t[::1] prefix,
              uint8_t[:, ::1] out, int nthreads):
    """out[i] = SHA-256(prefix || ids[i]) with the top bit cleared: an X25519 u-coordinate."""
    cdef Py_ssize_t rows = out.shape[0]
    if out.shape[1] != 32:
        raise ValueError("out must have 32 columns")
    _check_ids(ids, offsets, rows)
    cdef Py_ssize_t nch = (rows + _CHUNK - 1) // _CHUNK, c, lo, hi
    cdef Py_ssize_t maxlen = _max_len(offsets), plen = prefix.shape[0]
    cdef const uint8_t *idp = &ids[0] if ids.shape[0] else <const uint8_t *>b""
    cdef const uint8_t *pp = &prefix[0] if plen else <const uint8_t *>b""
    cdef uint8_t *op = &out[0, 0] if rows else NULL
    with nogil:
        for c in prange(nch, schedule="dynamic", num_threads=max(nthreads, 1)):
            lo = c * _CHUNK
            hi = min(lo + _CHUNK, rows)
            _h2p_chunk(lo, hi, idp, &offsets[0], pp, plen, op, maxlen)


cdef int64_t _x25519_chunk(Py_ssize_t lo, Py_ssize_t hi, const uint8_t *scalar, const uint8_t *pts,
                           uint8_t *out) noexcept nogil:
    cdef EVP_PKEY *priv = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, scalar, 32)
    cdef EVP_PKEY *peer
    cdef EVP_PKEY_CTX *ctx
    cdef size_t outlen
    cdef Py_ssize_t i
    cdef int ok
    cdef int64_t err = -1
    if priv == NULL:
        ERR_clear_error()
        return lo
    for i in range(lo, hi):
        peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, pts + i * 32, 32)
        if peer == NULL:
            ERR_clear_error()
            err = i
            break
        ctx = EVP_PKEY_CTX_new(priv, NULL)
        ok = ctx != NULL and EVP_PKEY_derive_init(ctx) > 0 and EVP_PKEY_derive_set_peer(ctx, peer) > 0
        outlen = 32
        if ok:
            ok = EVP_PKEY_derive(ctx, out + i * 32, &outlen) > 0 and outlen == 32
        EVP_PKEY_CTX_free(ctx)
        EVP_PKEY_free(peer)
        if not ok:  # OpenSSL refuses an all-zero result (a small-order input point)
            # ... and leaves its reason on this thread's error queue, where a later, unrelated
            # OpenSSL call on the same thread (ssl, hashlib) would find and report it: drop it.
            ERR_clear_error()
            err = i
            break
    EVP_PKEY_free(priv)
    return err


cdef int64_t _x25519_x8_chunk(Py_ssize_t lo, Py_ssize_t hi, const uint8_t *scalar, const uint8_t *pts,
                              uint8_t *out) noexcept nogil:
    """The same as _x25519_chunk, 8 points per ladder (AVX-512 IFMA); then the zero check."""
    cdef const uint8_t *ip[8]
    cdef uint8_t *op[8]
    cdef uint8_t spare[8 * 32]
    cdef Py_ssize_t base, i, e, b
    cdef uint8_t acc
    base = lo
    while base < hi:
        for e in range(8):
            i = base + e
            if i < hi:
                ip[e] = pts + i * 32
                op[e] = out + i * 32
            else:
                ip[e] = X8_BASE_U  # u = 9 fills the unused lanes of a last group
                op[e] = spare + e * 32
        x25519_x8(scalar, ip, op)
        base += 8
    for i in range(lo, hi):
        acc = 0
        for b in range(32):
            acc |= out[i * 32 + b]
        if acc == 0:  # a small-order point (RFC 7748 section 6.1: refuse the all-zero value)
            return i
    return -1


def x25519(const uint8_t[::1] scalar, const uint8_t[:, ::1] points, uint8_t[:, ::1] out,
           int nthreads, str path="auto"):
    """out[i] = X25519(scalar, points[i]) (RFC 7748). Returns -1, or the first failing index.

    ``path``: ``"auto"`` (8 points per ladder on AVX-512 IFMA where :func:`simd_available`, else
    OpenSSL), ``"openssl"`` (one point at a time through libcrypto) or ``"ifma"`` (ValueError
    where the CPU lacks it). Both give byte-identical results.
    """
    cdef Py_ssize_t rows = points.shape[0]
    if scalar.shape[0] != 32 or points.shape[1] != 32 or out.shape[0] != rows or out.shape[1] != 32:
        raise ValueError("X25519 scalars and points are 32 bytes")
    if path not in ("auto", "openssl", "ifma"):
        raise ValueError("path must be 'auto', 'openssl' or 'ifma'")
    cdef bint simd = dtx_ifma_cpu_ok() != 0
    if path == "ifma" and not simd:
        raise ValueError("the AVX-512 IFMA path is not available on this CPU (or DTXFAST_SIMD=0)")
    if path == "openssl":
        simd = False
    cdef Py_ssize_t nch = (rows + _CHUNK - 1) // _CHUNK, c, lo, hi
    cdef int64_t[::1] errs = np.zeros(max(nch, 1), dtype=np.int64)
    cdef const uint8_t *pp = &points[0, 0] if rows else NULL
    cdef uint8_t *op = &out[0, 0] if rows else NULL
    with nogil:
        for c in prange(nch, schedule="dynamic", num_threads=max(nthreads, 1)):
            lo = c * _CHUNK
            hi = min(lo + _CHUNK, rows)
            if simd:
                errs[c] = _x25519_x8_chunk(lo, hi, &scalar[0], pp, op)
            else:
                errs[c] = _x25519_chunk(lo, hi, &scalar[0], pp, op)
    return _first_error(errs) if nch else -1
