/* 2:4 sparse int8 GEMM weights: packing and the choice of version (kernels/gemm_s8_24.h).
 * Compiled without ISA flags. */
#include "kernels/gemm_s8_24.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm_pack.h"
#include "kernels/kernels.h"

int qd_gemm_w24_create(const int8_t *w, int64_t N, int64_t K, int64_t ldw, const float *scales, const float *bias,
                       qd_gemm_w24 **out)
{
    *out = NULL;
    if (N < 1 || K < 1 || K > QD_GEMM_MAX_K || ldw < K || !w || !scales)
        return qd_err_set(QD_EINVAL, "2:4 GEMM weights: N=%lld K=%lld ldw=%lld (need N, K >= 1, K <= %d, ldw >= K)",
                          (long long)N, (long long)K, (long long)ldw, QD_GEMM_MAX_K);
    const int64_t ng = (K + 3) / 4;
    for (int64_t n = 0; n < N; n++)
        for (int64_t g = 0; g < ng; g++) {
            int nz = 0;
            for (int64_t k = 4 * g; k < 4 * g + 4 && k < K; k++) nz += w[n * ldw + k] != 0;
            if (nz > 2)
                return qd_err_set(QD_EINVAL,
                                  "2:4 GEMM weights: row %lld, columns %lld..%lld hold %d nonzeros (at most 2)",
                                  (long long)n, (long long)(4 * g), (long long)(4 * g + 3), nz);
        }
    qd_gemm_w24 *p = calloc(1, sizeof *p);
    if (!p) return qd_err_set(QD_ENOMEM, "2:4 GEMM weights: out of memory");
    p->N = N;
    p->K = K;
    p->np = (N + 15) / 16;
    p->ngp = (ng + 1) / 2 * 2;
    p->val = qd_gemm_alloc64((size_t)(p->np * p->ngp * 32) * sizeof(int16_t));
    p->sel = qd_gemm_alloc64((size_t)(p->np * p->ngp * 64));
    p->scales = qd_gemm_alloc64((size_t)(p->np * 16) * sizeof(float));
    p->bias = bias ? qd_gemm_alloc64((size_t)(p->np * 16) * sizeof(float)) : NULL;
    if (!p->val || !p->sel || !p->scales || (bias && !p->bias)) {
        qd_gemm_w24_free(p);
        return qd_err_set(QD_ENOMEM, "2:4 GEMM weights %lldx%lld: out of memory", (long long)N, (long long)K);
    }
    for (int64_t n = 0; n < p->np * 16; n++) {
        const int64_t pan = n / 16, c = n % 16;
        for (int64_t g = 0; g < p->ngp; g++) {
            int pos[2] = {0, 1}, j = 0;
            int16_t v[2] = {0, 0};
            if (n < N)
                for (int i = 0; i < 4 && 4 * g + i < K; i++)
                    if (w[n * ldw + 4 * g + i] != 0) {
                        pos[j] = i;
                        v[j++] = w[n * ldw + 4 * g + i];
                    }
            if (j == 1) pos[1] = pos[0] == 0 ? 1 : 0; /* an unused position for the stored 0 */
            const int64_t at = pan * p->ngp + g;
            const uint8_t o = (uint8_t)((g & 1) * 8);
            p->val[at * 32 + 2 * c] = v[0];
            p->val[at * 32 + 2 * c + 1] = v[1];
            uint8_t *s = p->sel + at * 64 + 4 * c;
            s[0] = (uint8_t)(o + 2 * pos[0]);
            s[1] = (uint8_t)(o + 2 * pos[0] + 1);
            s[2] = (uint8_t)(o + 2 * pos[1]);
            s[3] = (uint8_t)(o + 2 * pos[1] + 1);
        }
        if (n < N) {
            p->scales[n] = scales[n];
            if (bias) p->bias[n] = bias[n];
        }
    }
    *out = p;
    return 0;
}

void qd_gemm_w24_free(qd_gemm_w24 *w)
{
    if (!w) return;
    free(w->val);
    free(w->sel);
    free(w->scales);
    free(w->bias);
    free(w);
}

int64_t qd_gemm_w24_n(const qd_gemm_w24 *w) { return w->N; }
int64_t qd_gemm_w24_k(const qd_gemm_w24 *w) { return w->K; }
size_t qd_gemm_w24_bytes(const qd_gemm_w24 *w)
{
    return (size_t)(w->np * w->ngp) * (32 * sizeof(int16_t) + 64) +
           (size_t)(w->np * 16) * sizeof(float) * (w->bias ? 2 : 1);
}

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static qd_gemm24_fns g_ref, g_avx2;
static int g_avx2_ok;

static void init(void)
{
    qd_gemm24_fill_ref(&g_ref);
    /* the AVX2 version exists where the kernel table has one (same CPUID test) */
    g_avx2_ok = qd_kernels_table("avx2") != NULL;
    if (g_avx2_ok) qd_gemm24_fill_avx2(&g_avx2);
}

const qd_gemm24_fns *qd_gemm24_table(const char *isa)
{
    pthread_once(&g_once, init);
    if (strcmp(isa, "ref") == 0) return &g_ref;
    if (strcmp(isa, "avx2") == 0 || strcmp(isa, "avx512") == 0) return g_avx2_ok ? &g_avx2 : NULL;
    return NULL;
}

static const qd_gemm24_fns *selected(void)
{
    const qd_gemm24_fns *t = qd_gemm24_table(qd_kernels_isa());
    return t ? t : &g_ref;
}

void qd_gemm_s8_24_f32(const int8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_w24 *W, float *C,
                       int64_t ldc)
{
    selected()->f32(A, lda, a_scales, M, W, C, ldc);
}

void qd_gemm_s8_24_s32(const int8_t *A, int64_t lda, int64_t M, const qd_gemm_w24 *W, int32_t *C, int64_t ldc)
{
    selected()->s32(A, lda, M, W, C, ldc);
}
