# Declarations of the parts of GMP (gmp.h, Debian's libgmp-dev) the kernels use.
# Shared by every kernel that works on big integers; link with ``# distutils: libraries = gmp``.

cdef extern from "gmp.h" nogil:
    ctypedef unsigned long mp_limb_t
    ctypedef long mp_size_t
    ctypedef unsigned long mp_bitcnt_t

    ctypedef struct __mpz_struct:
        int _mp_alloc
        int _mp_size
        mp_limb_t *_mp_d
    ctypedef __mpz_struct mpz_t[1]
    ctypedef __mpz_struct *mpz_ptr
    ctypedef const __mpz_struct *mpz_srcptr

    void mpz_init(mpz_t)
    void mpz_init2(mpz_t, mp_bitcnt_t)
    void mpz_clear(mpz_t)
    void mpz_set(mpz_t, const mpz_t)
    void mpz_set_ui(mpz_t, unsigned long)
    void mpz_set_si(mpz_t, long)
    void mpz_set_d(mpz_t, double)
    void mpz_swap(mpz_t, mpz_t)
    double mpz_get_d(const mpz_t)
    double mpz_get_d_2exp(long *, const mpz_t)
    long mpz_get_si(const mpz_t)
    unsigned long mpz_get_ui(const mpz_t)
    int mpz_fits_slong_p(const mpz_t)

    void mpz_add(mpz_t, const mpz_t, const mpz_t)
    void mpz_add_ui(mpz_t, const mpz_t, unsigned long)
    void mpz_sub(mpz_t, const mpz_t, const mpz_t)
    void mpz_sub_ui(mpz_t, const mpz_t, unsigned long)
    void mpz_neg(mpz_t, const mpz_t)
    void mpz_abs(mpz_t, const mpz_t)
    void mpz_mul(mpz_t, const mpz_t, const mpz_t)
    void mpz_mul_ui(mpz_t, const mpz_t, unsigned long)
    void mpz_mul_si(mpz_t, const mpz_t, long)
    void mpz_mul_2exp(mpz_t, const mpz_t, mp_bitcnt_t)
    void mpz_addmul(mpz_t, const mpz_t, const mpz_t)
    void mpz_mod(mpz_t, const mpz_t, const mpz_t)
    void mpz_tdiv_r(mpz_t, const mpz_t, const mpz_t)
    void mpz_tdiv_q(mpz_t, const mpz_t, const mpz_t)
    void mpz_tdiv_q_2exp(mpz_t, const mpz_t, mp_bitcnt_t)
    void mpz_fdiv_q_2exp(mpz_t, const mpz_t, mp_bitcnt_t)
    void mpz_divexact(mpz_t, const mpz_t, const mpz_t)
    void mpz_powm(mpz_t, const mpz_t, const mpz_t, const mpz_t)
    void mpz_powm_ui(mpz_t, const mpz_t, unsigned long, const mpz_t)
    void mpz_powm_sec(mpz_t, const mpz_t, const mpz_t, const mpz_t)
    int mpz_invert(mpz_t, const mpz_t, const mpz_t)
    void mpz_gcd(mpz_t, const mpz_t, const mpz_t)

    int mpz_cmp(const mpz_t, const mpz_t)
    int mpz_cmp_ui(const mpz_t, unsigned long)
    int mpz_cmp_si(const mpz_t, long)
    int mpz_sgn(const mpz_t)
    size_t mpz_sizeinbase(const mpz_t, int)
    int mpz_tstbit(const mpz_t, mp_bitcnt_t)

    void mpz_import(mpz_t, size_t, int, size_t, int, size_t, const void *)
    void *mpz_export(void *, size_t *, int, size_t, int, size_t, const mpz_t)

    # Read-only view of a limb array, no copy (GMP >= 6.0).
    mpz_srcptr mpz_roinit_n(mpz_t, const mp_limb_t *, mp_size_t)
    size_t mpz_size(const mpz_t)
    const mp_limb_t *mpz_limbs_read(const mpz_t)
    mp_limb_t *mpz_limbs_write(mpz_t, mp_size_t)
    void mpz_limbs_finish(mpz_t, mp_size_t)
