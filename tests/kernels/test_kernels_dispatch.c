/* Kernel selection: CPUID picks the best ISA; QD_KERNELS=ref forces the reference, avx2 the AVX2
 * table (no AVX-512 versions); an unknown
 * value falls back to the best. argv[1] is the QD_KERNELS value to set (none: unset). */
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "qd_test.h"

static int cpu_avx2(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
    return 0;
#endif
}

static int cpu_avx512(void)
{
#if defined(__x86_64__) || defined(__i386__)
    return cpu_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
#else
    return 0;
#endif
}

int main(int argc, char **argv)
{
    const char *want = argc > 1 ? argv[1] : NULL;
    if (want)
        setenv("QD_KERNELS", want, 1);
    else
        unsetenv("QD_KERNELS");
    const char *best = cpu_avx512() ? "avx512" : cpu_avx2() ? "avx2" : "ref";
    const char *expect = want && strcmp(want, "ref") == 0                  ? "ref"
                         : want && strcmp(want, "avx2") == 0 && cpu_avx2() ? "avx2"
                                                                           : best;

    const qd_kernel_table *k = qd_kernels();
    CHECK_STREQ(qd_kernels_isa(), expect);
    CHECK_STREQ(k->isa, expect);
    CHECK(qd_kernels() == k); /* one table, filled once */

    const qd_kernel_table *ref = qd_kernels_table("ref"), *avx2 = qd_kernels_table("avx2");
    CHECK(ref != NULL);
    CHECK_STREQ(ref->isa, "ref");
    CHECK(qd_kernels_table("neon") == NULL);
    if (cpu_avx2()) {
        CHECK(avx2 != NULL);
        if (avx2) CHECK_STREQ(avx2->isa, "avx2");
    } else {
        printf("this CPU lacks AVX2/FMA/F16C: qd_kernels_table(\"avx2\") must be NULL\n");
        CHECK(avx2 == NULL);
    }
    const qd_kernel_table *avx512 = qd_kernels_table("avx512");
    CHECK((avx512 != NULL) == cpu_avx512());
    const qd_kernel_table *same = strcmp(expect, "ref") == 0 ? ref : strcmp(expect, "avx512") == 0 ? avx512 : avx2;
    CHECK(same && k->quantize_codes == same->quantize_codes && k->quantize_q4 == same->quantize_q4 &&
          k->dequantize_codes == same->dequantize_codes && k->dequantize_q4 == same->dequantize_q4);
    /* every field of every available table is filled */
    CHECK(ref->quantize_codes && ref->quantize_q4 && ref->dequantize_codes && ref->dequantize_q4);
    if (avx2) CHECK(avx2->quantize_codes && avx2->quantize_q4 && avx2->dequantize_codes && avx2->dequantize_q4);
    QD_TEST_MAIN_END();
}
