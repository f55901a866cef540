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

static qd_kernel_table g_ref, g_avx2, g_avx512, g_selected;
static int g_avx2_ok, g_avx512_ok;
void qd_kernels_fill_avx512_adaround(qd_kernel_table *t);

/* AVX-512F and DQ with the OS saving the zmm state (libgcc checks XCR0) */
static int cpu_has_avx512(void)
{
#ifdef QD_HAVE_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
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

static void init_tables(void)
{
    qd_kernels_fill_ref(&g_ref);
    qd_kernels_fill_ref_gemm(&g_ref);
    qd_kernels_fill_ref_act(&g_ref);
    qd_kernels_fill_ref_adaround(&g_ref);
    qd_kernels_fill_ref_gptq_rtn(&g_ref);
    g_avx2_ok = cpu_has_avx2();
#ifdef QD_HAVE_X86
    if (g_avx2_ok) {
        g_avx2 = g_ref;
        qd_kernels_fill_avx2(&g_avx2);
        qd_kernels_fill_avx2_gemm(&g_avx2);
        qd_kernels_fill_avx2_act(&g_avx2);
        qd_kernels_fill_avx2_adaround(&g_avx2);
        qd_kernels_fill_avx2_gptq_rtn(&g_avx2);
        /* the avx2 table with the AVX-512 versions of the kernels that have one (same bits) */
        g_avx512_ok = cpu_has_avx512();
        if (g_avx512_ok) {
            g_avx512 = g_avx2;
            qd_kernels_fill_avx512_adaround(&g_avx512);
        }
    }
#endif
    const char *want = getenv("QD_KERNELS");
    const qd_kernel_table *best = g_avx512_ok ? &g_avx512 : g_avx2_ok ? &g_avx2 : &g_ref;
    if (!want || !*want || strcmp(want, "auto") == 0) {
        g_selected = *best;
    } else if (strcmp(want, "ref") == 0) {
        g_selected = g_ref;
    } else if (strcmp(want, "avx2") == 0) {
        if (!g_avx2_ok)
            qd_log(QD_LOG_WARN, "QD_KERNELS=avx2: this CPU lacks AVX2/FMA/F16C, using the reference kernels");
        g_selected = g_avx2_ok ? g_avx2 : g_ref;
    } else if (strcmp(want, "avx512") == 0 || strcmp(want, "amx") == 0) {
        if (!g_avx512_ok) qd_log(QD_LOG_WARN, "QD_KERNELS=%s: this CPU lacks AVX-512, using %s", want, best->isa);
        g_selected = *best;
    } else {
        qd_log(QD_LOG_WARN, "QD_KERNELS=%s: unknown (ref, avx2, avx512, amx or auto), using %s", want, best->isa);
        g_selected = *best;
    }
}

const qd_kernel_table *qd_kernels(void)
{
    pthread_once(&g_once, init_tables);
    return &g_selected;
}

const char *qd_kernels_isa(void) { return qd_kernels()->isa; }

const qd_kernel_table *qd_kernels_table(const char *isa)
{
    pthread_once(&g_once, init_tables);
    if (strcmp(isa, "ref") == 0) return &g_ref;
    if (strcmp(isa, "avx2") == 0) return g_avx2_ok ? &g_avx2 : NULL;
    if (strcmp(isa, "avx512") == 0) return g_avx512_ok ? &g_avx512 : NULL;
    return NULL;
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

static int g_amx_ok;
static pthread_once_t g_amx_once = PTHREAD_ONCE_INIT;

static void init_amx(void)
{
    g_amx_ok = 0;
    const char *want = getenv("QD_KERNELS");
    if (want && *want && strcmp(want, "auto") != 0 && strcmp(want, "amx") != 0) return; /* ref, avx2, avx512 */
    if (!qd_gemm_bf16_amx_built()) return;
#if defined(__linux__) && defined(__x86_64__)
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f")) return;
    /* CPUID leaf 7: EDX bit 22 AMX-BF16, bit 24 AMX-TILE */
    unsigned a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
    if (!((d >> 22) & 1) || !((d >> 24) & 1)) return;
    /* the kernel hands out the tile data state on request (ARCH_REQ_XCOMP_PERM, XTILEDATA) */
    if (syscall(SYS_arch_prctl, 0x1023, 18) != 0) return;
    g_amx_ok = 1;
#endif
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
