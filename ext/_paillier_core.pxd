# Declarations of the C core of the Paillier kernel, ext/_paillier_core.h (same stem).
from libc.stdint cimport uint64_t, int64_t, uint8_t

cdef extern from "_paillier_core.h" nogil:
    ctypedef struct dtx_pub:
        int wn
        int w
        int win
        int nwin
        void *table
        void *mtab
        int simd
        int hx
    ctypedef struct dtx_priv:
        int simd
        int hx
    void dtx_pub_init(dtx_pub *k, const uint64_t *n, int wn)
    void dtx_pub_clear(dtx_pub *k)
    void dtx_priv_init(dtx_priv *s, const dtx_pub *k, const uint64_t *p, int wp, const uint64_t *q, int wq)
    void dtx_priv_clear(dtx_priv *s)
    int dtx_table_build(dtx_pub *k, const uint64_t *hs, int exp_bits, int win, int threads)
    void dtx_obf_djn(const dtx_pub *k, const uint64_t *exps, int we, uint64_t *out, long cnt, int threads)
    void dtx_obf_standard(const dtx_pub *k, const uint64_t *r, int wr, uint64_t *out, long cnt, int threads)
    void dtx_encrypt(const dtx_pub *k, const uint64_t *m, const uint64_t *obf, uint64_t *out, long cnt, int threads)
    void dtx_mul(const dtx_pub *k, const uint64_t *a, const uint64_t *b, long bstride, uint64_t *out, long cnt, int threads)
    void dtx_add_plain(const dtx_pub *k, const uint64_t *c, const uint64_t *m, long mstride, uint64_t *out, long cnt, int threads)
    long dtx_pow(const dtx_pub *k, const uint64_t *c, long cstride, const uint64_t *e, int we, const uint8_t *eneg, long estride, uint64_t *out, long cnt, int threads)
    long dtx_invert(const dtx_pub *k, const uint64_t *c, uint64_t *out, long cnt, int threads)
    void dtx_prod(const dtx_pub *k, const uint64_t *c, long cnt, uint64_t *out, int threads)
    void dtx_matmul(const dtx_pub *k, const uint64_t *xabs, const uint8_t *xneg, const uint64_t *c, const uint64_t *cinv, uint64_t *out, long m, long kk, int bits, int window, int threads)
    void dtx_decrypt(const dtx_pub *k, const dtx_priv *s, const uint64_t *c, uint64_t *out, long cnt, int threads)
    int dtx_decrypt_one(const dtx_pub *k, const dtx_priv *s, const unsigned char *c, size_t clen, unsigned char *out, size_t outlen)
    int dtx_pow_one(const dtx_pub *k, const unsigned char *c, size_t clen, const unsigned char *e, size_t elen, int neg, unsigned char *out, size_t outlen)
    long dtx_encode_f64(const dtx_pub *k, const double *x, int frac, uint64_t *out, long cnt, int threads)
    long dtx_encode_i64(const dtx_pub *k, const int64_t *x, int shift, uint64_t *out, long cnt, int threads)
    long dtx_decode_f64(const dtx_pub *k, const uint64_t *m, int frac, double *out, long cnt, int threads)
    void dtx_decode_i64(const dtx_pub *k, const uint64_t *m, int64_t *out, uint8_t *status, long cnt, int threads)
    long dtx_check_range(const dtx_pub *k, const uint64_t *c, int which, long cnt)

