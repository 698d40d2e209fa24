# cython: language_level=3
"""Matrix products over Z_2^64 on AVX-512 IFMA (L0): three IFMA instructions per 8 multiply-adds.

Arrays in, arrays out; no validation (``dtxfast.protocols.mpc._ring`` calls it with contiguous
``uint64`` arrays of matching shapes). The scheme is explained in ``ext/_ring_ifma.h``; its numpy
twin is ``dtxfast.protocols.mpc._ring_ref.ifma_matmul``. Without AVX-512 IFMA (or with
``DTXFAST_SIMD=0``) :func:`simd_available` is False and the callers use float64 BLAS instead.
"""

from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc

cdef extern from "_ring_ifma.h":
    int dtx_ring_simd_ok() nogil
    int dtx_ring_matmul(int npairs, const uint64_t *const *xs, const int *xt, const uint64_t *const *ys,
                        const uint64_t *const *y2s, const int64_t *ks, int64_t n, int64_t m,
                        uint64_t *out, int nthreads) nogil
    int DTX_RING_KC

#: what the callers use where the IFMA path cannot run (for dtxfast.backend_info)
SIMD_FALLBACK = "float64 BLAS limb products"
#: inner terms one register tile sums before it is added to the result
KC = DTX_RING_KC


def simd_available():
    """True when this CPU and build run the IFMA path (and ``DTXFAST_SIMD`` is not ``0``)."""
    return dtx_ring_simd_ok() == 1


def matmul_sum(list xs, list ys, list y2s, uint64_t[:, ::1] out, int nthreads=1):
    """``out += sum(x @ (y + y2))`` modulo 2^64 over the lists (``y2`` may be None).

    Every ``x`` is ``n x k_i`` and every ``y`` / ``y2`` ``k_i x m``, ``uint64``; the ``y`` are
    C-contiguous, an ``x`` C- or F-contiguous (the transpose of a C-contiguous array is read in
    place). Raises MemoryError when the packed operands do not fit, RuntimeError without IFMA.
    """
    cdef int npairs = len(xs)
    cdef int64_t n = out.shape[0], m = out.shape[1]
    cdef int *pt = <int *>malloc(npairs * sizeof(int))
    cdef const uint64_t **px = <const uint64_t **>malloc(npairs * sizeof(void *))
    cdef const uint64_t **py = <const uint64_t **>malloc(npairs * sizeof(void *))
    cdef const uint64_t **py2 = <const uint64_t **>malloc(npairs * sizeof(void *))
    cdef int64_t *pk = <int64_t *>malloc(npairs * sizeof(int64_t))
    cdef const uint64_t[:, ::1] view
    cdef int i, rc
    keep = []
    try:
        if not px or not py or not py2 or not pk or not pt:
            raise MemoryError()
        for i in range(npairs):
            x = xs[i]
            pt[i] = 0 if x.flags.c_contiguous else 1
            view = x.T if pt[i] else x  # a column-major x is the transpose of a C-contiguous array
            keep.append(view)
            px[i] = &view[0, 0] if view.shape[0] * view.shape[1] else NULL
            pk[i] = x.shape[1]
            view = ys[i]
            keep.append(view)
            py[i] = &view[0, 0] if view.shape[0] * view.shape[1] else NULL
            if y2s[i] is None:
                py2[i] = NULL
            else:
                view = y2s[i]
                keep.append(view)
                py2[i] = &view[0, 0] if view.shape[0] * view.shape[1] else NULL
        with nogil:
            rc = dtx_ring_matmul(npairs, px, pt, py, py2, pk, n, m, &out[0, 0] if n * m else NULL, nthreads)
        if rc == -1:
            raise MemoryError("not enough memory for the packed ring-matmul operands")
        if rc == -2:
            raise RuntimeError("the AVX-512 IFMA ring matmul is not available here")
    finally:
        free(pt)
        free(px)
        free(py)
        free(py2)
        free(pk)
