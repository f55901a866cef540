/* Sparsity patterns, masks, magnitude and Wanda pruning, structured importance (see prune.h). */
#include "quant/prune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"

const char *qd_prune_method_name(int m)
{
    return m == QD_PRUNE_MAGNITUDE ? "magnitude" : m == QD_PRUNE_WANDA ? "wanda" : "sparsegpt";
}

int qd_prune_method_parse(const char *s)
{
    for (int m = 0; m <= QD_PRUNE_WANDA; m++)
        if (!strcmp(s, qd_prune_method_name(m))) return m;
    return -1;
}

double qd_sparsity_fraction(const qd_sparsity *s)
{
    if (s->n > 0) return 1.0 - (double)s->n / (double)s->m;
    return s->sparsity;
}

int qd_sparsity_parse(const char *text, qd_sparsity *out)
{
    memset(out, 0, sizeof *out);
    if (!text || !*text) return qd_err_set(QD_EINVAL, "sparsity: empty value");
    const char *colon = strchr(text, ':');
    char *end = NULL;
    if (colon) {
        long n = strtol(text, &end, 10);
        if (end != colon) return qd_err_set(QD_EINVAL, "sparsity '%s': expected N:M, e.g. 2:4", text);
        long m = strtol(colon + 1, &end, 10);
        if (*end || end == colon + 1) return qd_err_set(QD_EINVAL, "sparsity '%s': expected N:M, e.g. 2:4", text);
        if (n <= 0 || m > 64 || n >= m)
            return qd_err_set(QD_EINVAL, "sparsity '%s': N:M needs 0 < N < M <= 64 (N nonzeros per M)", text);
        out->n = (int)n;
        out->m = (int)m;
        return QD_OK;
    }
    double v = strtod(text, &end);
    if (end == text)
        return qd_err_set(QD_EINVAL, "sparsity '%s': expected a fraction (0.5), a percentage or N:M", text);
    if (*end == '%') {
        v /= 100.0;
        end++;
    }
    if (*end || !(v >= 0.0 && v < 1.0))
        return qd_err_set(QD_EINVAL, "sparsity '%s': the fraction of zeros must be in [0, 1)", text);
    out->sparsity = v;
    return QD_OK;
}

void qd_sparsity_format(const qd_sparsity *s, char *buf, size_t cap)
{
    if (s->n > 0)
        snprintf(buf, cap, "%d:%d", s->n, s->m);
    else if (s->sparsity > 0)
        snprintf(buf, cap, "%.6g", s->sparsity);
    else
        snprintf(buf, cap, "dense");
}

int qd_sparsity_check_cols(const qd_sparsity *s, int64_t cols, const char *what)
{
    if (s->n > 0 && cols % s->m != 0)
        return qd_err_set(QD_ESHAPE, "%s: %lld input columns are not a multiple of M = %d for %d:%d sparsity", what,
                          (long long)cols, s->m, s->n, s->m);
    return QD_OK;
}

typedef struct {
    float s;
    int64_t i;
} score_idx;

/* ascending score, then ascending index: the first k entries are the ones pruned */
static int cmp_score(const void *a, const void *b)
{
    const score_idx *x = a, *y = b;
    if (x->s != y->s) return x->s < y->s ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* Prunes the k lowest of n scores (stride 1) into mask (kept = 1). */
static void prune_lowest(const float *score, int64_t n, int64_t k, uint8_t *mask, score_idx *tmp)
{
    memset(mask, 1, (size_t)n);
    if (k <= 0) return;
    for (int64_t i = 0; i < n; i++) tmp[i] = (score_idx){score[i], i};
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_score);
    for (int64_t i = 0; i < k && i < n; i++) mask[tmp[i].i] = 0;
}

/* N:M in one row: in each group of m, keep the n highest (ties: the higher index is pruned last,
 * i.e. the lower index is pruned first, as everywhere). */
static void select_nm_row(const float *score, int64_t cols, int n, int m, uint8_t *mask)
{
    for (int64_t g = 0; g < cols; g += m) {
        for (int j = 0; j < m; j++) mask[g + j] = 1;
        for (int p = 0; p < m - n; p++) { /* m <= 64: selection by repeated minimum */
            int best = -1;
            for (int j = 0; j < m; j++)
                if (mask[g + j] && (best < 0 || score[g + j] < score[g + best])) best = j;
            mask[g + best] = 0;
        }
    }
}

int qd_prune_select(const float *score, int64_t rows, int64_t cols, const qd_sparsity *s, qd_prune_scope scope,
                    uint8_t *mask)
{
    int rc = qd_sparsity_check_cols(s, cols, "prune");
    if (rc) return rc;
    if (s->n > 0) {
        for (int64_t r = 0; r < rows; r++) select_nm_row(score + r * cols, cols, s->n, s->m, mask + r * cols);
        return QD_OK;
    }
    if (scope == QD_PRUNE_LAYER) {
        int64_t n = rows * cols;
        score_idx *tmp = qd_xmalloc((size_t)n * sizeof *tmp);
        prune_lowest(score, n, (int64_t)floor(s->sparsity * (double)n), mask, tmp);
        free(tmp);
        return QD_OK;
    }
    score_idx *tmp = qd_xmalloc((size_t)cols * sizeof *tmp);
    const int64_t k = (int64_t)floor(s->sparsity * (double)cols);
    for (int64_t r = 0; r < rows; r++) prune_lowest(score + r * cols, cols, k, mask + r * cols, tmp);
    free(tmp);
    return QD_OK;
}

int qd_prune_magnitude(const float *W, int64_t rows, int64_t cols, const qd_sparsity *s, qd_prune_scope scope,
                       uint8_t *mask)
{
    int rc = qd_check_finite(W, rows, cols, "weight");
    if (rc) return rc;
    float *sc = qd_xmalloc((size_t)(rows * cols) * sizeof(float));
    for (int64_t i = 0; i < rows * cols; i++) sc[i] = fabsf(W[i]);
    rc = qd_prune_select(sc, rows, cols, s, scope, mask);
    free(sc);
    return rc;
}

int qd_prune_wanda(const float *W, int64_t rows, int64_t cols, const float *H, const qd_sparsity *s, uint8_t *mask)
{
    int rc = qd_check_finite(W, rows, cols, "weight");
    if (rc) return rc;
    float *norm = qd_xmalloc((size_t)cols * sizeof(float));
    for (int64_t j = 0; j < cols; j++) {
        float h = H[j * cols + j];
        if (!isfinite(h) || h < 0) {
            free(norm);
            return qd_err_set(QD_ENONFINITE, "wanda: Hessian diagonal [%lld] = %g is not a finite square norm",
                              (long long)j, (double)h);
        }
        norm[j] = sqrtf(h);
    }
    float *sc = qd_xmalloc((size_t)(rows * cols) * sizeof(float));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) sc[r * cols + j] = fabsf(W[r * cols + j]) * norm[j];
    rc = qd_prune_select(sc, rows, cols, s, QD_PRUNE_ROW, mask);
    free(sc);
    free(norm);
    return rc;
}

void qd_prune_apply(float *W, const uint8_t *mask, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!mask[i]) W[i] = 0.0f;
}

int64_t qd_mask_count(const uint8_t *mask, int64_t n)
{
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) k += mask[i] != 0;
    return k;
}

int qd_mask_check_nm(const uint8_t *mask, int64_t rows, int64_t cols, int n, int m, const char *what)
{
    if (m <= 0 || cols % m)
        return qd_err_set(QD_EFORMAT, "%s: %lld columns do not split into groups of %d", what, (long long)cols, m);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < cols; g += m) {
            int k = 0;
            for (int j = 0; j < m; j++) k += mask[r * cols + g + j] != 0;
            if (k > n)
                return qd_err_set(QD_EFORMAT,
                                  "%s: row %lld, columns %lld..%lld keep %d weights, more than %d:%d allows", what,
                                  (long long)r, (long long)g, (long long)(g + m - 1), k, n, m);
        }
    return QD_OK;
}

void qd_mask_pack(const uint8_t *mask, int64_t rows, int64_t cols, uint8_t *packed)
{
    const int64_t rb = QD_MASK_ROW_BYTES(cols);
    memset(packed, 0, (size_t)(rows * rb));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            if (mask[r * cols + c]) packed[r * rb + c / 8] |= (uint8_t)(1u << (c % 8));
}

void qd_mask_unpack(const uint8_t *packed, int64_t rows, int64_t cols, uint8_t *mask)
{
    const int64_t rb = QD_MASK_ROW_BYTES(cols);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) mask[r * cols + c] = (packed[r * rb + c / 8] >> (c % 8)) & 1u;
}

int64_t qd_sparse_row_slots(const qd_sparsity *s, int64_t cols, int64_t block)
{
    if (s->n > 0) return cols / s->m * s->n;
    if (block <= 0 || block > cols) block = cols;
    int64_t pruned = 0;
    for (int64_t c0 = 0; c0 < cols; c0 += block) {
        const int64_t cnt = QD_MIN(block, cols - c0);
        pruned += (int64_t)floor(s->sparsity * (double)cnt);
    }
    return cols - pruned;
}

int qd_nm_index_bits(int m)
{
    int b = 1;
    while ((1 << b) < m) b++;
    return b;
}

int64_t qd_nm_index_row_bytes(int64_t cols, int n, int m)
{
    return QD_PACKED_ROW_BYTES(cols / m * n, qd_nm_index_bits(m));
}

int qd_sparse_gather(const void *dense, size_t esz, const uint8_t *mask, int64_t rows, int64_t cols,
                     const qd_sparsity *s, int64_t slots, void *vals, uint8_t *nm_pos)
{
    const uint8_t *d = dense;
    uint8_t *v = vals;
    memset(vals, 0, (size_t)(rows * slots) * esz);
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *mr = mask + r * cols;
        const uint8_t *dr = d + (size_t)(r * cols) * esz;
        uint8_t *vr = v + (size_t)(r * slots) * esz;
        int64_t k = 0;
        if (s->n > 0) {
            for (int64_t g = 0; g < cols / s->m; g++) {
                int kept = 0;
                for (int j = 0; j < s->m; j++) kept += mr[g * s->m + j] != 0;
                if (kept > s->n)
                    return qd_err_set(QD_EFORMAT, "row %lld keeps %d of the %d weights of group %lld (pattern %d:%d)",
                                      (long long)r, kept, s->m, (long long)g, s->n, s->m);
                /* the kept positions, and the first pruned ones to fill the group's spare slots,
                 * in ascending order */
                int spare = s->n - kept;
                for (int j = 0; j < s->m; j++) {
                    const int64_t c = g * s->m + j;
                    if (!mr[c] && spare <= 0) continue;
                    if (!mr[c]) spare--;
                    memcpy(vr + (size_t)k * esz, dr + (size_t)c * esz, esz);
                    nm_pos[r * slots + k++] = (uint8_t)j;
                }
            }
        } else {
            for (int64_t c = 0; c < cols; c++) {
                if (!mr[c]) continue;
                if (k == slots)
                    return qd_err_set(QD_EFORMAT, "row %lld keeps more than the %lld weights its pattern allows",
                                      (long long)r, (long long)slots);
                memcpy(vr + (size_t)k++ * esz, dr + (size_t)c * esz, esz);
            }
        }
    }
    return QD_OK;
}

int qd_sparse_scatter(const void *vals, size_t esz, const uint8_t *nm_pos, int64_t rows, int64_t cols,
                      const qd_sparsity *s, int64_t slots, void *dense, uint8_t *mask)
{
    const uint8_t *v = vals;
    uint8_t *d = dense;
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *mr = mask + r * cols, *dr = d + (size_t)(r * cols) * esz;
        const uint8_t *vr = v + (size_t)(r * slots) * esz;
        if (s->n > 0) {
            memset(mr, 0, (size_t)cols);
            for (int64_t k = 0; k < slots; k++) {
                const int64_t g = k / s->n;
                const int p = nm_pos[r * slots + k];
                if (p >= s->m || (k % s->n && p <= nm_pos[r * slots + k - 1]))
                    return qd_err_set(QD_EFORMAT,
                                      "row %lld, group %lld: position %d %s (%d:%d keeps ascending positions < %d)",
                                      (long long)r, (long long)g, p,
                                      p >= s->m ? "is beyond the group" : "is not ascending", s->n, s->m, s->m);
                mr[g * s->m + p] = 1;
                memcpy(dr + (size_t)(g * s->m + p) * esz, vr + (size_t)k * esz, esz);
            }
        } else {
            int64_t k = 0;
            for (int64_t c = 0; c < cols; c++) {
                if (!mr[c]) continue;
                if (k == slots)
                    return qd_err_set(QD_EFORMAT, "row %lld keeps more than its %lld stored values", (long long)r,
                                      (long long)slots);
                memcpy(dr + (size_t)c * esz, vr + (size_t)k++ * esz, esz);
            }
        }
    }
    return QD_OK;
}

void qd_prune_unit_importance(const float *W, int64_t rows, int64_t cols, const float *H, int64_t unit, double *imp)
{
    const int64_t nu = cols / unit;
    for (int64_t u = 0; u < nu; u++) {
        const int64_t j0 = u * unit;
        double t = 0;
        for (int64_t r = 0; r < rows; r++) {
            const float *w = W + r * cols + j0;
            for (int64_t j = 0; j < unit; j++) {
                double s = 0;
                const float *h = H + (j0 + j) * cols + j0;
                for (int64_t k = 0; k < unit; k++) s += (double)h[k] * w[k];
                t += s * w[j];
            }
        }
        imp[u] = t;
    }
}

typedef struct {
    double v;
    int64_t i;
} imp_idx;

static int cmp_imp(const void *a, const void *b)
{
    const imp_idx *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

void qd_prune_choose_units(const double *imp, int64_t n, int64_t remove, uint8_t *keep)
{
    imp_idx *t = qd_xmalloc((size_t)n * sizeof *t);
    for (int64_t i = 0; i < n; i++) t[i] = (imp_idx){imp[i], i};
    qsort(t, (size_t)n, sizeof *t, cmp_imp);
    memset(keep, 1, (size_t)n);
    for (int64_t i = 0; i < remove && i < n; i++) keep[t[i].i] = 0;
    free(t);
}
