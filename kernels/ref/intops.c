/* kernels/ref/intops.c — the scalar reference of the integer-only kernels (kernels/intops.h).
 * Integer arithmetic only: every value is defined to the bit, and the ISA versions match it. */
#include <stdlib.h>
#include <string.h>

#include "kernels/intops.h"
#include "kernels/ref/fixedpoint.h"
#include "kernels/ref/intops_scalar.h"

struct qd_igemm {
    int64_t N, K;
    int8_t *w; /* [N][K] */
};

static qd_igemm *ref_pack(const int8_t *w, int64_t N, int64_t K, int64_t ldw)
{
    if (N < 1 || K < 1 || K > 65536) return NULL;
    qd_igemm *g = malloc(sizeof *g);
    int8_t *c = malloc((size_t)(N * K));
    if (!g || !c) {
        free(g);
        free(c);
        return NULL;
    }
    for (int64_t n = 0; n < N; n++) memcpy(c + n * K, w + n * ldw, (size_t)K);
    g->N = N;
    g->K = K;
    g->w = c;
    return g;
}

static void ref_free(qd_igemm *g)
{
    if (!g) return;
    free(g->w);
    free(g);
}

static void ref_gemm(const int8_t *A, int64_t lda, int64_t M, const qd_igemm *W, int32_t *C, int64_t ldc)
{
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < W->N; n++) {
            const int8_t *a = A + m * lda, *w = W->w + n * W->K;
            int32_t acc = 0;
            for (int64_t k = 0; k < W->K; k++) acc += (int32_t)a[k] * w[k];
            C[m * ldc + n] = acc;
        }
}

static void ref_requant_s8(const int32_t *acc, int64_t M, int64_t N, int64_t lda, const int32_t *bias,
                           const int32_t *M0, const int32_t *sh, int per_channel, int32_t zp, int32_t lo, int8_t *out,
                           int64_t ldo, const qd_isplit *sp)
{
    for (int64_t m = 0; m < M; m++) {
        for (int64_t n = 0; n < N; n++) {
            const int64_t c = per_channel ? n : 0;
            out[m * ldo + n] = qd_is_requant1(acc[m * lda + n], bias, n, M0[c], sh[c], zp, lo);
        }
        if (sp)
            qd_is_split_rq(sp, acc + m * lda, bias, M0, sh, per_channel, zp, lo > -128, out + m * ldo,
                           sp->out + m * sp->ld);
    }
}

static void ref_rescale_add(const int32_t *acc, int64_t M, int64_t N, int64_t lda, const int32_t *bias,
                            const int32_t *M0, const int32_t *sh, const int32_t *res, int64_t ldr, int32_t rM0,
                            int32_t rsh, int32_t lim, int32_t *out, int64_t ldo)
{
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++)
            out[m * ldo + n] =
                qd_is_rescale1(acc[m * lda + n], bias, n, M0[n], sh[n], res ? res + m * ldr + n : NULL, rM0, rsh, lim);
}

static void ref_layernorm(const int32_t *x, int64_t M, int64_t N, int64_t ldx, const qd_iln *p, int8_t *out,
                          int64_t ldo, int32_t *fine, int64_t ldf, const qd_isplit *sp)
{
    for (int64_t m = 0; m < M; m++) {
        const int32_t *xr = x + m * ldx;
        const qd_is_lnrow r = qd_is_ln_row(xr, N, p->eps);
        qd_is_ln_tail3(xr, 0, N, &r, p, out + m * ldo, fine ? fine + m * ldf : NULL);
        if (sp) qd_is_split_ln(sp, xr, &r, p, out + m * ldo, sp->out + m * sp->ld);
    }
}

static void ref_gelu_s8(const int32_t *acc, int64_t M, int64_t N, int64_t lda, const int32_t *bias, const int32_t *M0,
                        const int32_t *sh, const qd_igelu *p, int8_t *out, int64_t ldo, const qd_isplit *sp)
{
    for (int64_t m = 0; m < M; m++) {
        for (int64_t n = 0; n < N; n++) out[m * ldo + n] = qd_is_gelu1(acc[m * lda + n], bias, M0, sh, n, p);
        if (sp) qd_is_split_gelu(sp, acc + m * lda, bias, M0, sh, p, out + m * ldo, sp->out + m * sp->ld);
    }
}

static void ref_softmax_u8(const int32_t *s, int64_t n, const uint8_t *keep, const qd_isoftmax *p, uint8_t *P)
{
    qd_is_softmax_row(s, n, qd_is_keep(keep, n), p, P);
}

static void ref_outlier_add(const int8_t *xo, int64_t ldx, int64_t M, const int8_t *wo, int64_t N, int64_t Ko,
                            int32_t e, int32_t *acc, int64_t ldc)
{
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            int32_t s = 0;
            for (int64_t j = 0; j < Ko; j++) s += (int32_t)xo[m * ldx + j] * wo[j * N + n];
            acc[m * ldc + n] += (int32_t)((uint32_t)s << e);
        }
}

static void ref_qk_s32(const int8_t *Q, int64_t ldq, int32_t zq, const int8_t *K, int64_t ldk, int32_t zk, int64_t Tq,
                       int64_t Tk, int64_t d, int32_t *S, int64_t lds)
{
    for (int64_t i = 0; i < Tq; i++)
        for (int64_t j = 0; j < Tk; j++) {
            int32_t acc = 0;
            for (int64_t t = 0; t < d; t++) acc += ((int32_t)Q[i * ldq + t] - zq) * ((int32_t)K[j * ldk + t] - zk);
            S[i * lds + j] = acc;
        }
}

static void ref_pv_s32(const uint8_t *P, int64_t ldp, const int8_t *V, int64_t ldv, int32_t zv, int64_t Tq, int64_t Tk,
                       int64_t d, int32_t *C, int64_t ldc)
{
    for (int64_t i = 0; i < Tq; i++)
        for (int64_t t = 0; t < d; t++) {
            int32_t acc = 0;
            for (int64_t j = 0; j < Tk; j++) acc += (int32_t)P[i * ldp + j] * ((int32_t)V[j * ldv + t] - zv);
            C[i * ldc + t] = acc;
        }
}

void qd_intops_fill_ref(qd_intops_table *t)
{
    t->isa = "ref";
    t->igemm_pack = ref_pack;
    t->igemm_free = ref_free;
    t->igemm_s32 = ref_gemm;
    t->requant_s8 = ref_requant_s8;
    t->rescale_add = ref_rescale_add;
    t->layernorm = ref_layernorm;
    t->gelu_s8 = ref_gelu_s8;
    t->outlier_add = ref_outlier_add;
    t->softmax_u8 = ref_softmax_u8;
    t->qk_s32 = ref_qk_s32;
    t->pv_s32 = ref_pv_s32;
}
