# distutils: libraries = crypto
# cython: language_level=3
"""Merkle-tree kernels (L0): SHA-256 from OpenSSL's libcrypto, GIL released, OpenMP over batches.

Buffers and integers in, buffers out; no validation (``dtxfast.crypto.merkle`` validates).
The hashing rules are the ones documented in :mod:`dtxfast.crypto.merkle`:

* leaf  = SHA-256(0x00 || chunk)
* node  = SHA-256(0x01 || left || right)
* an unpaired last node of a level is promoted unchanged to the next level.

The pure-Python twin is ``dtxfast.crypto._merkle_py``; both expose the same functions.
"""

from cython.parallel cimport prange
from libc.stdint cimport int64_t, uint8_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp, memcpy, memset
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_Check, PyBytes_GET_SIZE

cdef extern from *:
    """
    #define OPENSSL_SUPPRESS_DEPRECATED 1
    #include <openssl/sha.h>
    """
    ctypedef struct SHA256_CTX:
        pass
    int SHA256_Init(SHA256_CTX *c) nogil
    int SHA256_Update(SHA256_CTX *c, const void *data, size_t n) nogil
    int SHA256_Final(unsigned char *md, SHA256_CTX *c) nogil

cdef enum:
    HASH = 32


cdef inline void _leaf(const uint8_t *data, size_t n, uint8_t *out) noexcept nogil:
    cdef SHA256_CTX ctx
    cdef uint8_t prefix = 0
    SHA256_Init(&ctx)
    SHA256_Update(&ctx, &prefix, 1)
    SHA256_Update(&ctx, data, n)
    SHA256_Final(out, &ctx)


cdef inline void _node(const uint8_t *left, const uint8_t *right, uint8_t *out) noexcept nogil:
    cdef SHA256_CTX ctx
    cdef uint8_t buf[1 + 2 * HASH]
    buf[0] = 1
    memcpy(&buf[1], left, HASH)
    memcpy(&buf[1 + HASH], right, HASH)
    SHA256_Init(&ctx)
    SHA256_Update(&ctx, buf, 1 + 2 * HASH)
    SHA256_Final(out, &ctx)


def hash_leaves(const uint8_t[::1] data, Py_ssize_t chunk_size, uint8_t[::1] out, int nthreads=1):
    """Write the leaf hash of every ``chunk_size`` chunk of ``data`` (the last may be short) to ``out``.

    ``out`` must hold ``ceil(len(data) / chunk_size) * 32`` bytes.
    """
    cdef Py_ssize_t total = data.shape[0]
    cdef Py_ssize_t n = (total + chunk_size - 1) // chunk_size
    cdef Py_ssize_t i, start, length
    if n == 0:
        return
    cdef const uint8_t *src = &data[0]
    cdef uint8_t *dst = &out[0]
    if nthreads < 1:
        nthreads = 1
    if nthreads == 1 or n < 2:
        with nogil:
            for i in range(n):
                start = i * chunk_size
                length = total - start if total - start < chunk_size else chunk_size
                _leaf(src + start, length, dst + i * HASH)
        return
    with nogil:
        # dynamic: on a shared machine a descheduled thread must not hold half of the work
        for i in prange(n, num_threads=nthreads, schedule="dynamic", chunksize=8):
            start = i * chunk_size
            length = total - start if total - start < chunk_size else chunk_size
            _leaf(src + start, length, dst + i * HASH)


def hash_level(const uint8_t[::1] prev, uint8_t[::1] out, int nthreads=1):
    """Hash one tree level (``m`` hashes in ``prev``) into the next (``ceil(m / 2)`` hashes in ``out``)."""
    cdef Py_ssize_t m = prev.shape[0] // HASH
    cdef Py_ssize_t pairs = m // 2
    cdef Py_ssize_t i
    if m == 0:
        return
    cdef const uint8_t *src = &prev[0]
    cdef uint8_t *dst = &out[0]
    if nthreads < 1:
        nthreads = 1
    with nogil:
        if nthreads == 1 or pairs < 64:
            for i in range(pairs):
                _node(src + 2 * i * HASH, src + (2 * i + 1) * HASH, dst + i * HASH)
        else:
            for i in prange(pairs, num_threads=nthreads, schedule="dynamic", chunksize=64):
                _node(src + 2 * i * HASH, src + (2 * i + 1) * HASH, dst + i * HASH)
        if m % 2 == 1:
            memcpy(dst + pairs * HASH, src + (m - 1) * HASH, HASH)


cdef int _verify_one(
    const uint8_t **chunks,
    const int64_t *chunk_len,
    const int64_t *leaf_idx,
    int64_t lo,
    int64_t hi,
    int64_t n,
    const uint8_t *hashes,
    int64_t hlo,
    int64_t hhi,
    const uint8_t *root,
    int64_t *pos,
    uint8_t *hs,
) noexcept nogil:
    """Rebuild the root from leaves [lo, hi) and proof hashes [hlo, hhi); 1 if it matches ``root``."""
    cdef int64_t c = hi - lo
    cdef int64_t j, nc, p, m, h = hlo
    cdef uint8_t tmp[HASH]
    if c <= 0 or n <= 0:
        return 0
    for j in range(c):
        pos[j] = leaf_idx[lo + j]
        _leaf(chunks[lo + j], <size_t>chunk_len[lo + j], hs + j * HASH)
    m = n
    while m > 1:
        nc = 0
        j = 0
        while j < c:
            p = pos[j]
            if p & 1 == 0:
                if p + 1 < m:
                    if j + 1 < c and pos[j + 1] == p + 1:
                        _node(hs + j * HASH, hs + (j + 1) * HASH, tmp)
                        j += 2
                    else:
                        if h >= hhi:
                            return 0
                        _node(hs + j * HASH, hashes + h * HASH, tmp)
                        h += 1
                        j += 1
                else:
                    memcpy(tmp, hs + j * HASH, HASH)
                    j += 1
            else:
                if h >= hhi:
                    return 0
                _node(hashes + h * HASH, hs + j * HASH, tmp)
                h += 1
                j += 1
            pos[nc] = p >> 1
            memcpy(hs + nc * HASH, tmp, HASH)
            nc += 1
        c = nc
        m = (m + 1) >> 1
    if c != 1 or h != hhi:
        return 0
    return 1 if memcmp(hs, root, HASH) == 0 else 0


def pack_digests(list items, uint8_t[::1] out, uint8_t[::1] bad):
    """Copy 32-byte items into ``out`` (32 bytes each); ``bad[i] = 1`` (and zeros in ``out``)
    where item ``i`` is not 32 bytes. ``bytes`` (and subclasses) are read directly, any other
    object through the buffer protocol. Never raises for a bad item. Returns the number of bad
    items."""
    cdef Py_ssize_t n = len(items), i
    cdef Py_ssize_t nbad = 0
    if out.shape[0] != n * HASH or bad.shape[0] != n:
        raise ValueError("out holds 32 bytes and bad one byte per item")
    for i in range(n):
        obj = items[i]
        if PyBytes_Check(obj) and PyBytes_GET_SIZE(obj) == HASH:
            memcpy(&out[i * HASH], PyBytes_AS_STRING(obj), HASH)
            bad[i] = 0
        elif _buffer_digest(obj, &out[i * HASH]):
            bad[i] = 0
        else:
            memset(&out[i * HASH], 0, HASH)
            bad[i] = 1
            nbad += 1
    return nbad


cdef bint _buffer_digest(object obj, uint8_t *dst):
    """Copy a 32-byte buffer-protocol object (bytearray, memoryview, array...) into ``dst``."""
    try:
        mv = memoryview(obj)
    except TypeError:
        return False
    if mv.nbytes != HASH:
        return False
    cdef bytes data = mv.tobytes()  # held in a variable while its buffer is copied
    memcpy(dst, PyBytes_AS_STRING(data), HASH)
    return True


def verify_multiproofs(
    list chunks,
    const int64_t[::1] leaf_idx,
    const int64_t[::1] leaf_start,
    const int64_t[::1] leaf_count,
    const uint8_t[::1] hashes,
    const int64_t[::1] hash_start,
    const uint8_t[::1] roots,
    uint8_t[::1] out,
    int64_t[::1] scratch_pos,
    uint8_t[::1] scratch_hash,
    int nthreads=1,
):
    """Verify ``P`` Merkle multi-proofs at once; ``out[p]`` is 1 if proof ``p`` matches ``roots[p]``.

    Proof ``p`` covers leaves ``leaf_start[p]:leaf_start[p+1]`` (sorted, distinct indices in
    ``leaf_idx``; ``chunks`` is a list of ``bytes``, one per leaf) of a tree with
    ``leaf_count[p]`` leaves, and uses proof hashes ``hash_start[p]:hash_start[p+1]`` of
    ``hashes``. ``scratch_pos`` / ``scratch_hash`` hold one slot / 32 bytes per leaf.
    """
    cdef Py_ssize_t P = leaf_count.shape[0]
    cdef Py_ssize_t p, i
    cdef Py_ssize_t L = len(chunks)
    if P == 0:
        return
    if L != leaf_idx.shape[0]:
        raise ValueError("one chunk per leaf index")
    cdef uint8_t empty = 0
    cdef const uint8_t *hbuf = &hashes[0] if hashes.shape[0] > 0 else &empty
    cdef const uint8_t **cptr = <const uint8_t **>malloc((L + 1) * sizeof(uint8_t *))
    cdef int64_t *clen = <int64_t *>malloc((L + 1) * sizeof(int64_t))
    cdef const int64_t *lidx = &leaf_idx[0] if leaf_idx.shape[0] > 0 else NULL
    cdef const int64_t *lst = &leaf_start[0]
    cdef const int64_t *lcnt = &leaf_count[0]
    cdef const int64_t *hst = &hash_start[0]
    cdef const uint8_t *rts = &roots[0]
    cdef uint8_t *res = &out[0]
    cdef int64_t *spos = &scratch_pos[0] if scratch_pos.shape[0] > 0 else NULL
    cdef uint8_t *shash = &scratch_hash[0] if scratch_hash.shape[0] > 0 else NULL
    try:
        if cptr == NULL or clen == NULL:
            raise MemoryError()
        for i in range(L):  # the list holds the references while the GIL is released
            obj = chunks[i]
            if type(obj) is not bytes:
                raise TypeError("chunks must be bytes")
            cptr[i] = <const uint8_t *>PyBytes_AS_STRING(obj)
            clen[i] = PyBytes_GET_SIZE(obj)
        if nthreads < 1:
            nthreads = 1
        with nogil:
            if nthreads == 1 or P < 2:
                for p in range(P):
                    res[p] = _verify_one(cptr, clen, lidx, lst[p], lst[p + 1], lcnt[p], hbuf, hst[p], hst[p + 1],
                                         rts + p * HASH, spos + lst[p], shash + lst[p] * HASH)
            else:
                for p in prange(P, num_threads=nthreads, schedule="dynamic", chunksize=4):
                    res[p] = _verify_one(cptr, clen, lidx, lst[p], lst[p + 1], lcnt[p], hbuf, hst[p],
                                         hst[p + 1], rts + p * HASH, spos + lst[p], shash + lst[p] * HASH)
    finally:
        free(cptr)
        free(clen)
