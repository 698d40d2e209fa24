/*
 * Single-number Montgomery arithmetic with AVX-512 IFMA (radix 2^52), for one exponentiation at
 * a time -- or two with different moduli interleaved on one core (the p and q halves of a CRT
 * decryption).
 *
 * _ifma.h spreads 8 independent numbers over the 8 lanes of a vector ("vertical"); that pays only
 * for batches. Here one number occupies nv = ceil(L / 8) vectors, digit j in lane j % 8 of vector
 * j / 8 ("horizontal"), and one almost-Montgomery multiplication (AMM) walks the L digits of b:
 *
 *     acc += a * b_i            (low halves of the 52x52 products, vpmadd52luq)
 *     m    = acc_0 * k0 mod 2^52
 *     acc += N * m              (low halves; acc_0 is now 0 mod 2^52)
 *     acc >>= 52                (shift by one digit across the vectors, carry acc_0 >> 52)
 *     acc += hi(a * b_i) + hi(N * m)   (the high halves belong one digit up: i.e. here)
 *
 * Digits accumulate unnormalized (at most 4 L products of < 2^52 per digit: <= 2^61 for L <= 128)
 * and are normalized once per multiplication. With R = 2^(52 L) >= 4 N, inputs and outputs below
 * 2 N stay below 2 N (no final subtraction until the way out).
 *
 * Exponentiation uses a fixed window (3 to 5 bits by the exponent's width in limbs), multiplies
 * for zero digits too and reads the table by a select that loads every entry for every digit: the
 * sequence of operations and of memory addresses depends on the exponent's limb count, not on its
 * digits (decryption exponents are secret). GMP's mpz_powm, the path this replaces, does not
 * have that property.
 *
 * The GMP code in _paillier_core.h is the fallback and the reference; both give identical fully
 * reduced results (tests/test_paillier_kernel_one.py).
 */
#ifndef DTX_IFMA_ONE_H
#define DTX_IFMA_ONE_H

#include "_ifma.h"

#define HX_MAXV 16 /* up to 128 digits: moduli up to 6654 bits (a 3072-bit key's n^2) */
#define HX_MAXWIN 5

typedef struct {
    int L, nv;   /* digits, vectors (8 nv >= L) */
    uint64_t k0; /* -N^-1 mod 2^52 */
    uint64_t *N, *R1, *R2, *ONE; /* 8 nv digits each, normalized, zero above L */
    mpz_t Nz;
} hx_ctx;

/* digits an AMM modulo N needs (4 N < 2^(52 L)) */
static inline int hx_digits(const mpz_t N) { return ((int)mpz_sizeinbase(N, 2) + 2 + 51) / 52; }

/* normalized digits of x (< 2^(52 L)) into v[0 .. 8 nv) */
static void hx_put(uint64_t *v, const mpz_t x, int nv) {
    size_t n = mpz_size(x);
    const mp_limb_t *d = mpz_limbs_read(x);
    for (int j = 0; j < 8 * nv; j++) {
        size_t bit = (size_t)j * 52, limb = bit >> 6, off = bit & 63;
        uint64_t val = 0;
        if (limb < n) {
            val = d[limb] >> off;
            if (off > 12 && limb + 1 < n) val |= d[limb + 1] << (64 - off);
        }
        v[j] = val & IFMA_MASK52;
    }
}

/* x = the integer of normalized digits v[0 .. L) */
static void hx_get(mpz_t x, const uint64_t *v, int L) {
    int nl = (L * 52 + 63) / 64 + 1;
    mp_limb_t *d = mpz_limbs_write(x, nl);
    memset(d, 0, (size_t)nl * sizeof(mp_limb_t));
    for (int j = 0; j < L; j++) {
        uint64_t val = v[j];
        size_t bit = (size_t)j * 52, limb = bit >> 6, off = bit & 63;
        d[limb] |= val << off;
        if (off > 12) d[limb + 1] |= val >> (64 - off);
    }
    mp_size_t sz = nl;
    while (sz > 0 && d[sz - 1] == 0) sz--;
    mpz_limbs_finish(x, sz);
}

/* Context for modulus N (odd) with L >= hx_digits(N) digits (a larger L lets two moduli of
 * slightly different sizes share one loop). Returns 0, or -1 (too large, or out of memory). */
static int hx_init(hx_ctx *c, const mpz_t N, int L) {
    c->N = c->R1 = c->R2 = c->ONE = NULL;
    if (L < hx_digits(N)) L = hx_digits(N);
    c->L = L;
    c->nv = (L + 7) / 8;
    if (c->nv > HX_MAXV) return -1;
    size_t bytes = (size_t)c->nv * 64;
    c->N = (uint64_t *)ifma_alloc(bytes);
    c->R1 = (uint64_t *)ifma_alloc(bytes);
    c->R2 = (uint64_t *)ifma_alloc(bytes);
    c->ONE = (uint64_t *)ifma_alloc(bytes);
    if (!c->N || !c->R1 || !c->R2 || !c->ONE) {
        free(c->N); free(c->R1); free(c->R2); free(c->ONE);
        c->N = c->R1 = c->R2 = c->ONE = NULL;
        return -1;
    }
    mpz_init_set(c->Nz, N);
    mpz_t t, b;
    mpz_inits(t, b, NULL);
    hx_put(c->N, N, c->nv);
    mpz_set_ui(t, 1);
    mpz_mul_2exp(t, t, (mp_bitcnt_t)(52 * L));
    mpz_mod(t, t, N);
    hx_put(c->R1, t, c->nv);
    mpz_mul(t, t, t);
    mpz_mod(t, t, N);
    hx_put(c->R2, t, c->nv);
    mpz_set_ui(t, 1);
    hx_put(c->ONE, t, c->nv);
    mpz_set_ui(b, 1);
    mpz_mul_2exp(b, b, 52);
    mpz_invert(t, N, b);
    mpz_sub(t, b, t);
    c->k0 = (uint64_t)mpz_get_ui(t) & IFMA_MASK52;
    mpz_clears(t, b, NULL);
    return 0;
}

static void hx_clear(hx_ctx *c) {
    if (!c->N) return;
    free(c->N); free(c->R1); free(c->R2); free(c->ONE);
    c->N = c->R1 = c->R2 = c->ONE = NULL;
    mpz_clear(c->Nz);
}

/* bits [bitpos, bitpos + win) of a little-endian limb array of `we` limbs (zero past the end) */
static inline uint64_t hx_digit(const uint64_t *e, int we, int bitpos, int win) {
    int limb = bitpos >> 6, off = bitpos & 63;
    if (limb >= we) return 0;
    uint64_t v = e[limb] >> off;
    if (off + win > 64 && limb + 1 < we) v |= e[limb + 1] << (64 - off);
    return v & ((((uint64_t)1) << win) - 1);
}

#if DTX_HAVE_IFMA_BUILD

/* One AMM step set for `two` (1 or 2) independent products, nv known at compile time after
 * inlining: out_s = a_s * b_s * R^-1 mod N_s (< 2 N_s), normalized. out may alias a or b. */
static inline __attribute__((always_inline)) IFMA_TARGET void
hx_amm_core(uint64_t *o0, const uint64_t *a0, const uint64_t *b0, const hx_ctx *c0,
            uint64_t *o1, const uint64_t *a1, const uint64_t *b1, const hx_ctx *c1,
            const int nv, const int two) {
    __m512i R0[HX_MAXV], R1[HX_MAXV], A0[HX_MAXV], A1[HX_MAXV];
    const __m512i zero = _mm512_setzero_si512();
    const __m512i k00 = _mm512_set1_epi64((long long)c0->k0);
    const __m512i k01 = two ? _mm512_set1_epi64((long long)c1->k0) : zero;
    const __m512i *N0 = (const __m512i *)c0->N;
    const __m512i *N1 = two ? (const __m512i *)c1->N : N0;
    const int L = c0->L;
    for (int k = 0; k < nv; k++) {
        R0[k] = zero;
        A0[k] = _mm512_load_si512((const void *)(a0 + 8 * k));
        if (two) {
            R1[k] = zero;
            A1[k] = _mm512_load_si512((const void *)(a1 + 8 * k));
        }
    }
    for (int i = 0; i < L; i++) {
        const __m512i bi0 = _mm512_set1_epi64((long long)b0[i]);
        const __m512i bi1 = two ? _mm512_set1_epi64((long long)b1[i]) : zero;
        for (int k = 0; k < nv; k++) {
            R0[k] = _mm512_madd52lo_epu64(R0[k], A0[k], bi0);
            if (two) R1[k] = _mm512_madd52lo_epu64(R1[k], A1[k], bi1);
        }
        __m512i m0 = _mm512_permutexvar_epi64(zero, _mm512_madd52lo_epu64(zero, R0[0], k00));
        __m512i m1 = zero;
        if (two) m1 = _mm512_permutexvar_epi64(zero, _mm512_madd52lo_epu64(zero, R1[0], k01));
        for (int k = 0; k < nv; k++) {
            R0[k] = _mm512_madd52lo_epu64(R0[k], N0[k], m0);
            if (two) R1[k] = _mm512_madd52lo_epu64(R1[k], N1[k], m1);
        }
        const __m512i cy0 = _mm512_maskz_srli_epi64((__mmask8)1, R0[0], 52);
        __m512i cy1 = zero;
        if (two) cy1 = _mm512_maskz_srli_epi64((__mmask8)1, R1[0], 52);
        for (int k = 0; k < nv - 1; k++) {
            R0[k] = _mm512_alignr_epi64(R0[k + 1], R0[k], 1);
            if (two) R1[k] = _mm512_alignr_epi64(R1[k + 1], R1[k], 1);
        }
        R0[nv - 1] = _mm512_alignr_epi64(zero, R0[nv - 1], 1);
        R0[0] = _mm512_add_epi64(R0[0], cy0);
        if (two) {
            R1[nv - 1] = _mm512_alignr_epi64(zero, R1[nv - 1], 1);
            R1[0] = _mm512_add_epi64(R1[0], cy1);
        }
        for (int k = 0; k < nv; k++) {
            R0[k] = _mm512_madd52hi_epu64(R0[k], A0[k], bi0);
            R0[k] = _mm512_madd52hi_epu64(R0[k], N0[k], m0);
            if (two) {
                R1[k] = _mm512_madd52hi_epu64(R1[k], A1[k], bi1);
                R1[k] = _mm512_madd52hi_epu64(R1[k], N1[k], m1);
            }
        }
    }
    /* normalize: carries through the digits (the value is < 2^(52 L), so none leaves) */
    uint64_t t0[8 * HX_MAXV] __attribute__((aligned(64)));
    uint64_t t1[8 * HX_MAXV] __attribute__((aligned(64)));
    for (int k = 0; k < nv; k++) {
        _mm512_store_si512((void *)(t0 + 8 * k), R0[k]);
        if (two) _mm512_store_si512((void *)(t1 + 8 * k), R1[k]);
    }
    uint64_t cy0 = 0, cy1 = 0;
    for (int j = 0; j < 8 * nv; j++) {
        uint64_t v0 = t0[j] + cy0;
        o0[j] = v0 & IFMA_MASK52;
        cy0 = v0 >> 52;
        if (two) {
            uint64_t v1 = t1[j] + cy1;
            o1[j] = v1 & IFMA_MASK52;
            cy1 = v1 >> 52;
        }
    }
}

typedef void (*hx_amm_fn)(uint64_t *, const uint64_t *, const uint64_t *, const hx_ctx *, uint64_t *,
                          const uint64_t *, const uint64_t *, const hx_ctx *);

#define HX_AMM_DEF(NV)                                                                              \
    IFMA_TARGET static void hx_amm1_##NV(uint64_t *o0, const uint64_t *a0, const uint64_t *b0,      \
                                         const hx_ctx *c0, uint64_t *o1, const uint64_t *a1,        \
                                         const uint64_t *b1, const hx_ctx *c1) {                    \
        (void)o1; (void)a1; (void)b1; (void)c1;                                                     \
        hx_amm_core(o0, a0, b0, c0, NULL, NULL, NULL, NULL, NV, 0);                                  \
    }                                                                                               \
    IFMA_TARGET static void hx_amm2_##NV(uint64_t *o0, const uint64_t *a0, const uint64_t *b0,      \
                                         const hx_ctx *c0, uint64_t *o1, const uint64_t *a1,        \
                                         const uint64_t *b1, const hx_ctx *c1) {                    \
        hx_amm_core(o0, a0, b0, c0, o1, a1, b1, c1, NV, 1);                                          \
    }
HX_AMM_DEF(1) HX_AMM_DEF(2) HX_AMM_DEF(3) HX_AMM_DEF(4) HX_AMM_DEF(5) HX_AMM_DEF(6)
HX_AMM_DEF(7) HX_AMM_DEF(8) HX_AMM_DEF(9) HX_AMM_DEF(10) HX_AMM_DEF(11) HX_AMM_DEF(12)
HX_AMM_DEF(13) HX_AMM_DEF(14) HX_AMM_DEF(15) HX_AMM_DEF(16)

static hx_amm_fn hx_amm_pick(int nv, int two) {
    static const hx_amm_fn one[HX_MAXV] = {
        hx_amm1_1, hx_amm1_2, hx_amm1_3,  hx_amm1_4,  hx_amm1_5,  hx_amm1_6,  hx_amm1_7,  hx_amm1_8,
        hx_amm1_9, hx_amm1_10, hx_amm1_11, hx_amm1_12, hx_amm1_13, hx_amm1_14, hx_amm1_15, hx_amm1_16};
    static const hx_amm_fn pair[HX_MAXV] = {
        hx_amm2_1, hx_amm2_2, hx_amm2_3,  hx_amm2_4,  hx_amm2_5,  hx_amm2_6,  hx_amm2_7,  hx_amm2_8,
        hx_amm2_9, hx_amm2_10, hx_amm2_11, hx_amm2_12, hx_amm2_13, hx_amm2_14, hx_amm2_15, hx_amm2_16};
    return two ? pair[nv - 1] : one[nv - 1];
}

/* dst = tab[idx] (ent entries of 8 nv digits), reading every entry (constant time in idx) */
IFMA_TARGET static void hx_select(uint64_t *dst, const uint64_t *tab, int ent, int nv, uint64_t idx) {
    const __m512i want = _mm512_set1_epi64((long long)idx);
    __m512i acc[HX_MAXV];
    for (int k = 0; k < nv; k++) acc[k] = _mm512_setzero_si512();
    for (int d = 0; d < ent; d++) {
        const __mmask8 hit = _mm512_cmpeq_epi64_mask(_mm512_set1_epi64(d), want);
        const uint64_t *e = tab + (size_t)d * 8 * (size_t)nv;
        for (int k = 0; k < nv; k++)
            acc[k] = _mm512_mask_mov_epi64(acc[k], hit, _mm512_load_si512((const void *)(e + 8 * k)));
    }
    for (int k = 0; k < nv; k++) _mm512_store_si512((void *)(dst + 8 * k), acc[k]);
}

/* the window for exponents of `bits` bits (fewest multiplications, table included) */
static inline int hx_window(int bits) { return bits <= 96 ? 3 : bits <= 384 ? 4 : 5; }

/* r_s = x_s^e_s mod N_s for s = 0 (and 1 when c1 != NULL; then c1->L == c0->L), x_s < N_s.
 * e_s: we_s little-endian limbs; the work depends on the limb counts only. Results fully reduced.
 * Scratch is allocated here (returns -1 on out of memory, else 0). */
IFMA_TARGET static int hx_powm(mpz_t r0, const mpz_t x0, const uint64_t *e0, int we0, const hx_ctx *c0,
                               mpz_t r1, const mpz_t x1, const uint64_t *e1, int we1, const hx_ctx *c1) {
    const int two = c1 != NULL;
    const int bits = 64 * (two && we1 > we0 ? we1 : we0);
    const int win = hx_window(bits), ent = 1 << win;
    const int nv = c0->nv;
    const size_t V = (size_t)nv * 8;
    hx_amm_fn amm = hx_amm_pick(nv, two);
    /* tables (2 x 32 entries), acc, operand, base: per number */
    uint64_t *mem = (uint64_t *)ifma_alloc((size_t)(two ? 2 : 1) * (ent + 3) * V * sizeof(uint64_t));
    if (!mem) return -1;
    uint64_t *tab0 = mem, *acc0 = tab0 + ent * V, *op0 = acc0 + V, *x0d = op0 + V;
    uint64_t *tab1 = NULL, *acc1 = NULL, *op1 = NULL, *x1d = NULL;
    if (two) {
        tab1 = x0d + V;
        acc1 = tab1 + ent * V;
        op1 = acc1 + V;
        x1d = op1 + V;
    }
    hx_put(x0d, x0, nv);
    if (two) hx_put(x1d, x1, nv);
    /* table: entry d = x^d R mod N (entry 0 = R mod N, entry 1 = x R mod N) */
    memcpy(tab0, c0->R1, V * 8);
    if (two) memcpy(tab1, c1->R1, V * 8);
    amm(tab0 + V, x0d, c0->R2, c0, two ? tab1 + V : NULL, x1d, two ? c1->R2 : NULL, c1);
    for (int d = 2; d < ent; d++)
        amm(tab0 + d * V, tab0 + (d - 1) * V, tab0 + V, c0, two ? tab1 + d * V : NULL,
            two ? tab1 + (d - 1) * V : NULL, two ? tab1 + V : NULL, c1);
    /* windows: as many as the longer exponent's limbs allow (public widths, not values) */
    int nwin = (bits + win - 1) / win;
    memcpy(acc0, c0->R1, V * 8);
    if (two) memcpy(acc1, c1->R1, V * 8);
    for (int wi = nwin - 1; wi >= 0; wi--) {
        if (wi != nwin - 1)
            for (int s = 0; s < win; s++) amm(acc0, acc0, acc0, c0, acc1, acc1, acc1, c1);
        hx_select(op0, tab0, ent, nv, hx_digit(e0, we0, wi * win, win));
        if (two) hx_select(op1, tab1, ent, nv, hx_digit(e1, we1, wi * win, win));
        amm(acc0, acc0, op0, c0, acc1, acc1, op1, c1);
    }
    /* leave Montgomery form, reduce below N */
    amm(acc0, acc0, c0->ONE, c0, acc1, acc1, two ? c1->ONE : NULL, c1);
    hx_get(r0, acc0, c0->L);
    if (mpz_cmp(r0, c0->Nz) >= 0) mpz_sub(r0, r0, c0->Nz);
    if (two) {
        hx_get(r1, acc1, c1->L);
        if (mpz_cmp(r1, c1->Nz) >= 0) mpz_sub(r1, r1, c1->Nz);
    }
    free(mem);
    return 0;
}

#endif /* DTX_HAVE_IFMA_BUILD */
#endif /* DTX_IFMA_ONE_H */
