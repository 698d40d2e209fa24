/*
 * dtxfast Paillier kernel core (L0): batch operations on fixed-width limb arrays.
 *
 * Every ciphertext is W = limbs(n^2) little-endian 64-bit limbs; every plaintext residue is
 * WN = limbs(n) limbs. Inputs are read through mpz_roinit_n (no copy), outputs are written back
 * zero-padded to the fixed width. No validation, no policy, no RNG: the Python layer (L1) checks
 * shapes and ranges and passes random bytes in. Batches run on OpenMP threads; the caller holds
 * no GIL while these run.
 *
 * Return convention: functions that can meet a bad element return its index, or -1 when all is
 * well.
 */
#ifndef DTX_PAILLIER_CORE_H
#define DTX_PAILLIER_CORE_H

#include <gmp.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "_ifma.h"
#include "_ifma_one.h"

typedef struct {
    mpz_t n, nsq, max_int, n_minus_max;
    int wn, w; /* limbs of n and of n^2 */
    /* fixed-base table for DJN obfuscation: entry (i, d) = hs^(d * 2^(win*i)) mod n^2 */
    mp_limb_t *table;
    int win, nwin;
    /* AVX-512 IFMA path (simd != 0): Montgomery context mod n^2, table in Montgomery digits */
    int simd;
    ifma_ctx im;
    uint64_t *mtab;
    /* single-number IFMA context mod n^2 (hx != 0; n^2 of up to HX_MAXV * 8 digits) */
    int hx;
    hx_ctx hxn;
} dtx_pub;

typedef struct {
    mpz_t p, q, psq, qsq, pm1, qm1, hp, hq, qinv; /* qinv = q^-1 mod p */
    int simd;
    ifma_ctx ip, iq; /* Montgomery contexts mod p^2 and q^2 */
    int hx;          /* single-number IFMA contexts mod p^2 and q^2 (same digit count) */
    hx_ctx hxp, hxq;
} dtx_priv;

static inline void dtx_load(mpz_t x, const uint64_t *limbs, int w) {
    mpz_roinit_n(x, (const mp_limb_t *)limbs, w);
}

static inline void dtx_store(uint64_t *out, const mpz_t x, int w) {
    size_t sz = mpz_size(x);
    if (sz > (size_t)w) sz = (size_t)w; /* never happens for reduced values */
    if (sz) memcpy(out, mpz_limbs_read(x), sz * sizeof(uint64_t));
    if ((size_t)w > sz) memset(out + sz, 0, ((size_t)w - sz) * sizeof(uint64_t));
}

static inline void dtx_mulmod(mpz_t r, const mpz_t a, const mpz_t b, const mpz_t m, mpz_t tmp) {
    mpz_mul(tmp, a, b);
    mpz_tdiv_r(r, tmp, m);
}

/* ---- key setup ------------------------------------------------------------------------- */

static void dtx_pub_init(dtx_pub *k, const uint64_t *n, int wn) {
    mpz_t nv;
    dtx_load(nv, n, wn);
    mpz_init_set(k->n, nv);
    mpz_init(k->nsq);
    mpz_mul(k->nsq, k->n, k->n);
    mpz_init(k->max_int);
    mpz_tdiv_q_ui(k->max_int, k->n, 3);
    mpz_init(k->n_minus_max);
    mpz_sub(k->n_minus_max, k->n, k->max_int);
    k->wn = (int)mpz_size(k->n);
    k->w = (int)mpz_size(k->nsq);
    k->table = NULL;
    k->win = k->nwin = 0;
    k->mtab = NULL;
    k->simd = dtx_ifma_cpu_ok() && ifma_init(&k->im, k->nsq) == 0;
    k->hx = 0;
    k->hxn.N = NULL;
#if DTX_HAVE_IFMA_BUILD
    if (dtx_ifma_cpu_ok()) {
        if (hx_init(&k->hxn, k->nsq, 0) == 0) k->hx = 1;
        else hx_clear(&k->hxn);
    }
#endif
}

static void dtx_pub_clear(dtx_pub *k) {
    mpz_clears(k->n, k->nsq, k->max_int, k->n_minus_max, NULL);
    free(k->table);
    k->table = NULL;
    free(k->mtab);
    k->mtab = NULL;
    if (k->simd) ifma_clear(&k->im);
    hx_clear(&k->hxn);
}

static void dtx_priv_init(dtx_priv *s, const dtx_pub *k, const uint64_t *p, int wp, const uint64_t *q,
                          int wq) {
    mpz_t pv, qv, t;
    dtx_load(pv, p, wp);
    dtx_load(qv, q, wq);
    mpz_inits(s->p, s->q, s->psq, s->qsq, s->pm1, s->qm1, s->hp, s->hq, s->qinv, NULL);
    mpz_set(s->p, pv);
    mpz_set(s->q, qv);
    mpz_mul(s->psq, s->p, s->p);
    mpz_mul(s->qsq, s->q, s->q);
    mpz_sub_ui(s->pm1, s->p, 1);
    mpz_sub_ui(s->qm1, s->q, 1);
    mpz_init(t);
    /* hp = L_p(g^(p-1) mod p^2)^-1 mod p with g = n + 1 */
    mpz_add_ui(t, k->n, 1);
    mpz_powm_sec(t, t, s->pm1, s->psq);
    mpz_sub_ui(t, t, 1);
    mpz_divexact(t, t, s->p);
    mpz_invert(s->hp, t, s->p);
    mpz_add_ui(t, k->n, 1);
    mpz_powm_sec(t, t, s->qm1, s->qsq);
    mpz_sub_ui(t, t, 1);
    mpz_divexact(t, t, s->q);
    mpz_invert(s->hq, t, s->q);
    mpz_invert(s->qinv, s->q, s->p);
    mpz_clear(t);
    s->simd = dtx_ifma_cpu_ok() && ifma_init(&s->ip, s->psq) == 0 && ifma_init(&s->iq, s->qsq) == 0;
    s->hx = 0;
    s->hxp.N = s->hxq.N = NULL;
#if DTX_HAVE_IFMA_BUILD
    if (dtx_ifma_cpu_ok()) {
        int L = hx_digits(s->psq) > hx_digits(s->qsq) ? hx_digits(s->psq) : hx_digits(s->qsq);
        if (hx_init(&s->hxp, s->psq, L) == 0 && hx_init(&s->hxq, s->qsq, L) == 0) s->hx = 1;
        else {
            hx_clear(&s->hxp);
            hx_clear(&s->hxq);
        }
    }
#endif
}

static void dtx_priv_clear(dtx_priv *s) {
    mpz_clears(s->p, s->q, s->psq, s->qsq, s->pm1, s->qm1, s->hp, s->hq, s->qinv, NULL);
    if (s->simd) {
        ifma_clear(&s->ip);
        ifma_clear(&s->iq);
    }
    hx_clear(&s->hxp);
    hx_clear(&s->hxq);
}

static inline int dtx_threads(int t) { return t > 0 ? t : 1; }

/* ---- fixed-base table (DJN) ----------------------------------------------------------- */

/* Build table for exponents of exp_bits bits with window win. Returns 0, or -1 on OOM. */
static int dtx_table_build(dtx_pub *k, const uint64_t *hs, int exp_bits, int win, int threads) {
    int nwin = (exp_bits + win - 1) / win;
    size_t per = (size_t)1 << win;
    int w = k->w;
    mp_limb_t *tab = (mp_limb_t *)malloc((size_t)nwin * per * (size_t)w * sizeof(mp_limb_t));
    if (!tab) return -1;
    mpz_t h;
    dtx_load(h, hs, w);
    /* bases[i] = hs^(2^(win*i)), computed sequentially (cheap: nwin*win squarings) */
    mpz_t *bases = (mpz_t *)malloc(sizeof(mpz_t) * (size_t)nwin);
    if (!bases) { free(tab); return -1; }
    mpz_init_set(bases[0], h);
    for (int i = 1; i < nwin; i++) {
        mpz_init(bases[i]);
        mpz_powm_ui(bases[i], bases[i - 1], 1UL << win, k->nsq); /* win <= 16 */
    }
#pragma omp parallel num_threads(dtx_threads(threads))
    {
        mpz_t acc, tmp;
        mpz_init2(acc, 64 * (w + 1));
        mpz_init2(tmp, 128 * (w + 1));
#pragma omp for schedule(dynamic, 1)
        for (int i = 0; i < nwin; i++) {
            mp_limb_t *row = tab + (size_t)i * per * (size_t)w;
            mpz_set_ui(acc, 1);
            dtx_store(row, acc, w);
            for (size_t d = 1; d < per; d++) {
                dtx_mulmod(acc, acc, bases[i], k->nsq, tmp);
                dtx_store(row + d * (size_t)w, acc, w);
            }
        }
        mpz_clear(acc);
        mpz_clear(tmp);
    }
    for (int i = 0; i < nwin; i++) mpz_clear(bases[i]);
    free(bases);
    free(k->table);
    k->table = tab;
    k->win = win;
    k->nwin = nwin;
    if (k->simd) {
        /* Montgomery form x * R mod n^2 of every entry, as scalar digit rows; the limb table goes */
        int L = k->im.L;
        size_t entries = (size_t)nwin * per;
        uint64_t *mt = (uint64_t *)ifma_alloc(entries * (size_t)L * sizeof(uint64_t));
        if (mt) {
#pragma omp parallel num_threads(dtx_threads(threads))
            {
                mpz_t x, ent;
                mpz_init2(x, 64 * (w + 2) + 52 * L);
                uint64_t lanebuf[8 * 128];
#pragma omp for schedule(static)
                for (long e = 0; e < (long)entries; e++) {
                    dtx_load(ent, tab + (size_t)e * (size_t)w, w);
                    mpz_mul_2exp(x, ent, (mp_bitcnt_t)(52 * L));
                    mpz_tdiv_r(x, x, k->nsq);
                    ifma_put(lanebuf, 0, x, L);
                    for (int j = 0; j < L; j++) mt[(size_t)e * (size_t)L + (size_t)j] = lanebuf[(size_t)j * 8];
                }
                mpz_clear(x);
            }
            k->mtab = mt;
            free(k->table);
            k->table = NULL;
        }
    }
    return 0;
}

#if DTX_HAVE_IFMA_BUILD
/* Per-thread scratch of the IFMA paths. */
typedef struct {
    uint64_t *acc, *tmp, *x, *scratch, *tab;
} ifma_work;

static int ifma_work_init(ifma_work *wk, const ifma_ctx *c, int tab_entries) {
    size_t v = (size_t)c->L * 64;
    wk->acc = (uint64_t *)ifma_alloc(v);
    wk->tmp = (uint64_t *)ifma_alloc(v);
    wk->x = (uint64_t *)ifma_alloc(v);
    wk->scratch = (uint64_t *)ifma_alloc(ifma_scratch_bytes(c));
    wk->tab = tab_entries ? (uint64_t *)ifma_alloc(v * (size_t)tab_entries) : NULL;
    return (wk->acc && wk->tmp && wk->x && wk->scratch && (wk->tab || !tab_entries)) ? 0 : -1;
}

static void ifma_work_free(ifma_work *wk) {
    free(wk->acc); free(wk->tmp); free(wk->x); free(wk->scratch); free(wk->tab);
}

/* The fixed window (1 .. DTX_POW_MAXWIN) that minimises table products (2^win - 2) plus one
 * product per window of a `bits`-bit exponent (squarings do not depend on it): 1 bit for the
 * 2^d of a rescale, 3 for a 53-bit scalar, 6 for a 2048-bit n. */
#define DTX_POW_MAXWIN 6
static inline int dtx_pow_window(int bits) {
    int best = 1;
    long best_cost = -1;
    for (int w = 1; w <= DTX_POW_MAXWIN; w++) {
        long cost = ((1L << w) - 2) + (bits + w - 1) / w;
        if (best_cost < 0 || cost < best_cost) { best_cost = cost; best = w; }
    }
    return best;
}

/* Constant-time table read for secret digits: dst = entry idx[lane] of the transposed table, lane
 * by lane, reading every entry in full (no address or branch depends on idx). */
IFMA_TARGET static void ifma_select_ct(uint64_t *dst, const uint64_t *tab, const int64_t *idx, int ent, int L) {
    const size_t V = (size_t)L * 8;
    const __m512i vidx = _mm512_loadu_si512((const void *)idx);
    for (int j = 0; j < L; j++) {
        __m512i acc = _mm512_setzero_si512();
        for (int k = 0; k < ent; k++) {
            __mmask8 m = _mm512_cmpeq_epi64_mask(vidx, _mm512_set1_epi64(k));
            acc = _mm512_mask_blend_epi64(m, acc, _mm512_load_si512((const void *)(tab + (size_t)k * V + (size_t)j * 8)));
        }
        _mm512_store_si512((void *)(dst + (size_t)j * 8), acc);
    }
}

/* wk->acc = x^e_lane * R mod N for 8 lanes (x in Montgomery form in wk->x), fixed window `win`
 * (win <= 0: dtx_pow_window of the lanes' longest exponent; the table needs 2^win entries):
 * exps[lane] points to `we[lane]` limbs. Table of 2^win Montgomery powers per lane.
 * secret != 0 (decryption: the exponents are p - 1, q - 1): every digit reads the whole table
 * (ifma_select_ct) and multiplies, also by a zero digit, so neither memory addresses nor the
 * sequence of operations depend on the exponent's digits (only on its bit length, which is the
 * public size of p); public exponents take the shared-digit and zero-digit shortcuts. */
IFMA_TARGET static void ifma_powm8(ifma_work *wk, const ifma_ctx *c, const uint64_t *const *exps,
                                   const int *we, int win, int secret) {
    const int L = c->L;
    const size_t V = (size_t)L * 8;
    int maxbits = 0;
    for (int e = 0; e < 8; e++) {
        int b = 0;
        for (int l = we[e] - 1; l >= 0; l--)
            if (exps[e][l]) { b = l * 64 + 64 - __builtin_clzll(exps[e][l]); break; }
        if (b > maxbits) maxbits = b;
    }
    if (win <= 0) win = dtx_pow_window(maxbits);
    const int ent = 1 << win;
    memcpy(wk->tab, c->R1, V * 8);
    memcpy(wk->tab + V, wk->x, V * 8);
    for (int k = 2; k < ent; k++) ifma_mul(wk->tab + (size_t)k * V, wk->tab + (size_t)(k - 1) * V, wk->x, c, wk->scratch);
    int nwin = (maxbits + win - 1) / win;
    if (nwin == 0) {
        memcpy(wk->acc, c->R1, V * 8);
        return;
    }
    int64_t idx[8];
    for (int wi = nwin - 1; wi >= 0; wi--) {
        if (wi != nwin - 1)
            for (int s = 0; s < win; s++) ifma_sqr(wk->acc, wk->acc, c, wk->scratch);
        int same = 1;
        for (int e = 0; e < 8; e++) {
            idx[e] = (int64_t)hx_digit(exps[e], we[e], wi * win, win);
            if (idx[e] != idx[0]) same = 0;
        }
        const uint64_t *operand;
        if (secret) {
            ifma_select_ct(wk->tmp, wk->tab, idx, ent, L);
            if (wi == nwin - 1) memcpy(wk->acc, wk->tmp, V * 8);
            else ifma_mul(wk->acc, wk->acc, wk->tmp, c, wk->scratch);
            continue;
        }
        if (same) {
            operand = wk->tab + (size_t)idx[0] * V;
        } else {
            ifma_gather_lanes(wk->tmp, wk->tab, idx, L);
            operand = wk->tmp;
        }
        if (wi == nwin - 1) memcpy(wk->acc, operand, V * 8);
        else if (!(same && idx[0] == 0)) ifma_mul(wk->acc, wk->acc, operand, c, wk->scratch);
    }
}
#endif

static inline unsigned dtx_digit(const uint64_t *e, int bitpos, int win) {
    int limb = bitpos >> 6, off = bitpos & 63;
    uint64_t v = e[limb] >> off;
    if (off + win > 64) v |= e[limb + 1] << (64 - off);
    return (unsigned)(v & (((uint64_t)1 << win) - 1));
}

/* out[i] = hs^e_i mod n^2 using the table; exps has we limbs per element, we*64 >= nwin*win
 * is NOT required: digits past the exponent width read as zero. */
#if DTX_HAVE_IFMA_BUILD
IFMA_TARGET static void dtx_obf_djn_ifma(const dtx_pub *k, const uint64_t *exps, int we, uint64_t *out,
                                         long cnt, int threads) {
    const ifma_ctx *c = &k->im;
    const int L = c->L, w = k->w, win = k->win, nwin = k->nwin;
    const size_t per = (size_t)1 << win;
    long groups = (cnt + 7) / 8;
#pragma omp parallel num_threads(dtx_threads(threads))
    {
        ifma_work wk;
        ifma_work_init(&wk, c, 0);
        mpz_t r;
        mpz_init2(r, 64 * (w + 2));
        int64_t idx[8];
#pragma omp for schedule(dynamic, 1)
        for (long g = 0; g < groups; g++) {
            long base = g * 8;
            for (int i = 0; i < nwin; i++) {
                for (int e = 0; e < 8; e++) {
                    long j = base + e < cnt ? base + e : base;
                    const uint64_t *ex = exps + (size_t)j * (size_t)we;
                    idx[e] = (int64_t)((size_t)i * per + hx_digit(ex, we, i * win, win));
                }
                if (i == 0) {
                    ifma_gather_entries(wk.acc, k->mtab, idx, L);
                } else {
                    ifma_gather_entries(wk.tmp, k->mtab, idx, L);
                    ifma_mul(wk.acc, wk.acc, wk.tmp, c, wk.scratch);
                }
            }
            ifma_mul(wk.acc, wk.acc, c->ONE, c, wk.scratch); /* leave Montgomery form */
            for (int e = 0; e < 8 && base + e < cnt; e++) {
                ifma_get_reduced(r, wk.acc, e, c);
                dtx_store(out + (size_t)(base + e) * (size_t)w, r, w);
            }
        }
        mpz_clear(r);
        ifma_work_free(&wk);
    }
}
#endif

static void dtx_obf_djn(const dtx_pub *k, const uint64_t *exps, int we, uint64_t *out, long cnt,
                        int threads) {
#if DTX_HAVE_IFMA_BUILD
    if (k->mtab) {
        dtx_obf_djn_ifma(k, exps, we, out, cnt, threads);
        return;
    }
#endif
    int w = k->w, win = k->win, nwin = k->nwin;
    size_t per = (size_t)1 << win;
#pragma omp parallel num_threads(dtx_threads(threads))
    {
        mpz_t acc, tmp, ent;
        mpz_init2(acc, 64 * (w + 1));
        mpz_init2(tmp, 128 * (w + 1));
#pragma omp for schedule(static)
        for (long j = 0; j < cnt; j++) {
            const uint64_t *e = exps + (size_t)j * (size_t)we;
            int started = 0;
            for (int i = 0; i < nwin; i++) {
                int bit = i * win;
                if (bit >= we * 64) break;
                unsigned d;
                if (bit + win > we * 64) {
                    d = (unsigned)((e[bit >> 6] >> (bit & 63)) & ((((uint64_t)1) << (we * 64 - bit)) - 1));
                } else {
                    d = dtx_digit(e, bit, win);
                }
                if (!d) continue;
                dtx_load(ent, k->table + ((size_t)i * per + d) * (size_t)w, w);
                if (!started) {
                    mpz_set(acc, ent);
                    started = 1;
                } else {
                    dtx_mulmod(acc, acc, ent, k->nsq, tmp);
                }
            }
            if (!started) mpz_set_ui(acc, 1);
            dtx_store(out + (size_t)j * (size_t)w, acc, w);
        }
        mpz_clear(acc);
        mpz_clear(tmp);
    }
}

/* out[i] = r_i^n mod n^2 (standard Paillier obfuscator), r given with wr limbs, reduced mod n.
 * Uses mpz_powm_sec: the secret r never steers memory access or branches. */
static void dtx_obf_standard(const dtx_pub *k, const uint64_t *r, int wr, uint64_t *out, long cnt,
                             int threads) {
    int w = k->w;
#pragma omp parallel num_threads(dtx_threads(threads))
    {
        mpz_t x, rv;
        mpz_init2(x, 64 * (w + 1));
#pragma omp for schedule(static)
        for (long j = 0; j < cnt; j++) {
            dtx_load(rv, r + (size_t)j * (size_t)wr, wr);
            mpz_mod(x, rv, k->n);
            if (mpz_sgn(x) == 0) mpz_set_ui(x, 1); /* probability 2^-n_bits; keeps x a unit */
            mpz_powm_sec(x, x, k->n, k->nsq);
            dtx_store(out + (size_t)j * (size_t)w, x, w);
        }
        mpz_clear(x);
    }
}

/* ---- encryption and arithmetic --------------------------------------------------------- */

#if DTX_HAVE_IFMA_BUILD
/* out_j = c_(j*cstride) * (1 + m_(j*mstride) n) mod n^2 on the IFMA path (encrypt with an
 * obfuscator, add a plaintext): two Montgomery products per 8 elements. */
IFMA_TARGET static void dtx_mul_g_ifma(const dtx_pub *k, const uint64_t *c, long cstride, const uint64_t *m,
                                       long mstride, uint64_t *out, long cnt, int threads) {
    const ifma_ctx *ic = &k->im;
    const int w = k->w, wn = k->wn;
    long groups = (cnt + 7) / 8;
#pragma omp parallel num_threads(dtx_threads(threads))
    {
        ifma_work wk;
        ifma_work_init(&wk, ic, 0);
        mpz_t r, g, cv, mv;
        mpz_init2(r, 64 * (w + 2));
        mpz_init2(g, 64 * (w + 2));
#pragma omp for schedule(static)
        for (long gi = 0; gi < groups; gi++) {
            long base = gi * 8;
            for (int e = 0; e < 8; e++) {
                long j = base + e < cnt ? base + e : base;
                dtx_load(cv, c + (size_t)(j * cstride) * (size_t)w, w);
                dtx_load(mv, m + (size_t)(j * mstride) * (size_t)wn, wn);
                mpz_mul(g, mv, k->n);
                mpz_add_ui(g, g, 1);
                ifma_put(wk.x, e, cv, ic->L);
                ifma_put(wk.tmp, e, g, ic->L);
            }
            ifma_mul(wk.acc, wk.x, wk.tmp, ic, wk.scratch);
            ifma_mul(wk.acc, wk.acc, ic->R2, ic, wk.scratch);
            for (int e = 0; e < 8 && base + e < cnt; e++) {
                ifma_get_reduced(r, wk.acc, e, ic);
                dtx_store(out + (size_t)(base + e) * (size_t)w, r, w);
            }
        }
        mpz_clears(r, g, NULL);
        ifma_work_free(&wk);
    }
}
#endif

/* out = (1 + m n) * obf mod n^2; obf == NULL gives the raw (1 + m n). */
static void dtx_encrypt(const dtx_pub *k, const uint64_t *m, const uint64_t *obf, uint64_t *out,
                        long cnt, int threads) {
#if DTX_HAVE_IFMA_BUILD
    if (obf && k->simd && cnt >= 8) {
        dtx_mul_g_ifma(k, obf, 1, m, 1, out, cnt, threads);
        return;
    }
#endif
    int w = k->w, wn = k->wn;
#pragma omp parallel num_threads(dtx_threads(threads))
    {
        mpz_t g, tmp, mv, ov;
        mpz_init2(g, 64 * (w + 1));
        mpz_init2(tmp, 128 * (w + 1));
#pragma omp for schedule(static)
        for (long j = 0; j < cnt; j++) {
            dtx_load(mv, m + (size_t)j * (size_t)wn, wn);
            mpz_mul(g, mv, k->n);
            mpz_add_ui(g, g, 1);
            if (obf) {
                dtx_load(ov, obf + (size_t)j * (size_t)w, w);
                dtx_mulmod(g, g, ov, k->nsq, tmp);
            }
            dtx_store(out + (size_t)j * (size_t)w, g, w);
        }
        mpz_clear(g);
        mpz_clear(tmp);
    }
}

#if DTX_HAVE_IFMA_BUILD
/* out_j = a_j * b_j mod n^2 as two Montgomery products: (a b R^-1) R^2 R^-1 */
IFMA_TARGET static void dtx_mul_ifma(const dtx_pub *k, const uint64_t *a, const uint64_t *b, long bstride,
                                     uint64_t *out, long cnt, int threads) {
    const ifma_ctx *c = &k->im;
    const int w = k->w;
    long groups = (cnt + 7) / 8;
#pragma omp parallel num_threads(dtx_threads(threads))
    {
        ifma_work wk;
        ifma_work_init(&wk, c, 0);
        mpz_t r, av, bv;
        mpz_init2(r, 64 * (w + 2));
#pragma omp for schedule(static)
        for (long g = 0; g < groups; g++) {
            long base = g * 8;
            for (int e = 0; e < 8; e++) {
                long j = base + e < cnt ? base + e : base;
                dtx_load(av, a + (size_t)j * (size_t)w, w);
                dtx_load(bv, b + (size_t)(j * bstride) * (size_t)w, w);
                ifma_put(wk.x, e, av, c->L);
                ifma_put(wk.tmp, e, bv, c->L);
            }
            ifma_mul(wk.acc, wk.x, wk.tmp, c, wk.scratch);
            ifma_mul(wk.acc, wk.acc, c->R2, c, wk.scratch);
            for (int e = 0; e < 8 && base + e < cnt; e++) {
                ifma_get_reduced(r, wk.acc, e, c);
                dtx_store(out + (size_t)(base + e) * (size_t)w, r, w);
            }
        }
        mpz_clear(r);
        ifma_work_free(&wk);
    }
}
#endif

/* out_j = a_j * b_(j*bstride) mod n^2 (bstride 0 broadcasts one ciphertext) */
static void dtx_mul(const dtx_pub *k, const uint64_t *a, const uint64_t *b, long bstride,
                    uint64_t *out, long cnt, int threads) {
#if DTX_HAVE_IFMA_BUILD
    if (k->simd && cnt >= 8) {
        dtx_mul_ifma(k, a, b, bstride, out, cnt, threads);
        return;
    }
#endif
    int w = k->w;
#pragma omp parallel num_threads(dtx_threads(threads))
    {
        mpz_t r, tmp, av, bv;
        mpz_init2(r, 64 * (w + 1));
        mpz_init2(tmp, 128 * (w + 1));
#pragma omp for schedule(static)
        for (long j = 0; j < cnt; j++) {
            dtx_load(av, a + (size_t)j * (size_t)w, w);
            dtx_load(bv, b + (size_t)(j * bstride) * (size_t)w, w);
            dtx_mulmod(r, av, bv, k->nsq, tmp);
            dtx_store(out + (size_t)j * (size_t)w, r, w);
        }
        mpz_clear(r);
        mpz_clear(tmp);
    }
}

/* out_j = c_j * (1 + m_(j*mstride) n) mod n^2: adds a plaintext residue */
static void dtx_add_plain(const dtx_pub *k, const uint64_t *c, const uint64_t *m, long mstride,
                          uint64_t *out, long cnt, int threads) {
#if DTX_HAVE_IFMA_BUILD
    if (k->simd && cnt >= 8) {
        dtx_mul_g_ifma(k, c, 1, m, mstride, out, cnt, threads);
        return;
    }
#endif
    int w = k->w, wn = k->wn;
#pragma omp parallel num_threads(dtx_threads(threads))
    {
        mpz_t g, tmp, cv, mv;
        mpz_init2(g, 64 * (w + 1));
        mpz_init2(tmp, 128 * (w + 1));
#pragma omp for schedule(static)
        for (long j = 0; j < cnt; j++) {
            dtx_load(cv, c + (size_t)j * (size_t)w, w);
            dtx_load(mv, m + (size_t)(j * mstride) * (size_t)wn, wn);
            mpz_mul(g, mv, k->n);
            mpz_add_ui(g, g, 1);
            dtx_mulmod(g, g, cv, k->nsq, tmp);
            dtx_store(out + (size_t)j * (size_t)w, g, w);
        }
        mpz_clear(g);
        mpz_clear(tmp);
    }
}

/* out_j = c_(j*cstride)^(+-e_(j*estride)) mod n^2; a negative exponent inverts c first.
 * Returns the first index whose ciphertext is not invertible, or -1. */
#if DTX_HAVE_IFMA_BUILD
/* Montgomery's batch inversion, 8 lanes per vector: inv + rows[q] * w receives c_rows[q]^-1 mod n^2
 * for q < m (c rows spaced `cstride` apart), at the cost of 5 vector products per 8 rows and 8
 * GMP inversions instead of one GMP inversion per row. Returns 0, or -1 when some c is not
 * invertible (nothing useful written: the caller inverts row by row). */
IFMA_TARGET static int dtx_invert_rows_ifma(const dtx_pub *k, const uint64_t *c, long cstride, const long *rows,
                                            long m, uint64_t *inv, ifma_work *wk) {
    const ifma_ctx *ic = &k->im;
    const int L = ic->L, w = k->w;
    const size_t V = (size_t)L * 8;
    const long nv = (m + 7) / 8;
    if (nv == 0) return 0;
    uint64_t *X = (uint64_t *)ifma_alloc((size_t)nv * V * 8), *P = (uint64_t *)ifma_alloc((size_t)nv * V * 8);
    int ok = X && P;
    mpz_t cv, r;
    mpz_init2(r, 64 * (w + 2));
    for (long t = 0; ok && t < nv; t++) { /* X_t = the rows in Montgomery form, P_t = X_0 ... X_t */
        uint64_t *x = X + (size_t)t * V;
        for (int l = 0; l < 8; l++) {
            long q = t * 8 + l;
            if (q < m) {
                dtx_load(cv, c + (size_t)(rows[q] * cstride) * (size_t)w, w);
                ifma_put(x, l, cv, L);
            } else {
                mpz_set_ui(r, 1);
                ifma_put(x, l, r, L);
            }
        }
        ifma_mul(x, x, ic->R2, ic, wk->scratch);
        if (t == 0) memcpy(P, x, V * 8);
        else ifma_mul(P + (size_t)t * V, P + (size_t)(t - 1) * V, x, ic, wk->scratch);
    }
    uint64_t *Q = wk->acc, *y = wk->tmp;
    if (ok) { /* Q = P_last^-1, lane by lane */
        ifma_mul(Q, P + (size_t)(nv - 1) * V, ic->ONE, ic, wk->scratch);
        for (int l = 0; ok && l < 8; l++) {
            ifma_get_reduced(r, Q, l, ic);
            if (!mpz_invert(r, r, k->nsq)) ok = 0;
            else ifma_put(Q, l, r, L);
        }
    }
    if (ok) {
        ifma_mul(Q, Q, ic->R2, ic, wk->scratch);
        for (long t = nv - 1; t >= 0; t--) { /* X_t^-1 = (P_t)^-1 P_(t-1); (P_(t-1))^-1 = (P_t)^-1 X_t */
            if (t > 0) {
                ifma_mul(y, Q, P + (size_t)(t - 1) * V, ic, wk->scratch);
                ifma_mul(Q, Q, X + (size_t)t * V, ic, wk->scratch);
            } else {
                memcpy(y, Q, V * 8);
            }
            ifma_mul(y, y, ic->ONE, ic, wk->scratch);
            for (int l = 0; l < 8; l++) {
                long q = t * 8 + l;
                if (q < m) {
                    ifma_get_reduced(r, y, l, ic);
                    dtx_store(inv + (size_t)rows[q] * (size_t)w, r, w);
                }
            }
        }
    }
    mpz_clear(r);
    free(X);
    free(P);
    return ok ? 0 : -1;
}

static inline int dtx_limbs_zero(const uint64_t *e, int we) {
    for (int l = 0; l < we; l++)
        if (e[l]) return 0;
    return 1;
}

/* out_j = c_j^(+-e_j) mod n^2 for 8 rows at a time; returns the first row whose base is not
 * invertible for a negative exponent (its output is 1), -1 if none, -2 if out of memory. */
IFMA_TARGET static long dtx_pow_ifma(const dtx_pub *k, const uint64_t *c, long cstride, const uint64_t *e,
                                     int we, const uint8_t *eneg, long estride, uint64_t *out, long cnt,
                                     int threads) {
    const ifma_ctx *ic = &k->im;
    const int w = k->w, L = ic->L;
    long bad = -1;
    long groups = (cnt + 7) / 8;
    /* rows raised to a negative (nonzero) exponent: their bases are inverted first, all at once */
    long *negrows = (long *)malloc(sizeof(long) * (size_t)(cnt > 0 ? cnt : 1));
    uint8_t *failed = (uint8_t *)calloc((size_t)(cnt > 0 ? cnt : 1), 1);
    uint64_t *inv = NULL;
    long m = 0;
    if (!negrows || !failed) { free(negrows); free(failed); return -2; }
    for (long j = 0; j < cnt; j++)
        if (eneg[j * estride] && !dtx_limbs_zero(e + (size_t)(j * estride) * (size_t)we, we)) negrows[m++] = j;
    if (m) {
        inv = (uint64_t *)malloc(sizeof(uint64_t) * (size_t)cnt * (size_t)w);
        if (!inv) { free(negrows); free(failed); return -2; }
    }
    const int nth = dtx_threads(threads);
#pragma omp parallel num_threads(nth)
    {
        ifma_work wk;
        ifma_work_init(&wk, ic, 1 << DTX_POW_MAXWIN);
        mpz_t r, cv;
        mpz_init2(r, 64 * (w + 2));
        const uint64_t *ep[8];
        int wes[8];
        static const uint64_t zero_limb = 0;
        /* each thread inverts one contiguous share of the negative rows */
#pragma omp for schedule(static, 1)
        for (int part = 0; part < nth; part++) {
            long lo = m * part / nth, hi = m * (part + 1) / nth;
            if (hi > lo && dtx_invert_rows_ifma(k, c, cstride, negrows + lo, hi - lo, inv, &wk) != 0) {
                for (long q = lo; q < hi; q++) { /* some base is not invertible: find which, row by row */
                    long j = negrows[q];
                    dtx_load(cv, c + (size_t)(j * cstride) * (size_t)w, w);
                    if (mpz_invert(r, cv, k->nsq)) {
                        dtx_store(inv + (size_t)j * (size_t)w, r, w);
                    } else {
                        failed[j] = 1;
#pragma omp critical
                        { if (bad < 0 || j < bad) bad = j; }
                    }
                }
            }
        }
#pragma omp for schedule(dynamic, 1)
        for (long g = 0; g < groups; g++) {
            long base = g * 8;
            for (int l = 0; l < 8; l++) {
                long j = base + l < cnt ? base + l : base;
                ep[l] = e + (size_t)(j * estride) * (size_t)we;
                wes[l] = we;
                if (failed[j]) { /* non-invertible base: 1, as the GMP path writes */
                    mpz_set_ui(r, 1);
                    ifma_put(wk.x, l, r, L);
                    ep[l] = &zero_limb;
                    wes[l] = 1;
                } else if (eneg[j * estride] && !dtx_limbs_zero(ep[l], we)) {
                    dtx_load(cv, inv + (size_t)j * (size_t)w, w);
                    ifma_put(wk.x, l, cv, L);
                } else {
                    dtx_load(cv, c + (size_t)(j * cstride) * (size_t)w, w);
                    ifma_put(wk.x, l, cv, L);
                }
            }
            ifma_mul(wk.x, wk.x, ic->R2, ic, wk.scratch); /* to Montgomery form */
            ifma_powm8(&wk, ic, ep, wes, 0, 0);
            ifma_mul(wk.acc, wk.acc, ic->ONE, ic, wk.scratch);
            for (int l = 0; l < 8 && base + l < cnt; l++) {
                ifma_get_reduced(r, wk.acc, l, ic);
                dtx_store(out + (size_t)(base + l) * (size_t)w, r, w);
            }
        }
        mpz_clear(r);
        ifma_work_free(&wk);
    }
    free(negrows);
    free(failed);
    free(inv);
    return bad;
}
#endif

static long dtx_pow(const dtx_pub *k, const uint64_t *c, long cstride, const uint64_t *e, int we,
                    const uint8_t *eneg, long estride, uint64_t *out, long cnt, int threads) {
#if DTX_HAVE_IFMA_BUILD
    if (k->simd && cnt >= 4) {
        long r = dtx_pow_ifma(k, c, cstride, e, we, eneg, estride, out, cnt, threads);
        if (r != -2) return r; /* -2: out of memory for the batch inversion; GMP below */
    }
#endif
    int w = k->w;
    long bad = -1;
#pragma omp parallel num_threads(dtx_threads(threads))
    {
        mpz_t r, cv, ev;
        mpz_init2(r, 64 * (w + 1));
#pragma omp for schedule(dynamic, 4)
        for (long j = 0; j < cnt; j++) {
            dtx_load(cv, c + (size_t)(j * cstride) * (size_t)w, w);
            dtx_load(ev, e + (size_t)(j * estride) * (size_t)we, we);
            if (eneg[j * estride] && mpz_sgn(ev) != 0) {
                if (!mpz_invert(r, cv, k->nsq)) {
#pragma omp critical
                    { if (bad < 0 || j < bad) bad = j; }
                    mpz_set_ui(r, 1);
                } else {
                    mpz_powm(r, r, ev, k->nsq);
                }
            } else {
                mpz_powm(r, cv, ev, k->nsq);
            }
            dtx_store(out + (size_t)j * (size_t)w, r, w);
        }
        mpz_clear(r);
    }
    return bad;
}

/* out_j = c_j^-1 mod n^2; returns first non-invertible index or -1 */
static long dtx_invert(const dtx_pub *k, const uint64_t *c, uint64_t *out, long cnt, int threads) {
    int w = k->w;
    long bad = -1;
#pragma omp parallel num_threads(dtx_threads(threads))
    {
        mpz_t r, cv;
        mpz_init2(r, 64 * (w + 1));
#pragma omp for schedule(static)
        for (long j = 0; j < cnt; j++) {
            dtx_load(cv, c + (size_t)j * (size_t)w, w);
            if (!mpz_invert(r, cv, k->nsq)) {
#pragma omp critical
                { if (bad < 0 || j < bad) bad = j; }
                mpz_set_ui(r, 1);
            }
            dtx_store(out + (size_t)j * (size_t)w, r, w);
        }
        mpz_clear(r);
    }
    return bad;
}

/* out = prod_j c_j mod n^2 (homomorphic sum) */
static void dtx_prod(const dtx_pub *k, const uint64_t *c, long cnt, uint64_t *out, int threads) {
    int w = k->w;
    int nt = dtx_threads(threads);
    if (cnt < 64) nt = 1;
    mpz_t *part = (mpz_t *)malloc(sizeof(mpz_t) * (size_t)nt);
    for (int t = 0; t < nt; t++) mpz_init_set_ui(part[t], 1);
#pragma omp parallel num_threads(nt)
    {
        int t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        mpz_t tmp, cv;
        mpz_init2(tmp, 128 * (w + 1));
#pragma omp for schedule(static)
        for (long j = 0; j < cnt; j++) {
            dtx_load(cv, c + (size_t)j * (size_t)w, w);
            dtx_mulmod(part[t], part[t], cv, k->nsq, tmp);
        }
        mpz_clear(tmp);
    }
    mpz_t tmp;
    mpz_init(tmp);
    for (int t = 1; t < nt; t++) dtx_mulmod(part[0], part[0], part[t], k->nsq, tmp);
    dtx_store(out, part[0], w);
    mpz_clear(tmp);
    for (int t = 0; t < nt; t++) mpz_clear(part[t]);
    free(part);
}

/* ---- X @ E(v): Pippenger bucket multi-exponentiation per row ---------------------------- */

#if DTX_HAVE_IFMA_BUILD
/* Pippenger on 8 rows at once: lane e works on row g*8+e with its own buckets (transposed table,
 * entry 0 is a sink for zero digits); the base c_j is broadcast (or c_j^-1 per negative lane). */
IFMA_TARGET static void dtx_matmul_ifma(const dtx_pub *k, const uint64_t *xabs, const uint8_t *xneg,
                                        const uint64_t *c, const uint64_t *cinv, uint64_t *out, long m,
                                        long kk, int bits, int window, int threads) {
    const ifma_ctx *ic = &k->im;
    const int L = ic->L, w = k->w;
    const size_t V = (size_t)L * 8;
    const int nwin = (bits + window - 1) / window;
    const long nb = ((long)1 << window) - 1;
    const uint64_t mask = (((uint64_t)1) << window) - 1;
    /* Montgomery digits of every base (and inverse), scalar rows of L digits */
    uint64_t *cm = (uint64_t *)ifma_alloc((size_t)kk * (size_t)L * 8);
    uint64_t *cim = cinv ? (uint64_t *)ifma_alloc((size_t)kk * (size_t)L * 8) : NULL;
#pragma omp parallel num_threads(dtx_threads(threads))
    {
        mpz_t x, cv;
        mpz_init2(x, 64 * (w + 2) + 52 * L);
        uint64_t *lanebuf = (uint64_t *)ifma_alloc(V * 8);
#pragma omp for schedule(static)
        for (long j = 0; j < kk; j++) {
            for (int which = 0; which < (cinv ? 2 : 1); which++) {
                dtx_load(cv, (which ? cinv : c) + (size_t)j * (size_t)w, w);
                mpz_mul_2exp(x, cv, (mp_bitcnt_t)(52 * L));
                mpz_tdiv_r(x, x, k->nsq);
                ifma_put(lanebuf, 0, x, L);
                uint64_t *dst = (which ? cim : cm) + (size_t)j * (size_t)L;
                for (int i = 0; i < L; i++) dst[i] = lanebuf[(size_t)i * 8];
            }
        }
        mpz_clear(x);
        free(lanebuf);
    }
    long groups = (m + 7) / 8;
#pragma omp parallel num_threads(dtx_threads(threads))
    {
        ifma_work wk;
        ifma_work_init(&wk, ic, 0);
        uint64_t *bucket = (uint64_t *)ifma_alloc((size_t)(nb + 1) * V * 8);
        uint64_t *run = (uint64_t *)ifma_alloc(V * 8);
        uint64_t *sum = (uint64_t *)ifma_alloc(V * 8);
        uint64_t *B = (uint64_t *)ifma_alloc(V * 8);
        mpz_t r;
        mpz_init2(r, 64 * (w + 2));
        int64_t idx[8];
        const uint64_t *xrow[8];
        const uint8_t *nrow[8];
#pragma omp for schedule(dynamic, 1)
        for (long g = 0; g < groups; g++) {
            for (int e = 0; e < 8; e++) {
                long row = g * 8 + e < m ? g * 8 + e : g * 8;
                xrow[e] = xabs + (size_t)row * (size_t)kk;
                nrow[e] = xneg ? xneg + (size_t)row * (size_t)kk : NULL;
            }
            int acc_set = 0;
            for (int wi = nwin - 1; wi >= 0; wi--) {
                if (acc_set)
                    for (int sq = 0; sq < window; sq++) ifma_sqr(wk.acc, wk.acc, ic, wk.scratch);
                for (long b = 1; b <= nb; b++) memcpy(bucket + (size_t)b * V, ic->R1, V * 8);
                const int shift = wi * window;
                for (long j = 0; j < kk; j++) {
                    int any = 0;
                    __mmask8 negm = 0;
                    for (int e = 0; e < 8; e++) {
                        uint64_t d = shift < 64 ? (xrow[e][j] >> shift) & mask : 0;
                        idx[e] = (int64_t)d;
                        any |= d != 0;
                        if (nrow[e] && nrow[e][j]) negm |= (__mmask8)(1u << e);
                    }
                    if (!any) continue;
                    const uint64_t *cj = cm + (size_t)j * (size_t)L;
                    if (negm) {
                        const uint64_t *cij = cim + (size_t)j * (size_t)L;
                        for (int i = 0; i < L; i++) {
                            __m512i v = _mm512_mask_blend_epi64(negm, _mm512_set1_epi64((long long)cj[i]),
                                                                _mm512_set1_epi64((long long)cij[i]));
                            _mm512_store_si512((void *)(B + (size_t)i * 8), v);
                        }
                    } else {
                        for (int i = 0; i < L; i++)
                            _mm512_store_si512((void *)(B + (size_t)i * 8), _mm512_set1_epi64((long long)cj[i]));
                    }
                    ifma_gather_lanes(wk.tmp, bucket, idx, L);
                    ifma_mul(wk.tmp, wk.tmp, B, ic, wk.scratch);
                    ifma_scatter_lanes(bucket, wk.tmp, idx, L);
                }
                /* sum_d bucket_d^d = prod over d of (prod_{d' >= d} bucket_d') */
                memcpy(run, bucket + (size_t)nb * V, V * 8);
                memcpy(sum, run, V * 8);
                for (long b = nb - 1; b >= 1; b--) {
                    ifma_mul(run, run, bucket + (size_t)b * V, ic, wk.scratch);
                    ifma_mul(sum, sum, run, ic, wk.scratch);
                }
                if (acc_set) {
                    ifma_mul(wk.acc, wk.acc, sum, ic, wk.scratch);
                } else {
                    memcpy(wk.acc, sum, V * 8);
                    acc_set = 1;
                }
            }
            if (!acc_set) memcpy(wk.acc, ic->R1, V * 8);
            ifma_mul(wk.acc, wk.acc, ic->ONE, ic, wk.scratch);
            for (int e = 0; e < 8 && g * 8 + e < m; e++) {
                ifma_get_reduced(r, wk.acc, e, ic);
                dtx_store(out + (size_t)(g * 8 + e) * (size_t)w, r, w);
            }
        }
        mpz_clear(r);
        free(bucket); free(run); free(sum); free(B);
        ifma_work_free(&wk);
    }
    free(cm);
    free(cim);
}
#endif

/* out_i = prod_j base_j^|x_ij| where base_j = c_j, or c_j^-1 (cinv_j) when x_ij < 0.
 * xabs: m x kk uint64 magnitudes; xneg: m x kk flags; cinv may be NULL when no x is negative.
 * window: bucket width in bits (1..16). */
static void dtx_matmul(const dtx_pub *k, const uint64_t *xabs, const uint8_t *xneg,
                       const uint64_t *c, const uint64_t *cinv, uint64_t *out, long m, long kk,
                       int bits, int window, int threads) {
#if DTX_HAVE_IFMA_BUILD
    if (k->simd && m >= 4 && window <= 14) {
        /* whole 8-row groups on IFMA; a short tail (1-3 rows) is cheaper on the GMP path */
        long head = (m > 8 && m % 8 && m % 8 < 4) ? m - m % 8 : m;
        dtx_matmul_ifma(k, xabs, xneg, c, cinv, out, head, kk, bits, window, threads);
        if (head == m) return;
        xabs += (size_t)head * (size_t)kk;
        if (xneg) xneg += (size_t)head * (size_t)kk;
        out += (size_t)head * (size_t)k->w;
        m -= head;
    }
#endif
    int w = k->w;
    int nwin = (bits + window - 1) / window;
    size_t nb = ((size_t)1 << window) - 1; /* buckets 1..2^window-1 */
    uint64_t mask = (window >= 64) ? ~(uint64_t)0 : ((((uint64_t)1) << window) - 1);
#pragma omp parallel num_threads(dtx_threads(threads))
    {
        mpz_t *bucket = (mpz_t *)malloc(sizeof(mpz_t) * nb);
        char *used = (char *)malloc(nb);
        for (size_t b = 0; b < nb; b++) mpz_init2(bucket[b], 64 * (w + 1));
        mpz_t acc, run, sum, tmp, bv;
        mpz_init2(acc, 64 * (w + 1));
        mpz_init2(run, 64 * (w + 1));
        mpz_init2(sum, 64 * (w + 1));
        mpz_init2(tmp, 128 * (w + 1));
#pragma omp for schedule(dynamic, 1)
        for (long i = 0; i < m; i++) {
            const uint64_t *xa = xabs + (size_t)i * (size_t)kk;
            const uint8_t *xn = xneg ? xneg + (size_t)i * (size_t)kk : NULL;
            int acc_set = 0;
            for (int wi = nwin - 1; wi >= 0; wi--) {
                if (acc_set) {
                    for (int s = 0; s < window; s++) dtx_mulmod(acc, acc, acc, k->nsq, tmp);
                }
                memset(used, 0, nb);
                int shift = wi * window;
                for (long j = 0; j < kk; j++) {
                    uint64_t d = (shift < 64) ? ((xa[j] >> shift) & mask) : 0;
                    if (!d) continue;
                    const uint64_t *src = (xn && xn[j]) ? cinv : c;
                    dtx_load(bv, src + (size_t)j * (size_t)w, w);
                    if (!used[d - 1]) {
                        mpz_set(bucket[d - 1], bv);
                        used[d - 1] = 1;
                    } else {
                        dtx_mulmod(bucket[d - 1], bucket[d - 1], bv, k->nsq, tmp);
                    }
                }
                /* sum_d bucket_d^d via running products, from the top bucket down */
                int run_set = 0, sum_set = 0;
                for (long b = (long)nb - 1; b >= 0; b--) {
                    if (used[b]) {
                        if (run_set) dtx_mulmod(run, run, bucket[b], k->nsq, tmp);
                        else { mpz_set(run, bucket[b]); run_set = 1; }
                    }
                    if (run_set) {
                        if (sum_set) dtx_mulmod(sum, sum, run, k->nsq, tmp);
                        else { mpz_set(sum, run); sum_set = 1; }
                    }
                }
                if (sum_set) {
                    if (acc_set) dtx_mulmod(acc, acc, sum, k->nsq, tmp);
                    else { mpz_set(acc, sum); acc_set = 1; }
                }
            }
            if (!acc_set) mpz_set_ui(acc, 1);
            dtx_store(out + (size_t)i * (size_t)w, acc, w);
        }
        for (size_t b = 0; b < nb; b++) mpz_clear(bucket[b]);
        free(bucket);
        free(used);
        mpz_clears(acc, run, sum, tmp, NULL);
    }
}

/* ---- decryption ------------------------------------------------------------------------ */

/* m from u_p = c^(p-1) mod p^2 and u_q = c^(q-1) mod q^2 (consumes xp, xq) */
static inline void dtx_crt_finish(const dtx_priv *s, mpz_t xp, mpz_t xq, mpz_t t) {
    mpz_sub_ui(xp, xp, 1);
    mpz_fdiv_q(xp, xp, s->p); /* floor, as Python's // (exact for valid ciphertexts) */
    mpz_mul(xp, xp, s->hp);
    mpz_mod(xp, xp, s->p);
    mpz_sub_ui(xq, xq, 1);
    mpz_fdiv_q(xq, xq, s->q);
    mpz_mul(xq, xq, s->hq);
    mpz_mod(xq, xq, s->q);
    /* CRT: m = m_q + q * ((m_p - m_q) * q^-1 mod p) */
    mpz_sub(t, xp, xq);
    mpz_mul(t, t, s->qinv);
    mpz_mod(t, t, s->p);
    mpz_mul(t, t, s->q);
    mpz_add(t, t, xq);
}

/* m = the decryption of cv (< n^2): single-number IFMA (p and q halves interleaved on this core,
 * see _ifma_one.h) where the key has it, else GMP. xp, xq, m: initialized scratch / result. */
static void dtx_decrypt1(const dtx_priv *s, const mpz_t cv, mpz_t m, mpz_t xp, mpz_t xq) {
    mpz_tdiv_r(xp, cv, s->psq);
    mpz_tdiv_r(xq, cv, s->qsq);
    int done = 0;
#if DTX_HAVE_IFMA_BUILD
    if (s->hx)
        done = hx_powm(xp, xp, (const uint64_t *)mpz_limbs_read(s->pm1), (int)mpz_size(s->pm1), &s->hxp, xq, xq,
                       (const uint64_t *)mpz_limbs_read(s->qm1), (int)mpz_size(s->qm1), &s->hxq) == 0;
#endif
    if (!done) {
        mpz_powm_sec(xp, xp, s->pm1, s->psq);
        mpz_powm_sec(xq, xq, s->qm1, s->qsq);
    }
    dtx_crt_finish(s, xp, xq, m);
}

#if DTX_HAVE_IFMA_BUILD
IFMA_TARGET static void dtx_decrypt_ifma(const dtx_pub *k, const dtx_priv *s, const uint64_t *c,
                                         uint64_t *out, long cnt, int threads) {
    const int w = k->w, wn = k->wn;
    long groups = (cnt + 7) / 8;
    const int wp = (int)mpz_size(s->pm1), wq = (int)mpz_size(s->qm1);
#pragma omp parallel num_threads(dtx_threads(threads))
    {
        ifma_work wkp, wkq;
        ifma_work_init(&wkp, &s->ip, 32);
        ifma_work_init(&wkq, &s->iq, 32);
        mpz_t cv, xp[8], xq[8], t;
        for (int e = 0; e < 8; e++) {
            mpz_init2(xp[e], 64 * (w + 2));
            mpz_init2(xq[e], 64 * (w + 2));
        }
        mpz_init2(t, 128 * (w + 2));
        const uint64_t *ep[8], *eq[8];
        int wep[8], weq[8];
        for (int e = 0; e < 8; e++) {
            ep[e] = (const uint64_t *)mpz_limbs_read(s->pm1);
            eq[e] = (const uint64_t *)mpz_limbs_read(s->qm1);
            wep[e] = wp;
            weq[e] = wq;
        }
#pragma omp for schedule(dynamic, 1)
        for (long g = 0; g < groups; g++) {
            long base = g * 8;
            for (int e = 0; e < 8; e++) {
                long j = base + e < cnt ? base + e : base;
                dtx_load(cv, c + (size_t)j * (size_t)w, w);
                mpz_tdiv_r(t, cv, s->psq);
                ifma_put(wkp.x, e, t, s->ip.L);
                mpz_tdiv_r(t, cv, s->qsq);
                ifma_put(wkq.x, e, t, s->iq.L);
            }
            ifma_mul(wkp.x, wkp.x, s->ip.R2, &s->ip, wkp.scratch);
            ifma_powm8(&wkp, &s->ip, ep, wep, 5, 1);
            ifma_mul(wkp.acc, wkp.acc, s->ip.ONE, &s->ip, wkp.scratch);
            ifma_mul(wkq.x, wkq.x, s->iq.R2, &s->iq, wkq.scratch);
            ifma_powm8(&wkq, &s->iq, eq, weq, 5, 1);
            ifma_mul(wkq.acc, wkq.acc, s->iq.ONE, &s->iq, wkq.scratch);
            for (int e = 0; e < 8 && base + e < cnt; e++) {
                ifma_get_reduced(xp[e], wkp.acc, e, &s->ip);
                ifma_get_reduced(xq[e], wkq.acc, e, &s->iq);
                dtx_crt_finish(s, xp[e], xq[e], t);
                dtx_store(out + (size_t)(base + e) * (size_t)wn, t, wn);
            }
        }
        for (int e = 0; e < 8; e++) {
            mpz_clear(xp[e]);
            mpz_clear(xq[e]);
        }
        mpz_clear(t);
        ifma_work_free(&wkp);
        ifma_work_free(&wkq);
    }
}
#endif

/* out_j = m_j in [0, n) (CRT, g = n + 1) */
static void dtx_decrypt(const dtx_pub *k, const dtx_priv *s, const uint64_t *c, uint64_t *out,
                        long cnt, int threads) {
    int w = k->w, wn = k->wn;
#if DTX_HAVE_IFMA_BUILD
    if (s->hx) {
        /* whole 8-lane groups on the batch IFMA path; a tail of at most 5 rows (or a batch of at
         * most 5) one number at a time on the single-number path, which costs less than a group */
        long head = s->simd ? cnt / 8 * 8 : 0;
        if (s->simd && cnt - head > 5) head = cnt;
        if (head) dtx_decrypt_ifma(k, s, c, out, head, threads);
        long rest = cnt - head;
        if (rest > 0) {
            int nt = dtx_threads(threads) < rest ? dtx_threads(threads) : (int)rest;
#pragma omp parallel num_threads(nt)
            {
                mpz_t cv, xp, xq, t;
                mpz_inits(xp, xq, t, NULL);
#pragma omp for schedule(static)
                for (long j = head; j < cnt; j++) {
                    dtx_load(cv, c + (size_t)j * (size_t)w, w);
                    dtx_decrypt1(s, cv, t, xp, xq);
                    dtx_store(out + (size_t)j * (size_t)wn, t, wn);
                }
                mpz_clears(xp, xq, t, NULL);
            }
        }
        return;
    }
    if (s->simd && cnt >= 4) {
        dtx_decrypt_ifma(k, s, c, out, cnt, threads);
        return;
    }
#endif
#pragma omp parallel num_threads(dtx_threads(threads))
    {
        mpz_t cv, xp, xq, t;
        mpz_init2(xp, 64 * (w + 1));
        mpz_init2(xq, 64 * (w + 1));
        mpz_init2(t, 128 * (w + 1));
#pragma omp for schedule(static)
        for (long j = 0; j < cnt; j++) {
            dtx_load(cv, c + (size_t)j * (size_t)w, w);
            /* m_p = L_p(c^(p-1) mod p^2) * hp mod p */
            mpz_tdiv_r(xp, cv, s->psq);
            mpz_powm_sec(xp, xp, s->pm1, s->psq);
            mpz_sub_ui(xp, xp, 1);
            mpz_fdiv_q(xp, xp, s->p);
            mpz_mul(xp, xp, s->hp);
            mpz_mod(xp, xp, s->p);
            mpz_tdiv_r(xq, cv, s->qsq);
            mpz_powm_sec(xq, xq, s->qm1, s->qsq);
            mpz_sub_ui(xq, xq, 1);
            mpz_fdiv_q(xq, xq, s->q);
            mpz_mul(xq, xq, s->hq);
            mpz_mod(xq, xq, s->q);
            /* CRT: m = m_q + q * ((m_p - m_q) * q^-1 mod p) */
            mpz_sub(t, xp, xq);
            mpz_mul(t, t, s->qinv);
            mpz_mod(t, t, s->p);
            mpz_mul(t, t, s->q);
            mpz_add(t, t, xq);
            dtx_store(out + (size_t)j * (size_t)wn, t, wn);
        }
        mpz_clears(xp, xq, t, NULL);
    }
}

/* One ciphertext (clen little-endian bytes, < n^2) to its residue m in [0, n), written to out
 * (outlen >= 8 wn bytes, zero-padded), by dtx_decrypt1: on one core (what a single number can use
 * well: two threads cost more in wake-ups than they save on a busy machine). Returns 0, or -1 if
 * out is too short. */
static int dtx_decrypt_one(const dtx_pub *k, const dtx_priv *s, const unsigned char *c, size_t clen,
                           unsigned char *out, size_t outlen) {
    (void)k;
    mpz_t cv, xp, xq, t;
    mpz_inits(cv, xp, xq, t, NULL);
    mpz_import(cv, clen, -1, 1, 0, 0, c);
    dtx_decrypt1(s, cv, t, xp, xq);
    memset(out, 0, outlen);
    int rc = 0;
    if (mpz_sgn(t)) {
        if ((mpz_sizeinbase(t, 2) + 7) / 8 <= outlen) mpz_export(out, NULL, -1, 1, 0, 0, t);
        else rc = -1;
    }
    mpz_clears(cv, xp, xq, t, NULL);
    return rc;
}

/* One power c^(+-e) mod n^2 (c: clen bytes < n^2, e: elen bytes, both little-endian), written to
 * out (outlen >= 8 w bytes, zero-padded); a negative exponent inverts c first (unless e = 0).
 * Single-number IFMA (fixed window, time depending on e's width only) where the CPU has it, else
 * GMP. Returns 0, 1 when c is not invertible (out = 1), or -1 when out of memory. */
static int dtx_pow_one(const dtx_pub *k, const unsigned char *c, size_t clen, const unsigned char *e,
                       size_t elen, int neg, unsigned char *out, size_t outlen) {
    mpz_t cv, ev, r;
    mpz_inits(cv, ev, r, NULL);
    mpz_import(cv, clen, -1, 1, 0, 0, c);
    mpz_import(ev, elen, -1, 1, 0, 0, e);
    int rc = 0;
    if (neg && mpz_sgn(ev) != 0 && !mpz_invert(cv, cv, k->nsq)) {
        rc = 1;
        mpz_set_ui(r, 1);
    } else {
        int done = 0;
#if DTX_HAVE_IFMA_BUILD
        if (k->hx && mpz_sgn(ev) != 0) {
            mpz_tdiv_r(cv, cv, k->nsq);
            done = hx_powm(r, cv, (const uint64_t *)mpz_limbs_read(ev), (int)mpz_size(ev), &k->hxn, NULL, NULL,
                           NULL, 0, NULL) == 0;
        }
#endif
        if (!done) mpz_powm(r, cv, ev, k->nsq);
    }
    memset(out, 0, outlen);
    if (mpz_sgn(r)) {
        if ((mpz_sizeinbase(r, 2) + 7) / 8 <= outlen) mpz_export(out, NULL, -1, 1, 0, 0, r);
        else rc = -1;
    }
    mpz_clears(cv, ev, r, NULL);
    return rc;
}

/* ---- encoding -------------------------------------------------------------------------- */

/* out_j = round(x_j * 2^frac) mod n. Returns first index that is not finite or overflows
 * (|value| > max_int), else -1. */
static long dtx_encode_f64(const dtx_pub *k, const double *x, int frac, uint64_t *out, long cnt,
                           int threads) {
    int wn = k->wn;
    long bad = -1;
#pragma omp parallel num_threads(dtx_threads(threads))
    {
        mpz_t v;
        mpz_init2(v, 64 * (wn + 1));
#pragma omp for schedule(static)
        for (long j = 0; j < cnt; j++) {
            double xv = x[j];
            int ok = isfinite(xv);
            if (ok) {
                int e;
                double mant = frexp(xv, &e); /* xv = mant * 2^e, 0.5 <= |mant| < 1 */
                /* v = round(mant * 2^53) * 2^(e - 53 + frac), exactly */
                long long mi = (long long)ldexp(mant, 53);
                long sh = (long)e - 53 + (long)frac;
                mpz_set_si(v, (long)mi);
                if (sh >= 0) {
                    mpz_mul_2exp(v, v, (mp_bitcnt_t)sh);
                } else if (sh > -64) {
                    /* round half to even of mi / 2^-sh */
                    double r = nearbyint(ldexp((double)mi, (int)sh));
                    mpz_set_d(v, r);
                } else {
                    mpz_set_ui(v, 0);
                }
                if (mpz_cmpabs(v, k->max_int) > 0) ok = 0;
                else if (mpz_sgn(v) < 0) mpz_add(v, v, k->n);
            }
            if (!ok) {
#pragma omp critical
                { if (bad < 0 || j < bad) bad = j; }
                mpz_set_ui(v, 0);
            }
            dtx_store(out + (size_t)j * (size_t)wn, v, wn);
        }
        mpz_clear(v);
    }
    return bad;
}

/* out_j = (x_j * 2^shift) mod n. Returns first overflowing index or -1. */
static long dtx_encode_i64(const dtx_pub *k, const int64_t *x, int shift, uint64_t *out, long cnt,
                           int threads) {
    int wn = k->wn;
    long bad = -1;
#pragma omp parallel num_threads(dtx_threads(threads))
    {
        mpz_t v;
        mpz_init2(v, 64 * (wn + 1));
#pragma omp for schedule(static)
        for (long j = 0; j < cnt; j++) {
            mpz_set_si(v, (long)x[j]);
            if (shift) mpz_mul_2exp(v, v, (mp_bitcnt_t)shift);
            if (mpz_cmpabs(v, k->max_int) > 0) {
#pragma omp critical
                { if (bad < 0 || j < bad) bad = j; }
                mpz_set_ui(v, 0);
            } else if (mpz_sgn(v) < 0) {
                mpz_add(v, v, k->n);
            }
            dtx_store(out + (size_t)j * (size_t)wn, v, wn);
        }
        mpz_clear(v);
    }
    return bad;
}

/* Signed value of a residue: v = m if m <= max_int, m - n if m >= n - max_int; else overflow.
 * Returns 1 on success, 0 on overflow. */
static inline int dtx_signed(const dtx_pub *k, mpz_t v, const mpz_t m) {
    if (mpz_cmp(m, k->max_int) <= 0) { mpz_set(v, m); return 1; }
    if (mpz_cmp(m, k->n_minus_max) >= 0) { mpz_sub(v, m, k->n); return 1; }
    return 0;
}

/* out_j = signed(m_j) * 2^-frac as double; returns first overflow index or -1 */
static long dtx_decode_f64(const dtx_pub *k, const uint64_t *m, int frac, double *out, long cnt,
                           int threads) {
    int wn = k->wn;
    long bad = -1;
#pragma omp parallel num_threads(dtx_threads(threads))
    {
        mpz_t mv, v;
        mpz_init2(v, 64 * (wn + 1));
#pragma omp for schedule(static)
        for (long j = 0; j < cnt; j++) {
            dtx_load(mv, m + (size_t)j * (size_t)wn, wn);
            if (!dtx_signed(k, v, mv)) {
#pragma omp critical
                { if (bad < 0 || j < bad) bad = j; }
                out[j] = NAN;
                continue;
            }
            long e;
            double d = mpz_get_d_2exp(&e, v); /* v = d * 2^e, 0.5 <= |d| < 1, truncated */
            out[j] = ldexp(d, (int)(e - frac));
        }
        mpz_clear(v);
    }
    return bad;
}

/* out_j = signed(m_j) as int64; status_j = 0 ok, 1 does not fit int64, 2 overflow. */
static void dtx_decode_i64(const dtx_pub *k, const uint64_t *m, int64_t *out, uint8_t *status,
                           long cnt, int threads) {
    int wn = k->wn;
#pragma omp parallel num_threads(dtx_threads(threads))
    {
        mpz_t mv, v;
        mpz_init2(v, 64 * (wn + 1));
#pragma omp for schedule(static)
        for (long j = 0; j < cnt; j++) {
            dtx_load(mv, m + (size_t)j * (size_t)wn, wn);
            if (!dtx_signed(k, v, mv)) { status[j] = 2; out[j] = 0; continue; }
            if (!mpz_fits_slong_p(v)) { status[j] = 1; out[j] = 0; continue; }
            status[j] = 0;
            out[j] = (int64_t)mpz_get_si(v);
        }
        mpz_clear(v);
    }
}

/* first index whose value is 0 or >= modulus (n^2 when which == 1, n when which == 0), or -1 */
static long dtx_check_range(const dtx_pub *k, const uint64_t *c, int which, long cnt) {
    int w = which ? k->w : k->wn;
    const mpz_srcptr mod = which ? k->nsq : k->n;
    mpz_t cv;
    for (long j = 0; j < cnt; j++) {
        dtx_load(cv, c + (size_t)j * (size_t)w, w);
        if (which && mpz_sgn(cv) == 0) return j;
        if (mpz_cmp(cv, mod) >= 0) return j;
    }
    return -1;
}

#endif /* DTX_PAILLIER_CORE_H */
