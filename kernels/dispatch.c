/* Run-time kernel selection (kernels.h). Compiled without ISA flags: nothing here may execute an
 * instruction the CPU lacks. The tables are filled once (pthread_once) on first use. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#define QD_HAVE_X86 1
#include <cpuid.h>
#endif

static qd_kernel_table g_ref, g_avx2, g_avxvnni, g_avx512, g_avx512vnni, g_amx, g_selected;
static int g_avx2_ok, g_avxvnni_ok, g_avx512_ok, g_avx512vnni_ok, g_amx_int8_ok;
void qd_kernels_fill_avx512_adaround(qd_kernel_table *t);
static int amx_tiles_granted(void);
static const qd_kernel_table *table_of(const char *isa);

/* AVX-512F, DQ, BW and VL with the OS saving the zmm state (libgcc checks XCR0) */
static int cpu_has_avx512(void)
{
#ifdef QD_HAVE_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
#else
    return 0;
#endif
}
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static int cpu_has_avx2(void)
{
#ifdef QD_HAVE_X86
    /* libgcc checks OSXSAVE/XCR0 as well, so the OS must save the ymm state */
    __builtin_cpu_init();
    /* F16C from CPUID leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports does not know it */
    unsigned a, b, c, d;
    int f16c = __get_cpuid(1, &a, &b, &c, &d) && ((c >> 29) & 1);
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
#else
    return 0;
#endif
}

/* CPUID leaf 7 sub-leaf 0 (reg 2: ecx, 3: edx) and sub-leaf 1 (eax) bits */
static int cpuid7(int sub, int reg, int bit)
{
#ifdef QD_HAVE_X86
    unsigned r[4], maxleaf;
    __asm__ volatile("cpuid" : "=a"(maxleaf), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(0), "c"(0));
    if (maxleaf < 7) return 0;
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(7), "c"(sub));
    return (int)((r[reg] >> bit) & 1u);
#else
    (void)sub, (void)reg, (void)bit;
    return 0;
#endif
}

static void init_tables(void)
{
    qd_kernels_fill_ref(&g_ref);
    qd_kernels_fill_ref_gemm(&g_ref);
    qd_kernels_fill_ref_act(&g_ref);
    qd_kernels_fill_ref_adaround(&g_ref);
    qd_kernels_fill_ref_train(&g_ref);
    qd_kernels_fill_ref_infer(&g_ref);
    qd_kernels_fill_ref_gptq_rtn(&g_ref);
    qd_kernels_fill_ref_lut(&g_ref);
    g_avx2_ok = cpu_has_avx2();
#ifdef QD_HAVE_X86
    if (g_avx2_ok) {
        g_avx2 = g_ref;
        qd_kernels_fill_avx2(&g_avx2);
        qd_kernels_fill_avx2_gemm(&g_avx2);
        qd_kernels_fill_avx2_act(&g_avx2);
        qd_kernels_fill_avx2_adaround(&g_avx2);
        qd_kernels_fill_avx2_train(&g_avx2);
        qd_kernels_fill_avx2_infer(&g_avx2);
        qd_kernels_fill_avx2_gptq_rtn(&g_avx2);
        qd_kernels_fill_avx2_lut(&g_avx2);
        /* the avx2 table with the 256-bit vpdpbusd GEMMs (AVX-VNNI: CPUID.(7,1):EAX bit 4) */
        g_avxvnni = g_avx2;
        g_avxvnni.isa = "avxvnni";
        g_avxvnni_ok = cpuid7(1, 0, 4) && qd_kernels_fill_avxvnni(&g_avxvnni);
        /* the avx2 table with the AVX-512 versions of the kernels that have one (same bits) */
        g_avx512_ok = cpu_has_avx512();
        if (g_avx512_ok) {
            g_avx512 = g_avx2;
            qd_kernels_fill_avx512_adaround(&g_avx512);
            g_avx512_ok = qd_kernels_fill_avx512_infer(&g_avx512);
        }
        if (g_avx512_ok) {
            /* + AVX-512 VNNI GEMMs, + AMX-INT8 tiles (CPUID.(7,0):EDX bits 24 and 25, and the tile
             * state granted by the OS) */
            g_avx512vnni = g_avx512;
            g_avx512vnni.isa = "avx512vnni";
            g_avx512vnni_ok = cpuid7(0, 2, 11) && qd_kernels_fill_avx512vnni(&g_avx512vnni);
            if (g_avx512vnni_ok && cpuid7(0, 3, 24) && cpuid7(0, 3, 25)) {
                g_amx = g_avx512vnni;
                g_amx.isa = "amx";
                g_amx_int8_ok = qd_kernels_fill_amx_int8(&g_amx) && amx_tiles_granted();
            }
        }
    }
#endif
    const char *want = getenv("QD_KERNELS");
    const qd_kernel_table *best = g_amx_int8_ok     ? &g_amx
                                  : g_avx512vnni_ok ? &g_avx512vnni
                                  : g_avx512_ok     ? &g_avx512
                                  : g_avxvnni_ok    ? &g_avxvnni
                                  : g_avx2_ok       ? &g_avx2
                                                    : &g_ref;
    if (!want || !*want || strcmp(want, "auto") == 0) {
        g_selected = *best;
    } else if (strcmp(want, "ref") == 0) {
        g_selected = g_ref;
    } else {
        const qd_kernel_table *t = table_of(want);
        const char *known[] = {"avx2", "avxvnni", "avx512", "avx512vnni", "amx"};
        int is_known = 0;
        for (size_t i = 0; i < sizeof known / sizeof *known; i++) is_known |= strcmp(want, known[i]) == 0;
        if (!t && is_known)
            qd_log(QD_LOG_WARN, "QD_KERNELS=%s: this CPU (or build) lacks it, using %s", want, best->isa);
        else if (!t)
            qd_log(QD_LOG_WARN,
                   "QD_KERNELS=%s: unknown (ref, avx2, avxvnni, avx512, avx512vnni, amx or auto), using %s", want,
                   best->isa);
        g_selected = t ? *t : *best;
    }
}

const qd_kernel_table *qd_kernels(void)
{
    pthread_once(&g_once, init_tables);
    return &g_selected;
}

const char *qd_kernels_isa(void) { return qd_kernels()->isa; }

/* the table of a name, or NULL (callable during init_tables: only reads what is set so far) */
static const qd_kernel_table *table_of(const char *isa)
{
    if (strcmp(isa, "ref") == 0) return &g_ref;
    if (strcmp(isa, "avx2") == 0) return g_avx2_ok ? &g_avx2 : NULL;
    if (strcmp(isa, "avxvnni") == 0) return g_avxvnni_ok ? &g_avxvnni : NULL;
    if (strcmp(isa, "avx512") == 0) return g_avx512_ok ? &g_avx512 : NULL;
    if (strcmp(isa, "avx512vnni") == 0) return g_avx512vnni_ok ? &g_avx512vnni : NULL;
    if (strcmp(isa, "amx") == 0) return g_amx_int8_ok ? &g_amx : NULL;
    return NULL;
}

const qd_kernel_table *qd_kernels_table(const char *isa)
{
    pthread_once(&g_once, init_tables);
    return table_of(isa);
}

void qd_kernels_quantize_row(const float *x, int64_t n, int64_t G, const float *scales, const int32_t *zeros, int bits,
                             uint8_t *out)
{
    const qd_kernel_table *k = qd_kernels();
    if (bits == 8)
        k->quantize_codes(x, n, G, scales, zeros, 255, out);
    else if (bits == 4)
        k->quantize_q4(x, n, G, scales, zeros, out);
    else
        qd_fatal(__FILE__, __LINE__, "qd_kernels_quantize_row: %d bits (4 or 8 only)", bits);
}

void qd_kernels_dequantize_row(const uint8_t *in, int64_t n, int64_t G, const float *scales, const int32_t *zeros,
                               int bits, float *out)
{
    const qd_kernel_table *k = qd_kernels();
    if (bits == 8)
        k->dequantize_codes(in, n, G, scales, zeros, out);
    else if (bits == 4)
        k->dequantize_q4(in, n, G, scales, zeros, out);
    else
        qd_fatal(__FILE__, __LINE__, "qd_kernels_dequantize_row: %d bits (4 or 8 only)", bits);
}

/* ---- AMX-BF16 GEMM (kernels/gemm_bf16.h): the CPU check and the tile-state request live here,
 * compiled without ISA flags; kernels/amx/gemm_bf16.c holds the tile code. ---- */
#include "kernels/amx/gemm_bf16_amx.h"
#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

static int g_amx_ok, g_tiles_ok;
static pthread_once_t g_amx_once = PTHREAD_ONCE_INIT, g_tiles_once = PTHREAD_ONCE_INIT;

/* AMX-TILE and AVX-512F on the CPU, and the tile data state granted to this process by Linux
 * (ARCH_REQ_XCOMP_PERM for XTILEDATA; process-wide, so every thread may then use tiles) */
static void init_tiles(void)
{
#if defined(__linux__) && defined(__x86_64__)
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !cpuid7(0, 3, 24)) return;
    g_tiles_ok = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
#endif
}

static int amx_tiles_granted(void)
{
    pthread_once(&g_tiles_once, init_tiles);
    return g_tiles_ok;
}

static void init_amx(void)
{
    g_amx_ok = 0;
    const char *want = getenv("QD_KERNELS");
    if (want && *want && strcmp(want, "auto") != 0 && strcmp(want, "amx") != 0) return; /* ref, avx2, avx512 */
    if (!qd_gemm_bf16_amx_built()) return;
    /* CPUID leaf 7: EDX bit 22 AMX-BF16 */
    g_amx_ok = cpuid7(0, 3, 22) && amx_tiles_granted();
}

int qd_gemm_bf16_available(void)
{
    pthread_once(&g_amx_once, init_amx);
    return g_amx_ok;
}

qd_gemm_bf16 *qd_gemm_bf16_create(const float *B, int64_t K, int64_t N)
{
    if (!qd_gemm_bf16_available() || K < 1 || N < 1) return NULL;
    return qd_gemm_bf16_amx_create(B, K, N);
}

void qd_gemm_bf16_free(qd_gemm_bf16 *b) { qd_gemm_bf16_amx_free(b); }

int qd_gemm_bf16_run(qd_gemm_bf16 *b, const float *A, int64_t M, int64_t lda, float alpha, float *Y, int64_t ldy)
{
    return qd_gemm_bf16_amx_run(b, A, M, lda, alpha, Y, ldy);
}
