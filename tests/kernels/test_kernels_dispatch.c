/* Kernel selection: CPUID picks the best ISA (amx > avx512vnni > avx512 > avxvnni > avx2 > ref);
 * QD_KERNELS=ref forces the reference, avx2 the AVX2 table (no AVX-512 versions), any other table
 * name that table where the CPU has it; an unknown value falls back to the best. argv[1] is the
 * QD_KERNELS value to set (none: unset). */
#include <stdio.h>
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
    return cpu_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
#else
    return 0;
#endif
}

static int cpu_avx512vnni(void)
{
#if defined(__x86_64__) || defined(__i386__)
    return cpu_avx512() && __builtin_cpu_supports("avx512vnni");
#else
    return 0;
#endif
}

/* every field of a table is filled */
static int complete(const qd_kernel_table *t)
{
    return t->quantize_codes && t->quantize_q4 && t->dequantize_codes && t->dequantize_q4 && t->quantize_rows_s8 &&
           t->gemm_s8_f32 && t->gemm_s8_s32 && t->gemm_s8_s8 && t->gemm_w4_s8 && t->gemm_w4_f32 && t->gelu &&
           t->exp_sum && t->adaround_step && t->log && t->ada_sparse_update && t->quantize_rows_u8 && t->gemm_u8_f32 &&
           t->gemm_u8w4_f32 && t->gemm_f32 && t->layernorm && t->col_absmax && t->attn_scores && t->softmax_rows &&
           t->attn_context;
}

int main(int argc, char **argv)
{
    const char *want = argc > 1 ? argv[1] : NULL;
    if (want)
        setenv("QD_KERNELS", want, 1);
    else
        unsetenv("QD_KERNELS");
    static const char *order[] = {"amx", "avx512vnni", "avx512", "avxvnni", "avx2", "ref"};
    const char *best = "ref";
    for (int i = 0; i < 6; i++)
        if (qd_kernels_table(order[i])) {
            best = order[i];
            break;
        }
    const char *expect = want && qd_kernels_table(want) ? want : best;
    printf("best: %s, selected: %s\n", best, qd_kernels_isa());

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
    /* the VNNI and AMX tables sit on the AVX-512 one; never where the CPU lacks their instructions */
    if (!cpu_avx512vnni()) CHECK(qd_kernels_table("avx512vnni") == NULL);
    if (!qd_kernels_table("avx512vnni")) CHECK(qd_kernels_table("amx") == NULL);
    const qd_kernel_table *same = qd_kernels_table(expect);
    CHECK(same && k->quantize_codes == same->quantize_codes && k->quantize_q4 == same->quantize_q4 &&
          k->dequantize_codes == same->dequantize_codes && k->dequantize_q4 == same->dequantize_q4 &&
          k->gemm_u8_f32 == same->gemm_u8_f32 && k->layout == same->layout);
    /* every field of every available table is filled */
    for (int i = 0; i < 6; i++) {
        const qd_kernel_table *t = qd_kernels_table(order[i]);
        if (!t) {
            printf("%s: not on this CPU (or not built)\n", order[i]);
            continue;
        }
        CHECK_MSG(complete(t), "table %s has an empty field", order[i]);
        CHECK_STREQ(t->isa, order[i]);
    }
    QD_TEST_MAIN_END();
}
