/*
 * The one run-time check for dtxfast's AVX-512 IFMA paths (_ifma.h for Paillier, _x25519_ifma.h
 * for the PSI ladder): both take their SIMD path only when this returns 1.
 */
#ifndef DTX_CPU_IFMA_H
#define DTX_CPU_IFMA_H

#include <stdlib.h>

/* 1 when this build targets x86-64 with GCC/Clang, the CPU reports AVX-512 F, IFMA and DQ, and
 * DTXFAST_SIMD is not "0". The variable is read at every call (so a test can switch the path
 * off at run time); the CPU is asked once. */
static int dtx_ifma_cpu_ok(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    static int cpu = -1;
    const char *env = getenv("DTXFAST_SIMD");
    if (env && env[0] == '0') return 0;
    if (cpu < 0) {
        __builtin_cpu_init();
        cpu = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512ifma") &&
              __builtin_cpu_supports("avx512dq");
    }
    return cpu;
#else
    return 0;
#endif
}

#endif
