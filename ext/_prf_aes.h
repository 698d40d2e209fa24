/*
 * AES-128 in counter mode as a keystream of 64-bit words (L0), for the MPC parties' PRF streams.
 *
 * The stream is the one OpenSSL's (and pycryptodome's) AES-128-CTR writes under a zero initial
 * counter block: block i of the keystream is AES_k(i), with i as a 128-bit big-endian integer;
 * word w of the stream is bytes 8 (w mod 2) .. 8 (w mod 2) + 7 of block w / 2, read as a
 * little-endian uint64 (what numpy's uint64 view of the byte stream gives on x86-64).
 *
 * Two code paths, chosen at run time:
 *   - VAES on 512-bit registers (AVX-512 F + BW + VAES): four blocks per instruction, eight
 *     registers in flight (32 blocks per step) to cover the latency of the AES rounds;
 *   - AES-NI on 128-bit registers: eight blocks in flight.
 * DTXFAST_SIMD=0 (read at every call) turns the VAES path off; without AES-NI nothing here runs
 * (dtx_prf_level() == 0) and the Python layer keeps OpenSSL's AES-CTR through `cryptography`.
 *
 * The counter block is 128 bits wide and the carry out of its low 64 bits is handled (a step
 * whose counters would cross 2^64 takes the block-by-block path), so any initial block gives the
 * same stream as OpenSSL's CTR; the PRF streams themselves start at 0 and never get near it.
 */
#ifndef DTX_PRF_AES_H
#define DTX_PRF_AES_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define DTX_PRF_X86 1
#include <immintrin.h>
#endif

/* 2: VAES (512-bit) usable; 1: AES-NI only (or DTXFAST_SIMD=0); 0: neither (or not x86-64/GCC). */
static int dtx_prf_level(void) {
#ifdef DTX_PRF_X86
    static int cpu = -1;
    if (cpu < 0) {
        __builtin_cpu_init();
        int aes = __builtin_cpu_supports("aes") && __builtin_cpu_supports("ssse3");
        int vaes = aes && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("vaes");
        cpu = vaes ? 2 : (aes ? 1 : 0);
    }
    if (cpu == 2) {
        const char *env = getenv("DTXFAST_SIMD");
        if (env && env[0] == '0') return 1;
    }
    return cpu;
#else
    return 0;
#endif
}

#ifdef DTX_PRF_X86

#define DTX_PRF_AESNI __attribute__((target("aes,sse2,ssse3")))
#define DTX_PRF_VAES __attribute__((target("aes,avx512f,avx512bw,vaes")))

DTX_PRF_AESNI static inline __m128i dtx_prf_expand_step(__m128i key, __m128i gen) {
    gen = _mm_shuffle_epi32(gen, 0xff);
    key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
    key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
    key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
    return _mm_xor_si128(key, gen);
}

/* The 11 round keys (176 bytes) of AES-128 under `key` (16 bytes). Needs AES-NI. */
DTX_PRF_AESNI static void dtx_prf_expand(const uint8_t *key, uint8_t *rk) {
    __m128i k[11];
    k[0] = _mm_loadu_si128((const __m128i *)key);
#define DTX_PRF_STEP(i, rcon) k[i] = dtx_prf_expand_step(k[i - 1], _mm_aeskeygenassist_si128(k[i - 1], rcon))
    DTX_PRF_STEP(1, 0x01); DTX_PRF_STEP(2, 0x02); DTX_PRF_STEP(3, 0x04); DTX_PRF_STEP(4, 0x08);
    DTX_PRF_STEP(5, 0x10); DTX_PRF_STEP(6, 0x20); DTX_PRF_STEP(7, 0x40); DTX_PRF_STEP(8, 0x80);
    DTX_PRF_STEP(9, 0x1b); DTX_PRF_STEP(10, 0x36);
#undef DTX_PRF_STEP
    for (int i = 0; i < 11; i++) _mm_storeu_si128((__m128i *)(rk + 16 * i), k[i]);
}

/* Keystream blocks (hi:lo) + 0 .. nb - 1 (mod 2^128) into out (16 nb bytes), eight at a time. */
DTX_PRF_AESNI static void dtx_prf_ctr_aesni(const uint8_t *rkb, uint64_t hi, uint64_t lo, uint8_t *out,
                                            int64_t nb) {
    __m128i rk[11];
    for (int i = 0; i < 11; i++) rk[i] = _mm_loadu_si128((const __m128i *)(rkb + 16 * i));
    const __m128i bswap = _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    while (nb > 0) {
        int m = nb < 8 ? (int)nb : 8;
        __m128i s[8];
        for (int j = 0; j < 8; j++) {  /* counter (hi:lo) + j, carry into hi */
            uint64_t l = lo + (uint64_t)j, h = hi + (l < lo);
            s[j] = _mm_xor_si128(_mm_shuffle_epi8(_mm_set_epi64x((long long)h, (long long)l), bswap), rk[0]);
        }
        for (int r = 1; r < 10; r++)
            for (int j = 0; j < 8; j++) s[j] = _mm_aesenc_si128(s[j], rk[r]);
        for (int j = 0; j < 8; j++) s[j] = _mm_aesenclast_si128(s[j], rk[10]);
        if (m == 8) {
            for (int j = 0; j < 8; j++) _mm_storeu_si128((__m128i *)(out + 16 * j), s[j]);
        } else {
            for (int j = 0; j < m; j++) _mm_storeu_si128((__m128i *)(out + 16 * j), s[j]);
        }
        uint64_t l = lo + 8;
        hi += (l < lo);
        lo = l;
        out += 16 * m;
        nb -= m;
    }
}

/* The same stream with VAES: 32 blocks a step (8 registers of 4), the rest 4 blocks at a time
 * and a masked store for the last 1..3. A step whose low counter words would wrap goes through
 * the AES-NI path (it carries block by block). */
DTX_PRF_VAES static void dtx_prf_ctr_vaes(const uint8_t *rkb, uint64_t hi, uint64_t lo, uint8_t *out,
                                          int64_t nb) {
    __m512i rk[11];
    for (int i = 0; i < 11; i++) rk[i] = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(rkb + 16 * i)));
    /* reverse the 16 bytes of each 128-bit lane: (lo, hi) little-endian -> the big-endian block */
    const __m512i bswap = _mm512_broadcast_i32x4(_mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    const __m512i four = _mm512_set_epi64(0, 4, 0, 4, 0, 4, 0, 4);
    while (nb >= 32) {
        if (lo > UINT64_MAX - 31) {  /* the low word wraps inside this step */
            dtx_prf_ctr_aesni(rkb, hi, lo, out, 32);
        } else {
            __m512i c = _mm512_set_epi64((long long)hi, (long long)(lo + 3), (long long)hi, (long long)(lo + 2),
                                         (long long)hi, (long long)(lo + 1), (long long)hi, (long long)lo);
            __m512i s[8];
            for (int j = 0; j < 8; j++) {
                s[j] = _mm512_xor_si512(_mm512_shuffle_epi8(c, bswap), rk[0]);
                c = _mm512_add_epi64(c, four);
            }
            for (int r = 1; r < 10; r++)
                for (int j = 0; j < 8; j++) s[j] = _mm512_aesenc_epi128(s[j], rk[r]);
            for (int j = 0; j < 8; j++)
                _mm512_storeu_si512((void *)(out + 64 * j), _mm512_aesenclast_epi128(s[j], rk[10]));
        }
        uint64_t l = lo + 32;
        hi += (l < lo);
        lo = l;
        out += 512;
        nb -= 32;
    }
    while (nb > 0) {
        int m = nb < 4 ? (int)nb : 4;
        if (lo > UINT64_MAX - 3) {
            dtx_prf_ctr_aesni(rkb, hi, lo, out, m);
        } else {
            __m512i c = _mm512_set_epi64((long long)hi, (long long)(lo + 3), (long long)hi, (long long)(lo + 2),
                                         (long long)hi, (long long)(lo + 1), (long long)hi, (long long)lo);
            __m512i s = _mm512_xor_si512(_mm512_shuffle_epi8(c, bswap), rk[0]);
            for (int r = 1; r < 10; r++) s = _mm512_aesenc_epi128(s, rk[r]);
            s = _mm512_aesenclast_epi128(s, rk[10]);
            _mm512_mask_storeu_epi64((void *)out, (__mmask8)((1u << (2 * m)) - 1), s);
        }
        uint64_t l = lo + (uint64_t)m;
        hi += (l < lo);
        lo = l;
        out += 16 * m;
        nb -= m;
    }
}

/* Keystream blocks (hi:lo) + 0 .. nb - 1 into out on path `lv` (dtx_prf_level(), read once per call). */
static void dtx_prf_ctr1(int lv, const uint8_t *rk, uint64_t hi, uint64_t lo, uint8_t *out, int64_t nb) {
    if (nb <= 0) return;
    if (lv == 2)
        dtx_prf_ctr_vaes(rk, hi, lo, out, nb);
    else
        dtx_prf_ctr_aesni(rk, hi, lo, out, nb);
}

#else  /* not x86-64 with GCC/Clang: nothing runs here (dtx_prf_level() == 0) */

static void dtx_prf_expand(const uint8_t *key, uint8_t *rk) { (void)key; memset(rk, 0, 176); }
static void dtx_prf_ctr1(int lv, const uint8_t *rk, uint64_t hi, uint64_t lo, uint8_t *out, int64_t nb) {
    (void)lv; (void)rk; (void)hi; (void)lo; (void)out; (void)nb;
}

#endif

/* Words pos .. pos + n - 1 of the stream (zero initial counter block) into out, one thread: a
 * partial first or last block goes through a 16-byte scratch block. */
static void dtx_prf_words1(int lv, const uint8_t *rk, uint64_t pos, int64_t n, uint64_t *out) {
    uint64_t tmp[2];
    if (n <= 0) return;
    uint64_t blk = pos >> 1;
    if (pos & 1) {
        dtx_prf_ctr1(lv, rk, 0, blk, (uint8_t *)tmp, 1);
        *out++ = tmp[1];
        n--;
        blk++;
    }
    int64_t full = n >> 1;
    dtx_prf_ctr1(lv, rk, 0, blk, (uint8_t *)out, full);
    if (n & 1) {
        dtx_prf_ctr1(lv, rk, 0, blk + (uint64_t)full, (uint8_t *)tmp, 1);
        out[2 * full] = tmp[0];
    }
}

/* Tile of the fused difference: both streams' words of a tile stay in L1. */
#define DTX_PRF_TILE 512

/* out = words pa.. of stream a - words pb.. of stream b (mod 2^64), n words, one thread. */
static void dtx_prf_sub1(int lv, const uint8_t *rka, uint64_t pa, const uint8_t *rkb, uint64_t pb, int64_t n,
                         uint64_t *out) {
    uint64_t tmp[DTX_PRF_TILE];
    for (int64_t t = 0; t < n; t += DTX_PRF_TILE) {
        int64_t m = n - t < DTX_PRF_TILE ? n - t : DTX_PRF_TILE;
        dtx_prf_words1(lv, rka, pa + (uint64_t)t, m, out + t);
        dtx_prf_words1(lv, rkb, pb + (uint64_t)t, m, tmp);
        for (int64_t i = 0; i < m; i++) out[t + i] -= tmp[i];
    }
}

/* Split [0, n) into `parts` contiguous ranges of whole tiles; range `i` is [*lo, *hi). */
static void dtx_prf_range(int64_t n, int parts, int i, int64_t *lo, int64_t *hi) {
    int64_t tiles = (n + DTX_PRF_TILE - 1) / DTX_PRF_TILE;
    int64_t a = tiles * i / parts, b = tiles * (i + 1) / parts;
    *lo = a * DTX_PRF_TILE;
    *hi = b * DTX_PRF_TILE < n ? b * DTX_PRF_TILE : n;
}

/* Words pos .. pos + n - 1 into out; with nthreads > 1, OpenMP over word ranges of whole tiles
 * (each thread computes its own counters: the same stream in any split). The caller decides
 * from which size a parallel region pays. */
static void dtx_prf_words(const uint8_t *rk, uint64_t pos, int64_t n, uint64_t *out, int nthreads) {
    int lv = dtx_prf_level();
    if (nthreads <= 1 || n < 2 * DTX_PRF_TILE) {
        dtx_prf_words1(lv, rk, pos, n, out);
        return;
    }
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int i = 0; i < nthreads; i++) {
        int64_t lo, hi;
        dtx_prf_range(n, nthreads, i, &lo, &hi);
        dtx_prf_words1(lv, rk, pos + (uint64_t)lo, hi - lo, out + lo);
    }
}

/* The fused difference of two streams, parallel as dtx_prf_words. */
static void dtx_prf_sub(const uint8_t *rka, uint64_t pa, const uint8_t *rkb, uint64_t pb, int64_t n,
                        uint64_t *out, int nthreads) {
    int lv = dtx_prf_level();
    if (nthreads <= 1 || n < 2 * DTX_PRF_TILE) {
        dtx_prf_sub1(lv, rka, pa, rkb, pb, n, out);
        return;
    }
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int i = 0; i < nthreads; i++) {
        int64_t lo, hi;
        dtx_prf_range(n, nthreads, i, &lo, &hi);
        dtx_prf_sub1(lv, rka, pa + (uint64_t)lo, rkb, pb + (uint64_t)lo, hi - lo, out + lo);
    }
}

/* Blocks (hi:lo) + 0 .. nb - 1 (any initial counter block; for the tests of the carry). */
static void dtx_prf_blocks(const uint8_t *rk, uint64_t hi, uint64_t lo, int64_t nb, uint8_t *out) {
    int lv = dtx_prf_level();
    dtx_prf_ctr1(lv, rk, hi, lo, out, nb);
}

#endif
