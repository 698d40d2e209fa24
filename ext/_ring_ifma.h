/*
 * Matrix products over Z_2^64 on AVX-512 IFMA (L0 kernel of ext/_ring.pyx).
 *
 * out (n x m) += sum_i x_i (n x k_i) @ y_i (k_i x m)  (mod 2^64), all uint64, row-major.
 *
 * The scheme. IFMA multiplies the low 52 bits of two 64-bit lanes and adds either the low or
 * the high 52 bits of the 104-bit product to a 64-bit accumulator, in one instruction. Write
 * x = x0 + 2^52 x1 (x0 < 2^52, x1 < 2^12), likewise y. Modulo 2^64,
 *
 *     x y = x0 y0 + 2^52 (x0 y1 + x1 y0)          (x1 y1 sits at 2^104)
 *         = lo52(x0 y0) + 2^52 (hi52(x0 y0) + (x0 y1 + x1 y0 mod 2^12)).
 *
 * The 12-bit middle term is one more 52-bit product: with P(v) = (v >> 52) + 2^40 (v mod 2^12),
 *
 *     P(x) P(y) = x1 y1 + 2^40 (x1 y0' + x0' y1) + 2^80 x0' y0'      (v' = v mod 2^12)
 *
 * so lo52(P(x) P(y)) = x1 y1 + 2^40 ((x1 y0 + x0 y1) mod 2^12), as x1 y1 < 2^24. Summed over a
 * block of kc <= 2^16 terms, the x1 y1 parts stay below 2^40, so bits 40.. of the sum are
 * exactly the sum of the middle terms (mod 2^24, of which 12 bits are used). Per block:
 *
 *     acc0 = sum lo52(x y),  acc1 = sum hi52(x y),  acc2 = sum lo52(P(x) P(y))   (IFMA ignores
 *     bits 52..63 of its operands, so x itself is x0),
 *     out += acc0 + 2^52 (acc1 + (acc2 >> 40))   (mod 2^64).
 *
 * Three IFMA instructions per 8 multiply-adds, against five float64 limb products per term on
 * BLAS (see dtxfast.protocols.mpc._ring_ref); the operands need only P() computed when packing.
 * dtxfast.protocols.mpc._ring_ref.ifma_matmul is the numpy twin of exactly this arithmetic.
 *
 * Blocking (BLIS style): A is packed in micro-panels of 4 rows ([k][x r0..r3][P r0..r3]), B in
 * micro-panels of 16 columns ([k][y c0..c15][P c0..c15]); a 4 x 16 tile keeps its 24
 * accumulators in registers over kc = DTX_RING_KC terms (B micro-panel in L1, a block of
 * A micro-panels in L2). Tiles of DTX_RING_MCP x DTX_RING_NCP micro-panels are spread over the
 * OpenMP threads (dynamic schedule: on a shared machine a descheduled thread must not hold half
 * of the work); each tile owns its rows and columns of out, so there are no races.
 */
#ifndef DTX_RING_IFMA_H
#define DTX_RING_IFMA_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "_cpu_ifma.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define DTX_RING_SIMD 1
#else
#define DTX_RING_SIMD 0
#endif

#define DTX_RING_MR 4
#define DTX_RING_NR 16
#ifndef DTX_RING_KC
#define DTX_RING_KC 256
#endif
#ifndef DTX_RING_MCP
#define DTX_RING_MCP 16
#endif
#ifndef DTX_RING_NCP
#define DTX_RING_NCP 8
#endif

typedef uint64_t dtx_u64;

static inline dtx_u64 dtx_ring_p(dtx_u64 v) { return (v >> 52) | ((v & 0xFFFu) << 40); }

/* Pack rows 4*ip .. 4*ip+3 (zero beyond n) of every x_i into A, laid end to end along k. x_i is
 * C-contiguous (element (row, kk) at row * k + kk) or, where xt[i] is set, column-major (at
 * kk * n + row: the transpose of a C-contiguous k x n array, read in place). */
static void dtx_ring_pack_a(int npairs, const dtx_u64 *const *xs, const int *xt, const int64_t *ks, int64_t n,
                            int64_t ktot, int64_t ip, dtx_u64 *pa) {
    dtx_u64 *dst = pa + (size_t)ip * (size_t)ktot * 8;
    for (int i = 0; i < npairs; i++) {
        const int64_t k = ks[i];
        const dtx_u64 *x = xs[i];
        const size_t rs = xt && xt[i] ? 1 : (size_t)k, cs = xt && xt[i] ? (size_t)n : 1;
        for (int r = 0; r < DTX_RING_MR; r++) {
            const int64_t row = ip * DTX_RING_MR + r;
            if (row < n) {
                const dtx_u64 *src = x + (size_t)row * rs;
                for (int64_t kk = 0; kk < k; kk++) {
                    dtx_u64 v = src[(size_t)kk * cs];
                    dst[kk * 8 + r] = v;
                    dst[kk * 8 + 4 + r] = dtx_ring_p(v);
                }
            } else {
                for (int64_t kk = 0; kk < k; kk++) {
                    dst[kk * 8 + r] = 0;
                    dst[kk * 8 + 4 + r] = 0;
                }
            }
        }
        dst += (size_t)k * 8;
    }
}

/* Pack columns 16*jp .. 16*jp+15 (zero beyond m) of every y_i (+ y2_i when given) into B. */
static void dtx_ring_pack_b(int npairs, const dtx_u64 *const *ys, const dtx_u64 *const *y2s, const int64_t *ks,
                            int64_t m, int64_t ktot, int64_t jp, dtx_u64 *pb) {
    dtx_u64 *dst = pb + (size_t)jp * (size_t)ktot * 32;
    const int64_t c0 = jp * DTX_RING_NR;
    const int64_t w = m - c0 < DTX_RING_NR ? m - c0 : DTX_RING_NR;
    for (int i = 0; i < npairs; i++) {
        const int64_t k = ks[i];
        const dtx_u64 *y = ys[i];
        const dtx_u64 *y2 = y2s[i];
        for (int64_t kk = 0; kk < k; kk++) {
            const dtx_u64 *src = y + (size_t)kk * (size_t)m + c0;
            const dtx_u64 *src2 = y2 ? y2 + (size_t)kk * (size_t)m + c0 : NULL;
            dtx_u64 *d = dst + kk * 32;
            int64_t c = 0;
            for (; c < w; c++) {
                dtx_u64 v = src2 ? src[c] + src2[c] : src[c];
                d[c] = v;
                d[16 + c] = dtx_ring_p(v);
            }
            for (; c < DTX_RING_NR; c++) {
                d[c] = 0;
                d[16 + c] = 0;
            }
        }
        dst += (size_t)k * 32;
    }
}

#if DTX_RING_SIMD
#define DTX_RING_TARGET __attribute__((target("avx512f,avx512ifma,avx512dq")))

/* out tile (rows x cols, at most 4 x 16, row stride ldo) += the product of one A and one B
 * micro-panel over kc terms. */
DTX_RING_TARGET static void dtx_ring_tile(const dtx_u64 *pa, const dtx_u64 *pb, int64_t kc, dtx_u64 *out,
                                          int64_t ldo, int rows, int cols) {
    __m512i l00 = _mm512_setzero_si512(), l01 = l00, l10 = l00, l11 = l00, l20 = l00, l21 = l00, l30 = l00, l31 = l00;
    __m512i h00 = l00, h01 = l00, h10 = l00, h11 = l00, h20 = l00, h21 = l00, h30 = l00, h31 = l00;
    __m512i m00 = l00, m01 = l00, m10 = l00, m11 = l00, m20 = l00, m21 = l00, m30 = l00, m31 = l00;
    for (int64_t k = 0; k < kc; k++) {
        const __m512i b0 = _mm512_load_si512((const void *)(pb));
        const __m512i b1 = _mm512_load_si512((const void *)(pb + 8));
        const __m512i q0 = _mm512_load_si512((const void *)(pb + 16));
        const __m512i q1 = _mm512_load_si512((const void *)(pb + 24));
#define DTX_RING_ROW(R)                                                   \
        {                                                                 \
            const __m512i a = _mm512_set1_epi64((long long)pa[R]);        \
            const __m512i p = _mm512_set1_epi64((long long)pa[4 + R]);    \
            l##R##0 = _mm512_madd52lo_epu64(l##R##0, a, b0);              \
            l##R##1 = _mm512_madd52lo_epu64(l##R##1, a, b1);              \
            h##R##0 = _mm512_madd52hi_epu64(h##R##0, a, b0);              \
            h##R##1 = _mm512_madd52hi_epu64(h##R##1, a, b1);              \
            m##R##0 = _mm512_madd52lo_epu64(m##R##0, p, q0);              \
            m##R##1 = _mm512_madd52lo_epu64(m##R##1, p, q1);              \
        }
        DTX_RING_ROW(0)
        DTX_RING_ROW(1)
        DTX_RING_ROW(2)
        DTX_RING_ROW(3)
#undef DTX_RING_ROW
        pa += 8;
        pb += 32;
    }
    const __mmask8 k0 = cols >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << cols) - 1u);
    const __mmask8 k1 = cols >= 16 ? (__mmask8)0xFF : (cols <= 8 ? (__mmask8)0 : (__mmask8)((1u << (cols - 8)) - 1u));
#define DTX_RING_OUT(R)                                                                                   \
    if (R < rows) {                                                                                       \
        dtx_u64 *o = out + (int64_t)R * ldo;                                                              \
        __m512i z0 = _mm512_add_epi64(l##R##0,                                                            \
            _mm512_slli_epi64(_mm512_add_epi64(h##R##0, _mm512_srli_epi64(m##R##0, 40)), 52));            \
        __m512i z1 = _mm512_add_epi64(l##R##1,                                                            \
            _mm512_slli_epi64(_mm512_add_epi64(h##R##1, _mm512_srli_epi64(m##R##1, 40)), 52));            \
        _mm512_mask_storeu_epi64(o, k0, _mm512_add_epi64(_mm512_maskz_loadu_epi64(k0, o), z0));           \
        _mm512_mask_storeu_epi64(o + 8, k1, _mm512_add_epi64(_mm512_maskz_loadu_epi64(k1, o + 8), z1));   \
    }
    DTX_RING_OUT(0)
    DTX_RING_OUT(1)
    DTX_RING_OUT(2)
    DTX_RING_OUT(3)
#undef DTX_RING_OUT
}
#endif

/* 1 when the IFMA path can run here (CPU and build), see dtx_ifma_cpu_ok. */
static int dtx_ring_simd_ok(void) {
#if DTX_RING_SIMD
    return dtx_ifma_cpu_ok();
#else
    return 0;
#endif
}

/* out += sum_i x_i @ (y_i [+ y2_i]) mod 2^64. x_i is n x ks[i] (column-major where xt[i] is set;
 * xt may be NULL), y_i (and y2_i, or NULL) ks[i] x m, out n x m, C-contiguous. Returns 0, -1 if
 * memory ran out, -2 without IFMA. */
static int dtx_ring_matmul(int npairs, const dtx_u64 *const *xs, const int *xt, const dtx_u64 *const *ys,
                           const dtx_u64 *const *y2s, const int64_t *ks, int64_t n, int64_t m, dtx_u64 *out,
                           int nthreads) {
#if DTX_RING_SIMD
    if (!dtx_ring_simd_ok()) return -2;
    int64_t ktot = 0;
    for (int i = 0; i < npairs; i++) ktot += ks[i];
    if (n <= 0 || m <= 0 || ktot <= 0) return 0;
    const int64_t na = (n + DTX_RING_MR - 1) / DTX_RING_MR;
    const int64_t nb = (m + DTX_RING_NR - 1) / DTX_RING_NR;
    dtx_u64 *pa = (dtx_u64 *)aligned_alloc(64, (size_t)na * (size_t)ktot * 8 * sizeof(dtx_u64));
    dtx_u64 *pb = (dtx_u64 *)aligned_alloc(64, (size_t)nb * (size_t)ktot * 32 * sizeof(dtx_u64));
    if (!pa || !pb) {
        free(pa);
        free(pb);
        return -1;
    }
    if (nthreads < 1) nthreads = 1;
    const int64_t ta = (na + DTX_RING_MCP - 1) / DTX_RING_MCP;
    const int64_t tb = (nb + DTX_RING_NCP - 1) / DTX_RING_NCP;
#pragma omp parallel num_threads(nthreads)
    {
#pragma omp for schedule(dynamic, 8)
        for (int64_t ip = 0; ip < na; ip++) dtx_ring_pack_a(npairs, xs, xt, ks, n, ktot, ip, pa);
#pragma omp for schedule(dynamic, 2)
        for (int64_t jp = 0; jp < nb; jp++) dtx_ring_pack_b(npairs, ys, y2s, ks, m, ktot, jp, pb);
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < ta * tb; t++) {
            const int64_t ia0 = (t / tb) * DTX_RING_MCP, ib0 = (t % tb) * DTX_RING_NCP;
            const int64_t ia1 = ia0 + DTX_RING_MCP < na ? ia0 + DTX_RING_MCP : na;
            const int64_t ib1 = ib0 + DTX_RING_NCP < nb ? ib0 + DTX_RING_NCP : nb;
            for (int64_t k0 = 0; k0 < ktot; k0 += DTX_RING_KC) {
                const int64_t kc = ktot - k0 < DTX_RING_KC ? ktot - k0 : DTX_RING_KC;
                for (int64_t jp = ib0; jp < ib1; jp++) {
                    const dtx_u64 *b = pb + ((size_t)jp * (size_t)ktot + (size_t)k0) * 32;
                    const int64_t c0 = jp * DTX_RING_NR;
                    const int cols = (int)(m - c0 < DTX_RING_NR ? m - c0 : DTX_RING_NR);
                    for (int64_t ip = ia0; ip < ia1; ip++) {
                        const int64_t r0 = ip * DTX_RING_MR;
                        const int rows = (int)(n - r0 < DTX_RING_MR ? n - r0 : DTX_RING_MR);
                        dtx_ring_tile(pa + ((size_t)ip * (size_t)ktot + (size_t)k0) * 8, b, kc,
                                      out + (size_t)r0 * (size_t)m + (size_t)c0, m, rows, cols);
                    }
                }
            }
        }
    }
    free(pa);
    free(pb);
    return 0;
#else
    (void)npairs; (void)xs; (void)xt; (void)ys; (void)y2s; (void)ks; (void)n; (void)m; (void)out; (void)nthreads;
    return -2;
#endif
}

#endif
