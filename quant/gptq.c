/* GPTQ (see gptq.h). */
#include "quant/gptq.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void qd_gptq_default_opts(qd_gptq_opts *o) {
    memset(o, 0, sizeof *o);
    o->bits = 4;
    o->group_size = -1;
    o->damp = 0.01f;
    o->block_size = 128;
    o->clip = QD_CLIP_MINMAX;
}

/* U = upper Cholesky factor of (H + lambda I)^-1 (H^-1 = U^T U), raising lambda until H + lambda I
 * factors. Directly, without forming the inverse: with J the order-reversing permutation,
 * chol(J A J) = L' gives A = J L' L'^T J, so A^-1 = (J L'^-1 J)^T (J L'^-1 J) and U = J L'^-1 J
 * (upper triangular). One potrf and one trtri: half the work of potrf + potri + potrf.
 * In row-major storage J A J is the array read backwards; being symmetric it is also its own
 * column-major copy, so LAPACK's column-major potrf and trtri ('L') run on it in place, leaving
 * the column-major L'^-1, i.e. the row-major (L'^-1)^T, from which U is one blocked transposed
 * reversal (LAPACKE's row-major entry points would transpose n^2 elements in and out of each
 * call: as long as the factorization itself at n = 3072). Same arithmetic as the row-major calls.
 * A [n, n] is scratch. Returns 0 or -1. */
static int inverse_factor(const float *H, int64_t n, double lambda0, float *A, float *U, double *lambda_used,
                          int *raises) {
    double lambda = lambda0;
    const int64_t nn = n * n;
    for (int attempt = 0; attempt < 8; attempt++) {
        /* A <- J (H + lambda I) J */
        for (int64_t t = 0; t < nn; t++) A[t] = H[nn - 1 - t];
        for (int64_t i = 0; i < n; i++) A[i * n + i] += (float)lambda;
        int ok = LAPACKE_spotrf(LAPACK_COL_MAJOR, 'L', (lapack_int)n, A, (lapack_int)n) == 0 &&
                 LAPACKE_strtri(LAPACK_COL_MAJOR, 'L', 'N', (lapack_int)n, A, (lapack_int)n) == 0;
        if (ok) {
            /* A[c * n + r] = L'^-1[r][c] (r >= c); U[i][j] = L'^-1[n-1-i][n-1-j] = A[(n-1-j) n + n-1-i]
             * for j >= i, 0 below the diagonal; 64 x 64 tiles */
            const int64_t TB = 64;
            for (int64_t i0 = 0; i0 < n; i0 += TB)
                for (int64_t j0 = 0; j0 < n; j0 += TB) {
                    int64_t i1 = QD_MIN(i0 + TB, n), j1 = QD_MIN(j0 + TB, n);
                    for (int64_t i = i0; i < i1; i++)
                        for (int64_t j = j0; j < j1; j++)
                            U[i * n + j] = j >= i ? A[(n - 1 - j) * n + (n - 1 - i)] : 0.0f;
                }
            *lambda_used = lambda;
            return 0;
        }
        lambda = lambda > 0 ? lambda * 10.0 : 1e-8;
        (*raises)++;
    }
    return -1;
}

typedef struct {
    double d;
    int64_t i;
} diag_idx;

static int cmp_diag_desc(const void *a, const void *b) {
    const diag_idx *x = a, *y = b;
    if (x->d != y->d) return x->d > y->d ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i; /* stable: ties keep column order */
}

struct qd_gptq_prep {
    int64_t C;
    qd_gptq_opts o;
    uint8_t *dead;        /* [C] H_jj == 0 */
    int64_t ndead;
    int64_t *perm;        /* [C] permuted position k -> original column */
    float *Hinv;          /* [C, C] upper Cholesky factor of the damped inverse, permuted order */
    double damp_used;     /* relative to mean(diag H) */
    int damp_raises;
};

void qd_gptq_prep_free(qd_gptq_prep *p) {
    if (!p) return;
    free(p->dead);
    free(p->perm);
    free(p->Hinv);
    free(p);
}

int qd_gptq_prepare(const float *H, int64_t C, const qd_gptq_opts *o, qd_gptq_prep **out) {
    *out = NULL;
    int rc = qd_check_finite(H, C, C, "Hessian");
    if (rc) return rc;
    if (!qd_valid_bits(o->bits)) return qd_err_set(QD_EINVAL, "gptq: bits must be 2..8, got %d", o->bits);
    qd_gptq_prep *p = qd_xcalloc(1, sizeof *p);
    p->C = C;
    p->o = *o;
    float *Hw = qd_xmalloc((size_t)(C * C) * sizeof(float));
    memcpy(Hw, H, (size_t)(C * C) * sizeof(float));
    p->dead = qd_xcalloc((size_t)C, 1);
    for (int64_t j = 0; j < C; j++)
        if (Hw[j * C + j] == 0.0f) {
            Hw[j * C + j] = 1.0f;
            p->dead[j] = 1;
            p->ndead++;
        }
    /* act-order permutation */
    p->perm = qd_xmalloc((size_t)C * sizeof(int64_t));
    for (int64_t j = 0; j < C; j++) p->perm[j] = j;
    if (o->act_order) {
        diag_idx *di = qd_xmalloc((size_t)C * sizeof(diag_idx));
        for (int64_t j = 0; j < C; j++) di[j] = (diag_idx){Hw[j * C + j], j};
        qsort(di, (size_t)C, sizeof *di, cmp_diag_desc);
        for (int64_t j = 0; j < C; j++) p->perm[j] = di[j].i;
        free(di);
    }
    float *Hp = qd_xmalloc((size_t)(C * C) * sizeof(float));
    double mean_diag = 0;
    for (int64_t a = 0; a < C; a++) {
        for (int64_t b = 0; b < C; b++) Hp[a * C + b] = Hw[p->perm[a] * C + p->perm[b]];
        mean_diag += Hw[a * C + a];
    }
    mean_diag /= (double)C;
    free(Hw);
    p->Hinv = qd_xmalloc((size_t)(C * C) * sizeof(float));
    double used = 0;
    float *scratch = qd_xmalloc((size_t)(C * C) * sizeof(float));
    int bad = inverse_factor(Hp, C, (double)o->damp * mean_diag, scratch, p->Hinv, &used, &p->damp_raises);
    free(scratch);
    if (bad) {
        free(Hp);
        qd_gptq_prep_free(p);
        return qd_err_set(QD_ENUMERIC, "gptq: the Hessian is not positive definite even with damping raised 8 times");
    }
    free(Hp);
    if (p->damp_raises)
        qd_log(QD_LOG_WARN, "gptq: Cholesky failed with damping %.3g; raised to %.3g", (double)o->damp * mean_diag, used);
    p->damp_used = mean_diag > 0 ? used / mean_diag : used;
    *out = p;
    return QD_OK;
}

int qd_gptq_quantize(float *W, int64_t R, int64_t C, const float *H, const qd_gptq_opts *o, uint8_t *codes,
                     float *scales, int32_t *zeros, int32_t *g_idx, qd_gptq_stats *st) {
    double t0 = qd_now();
    int rc = qd_check_finite(W, R, C, "weight");
    if (rc) return rc;
    qd_gptq_prep *p = NULL;
    if ((rc = qd_gptq_prepare(H, C, o, &p))) return rc;
    rc = qd_gptq_quantize_prepared(p, W, R, codes, scales, zeros, g_idx, st);
    qd_gptq_prep_free(p);
    if (st) st->seconds = qd_now() - t0;
    return rc;
}

int qd_gptq_quantize_prepared(const qd_gptq_prep *p, float *W, int64_t R, uint8_t *codes, float *scales,
                              int32_t *zeros, int32_t *g_idx, qd_gptq_stats *st) {
    double t0 = qd_now();
    const int64_t C = p->C;
    const qd_gptq_opts *o = &p->o;
    int rc = qd_check_finite(W, R, C, "weight");
    if (rc) return rc;
    const int maxq = qd_maxq(o->bits);
    const int grouped = o->group_size > 0 && o->group_size < C;
    const int64_t gs = grouped ? o->group_size : C;
    const int64_t ng = grouped ? (C + gs - 1) / gs : 1;
    const int bs = o->block_size > 0 ? o->block_size : 128;
    const int64_t *perm = p->perm;
    const float *Hinv = p->Hinv;

    /* per-channel parameters from the original W */
    float *cs = qd_xmalloc((size_t)R * sizeof(float));
    int32_t *cz = qd_xmalloc((size_t)R * sizeof(int32_t));
    if (!grouped) qd_find_params_rows(W, R, C, C, o->bits, o->sym, &o->clip, cs, cz, 1);
    /* dead inputs */
    for (int64_t j = 0; j < C; j++)
        if (p->dead[j])
            for (int64_t r = 0; r < R; r++) W[r * C + j] = 0.0f;
    /* static groups: parameters of every original group, after the dead zeroing */
    float *gsc = NULL;
    int32_t *gzr = NULL;
    if (grouped && o->static_groups) {
        gsc = qd_xmalloc((size_t)(R * ng) * sizeof(float));
        gzr = qd_xmalloc((size_t)(R * ng) * sizeof(int32_t));
        for (int64_t g = 0; g < ng; g++)
            qd_find_params_rows(W + g * gs, R, QD_MIN(gs, C - g * gs), C, o->bits, o->sym, &o->clip, gsc + g, gzr + g, ng);
    }
    /* permuted working copy */
    float *Wp = qd_xmalloc((size_t)(R * C) * sizeof(float));
    for (int64_t r = 0; r < R; r++)
        for (int64_t k = 0; k < C; k++) Wp[r * C + k] = W[r * C + perm[k]];
    qd_gptq_stats s = {0};
    s.dead_columns = p->ndead;
    s.damp_used = p->damp_used;
    s.damp_raises = p->damp_raises;
    float *W1 = qd_xmalloc((size_t)(R * bs) * sizeof(float));
    float *Err1 = qd_xmalloc((size_t)(R * bs) * sizeof(float));
    float *Q = qd_xmalloc((size_t)(R * C) * sizeof(float));
    uint8_t *Qc = qd_xmalloc((size_t)(R * C));
    float *cur_s = qd_xmalloc((size_t)R * sizeof(float));
    int32_t *cur_z = qd_xmalloc((size_t)R * sizeof(int32_t));
    int64_t *colgroup = qd_xmalloc((size_t)C * sizeof(int64_t)); /* group of permuted column k */
    if (!grouped) {
        memcpy(cur_s, cs, (size_t)R * sizeof(float));
        memcpy(cur_z, cz, (size_t)R * sizeof(int32_t));
        for (int64_t r = 0; r < R; r++) {
            scales[r] = cs[r];
            zeros[r] = cz[r];
        }
    }
    double err_total = 0;
    for (int64_t i1 = 0; i1 < C; i1 += bs) {
        int64_t i2 = QD_MIN(i1 + bs, C), cnt = i2 - i1;
        for (int64_t r = 0; r < R; r++) memcpy(W1 + r * cnt, Wp + r * C + i1, (size_t)cnt * sizeof(float));
        for (int64_t i = 0; i < cnt; i++) {
            int64_t k = i1 + i;
            if (grouped) {
                int64_t g;
                if (o->static_groups) {
                    g = perm[k] / gs;
                    for (int64_t r = 0; r < R; r++) {
                        cur_s[r] = gsc[r * ng + g];
                        cur_z[r] = gzr[r * ng + g];
                    }
                } else {
                    g = k / gs;
                    if (k % gs == 0) { /* from the block-start snapshot of the outer W */
                        qd_find_params_rows(Wp + k, R, QD_MIN(gs, C - k), C, o->bits, o->sym, &o->clip, cur_s, cur_z, 1);
                        for (int64_t r = 0; r < R; r++) {
                            scales[r * ng + g] = cur_s[r];
                            zeros[r * ng + g] = cur_z[r];
                        }
                    }
                }
                colgroup[k] = g;
            } else
                colgroup[k] = 0;
            const float d = Hinv[k * C + k];
            const float *hrow = Hinv + k * C + i1; /* Hinv1[i, :] */
            for (int64_t r = 0; r < R; r++) {
                float w = W1[r * cnt + i];
                int qi = qd_quantize1(w, cur_s[r], cur_z[r], maxq);
                float q = qd_dequantize1(qi, cur_s[r], cur_z[r]);
                Q[r * C + k] = q;
                Qc[r * C + k] = (uint8_t)qi;
                float e = (w - q) / d;
                err_total += (double)(w - q) * (w - q) / ((double)d * d) / 2.0;
                float *wr = W1 + r * cnt;
                for (int64_t j = i; j < cnt; j++) wr[j] -= e * hrow[j];
                Err1[r * cnt + i] = e;
            }
        }
        if (i2 < C)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)(C - i2), (int)cnt, -1.0f, Err1,
                        (int)cnt, Hinv + i1 * C + i2, (int)C, 1.0f, Wp + i2, (int)C);
    }
    if (grouped && o->static_groups)
        for (int64_t i = 0; i < R * ng; i++) {
            scales[i] = gsc[i];
            zeros[i] = gzr[i];
        }
    /* back to the original column order */
    for (int64_t r = 0; r < R; r++)
        for (int64_t k = 0; k < C; k++) {
            W[r * C + perm[k]] = Q[r * C + k];
            codes[r * C + perm[k]] = Qc[r * C + k];
        }
    if (g_idx)
        for (int64_t k = 0; k < C; k++) g_idx[perm[k]] = (int32_t)colgroup[k];
    s.error = err_total;
    s.seconds = qd_now() - t0;
    if (st) *st = s;
    free(cs); free(cz); free(gsc); free(gzr); free(Wp);
    free(W1); free(Err1); free(Q); free(Qc); free(cur_s); free(cur_z); free(colgroup);
    return QD_OK;
}
