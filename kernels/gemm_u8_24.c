/* The engine's 2:4 sparse int8 GEMM: packing into the compact layout and the choice of version
 * (kernels/gemm_u8_24.h). Compiled without ISA flags. */
#include "kernels/gemm_u8_24.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm.h"
#include "kernels/gemm_pack.h"
#include "kernels/kernels.h"

int qd_gemm_u24_create(const int8_t *w, int64_t N, int64_t K, int64_t ldw, const float *scales, const float *bias,
                       qd_gemm_u24 **out)
{
    *out = NULL;
    if (N < 1 || K < 1 || K > QD_GEMM_MAX_K || ldw < K || !w || !scales)
        return qd_err_set(QD_EINVAL, "2:4 GEMM weights: N=%lld K=%lld ldw=%lld (need N, K >= 1, K <= %d, ldw >= K)",
                          (long long)N, (long long)K, (long long)ldw, QD_GEMM_MAX_K);
    for (int64_t n = 0; n < N; n++)
        for (int64_t g = 0; g < K; g += 4) {
            int nz = 0;
            for (int64_t k = g; k < g + 4 && k < K; k++) nz += w[n * ldw + k] != 0;
            if (nz > 2)
                return qd_err_set(QD_EINVAL,
                                  "2:4 GEMM weights: row %lld, columns %lld..%lld hold %d nonzeros (at most 2)",
                                  (long long)n, (long long)g, (long long)(g + 3), nz);
        }
    qd_gemm_u24 *p = calloc(1, sizeof *p);
    if (!p) return qd_err_set(QD_ENOMEM, "2:4 GEMM weights: out of memory");
    p->N = N;
    p->K = K;
    p->np = (N + 15) / 16;
    p->ns = (K + 7) / 8;
    p->val = qd_gemm_alloc64((size_t)(p->np * p->ns * 64));
    p->sel = qd_gemm_alloc64((size_t)(p->np * p->ns * 16));
    p->comp = qd_gemm_alloc64((size_t)(p->np * 16) * sizeof(int32_t));
    p->scales = qd_gemm_alloc64((size_t)(p->np * 16) * sizeof(float));
    p->bias = bias ? qd_gemm_alloc64((size_t)(p->np * 16) * sizeof(float)) : NULL;
    if (!p->val || !p->sel || !p->comp || !p->scales || (bias && !p->bias)) {
        qd_gemm_u24_free(p);
        return qd_err_set(QD_ENOMEM, "2:4 GEMM weights %lldx%lld: out of memory", (long long)N, (long long)K);
    }
    for (int64_t n = 0; n < p->np * 16; n++) {
        const int64_t pan = n / 16, c = n % 16;
        int32_t sum = 0;
        for (int64_t s = 0; s < p->ns; s++) {
            int8_t *v = p->val + (pan * p->ns + s) * 64 + 4 * c;
            uint8_t sel = 0;
            for (int h = 0; h < 2; h++) { /* the two groups of 4 of the step */
                int pos[2] = {0, 1}, j = 0;
                int8_t x[2] = {0, 0};
                const int64_t g = 8 * s + 4 * h;
                if (n < N)
                    for (int i = 0; i < 4 && g + i < K; i++)
                        if (w[n * ldw + g + i] != 0) {
                            pos[j] = i;
                            x[j++] = w[n * ldw + g + i];
                        }
                if (j == 1) pos[1] = pos[0] == 0 ? 1 : 0; /* an unused position for the stored 0 */
                v[2 * h] = x[0];
                v[2 * h + 1] = x[1];
                sel |= (uint8_t)((pos[0] | pos[1] << 2) << (4 * h));
                sum += x[0] + x[1];
            }
            p->sel[(pan * p->ns + s) * 16 + c] = sel;
        }
        p->comp[n] = 128 * sum;
        p->scales[n] = n < N ? scales[n] : 0.0f;
        if (bias) p->bias[n] = n < N ? bias[n] : 0.0f;
    }
    *out = p;
    return 0;
}

void qd_gemm_u24_free(qd_gemm_u24 *w)
{
    if (!w) return;
    free(w->val);
    free(w->sel);
    free(w->comp);
    free(w->scales);
    free(w->bias);
    free(w);
}

size_t qd_gemm_u24_bytes(const qd_gemm_u24 *w)
{
    return (size_t)(w->np * w->ns) * (64 + 16) + (size_t)(w->np * 16) * 4 * (w->bias ? 3 : 2);
}

void qd_gemm_u24_column(const qd_gemm_u24 *W, int64_t k, float *out)
{
    QD_ASSERT(k >= 0 && k < W->K);
    const int64_t s = k / 8, h = (k % 8) / 4, i = k % 4;
    for (int64_t n = 0; n < W->N; n++) {
        const int64_t at = (n / 16) * W->ns + s, c = n % 16;
        const uint8_t sel = W->sel[at * 16 + c];
        float v = 0.0f;
        for (int j = 2 * (int)h; j < 2 * (int)h + 2; j++)
            if (((sel >> (2 * j)) & 3) == i) v = W->scales[n] * (float)W->val[at * 64 + 4 * c + j];
        out[n] = v;
    }
}

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static qd_gemm_u24_fns g_ref, g_vnni, g_avxvnni, g_avx2;
static int g_vnni_ok, g_avxvnni_ok, g_avx2_ok;

static void init(void)
{
    qd_gemm_u24_fill_ref(&g_ref);
    /* each where its kernel table passed its CPUID test; the AVX-512 version also needs VBMI
     * (vpmultishiftqb widens the 2-bit positions) */
    g_vnni_ok = qd_kernels_table("avx512vnni") != NULL && __builtin_cpu_supports("avx512vbmi") &&
                qd_gemm_u24_fill_vnni512(&g_vnni);
    g_avxvnni_ok = qd_kernels_table("avxvnni") != NULL && qd_gemm_u24_fill_avxvnni(&g_avxvnni);
    g_avx2_ok = qd_kernels_table("avx2") != NULL && qd_gemm_u24_fill_avx2(&g_avx2);
}

const qd_gemm_u24_fns *qd_gemm_u24_table(const char *isa)
{
    pthread_once(&g_once, init);
    if (strcmp(isa, "ref") == 0) return &g_ref;
    if (!qd_kernels_table(isa)) return NULL;
    /* a 256-bit version is slower than the AVX-512 VNNI dense GEMM from 2-4 rows: none there */
    if (strcmp(isa, "avx512vnni") == 0 || strcmp(isa, "amx") == 0) return g_vnni_ok ? &g_vnni : NULL;
    if (strcmp(isa, "avxvnni") == 0) return g_avxvnni_ok ? &g_avxvnni : NULL;
    /* the avx512 table's int8 GEMM is the AVX2 one */
    if (strcmp(isa, "avx2") == 0 || strcmp(isa, "avx512") == 0) return g_avx2_ok ? &g_avx2 : NULL;
    return NULL;
}

const char *qd_gemm_u24_isa(void)
{
    const char *isa = qd_kernels_isa();
    if (strcmp(isa, "ref") == 0) return NULL;
    const qd_gemm_u24_fns *t = qd_gemm_u24_table(isa);
    if (!t) return NULL;
    return t == &g_vnni ? "vnni+vbmi" : t == &g_avxvnni ? "avx-vnni" : "avx2";
}

int64_t qd_gemm_u24_rows(void)
{
    const char *isa = qd_gemm_u24_isa();
    if (!isa) return 0;
    return !strcmp(isa, "vnni+vbmi") ? 8 : !strcmp(isa, "avx-vnni") ? 40 : 12;
}

void qd_gemm_u8w24_f32(const uint8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_u24 *W,
                       int64_t n0, int64_t n1, float *C, int64_t ldc)
{
    const qd_gemm_u24_fns *t = qd_gemm_u24_table(qd_kernels_isa());
    (t ? t : &g_ref)->f32(A, lda, a_scales, M, W, n0, n1, C, ldc);
}
