/* GPTQ (see gptq.h). */
#include "quant/gptq.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

void qd_gptq_default_opts(qd_gptq_opts *o)
{
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
 * Everything happens in A [n, n], which holds U on success: the prepared state costs one n^2
 * array beside H, not two. Returns 0 or -1. */
static int inverse_factor(const float *H, const int64_t *perm, const uint8_t *dead, int64_t n, double lambda0, float *A,
                          double *lambda_used, int *raises)
{
    double lambda = lambda0;
    for (int attempt = 0; attempt < 8; attempt++) {
        /* A <- J (P^T H P + lambda I) J, dead diagonal entries 1 (one gather pass) */
        for (int64_t a = 0; a < n; a++) {
            const float *hr = H + perm[n - 1 - a] * n;
            float *ar = A + a * n;
            for (int64_t b = 0; b < n; b++) ar[b] = hr[perm[n - 1 - b]];
            if (dead[perm[n - 1 - a]]) ar[a] = 1.0f;
            ar[a] += (float)lambda;
        }
        /* Fortran entry points: H was checked finite, LAPACKE would scan A again before each call */
        lapack_int ln = (lapack_int)n, info = 0;
        char lo = 'L', nd = 'N';
        LAPACK_spotrf(&lo, &ln, A, &ln, &info);
        if (info == 0) LAPACK_strtri(&lo, &nd, &ln, A, &ln, &info);
        if (info == 0) {
            /* A[c * n + r] = L'^-1[r][c] (r >= c): the row-major upper triangle. U[i][j] =
             * A[(n-1-j) n + n-1-i] for j >= i maps that triangle onto itself and is its own inverse,
             * so U is one swap per pair (i + j < n - 1; i + j = n - 1 stays), then zeros below the
             * diagonal; 64 x 64 tiles */
            const int64_t TB = 64;
            for (int64_t i0 = 0; i0 < n; i0 += TB)
                for (int64_t j0 = i0; j0 < n - 1 - i0; j0 += TB) {
                    const int64_t i1 = QD_MIN(i0 + TB, n), j1 = QD_MIN(j0 + TB, n);
                    for (int64_t i = i0; i < i1; i++)
                        for (int64_t j = QD_MAX(j0, i); j < j1 && i + j < n - 1; j++) {
                            float *x = &A[i * n + j], *y = &A[(n - 1 - j) * n + (n - 1 - i)];
                            const float t = *x;
                            *x = *y;
                            *y = t;
                        }
                }
            for (int64_t i = 1; i < n; i++) memset(A + i * n, 0, (size_t)i * sizeof(float));
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

static int cmp_diag_desc(const void *a, const void *b)
{
    const diag_idx *x = a, *y = b;
    if (x->d != y->d) return x->d > y->d ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i; /* stable: ties keep column order */
}

struct qd_gptq_prep {
    int64_t C;
    qd_gptq_opts o;
    uint8_t *dead; /* [C] H_jj == 0 */
    int64_t ndead;
    int64_t *perm;    /* [C] permuted position k -> original column */
    float *Hinv;      /* [C, C] upper Cholesky factor of the damped inverse, permuted order */
    double damp_used; /* relative to mean(diag H) */
    int damp_raises;
};

void qd_gptq_prep_free(qd_gptq_prep *p)
{
    if (!p) return;
    free(p->dead);
    free(p->perm);
    free(p->Hinv);
    free(p);
}

/* The order columns are quantized in: act-order sorts by descending diag H (a dead column's 0
 * counts as 1, as it is replaced), ties keeping column order; otherwise the identity. */
static void column_order(const float *H, int64_t C, int act_order, int64_t *perm)
{
    for (int64_t j = 0; j < C; j++) perm[j] = j;
    if (!act_order) return;
    diag_idx *di = qd_xmalloc((size_t)C * sizeof(diag_idx));
    for (int64_t j = 0; j < C; j++) di[j] = (diag_idx){H[j * C + j] == 0.0f ? 1.0f : H[j * C + j], j};
    qsort(di, (size_t)C, sizeof *di, cmp_diag_desc);
    for (int64_t j = 0; j < C; j++) perm[j] = di[j].i;
    free(di);
}

void qd_gptq_g_idx(const float *H, int64_t C, const qd_gptq_opts *o, int32_t *g_idx)
{
    const int grouped = o->group_size > 0 && o->group_size < C;
    int64_t *perm = qd_xmalloc((size_t)C * sizeof *perm);
    column_order(H, C, o->act_order, perm);
    for (int64_t k = 0; k < C; k++)
        g_idx[perm[k]] = !grouped ? 0 : (int32_t)(o->static_groups ? perm[k] / o->group_size : k / o->group_size);
    free(perm);
}

int qd_gptq_prepare(const float *H, int64_t C, const qd_gptq_opts *o, qd_gptq_prep **out)
{
    *out = NULL;
    int rc = qd_check_finite(H, C, C, "Hessian");
    if (rc) return rc;
    if ((rc = qd_qscheme_check_groups(o->bits, o->group_size, "gptq"))) return rc;
    qd_gptq_prep *p = qd_xcalloc(1, sizeof *p);
    p->C = C;
    p->o = *o;
    p->dead = qd_xcalloc((size_t)C, 1);
    double mean_diag = 0;
    for (int64_t j = 0; j < C; j++) {
        if (H[j * C + j] == 0.0f) {
            p->dead[j] = 1;
            p->ndead++;
        }
        mean_diag += p->dead[j] ? 1.0f : H[j * C + j];
    }
    mean_diag /= (double)C;
    p->perm = qd_xmalloc((size_t)C * sizeof(int64_t));
    column_order(H, C, o->act_order, p->perm);
    p->Hinv = qd_xmalloc((size_t)(C * C) * sizeof(float));
    double used = 0;
    int bad = inverse_factor(H, p->perm, p->dead, C, (double)o->damp * mean_diag, p->Hinv, &used, &p->damp_raises);
    if (bad) {
        qd_gptq_prep_free(p);
        return qd_err_set(QD_ENUMERIC, "gptq: the Hessian is not positive definite even with damping raised 8 times");
    }
    if (p->damp_raises)
        qd_log(QD_LOG_WARN, "gptq: Cholesky failed with damping %.3g; raised to %.3g", (double)o->damp * mean_diag,
               used);
    p->damp_used = mean_diag > 0 ? used / mean_diag : used;
    *out = p;
    return QD_OK;
}

int qd_gptq_quantize(float *W, int64_t R, int64_t C, const float *H, const qd_gptq_opts *o, uint8_t *codes,
                     float *scales, int32_t *zeros, int32_t *g_idx, qd_gptq_stats *st)
{
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

int qd_gptq_quantize_prepared(const qd_gptq_prep *p, float *W, int64_t R, uint8_t *codes, float *scales, int32_t *zeros,
                              int32_t *g_idx, qd_gptq_stats *st)
{
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
    /* one column of a block for the rows of a tile: kernels.h's gptq_column (the same bits in
     * every ISA version, so QD_KERNELS does not change the file) */
    void (*const column)(const qd_gptq_col *, int64_t) = qd_kernels()->gptq_column;

    /* per-group parameters transposed: sT[g * R + r] (one group per row when not grouped) */
    float *sT = qd_xmalloc((size_t)(R * ng) * sizeof(float));
    int32_t *zT = qd_xmalloc((size_t)(R * ng) * sizeof(int32_t));
    /* per-channel parameters from the original W */
    if (!grouped) {
        qd_find_params_rows(W, R, C, C, o->bits, o->sym, &o->clip, sT, zT, 1);
        for (int64_t r = 0; r < R; r++) {
            scales[r] = sT[r];
            zeros[r] = zT[r];
        }
    }
    /* dead inputs */
    for (int64_t j = 0; j < C; j++)
        if (p->dead[j])
            for (int64_t r = 0; r < R; r++) W[r * C + j] = 0.0f;
    /* static groups: parameters of every original group, after the dead zeroing */
    if (grouped && o->static_groups) {
        for (int64_t g = 0; g < ng; g++)
            qd_find_params_rows(W + g * gs, R, QD_MIN(gs, C - g * gs), C, o->bits, o->sym, &o->clip, scales + g,
                                zeros + g, ng);
        for (int64_t r = 0; r < R; r++)
            for (int64_t g = 0; g < ng; g++) {
                sT[g * R + r] = scales[r * ng + g];
                zT[g * R + r] = zeros[r * ng + g];
            }
    }
    /* permuted working copy; W and codes then receive the results in the original order */
    float *Wp = qd_xmalloc((size_t)(R * C) * sizeof(float));
    for (int64_t r = 0; r < R; r++)
        for (int64_t k = 0; k < C; k++) Wp[r * C + k] = W[r * C + perm[k]];
    qd_gptq_stats s = {0};
    s.dead_columns = p->ndead;
    s.damp_used = p->damp_used;
    s.damp_raises = p->damp_raises;
    /* row tiles of RT rows: the transposed block of a tile (bs x RT floats) stays in L1/L2 */
    enum { RT = 64 };
    float *T = qd_xmalloc((size_t)bs * RT * sizeof(float));
    float *ET = qd_xmalloc((size_t)(bs * R) * sizeof(float)); /* scaled errors, [i][r] */
    float *qv = qd_xmalloc(RT * sizeof(float));
    uint8_t *qcv = qd_xmalloc(RT);
    double *errs = qd_xcalloc((size_t)R, sizeof(double));
    int64_t *colgroup = qd_xmalloc((size_t)C * sizeof(int64_t)); /* group of permuted column k */
    for (int64_t i1 = 0; i1 < C; i1 += bs) {
        int64_t i2 = QD_MIN(i1 + bs, C), cnt = i2 - i1;
        for (int64_t k = i1; k < i2; k++) {
            int64_t g = 0;
            if (grouped) {
                if (o->static_groups)
                    g = perm[k] / gs;
                else {
                    g = k / gs;
                    if (k % gs == 0) { /* from the block-start snapshot of the outer W */
                        qd_find_params_rows(Wp + k, R, QD_MIN(gs, C - k), C, o->bits, o->sym, &o->clip, scales + g,
                                            zeros + g, ng);
                        for (int64_t r = 0; r < R; r++) {
                            sT[g * R + r] = scales[r * ng + g];
                            zT[g * R + r] = zeros[r * ng + g];
                        }
                    }
                }
            }
            colgroup[k] = g;
        }
        for (int64_t r0 = 0; r0 < R; r0 += RT) {
            const int64_t n = QD_MIN((int64_t)RT, R - r0);
            for (int64_t r = 0; r < n; r++)
                for (int64_t i = 0; i < cnt; i++) T[i * RT + r] = Wp[(r0 + r) * C + i1 + i];
            qd_gptq_col a = {.T = T, .ldt = RT, .n = n, .cnt = cnt, .maxq = maxq, .q = qv, .qc = qcv, .err = errs + r0};
            for (int64_t i = 0; i < cnt; i++) {
                const int64_t k = i1 + i, g = colgroup[k];
                a.s = sT + g * R + r0;
                a.z = zT + g * R + r0;
                a.d = Hinv[k * C + k];
                a.hrow = Hinv + k * C + i1;
                a.e = ET + i * R + r0;
                column(&a, i);
                const int64_t ok = perm[k];
                for (int64_t r = 0; r < n; r++) {
                    W[(r0 + r) * C + ok] = qv[r];
                    codes[(r0 + r) * C + ok] = qcv[r];
                }
            }
        }
        if (i2 < C)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)R, (int)(C - i2), (int)cnt, -1.0f, ET, (int)R,
                        Hinv + i1 * C + i2, (int)C, 1.0f, Wp + i2, (int)C);
    }
    if (g_idx)
        for (int64_t k = 0; k < C; k++) g_idx[perm[k]] = (int32_t)colgroup[k];
    double err_total = 0;
    for (int64_t r = 0; r < R; r++) err_total += errs[r];
    s.error = err_total;
    s.seconds = qd_now() - t0;
    if (st) *st = s;
    free(sT);
    free(zT);
    free(Wp);
    free(T);
    free(ET);
    free(qv);
    free(qcv);
    free(errs);
    free(colgroup);
    return QD_OK;
}

const float *qd_gptq_prep_hinv(const qd_gptq_prep *p) { return p->Hinv; }

const uint8_t *qd_gptq_prep_dead(const qd_gptq_prep *p, int64_t *ndead, double *damp_used, int *damp_raises)
{
    if (ndead) *ndead = p->ndead;
    if (damp_used) *damp_used = p->damp_used;
    if (damp_raises) *damp_raises = p->damp_raises;
    return p->dead;
}

size_t qd_gptq_prep_head(void) { return sizeof(qd_gptq_prep); }

int qd_gptq_prep_parts(qd_gptq_prep *p, void *part[QD_GPTQ_PREP_PARTS], size_t bytes[QD_GPTQ_PREP_PARTS])
{
    const size_t C = (size_t)p->C;
    part[0] = p;
    bytes[0] = sizeof *p;
    part[1] = p->dead;
    bytes[1] = C;
    part[2] = p->perm;
    bytes[2] = C * sizeof *p->perm;
    part[3] = p->Hinv;
    bytes[3] = C * C * sizeof *p->Hinv;
    return QD_GPTQ_PREP_PARTS;
}

qd_gptq_prep *qd_gptq_prep_from_head(const void *head)
{
    qd_gptq_prep *p = qd_xmalloc(sizeof *p);
    memcpy(p, head, sizeof *p); /* the sender's array addresses are replaced below */
    const size_t C = (size_t)p->C;
    p->dead = qd_xcalloc(C ? C : 1, 1);
    p->perm = qd_xmalloc((C ? C : 1) * sizeof *p->perm);
    p->Hinv = qd_xmalloc((C ? C * C : 1) * sizeof *p->Hinv);
    return p;
}
