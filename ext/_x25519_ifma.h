/*
 * X25519 (RFC 7748) on 8 points at once with AVX-512 IFMA: a multi-buffer Montgomery ladder.
 *
 * A field element of GF(2^255 - 19) is 5 digits of 52 bits (radix 2^52, 260 bits), one 512-bit
 * vector per digit holding that digit of 8 independent elements (lane e = element e). Products
 * go through vpmadd52luq / vpmadd52huq, which multiply the low 52 bits of two lanes and add the
 * low or high 52 bits of the 104-bit product to an accumulator; partial sums accumulate
 * unnormalized in 64-bit lanes and the carries are propagated once per operation.
 *
 * Invariant between operations ("loose" form, what products leave): digits 0..3 < 2^52, digit 4
 * < 2^47 + 2^11, so the value is below 2^255 + 2^219 < 2p and every digit is a valid vpmadd52 input.
 * Sums and differences of loose operands get one carry pass only ("product operand" form: digit 4
 * below 2^50, still a valid vpmadd52 input); the ladder feeds them only to products, whose result
 * is loose again. Reduction uses
 * 2^260 = 32 * 2^255 = 32 * 19 = 608 (mod p) for the high half of a product and 2^255 = 19 for
 * the top bits of digit 4; the result is fully reduced (frozen) once, when it is written out.
 *
 * Constant time in the scalar: 255 ladder steps whatever the scalar, the swap is a masked blend
 * (vpblendmq) driven by the scalar bit, no branch and no memory access depends on it. The inputs
 * (the points) are public in the PSI protocols and the caller's error check on an all-zero
 * output (a small-order point) branches on the output only.
 *
 * The scalar and the one-at-a-time OpenSSL path of _psi.pyx are the reference: both must give
 * byte-identical results (tests: RFC 7748 vectors, pyca/cryptography on random points and
 * scalars, the small-order points).
 */
#ifndef DTX_X25519_IFMA_H
#define DTX_X25519_IFMA_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_cpu_ifma.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define X8_HAVE_BUILD 1
#include <immintrin.h>
#define X8_TARGET __attribute__((target("avx512f,avx512ifma,avx512dq")))
#define X8_INLINE static inline __attribute__((always_inline)) X8_TARGET
#else
#define X8_HAVE_BUILD 0
#endif

/* the base point's u-coordinate, 9 */
static const uint8_t X8_BASE_U[32] = {9};

#if X8_HAVE_BUILD

#define X8_M52 0xFFFFFFFFFFFFFULL
#define X8_M47 0x7FFFFFFFFFFFULL

typedef struct {
    __m512i d[5];
} fe8;

/* loose form from digits that are each below 2^63: the bits of digit 4 above 2^47 sit at 2^255
 * and above, so they go times 19 into digit 0 first; then one carry pass leaves digits 0..3 below
 * 2^52 and digit 4 below 2^47 + 2^11 */
X8_INLINE void fe8_carry(fe8 *r) {
    const __m512i m52 = _mm512_set1_epi64(X8_M52), m47 = _mm512_set1_epi64(X8_M47);
    __m512i c0 = r->d[0], c1 = r->d[1], c2 = r->d[2], c3 = r->d[3], c4 = r->d[4], t;
    t = _mm512_srli_epi64(c4, 47); c4 = _mm512_and_si512(c4, m47);
    c0 = _mm512_add_epi64(c0, _mm512_mullo_epi64(t, _mm512_set1_epi64(19)));
    c1 = _mm512_add_epi64(c1, _mm512_srli_epi64(c0, 52)); c0 = _mm512_and_si512(c0, m52);
    c2 = _mm512_add_epi64(c2, _mm512_srli_epi64(c1, 52)); c1 = _mm512_and_si512(c1, m52);
    c3 = _mm512_add_epi64(c3, _mm512_srli_epi64(c2, 52)); c2 = _mm512_and_si512(c2, m52);
    c4 = _mm512_add_epi64(c4, _mm512_srli_epi64(c3, 52)); c3 = _mm512_and_si512(c3, m52);
    r->d[0] = c0; r->d[1] = c1; r->d[2] = c2; r->d[3] = c3; r->d[4] = c4;
}

/* one carry pass, no wrap-around: digits 0..3 < 2^52 and digit 4 < 2^50 when the input is a sum or
 * difference of loose operands; a valid product operand, not a valid sum operand */
X8_INLINE void fe8_carry1(fe8 *r) {
    const __m512i m52 = _mm512_set1_epi64(X8_M52);
    __m512i c0 = r->d[0], c1 = r->d[1], c2 = r->d[2], c3 = r->d[3], c4 = r->d[4];
    c1 = _mm512_add_epi64(c1, _mm512_srli_epi64(c0, 52)); c0 = _mm512_and_si512(c0, m52);
    c2 = _mm512_add_epi64(c2, _mm512_srli_epi64(c1, 52)); c1 = _mm512_and_si512(c1, m52);
    c3 = _mm512_add_epi64(c3, _mm512_srli_epi64(c2, 52)); c2 = _mm512_and_si512(c2, m52);
    c4 = _mm512_add_epi64(c4, _mm512_srli_epi64(c3, 52)); c3 = _mm512_and_si512(c3, m52);
    r->d[0] = c0; r->d[1] = c1; r->d[2] = c2; r->d[3] = c3; r->d[4] = c4;
}

/* a + b of loose a, b: digit 4 < 2^49 ("product operand" form, see fe8_carry1) */
X8_INLINE void fe8_add(fe8 *r, const fe8 *a, const fe8 *b) {
    for (int i = 0; i < 5; i++) r->d[i] = _mm512_add_epi64(a->d[i], b->d[i]);
    fe8_carry1(r);
}

/* a - b + 2p digit by digit of loose a, b: 2p's digits (2^53 - 38, 2^53 - 2 x3, 2^48 - 2) dominate
 * b's; digit 4 of the result < 2^49 + 1 ("product operand" form, see fe8_carry1) */
X8_INLINE void fe8_sub(fe8 *r, const fe8 *a, const fe8 *b) {
    const __m512i p0 = _mm512_set1_epi64((1ULL << 53) - 38), p1 = _mm512_set1_epi64((1ULL << 53) - 2),
                  p4 = _mm512_set1_epi64((1ULL << 48) - 2);
    r->d[0] = _mm512_sub_epi64(_mm512_add_epi64(a->d[0], p0), b->d[0]);
    r->d[1] = _mm512_sub_epi64(_mm512_add_epi64(a->d[1], p1), b->d[1]);
    r->d[2] = _mm512_sub_epi64(_mm512_add_epi64(a->d[2], p1), b->d[2]);
    r->d[3] = _mm512_sub_epi64(_mm512_add_epi64(a->d[3], p1), b->d[3]);
    r->d[4] = _mm512_sub_epi64(_mm512_add_epi64(a->d[4], p4), b->d[4]);
    fe8_carry1(r);
}

/* c[0..9] (each < 2^58) = a 520-bit product in radix 2^52: reduce to loose form. Digit 5 + k sits
 * at 2^(52 (5 + k)) = 608 * 2^(52 k) (2^260 = 32 * 2^255 = 32 * 19 mod p); vpmadd52 reads 52 bits,
 * so each is split into its low 52 bits L (times 608 at digit k, high half at k + 1) and the rest
 * H < 2^6 (times 608 at digit k + 1): no carry chain, the five folds are independent. */
X8_INLINE void fe8_reduce(fe8 *r, __m512i c[10]) {
    const __m512i m52 = _mm512_set1_epi64(X8_M52), k608 = _mm512_set1_epi64(608), z = _mm512_setzero_si512();
    __m512i L, H, h;
    for (int k = 0; k < 4; k++) {
        L = _mm512_and_si512(c[5 + k], m52);
        H = _mm512_srli_epi64(c[5 + k], 52);
        c[k] = _mm512_madd52lo_epu64(c[k], L, k608);
        c[k + 1] = _mm512_madd52hi_epu64(c[k + 1], L, k608);
        c[k + 1] = _mm512_madd52lo_epu64(c[k + 1], H, k608);
    }
    L = _mm512_and_si512(c[9], m52);
    H = _mm512_srli_epi64(c[9], 52);
    c[4] = _mm512_madd52lo_epu64(c[4], L, k608);
    h = _mm512_madd52hi_epu64(z, L, k608);  /* at 2^260 again: < 2^10 */
    h = _mm512_madd52lo_epu64(h, H, k608);  /* < 2^10 + 2^16 */
    c[0] = _mm512_madd52lo_epu64(c[0], h, k608);
    for (int i = 0; i < 5; i++) r->d[i] = c[i];
    fe8_carry(r);
}

X8_INLINE void fe8_mul(fe8 *r, const fe8 *a, const fe8 *b) {
    __m512i c[10];
    for (int i = 0; i < 10; i++) c[i] = _mm512_setzero_si512();
    for (int i = 0; i < 5; i++) {
        for (int j = 0; j < 5; j++) {
            c[i + j] = _mm512_madd52lo_epu64(c[i + j], a->d[i], b->d[j]);
            c[i + j + 1] = _mm512_madd52hi_epu64(c[i + j + 1], a->d[i], b->d[j]);
        }
    }
    fe8_reduce(r, c);
}

/* squaring: the 10 cross products once, doubled, plus the 5 squares */
X8_INLINE void fe8_sq(fe8 *r, const fe8 *a) {
    __m512i c[10];
    for (int i = 0; i < 10; i++) c[i] = _mm512_setzero_si512();
    for (int i = 0; i < 5; i++) {
        for (int j = i + 1; j < 5; j++) {
            c[i + j] = _mm512_madd52lo_epu64(c[i + j], a->d[i], a->d[j]);
            c[i + j + 1] = _mm512_madd52hi_epu64(c[i + j + 1], a->d[i], a->d[j]);
        }
    }
    for (int i = 0; i < 10; i++) c[i] = _mm512_add_epi64(c[i], c[i]);
    for (int i = 0; i < 5; i++) {
        c[2 * i] = _mm512_madd52lo_epu64(c[2 * i], a->d[i], a->d[i]);
        c[2 * i + 1] = _mm512_madd52hi_epu64(c[2 * i + 1], a->d[i], a->d[i]);
    }
    fe8_reduce(r, c);
}

X8_INLINE void fe8_sqn(fe8 *r, const fe8 *a, int n) {
    fe8_sq(r, a);
    for (int i = 1; i < n; i++) fe8_sq(r, r);
}

/* r = a + 121665 * b ((A + 2) / 4 of Curve25519, RFC 7748's a24) */
X8_INLINE void fe8_add_a24(fe8 *r, const fe8 *a, const fe8 *b) {
    const __m512i k = _mm512_set1_epi64(121665), k608 = _mm512_set1_epi64(608), z = _mm512_setzero_si512();
    __m512i h4 = _mm512_madd52hi_epu64(z, b->d[4], k); /* at 2^260 */
    fe8 t;
    t.d[0] = _mm512_madd52lo_epu64(a->d[0], b->d[0], k);
    t.d[0] = _mm512_madd52lo_epu64(t.d[0], h4, k608);
    for (int i = 1; i < 5; i++) {
        t.d[i] = _mm512_madd52lo_epu64(a->d[i], b->d[i], k);
        t.d[i] = _mm512_madd52hi_epu64(t.d[i], b->d[i - 1], k);
    }
    fe8_carry(&t);
    *r = t;
}

/* r = a^(p - 2) = a^-1 (0 for 0) */
X8_INLINE void fe8_invert(fe8 *r, const fe8 *z) {
    fe8 z2, z9, z11, t, z5_0, z10_0, z20_0, z50_0, z100_0;
    fe8_sq(&z2, z);
    fe8_sqn(&t, &z2, 2);
    fe8_mul(&z9, &t, z);
    fe8_mul(&z11, &z9, &z2);
    fe8_sq(&t, &z11);
    fe8_mul(&z5_0, &t, &z9);                 /* 2^5 - 1 */
    fe8_sqn(&t, &z5_0, 5);
    fe8_mul(&z10_0, &t, &z5_0);              /* 2^10 - 1 */
    fe8_sqn(&t, &z10_0, 10);
    fe8_mul(&z20_0, &t, &z10_0);             /* 2^20 - 1 */
    fe8_sqn(&t, &z20_0, 20);
    fe8_mul(&t, &t, &z20_0);                 /* 2^40 - 1 */
    fe8_sqn(&t, &t, 10);
    fe8_mul(&z50_0, &t, &z10_0);             /* 2^50 - 1 */
    fe8_sqn(&t, &z50_0, 50);
    fe8_mul(&z100_0, &t, &z50_0);            /* 2^100 - 1 */
    fe8_sqn(&t, &z100_0, 100);
    fe8_mul(&t, &t, &z100_0);                /* 2^200 - 1 */
    fe8_sqn(&t, &t, 50);
    fe8_mul(&t, &t, &z50_0);                 /* 2^250 - 1 */
    fe8_sqn(&t, &t, 5);
    fe8_mul(r, &t, &z11);                    /* 2^255 - 32 + 11 = p - 2 */
}

X8_INLINE void fe8_cswap(fe8 *a, fe8 *b, __mmask8 m) {
    for (int i = 0; i < 5; i++) {
        __m512i x = a->d[i], y = b->d[i];
        a->d[i] = _mm512_mask_blend_epi64(m, x, y);
        b->d[i] = _mm512_mask_blend_epi64(m, y, x);
    }
}

/* u-coordinates (32 bytes little-endian, bit 255 ignored) of 8 points into loose form */
static X8_TARGET void fe8_load(fe8 *r, const uint8_t *const pts[8]) {
    uint64_t dig[5][8] __attribute__((aligned(64)));
    for (int e = 0; e < 8; e++) {
        uint64_t w[4];
        memcpy(w, pts[e], 32); /* x86-64: little-endian */
        dig[0][e] = w[0] & X8_M52;
        dig[1][e] = ((w[0] >> 52) | (w[1] << 12)) & X8_M52;
        dig[2][e] = ((w[1] >> 40) | (w[2] << 24)) & X8_M52;
        dig[3][e] = ((w[2] >> 28) | (w[3] << 36)) & X8_M52;
        dig[4][e] = (w[3] >> 16) & X8_M47;
    }
    for (int i = 0; i < 5; i++) r->d[i] = _mm512_load_si512((const void *)dig[i]);
}

/* fully reduce (loose form: value < 2p) and write 8 little-endian 32-byte encodings */
static X8_TARGET void fe8_store(uint8_t *const out[8], const fe8 *a) {
    const __m512i m52 = _mm512_set1_epi64(X8_M52), m47 = _mm512_set1_epi64(X8_M47);
    __m512i c[5], q;
    /* q = 1 iff a >= p, i.e. a + 19 >= 2^255 */
    q = _mm512_add_epi64(a->d[0], _mm512_set1_epi64(19));
    for (int i = 1; i < 5; i++) q = _mm512_add_epi64(a->d[i], _mm512_srli_epi64(q, 52));
    q = _mm512_srli_epi64(q, 47);
    /* a - q p = a + 19 q - q 2^255 */
    c[0] = _mm512_add_epi64(a->d[0], _mm512_mullo_epi64(q, _mm512_set1_epi64(19)));
    for (int i = 1; i < 5; i++) {
        c[i] = _mm512_add_epi64(a->d[i], _mm512_srli_epi64(c[i - 1], 52));
        c[i - 1] = _mm512_and_si512(c[i - 1], m52);
    }
    c[4] = _mm512_and_si512(c[4], m47);
    uint64_t dig[5][8] __attribute__((aligned(64)));
    for (int i = 0; i < 5; i++) _mm512_store_si512((void *)dig[i], c[i]);
    for (int e = 0; e < 8; e++) {
        uint64_t w[4];
        w[0] = dig[0][e] | (dig[1][e] << 52);
        w[1] = (dig[1][e] >> 12) | (dig[2][e] << 40);
        w[2] = (dig[2][e] >> 24) | (dig[3][e] << 28);
        w[3] = (dig[3][e] >> 36) | (dig[4][e] << 16);
        memcpy(out[e], w, 32);
    }
}

/*
 * out[e] = X25519(scalar, pts[e]) for e = 0..7 (RFC 7748, section 5: the scalar is clamped, the
 * u-coordinate's top bit ignored, non-canonical u accepted). One scalar for all 8 lanes (PSI
 * masks many points with one key). The outputs may alias the inputs.
 */
static X8_TARGET void x25519_x8(const uint8_t scalar[32], const uint8_t *const pts[8],
                                uint8_t *const out[8]) {
    uint8_t k[32];
    memcpy(k, scalar, 32);
    k[0] &= 248; k[31] &= 127; k[31] |= 64;
    fe8 x1, x2, z2, x3, z3, A, AA, B, BB, E, C, D, DA, CB, t;
    fe8_load(&x1, pts);
    for (int i = 0; i < 5; i++) {
        x2.d[i] = z2.d[i] = z3.d[i] = _mm512_setzero_si512();
    }
    x2.d[0] = z3.d[0] = _mm512_set1_epi64(1);
    x3 = x1;
    unsigned swap = 0;
    for (int pos = 254; pos >= 0; pos--) {
        unsigned bit = (k[pos >> 3] >> (pos & 7)) & 1;
        swap ^= bit;
        __mmask8 m = (__mmask8)(0u - swap);
        fe8_cswap(&x2, &x3, m);
        fe8_cswap(&z2, &z3, m);
        swap = bit;
        fe8_add(&A, &x2, &z2);
        fe8_sq(&AA, &A);
        fe8_sub(&B, &x2, &z2);
        fe8_sq(&BB, &B);
        fe8_sub(&E, &AA, &BB);
        fe8_add(&C, &x3, &z3);
        fe8_sub(&D, &x3, &z3);
        fe8_mul(&DA, &D, &A);
        fe8_mul(&CB, &C, &B);
        fe8_add(&t, &DA, &CB);
        fe8_sq(&x3, &t);
        fe8_sub(&t, &DA, &CB);
        fe8_sq(&t, &t);
        fe8_mul(&z3, &x1, &t);
        fe8_mul(&x2, &AA, &BB);
        fe8_add_a24(&t, &AA, &E);
        fe8_mul(&z2, &E, &t);
    }
    __mmask8 m = (__mmask8)(0u - swap);
    fe8_cswap(&x2, &x3, m);
    fe8_cswap(&z2, &z3, m);
    fe8_invert(&t, &z2);
    fe8_mul(&x2, &x2, &t);
    fe8_store(out, &x2);
    memset(k, 0, sizeof k);
    __asm__ __volatile__("" : : "r"(k) : "memory"); /* keep the wipe */
}

#else /* no x86-64 GCC/Clang: never called, dtx_ifma_cpu_ok() is 0 */
static void x25519_x8(const uint8_t scalar[32], const uint8_t *const pts[8], uint8_t *const out[8]) {
    (void)scalar; (void)pts; (void)out;
}
#endif /* X8_HAVE_BUILD */
#endif /* DTX_X25519_IFMA_H */
