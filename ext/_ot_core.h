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

/* in: nrows rows of ncols bits (ncols / 8 bytes each); out: ncols rows of nrows bits.
 * nrows % 16 == 0, ncols % 8 == 0. Only input column bytes [cb0, cb1) are done (the output rows
 * 8*cb0 .. 8*cb1 - 1), so threads can split the work without sharing an output byte.
 * 16 input rows x 8 columns at a time: _mm_movemask_epi8 gathers one column's 16 bits. */
static inline void dtx_bit_transpose(const uint8_t *in, uint8_t *out, size_t nrows, size_t ncols,
                                     size_t cb0, size_t cb1) {
    const size_t inb = ncols / 8, outb = nrows / 8;
    uint8_t tmp[16];
    for (size_t cb = cb0; cb < cb1; cb++) {
        for (size_t rr = 0; rr < nrows; rr += 16) {
            for (int i = 0; i < 16; i++) tmp[i] = in[(rr + i) * inb + cb];
            __m128i x = _mm_loadu_si128((const __m128i *)tmp);
            for (int b = 7; b >= 0; b--) {
                uint16_t mm = (uint16_t)_mm_movemask_epi8(x);
                memcpy(out + (cb * 8 + (size_t)b) * outb + rr / 8, &mm, 2);
                x = _mm_slli_epi64(x, 1);
            }
        }
    }
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
