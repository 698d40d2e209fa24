/* Bit-matrix transposition and small helpers of the OT-extension kernel (ext/_ot.pyx).
 *
 * Bit order everywhere: bit c of a row is (row[c / 8] >> (c % 8)) & 1 (numpy's
 * ``bitorder="little"``), so the pure-Python twin transposes with np.unpackbits / np.packbits.
 */
#ifndef DTX_OT_CORE_H
#define DTX_OT_CORE_H

#include <stdint.h>
#include <string.h>
#include <emmintrin.h>

/* 16 rows of 16 bytes in r[] -> c[j] holds byte j of every row (byte i of c[j] = r[i] byte j). */
static inline void dtx_tr16x16(const __m128i r[16], __m128i c[16]) {
    __m128i a[16], b[16], d[16];
    for (int k = 0; k < 8; k++) {
        a[k] = _mm_unpacklo_epi8(r[2 * k], r[2 * k + 1]);
        a[k + 8] = _mm_unpackhi_epi8(r[2 * k], r[2 * k + 1]);
    }
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++) {
            b[h * 8 + k] = _mm_unpacklo_epi16(a[h * 8 + 2 * k], a[h * 8 + 2 * k + 1]);
            b[h * 8 + k + 4] = _mm_unpackhi_epi16(a[h * 8 + 2 * k], a[h * 8 + 2 * k + 1]);
        }
    for (int g = 0; g < 4; g++) {
        d[g * 4 + 0] = _mm_unpacklo_epi32(b[g * 4 + 0], b[g * 4 + 1]);
        d[g * 4 + 1] = _mm_unpackhi_epi32(b[g * 4 + 0], b[g * 4 + 1]);
        d[g * 4 + 2] = _mm_unpacklo_epi32(b[g * 4 + 2], b[g * 4 + 3]);
        d[g * 4 + 3] = _mm_unpackhi_epi32(b[g * 4 + 2], b[g * 4 + 3]);
        c[4 * g + 0] = _mm_unpacklo_epi64(d[g * 4 + 0], d[g * 4 + 2]);
        c[4 * g + 1] = _mm_unpackhi_epi64(d[g * 4 + 0], d[g * 4 + 2]);
        c[4 * g + 2] = _mm_unpacklo_epi64(d[g * 4 + 1], d[g * 4 + 3]);
        c[4 * g + 3] = _mm_unpackhi_epi64(d[g * 4 + 1], d[g * 4 + 3]);
    }
}

/* the 8 output rows of one byte column: 16 rows' bits of columns 8*cb .. 8*cb+7 */
static inline void dtx_emit(__m128i x, uint8_t *out, size_t cb, size_t outb, size_t rr) {
    for (int b = 7; b >= 0; b--) {
        uint16_t mm = (uint16_t)_mm_movemask_epi8(x);
        memcpy(out + (cb * 8 + (size_t)b) * outb + rr / 8, &mm, 2);
        x = _mm_slli_epi64(x, 1);
    }
}

/* in: nrows rows of ncols bits (ncols / 8 bytes each); out: ncols rows of nrows bits.
 * nrows % 16 == 0, ncols % 8 == 0. Only input column bytes [cb0, cb1) are done (the output rows
 * 8*cb0 .. 8*cb1 - 1), so threads can split the work without sharing an output byte.
 * Tiles of 16 rows x 16 bytes: a 16x16 byte transpose in registers, then _mm_movemask_epi8
 * gathers one column's 16 bits at a time. */
static inline void dtx_bit_transpose(const uint8_t *in, uint8_t *out, size_t nrows, size_t ncols,
                                     size_t cb0, size_t cb1) {
    const size_t inb = ncols / 8, outb = nrows / 8;
    __m128i r[16], c[16];
    size_t cb = cb0;
    for (; cb + 16 <= cb1; cb += 16) {
        for (size_t rr = 0; rr < nrows; rr += 16) {
            for (int i = 0; i < 16; i++) r[i] = _mm_loadu_si128((const __m128i *)(in + (rr + i) * inb + cb));
            dtx_tr16x16(r, c);
            for (int j = 0; j < 16; j++) dtx_emit(c[j], out, cb + j, outb, rr);
        }
    }
    for (; cb < cb1; cb++) {
        uint8_t tmp[16];
        for (size_t rr = 0; rr < nrows; rr += 16) {
            for (int i = 0; i < 16; i++) tmp[i] = in[(rr + i) * inb + cb];
            dtx_emit(_mm_loadu_si128((const __m128i *)tmp), out, cb, outb, rr);
        }
    }
}

/* bring a 64-byte row (two cache lines if unaligned) towards L1 ahead of its use */
static inline void dtx_prefetch_row(const uint8_t *p) {
    __builtin_prefetch(p, 0, 3);
    __builtin_prefetch(p + 63, 0, 3);
}

/* xorshift64* (the cuckoo table's eviction choices; not a source of secrets) */
static inline uint64_t dtx_xorshift(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static inline uint64_t dtx_load64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* the slot of a 64-bit key in an open-addressing table of mask + 1 slots */
static inline uint64_t dtx_slot(uint64_t key, uint64_t mask) {
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return key & mask;
}

#endif
