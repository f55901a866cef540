/* AVX-VNNI version of the engine's 2:4 sparse int8 GEMM (kernels/gemm_u8_24.h), bit-identical to
 * kernels/ref/gemm_u8_24.c; the body is kernels/avx2/gemm_u8_24_ymm.h with the 256-bit vpdpbusd
 * (four u8 x s8 products into an int32 lane, no int16 step, no saturation) as its dot step.
 *
 * Compiled with -mavx2 -mfma -mavxvnni (a stub without those flags); reached only through
 * qd_gemm_u24_table after the CPUID check. */
#include "kernels/gemm_u8_24.h"

#if defined(__AVXVNNI__) && defined(__AVX2__)
#include <immintrin.h>

#define QD_U24_DOT(acc, x, w) ((acc) = _mm256_dpbusd_avx_epi32((acc), (x), (w)))
#define QD_U24_FN             avxvnni_u8w24_f32
#include "kernels/avx2/gemm_u8_24_ymm.h"

int qd_gemm_u24_fill_avxvnni(qd_gemm_u24_fns *t)
{
    t->isa = "avxvnni";
    t->f32 = avxvnni_u8w24_f32;
    return 1;
}

#else

int qd_gemm_u24_fill_avxvnni(qd_gemm_u24_fns *t)
{
    (void)t;
    return 0;
}

#endif
