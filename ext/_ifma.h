/*
 * 8-lane multi-buffer Montgomery arithmetic with AVX-512 IFMA (radix 2^52).
 *
 * A "vector number" holds 8 independent residues modulo the same odd modulus N as L digits of
 * 52 bits, transposed: digit j of lane e is v[j * 8 + e]. ifma_mul computes, for all 8 lanes at
 * once, the almost-Montgomery product a * b * R^-1 mod N with R = 2^(52 L) and 4 N < R, so
 * inputs and outputs stay below 2 N without a final subtraction (it happens once, on the way out).
 *
 * Each digit product goes through vpmadd52luq / vpmadd52huq; partial sums accumulate unnormalized
 * in 64-bit lanes (at most 4 L products of < 2^52 land on one position: < 2^61 for L <= 80... and
 * the bound is checked in ifma_init) and carries are propagated once per multiplication.
 *
 * Used only when the CPU reports avx512f + avx512ifma and DTXFAST_SIMD is not "0"; the GMP code
 * path is the fallback and the reference, and both give identical (fully reduced) results.
 */
#ifndef DTX_IFMA_H
#define DTX_IFMA_H

#include <gmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_cpu_ifma.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define DTX_HAVE_IFMA_BUILD 1
#include <immintrin.h>
#define IFMA_TARGET __attribute__((target("avx512f,avx512ifma,avx512dq")))
#else
#define DTX_HAVE_IFMA_BUILD 0
#endif

#define IFMA_MASK52 ((uint64_t)0xFFFFFFFFFFFFFULL)

typedef struct {
    int L;         /* 52-bit digits per number */
    uint64_t k0;   /* -N^-1 mod 2^52 */
    uint64_t *N;   /* L digits, broadcast: N[j*8+e] = digit j */
    uint64_t *R1;  /* R mod N (Montgomery one), broadcast */
    uint64_t *R2;  /* R^2 mod N, broadcast */
    uint64_t *ONE; /* plain 1, broadcast */
    mpz_t Nz;
} ifma_ctx;

static void *ifma_alloc(size_t bytes) {
    size_t sz = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, sz ? sz : 64);
    if (p) memset(p, 0, sz ? sz : 64);
    return p;
}

/* digits of x (< 2^(52 L)) into lane `lane` of a transposed vector number */
static void ifma_put(uint64_t *v, int lane, const mpz_t x, int L) {
    size_t n = mpz_size(x);
    const mp_limb_t *d = mpz_limbs_read(x);
    for (int j = 0; j < L; j++) {
        size_t bit = (size_t)j * 52, limb = bit >> 6, off = bit & 63;
        uint64_t val = 0;
        if (limb < n) {
            val = d[limb] >> off;
            if (off > 12 && limb + 1 < n) val |= d[limb + 1] << (64 - off);
        }
        v[(size_t)j * 8 + lane] = val & IFMA_MASK52;
    }
}

/* lane `lane` of a vector number as an integer (not reduced) */
static void ifma_get(mpz_t x, const uint64_t *v, int lane, int L) {
    int nl = (L * 52 + 63) / 64 + 1;
    mp_limb_t *d = mpz_limbs_write(x, nl);
    memset(d, 0, (size_t)nl * sizeof(mp_limb_t));
    for (int j = 0; j < L; j++) {
        uint64_t val = v[(size_t)j * 8 + lane];
        size_t bit = (size_t)j * 52, limb = bit >> 6, off = bit & 63;
        d[limb] |= val << off;
        if (off > 12) d[limb + 1] |= val >> (64 - off);
    }
    mp_size_t sz = nl;
    while (sz > 0 && d[sz - 1] == 0) sz--;
    mpz_limbs_finish(x, sz);
}

static void ifma_broadcast(uint64_t *v, const mpz_t x, int L) {
    for (int e = 0; e < 8; e++) ifma_put(v, e, x, L);
}

static int ifma_init(ifma_ctx *c, const mpz_t N) {
    int nbits = (int)mpz_sizeinbase(N, 2);
    c->L = (nbits + 2 + 51) / 52;
    int L = c->L;
    if (L > 120) return -1; /* accumulation bound: 4 * (L + 1) * 2^52 < 2^64 needs L < ~1000; keep sane */
    mpz_init_set(c->Nz, N);
    c->N = (uint64_t *)ifma_alloc((size_t)L * 64);
    c->R1 = (uint64_t *)ifma_alloc((size_t)L * 64);
    c->R2 = (uint64_t *)ifma_alloc((size_t)L * 64);
    c->ONE = (uint64_t *)ifma_alloc((size_t)L * 64);
    if (!c->N || !c->R1 || !c->R2 || !c->ONE) return -1;
    ifma_broadcast(c->N, N, L);
    mpz_t t, b;
    mpz_inits(t, b, NULL);
    mpz_set_ui(t, 1);
    mpz_mul_2exp(t, t, (mp_bitcnt_t)(52 * L));
    mpz_mod(t, t, N);
    ifma_broadcast(c->R1, t, L);
    mpz_mul(t, t, t);
    mpz_mod(t, t, N);
    ifma_broadcast(c->R2, t, L);
    mpz_set_ui(t, 1);
    ifma_broadcast(c->ONE, t, L);
    /* k0 = -N^-1 mod 2^52 */
    mpz_set_ui(b, 1);
    mpz_mul_2exp(b, b, 52);
    mpz_invert(t, N, b);
    mpz_sub(t, b, t);
    c->k0 = (uint64_t)mpz_get_ui(t) & IFMA_MASK52;
    mpz_clears(t, b, NULL);
    return 0;
}

static void ifma_clear(ifma_ctx *c) {
    free(c->N);
    free(c->R1);
    free(c->R2);
    free(c->ONE);
    c->N = c->R1 = c->R2 = c->ONE = NULL;
    mpz_clear(c->Nz);
}

/* lane value (in [0, 2N)) reduced into [0, N) as mpz */
static void ifma_get_reduced(mpz_t x, const uint64_t *v, int lane, const ifma_ctx *c) {
    ifma_get(x, v, lane, c->L);
    if (mpz_cmp(x, c->Nz) >= 0) mpz_sub(x, x, c->Nz);
}

#if DTX_HAVE_IFMA_BUILD

/* scratch for ifma_mul: 2L + 2 vectors */
static size_t ifma_scratch_bytes(const ifma_ctx *c) { return (size_t)(2 * c->L + 2) * 64; }

/* out = a * b * R^-1 mod N (almost reduced, < 2N), 8 lanes. out may alias a or b. */
IFMA_TARGET static void ifma_mul(uint64_t *out, const uint64_t *a, const uint64_t *b, const ifma_ctx *c,
                                 uint64_t *scratch) {
    const int L = c->L;
    __m512i *T = (__m512i *)scratch;
    const __m512i *A = (const __m512i *)a;
    const __m512i *B = (const __m512i *)b;
    const __m512i *Nv = (const __m512i *)c->N;
    const __m512i zero = _mm512_setzero_si512();
    const __m512i k0 = _mm512_set1_epi64((long long)c->k0);
    const __m512i mask = _mm512_set1_epi64((long long)IFMA_MASK52);
    for (int k = 0; k < 2 * L + 2; k++) T[k] = zero;
    for (int i = 0; i < L; i++) {
        const __m512i bi = B[i];
        __m512i t0 = _mm512_madd52lo_epu64(T[i], A[0], bi);
        const __m512i m = _mm512_madd52lo_epu64(zero, t0, k0);
        t0 = _mm512_madd52lo_epu64(t0, Nv[0], m);
        __m512i hi = _mm512_madd52hi_epu64(T[i + 1], A[0], bi);
        hi = _mm512_madd52hi_epu64(hi, Nv[0], m);
        hi = _mm512_add_epi64(hi, _mm512_srli_epi64(t0, 52));
        for (int j = 1; j < L; j++) {
            __m512i cur = _mm512_madd52lo_epu64(hi, A[j], bi);
            cur = _mm512_madd52lo_epu64(cur, Nv[j], m);
            __m512i nxt = _mm512_madd52hi_epu64(T[i + j + 1], A[j], bi);
            nxt = _mm512_madd52hi_epu64(nxt, Nv[j], m);
            T[i + j] = cur;
            hi = nxt;
        }
        T[i + L] = hi;
    }
    __m512i carry = zero;
    __m512i *O = (__m512i *)out;
    for (int j = 0; j < L; j++) {
        __m512i v = _mm512_add_epi64(T[L + j], carry);
        O[j] = _mm512_and_si512(v, mask);
        carry = _mm512_srli_epi64(v, 52);
    }
}

/* out = a * a * R^-1 mod N (almost reduced, < 2N), 8 lanes; out may alias a. The same result as
 * ifma_mul(out, a, a, ...) with about 3 L^2 instead of 4 L^2 IFMA operations: each cross product
 * a_i a_j (i < j) is formed once and the sum doubled, then the diagonal a_i^2 is added, then the
 * 2L-digit square is Montgomery-reduced. Both passes take two rows per sweep over T, so each load
 * and store of T carries four IFMA operations, as in ifma_mul (one row per sweep leaves the loop
 * bound by T's loads and stores, and slower than ifma_mul).
 * Accumulation bound per 64-bit position: cross terms < L 2^52, doubled < 2L 2^52, + 2 2^52
 * diagonal, + 2L 2^52 reduction terms + carries: < (4L + 4) 2^52 < 2^64 for L < 1000 (ifma_init
 * keeps L <= 120). */
IFMA_TARGET static void ifma_sqr(uint64_t *out, const uint64_t *a, const ifma_ctx *c, uint64_t *scratch) {
    const int L = c->L;
    __m512i *T = (__m512i *)scratch;
    const __m512i *A = (const __m512i *)a;
    const __m512i *Nv = (const __m512i *)c->N;
    const __m512i zero = _mm512_setzero_si512();
    const __m512i k0 = _mm512_set1_epi64((long long)c->k0);
    const __m512i mask = _mm512_set1_epi64((long long)IFMA_MASK52);
    for (int k = 0; k < 2 * L + 2; k++) T[k] = zero;
    /* cross products a_i a_j, i < j (lo at i + j, hi at i + j + 1), rows i and i + 1 together */
    for (int i = 0; i + 1 < L; i += 2) {
        const __m512i ai = A[i], ai1 = A[i + 1];
        __m512i hi = T[2 * i + 1];
        int d = i + 1;
        for (; d < L && d < i + 3; d++) { /* row i alone (row i + 1 starts at j = i + 2) */
            __m512i cur = _mm512_madd52lo_epu64(hi, ai, A[d]);
            hi = _mm512_madd52hi_epu64(T[i + d + 1], ai, A[d]);
            T[i + d] = cur;
        }
        if (i + 2 >= L) { /* row i + 1 has no cross products */
            T[i + L] = hi;
            continue;
        }
        for (; d < L; d++) { /* row i: a_i a_d; row i + 1: a_(i+1) a_(d-1); both lo at i + d */
            __m512i cur = _mm512_madd52lo_epu64(hi, ai, A[d]);
            cur = _mm512_madd52lo_epu64(cur, ai1, A[d - 1]);
            __m512i nxt = _mm512_madd52hi_epu64(T[i + d + 1], ai, A[d]);
            hi = _mm512_madd52hi_epu64(nxt, ai1, A[d - 1]);
            T[i + d] = cur;
        }
        T[i + L] = _mm512_madd52lo_epu64(hi, ai1, A[L - 1]);
        T[i + L + 1] = _mm512_madd52hi_epu64(T[i + L + 1], ai1, A[L - 1]);
    }
    /* doubled, plus the diagonal a_i^2 */
    for (int i = 0; i < L; i++) {
        const __m512i ai = A[i];
        T[2 * i] = _mm512_madd52lo_epu64(_mm512_slli_epi64(T[2 * i], 1), ai, ai);
        T[2 * i + 1] = _mm512_madd52hi_epu64(_mm512_slli_epi64(T[2 * i + 1], 1), ai, ai);
    }
    /* Montgomery reduction, two 52-bit digits (rows i, i + 1) per sweep */
    int i = 0;
    for (; i + 1 < L; i += 2) {
        __m512i t0 = T[i];
        const __m512i m0 = _mm512_madd52lo_epu64(zero, t0, k0);
        t0 = _mm512_madd52lo_epu64(t0, Nv[0], m0);
        __m512i t1 = _mm512_madd52hi_epu64(T[i + 1], Nv[0], m0);
        t1 = _mm512_add_epi64(t1, _mm512_srli_epi64(t0, 52));
        t1 = _mm512_madd52lo_epu64(t1, Nv[1], m0); /* position i + 1 complete */
        const __m512i m1 = _mm512_madd52lo_epu64(zero, t1, k0);
        t1 = _mm512_madd52lo_epu64(t1, Nv[0], m1);
        __m512i hi = _mm512_madd52hi_epu64(T[i + 2], Nv[1], m0);
        hi = _mm512_madd52hi_epu64(hi, Nv[0], m1);
        hi = _mm512_add_epi64(hi, _mm512_srli_epi64(t1, 52));
        for (int j = 2; j < L; j++) { /* row i: N_j m0; row i + 1: N_(j-1) m1; lo at i + j */
            __m512i cur = _mm512_madd52lo_epu64(hi, Nv[j], m0);
            cur = _mm512_madd52lo_epu64(cur, Nv[j - 1], m1);
            __m512i nxt = _mm512_madd52hi_epu64(T[i + j + 1], Nv[j], m0);
            hi = _mm512_madd52hi_epu64(nxt, Nv[j - 1], m1);
            T[i + j] = cur;
        }
        T[i + L] = _mm512_madd52lo_epu64(hi, Nv[L - 1], m1);
        T[i + L + 1] = _mm512_madd52hi_epu64(T[i + L + 1], Nv[L - 1], m1);
    }
    if (i < L) { /* odd L: the last row alone */
        __m512i t0 = T[i];
        const __m512i m = _mm512_madd52lo_epu64(zero, t0, k0);
        t0 = _mm512_madd52lo_epu64(t0, Nv[0], m);
        __m512i hi = _mm512_madd52hi_epu64(T[i + 1], Nv[0], m);
        hi = _mm512_add_epi64(hi, _mm512_srli_epi64(t0, 52));
        for (int j = 1; j < L; j++) {
            __m512i cur = _mm512_madd52lo_epu64(hi, Nv[j], m);
            hi = _mm512_madd52hi_epu64(T[i + j + 1], Nv[j], m);
            T[i + j] = cur;
        }
        T[i + L] = hi;
    }
    __m512i carry = zero;
    __m512i *O = (__m512i *)out;
    for (int j = 0; j < L; j++) {
        __m512i v = _mm512_add_epi64(T[L + j], carry);
        O[j] = _mm512_and_si512(v, mask);
        carry = _mm512_srli_epi64(v, 52);
    }
}

/* dst = digits gathered per lane: lane e takes entry idx[e] of `table` (entries of L*8? no: of L
 * digits each, scalar layout entry*L + j) */
IFMA_TARGET static void ifma_gather_entries(uint64_t *dst, const uint64_t *table, const int64_t *idx, int L) {
    __m512i vidx = _mm512_mullo_epi64(_mm512_loadu_si512((const void *)idx), _mm512_set1_epi64(L));
    for (int j = 0; j < L; j++) {
        __m512i g = _mm512_i64gather_epi64(vidx, (const void *)(table + j), 8);
        _mm512_store_si512((void *)(dst + (size_t)j * 8), g);
    }
}

/* dst lane e = entry idx[e] of a transposed table (entries of L vectors, layout [k][j][8]) */
IFMA_TARGET static void ifma_gather_lanes(uint64_t *dst, const uint64_t *tab, const int64_t *idx, int L) {
    const __m512i lanes = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
    __m512i vidx = _mm512_add_epi64(_mm512_mullo_epi64(_mm512_loadu_si512((const void *)idx),
                                                        _mm512_set1_epi64((long long)L * 8)), lanes);
    for (int j = 0; j < L; j++) {
        __m512i g = _mm512_i64gather_epi64(vidx, (const void *)(tab + (size_t)j * 8), 8);
        _mm512_store_si512((void *)(dst + (size_t)j * 8), g);
    }
}

/* scatter: lane e of src into entry idx[e] of a transposed table */
IFMA_TARGET static void ifma_scatter_lanes(uint64_t *tab, const uint64_t *src, const int64_t *idx, int L) {
    const __m512i lanes = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
    __m512i vidx = _mm512_add_epi64(_mm512_mullo_epi64(_mm512_loadu_si512((const void *)idx),
                                                        _mm512_set1_epi64((long long)L * 8)), lanes);
    for (int j = 0; j < L; j++) {
        __m512i v = _mm512_load_si512((const void *)(src + (size_t)j * 8));
        _mm512_i64scatter_epi64((void *)(tab + (size_t)j * 8), vidx, v, 8);
    }
}

#endif /* DTX_HAVE_IFMA_BUILD */
#endif /* DTX_IFMA_H */
