/* Run-time choice of the integer-only kernels (kernels/intops.h). Compiled without ISA flags.
 * On x86-64 the choice follows kernels/dispatch.c (its CPUID checks and QD_KERNELS): the AVX2
 * table where that selects avx2, the AVX2 table with AVX-512 per-element kernels where it selects
 * avx512. On AArch64, NEON is part of the base ISA; SDOT
 * (ARMv8.2 dot product) is used when the kernel reports HWCAP_ASIMDDP. QD_KERNELS=ref forces
 * the reference, QD_KERNELS=neon plain NEON. Filled once (pthread_once). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/intops.h"
#include "kernels/kernels.h"

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#define QD_HAVE_NEON 1
#endif

static qd_intops_table g_ref, g_simd, g_sel;
static int g_simd_ok;
#if defined(__x86_64__)
static qd_intops_table g_z;
static int g_z_ok;
#endif
#ifdef QD_HAVE_NEON
static qd_intops_table g_nodot;
#endif
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void init(void)
{
    qd_intops_fill_ref(&g_ref);
    const char *want = getenv("QD_KERNELS");
    int force_ref = want && strcmp(want, "ref") == 0;
#if defined(__x86_64__)
    /* kernels/dispatch.c has checked AVX2/FMA/F16C and the OS state: the AVX2 table where its
     * avx2 table exists, selected where it selected avx2 or better */
    g_simd_ok = qd_kernels_table("avx2") != NULL;
    if (g_simd_ok) {
        g_simd = g_ref;
        qd_intops_fill_avx2(&g_simd);
    }
    /* the AVX2 table with AVX-512 versions of the per-element kernels, where dispatch.c has AVX-512 */
    g_z_ok = g_simd_ok && qd_kernels_table("avx512") != NULL;
    if (g_z_ok) {
        g_z = g_simd;
        qd_intops_fill_avx512(&g_z);
    }
    const char *isa = qd_kernels_isa();
    if (force_ref || !g_simd_ok || !strcmp(isa, "ref"))
        g_sel = g_ref;
    else
        g_sel = g_z_ok && strcmp(isa, "avx2") != 0 ? g_z : g_simd;
#elif defined(QD_HAVE_NEON)
    const unsigned long hw = getauxval(AT_HWCAP);
    g_nodot = g_ref;
    qd_intops_fill_neon(&g_nodot, 0);
    if (hw & HWCAP_ASIMDDP) {
        g_simd = g_ref;
        qd_intops_fill_neon(&g_simd, 1);
        g_simd_ok = 1;
    }
    if (force_ref)
        g_sel = g_ref;
    else if (want && strcmp(want, "neon") == 0)
        g_sel = g_nodot;
    else
        g_sel = g_simd_ok ? g_simd : g_nodot;
#else
    g_sel = g_ref;
#endif
}

const qd_intops_table *qd_intops(void)
{
    pthread_once(&g_once, init);
    return &g_sel;
}

const qd_intops_table *qd_intops_table_for(const char *isa)
{
    pthread_once(&g_once, init);
    if (strcmp(isa, "ref") == 0) return &g_ref;
#if defined(__x86_64__)
    if (strcmp(isa, "avx2") == 0) return g_simd_ok ? &g_simd : NULL;
    if (strcmp(isa, "avx512") == 0) return g_z_ok ? &g_z : NULL;
#elif defined(QD_HAVE_NEON)
    if (strcmp(isa, "neon") == 0) return &g_nodot;
    if (strcmp(isa, "neon-dot") == 0) return g_simd_ok ? &g_simd : NULL;
#endif
    return NULL;
}
