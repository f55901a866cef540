#include "quant/kmeans.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double unif(uint64_t *s) { return (double)(splitmix(s) >> 11) / 9007199254740992.0; }

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* nearest centroid of a sorted codebook */
static inline int nearest(const float *c, int K, float x)
{
    int lo = 0, hi = K - 1;
    while (lo < hi) { /* first centroid whose upper midpoint is >= x */
        int mid = (lo + hi) / 2;
        /* midpoint in double: in float it can round onto c[mid + 1] for adjacent centroids,
         * sending x == c[mid + 1] to c[mid] */
        if ((double)x <= 0.5 * ((double)c[mid] + (double)c[mid + 1]))
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* K evenly spaced centroids over [min, max] of the values (duplicates for a constant input) */
static void linear_init(const float *x, int64_t n, int K, float *c)
{
    float lo = x[0], hi = x[0];
    for (int64_t i = 1; i < n; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    for (int j = 0; j < K; j++) c[j] = K > 1 ? (float)(lo + ((double)hi - lo) * j / (K - 1)) : lo;
    c[K - 1] = hi;
}

/* k-means++ seeding (weighted D^2 sampling) of c[0 .. K) from seed; fewer distinct values than
 * centroids leave duplicates. d2: n doubles of scratch. */
static void plusplus_init(const float *x, const float *wt, int64_t n, int K, uint64_t seed, float *c, double *d2)
{
    uint64_t s = seed;
    double tot = 0;
    for (int64_t i = 0; i < n; i++) tot += wt ? wt[i] : 1.0;
    int64_t first = 0;
    double r = unif(&s) * tot, acc = 0;
    for (int64_t i = 0; i < n; i++) {
        acc += wt ? wt[i] : 1.0;
        if (acc >= r) {
            first = i;
            break;
        }
    }
    c[0] = x[first];
    for (int64_t i = 0; i < n; i++) d2[i] = (double)(x[i] - c[0]) * (x[i] - c[0]) * (wt ? wt[i] : 1.0);
    int k = 1;
    for (; k < K; k++) {
        double sum = 0;
        for (int64_t i = 0; i < n; i++) sum += d2[i];
        if (sum <= 0) break; /* fewer distinct values than centroids */
        double t = unif(&s) * sum, a = 0;
        int64_t pick = n - 1;
        for (int64_t i = 0; i < n; i++) {
            a += d2[i];
            if (a >= t && d2[i] > 0) {
                pick = i;
                break;
            }
        }
        c[k] = x[pick];
        for (int64_t i = 0; i < n; i++) {
            double d = (double)(x[i] - c[k]) * (x[i] - c[k]) * (wt ? wt[i] : 1.0);
            if (d < d2[i]) d2[i] = d;
        }
    }
    for (int j = k; j < K; j++) c[j] = c[k - 1]; /* duplicates for degenerate inputs */
}

float qd_kmeans_round_fp16(float x)
{
    if (!isfinite(x) || x == 0.0f) return x;
    int e;
    frexpf(x, &e); /* |x| = m 2^e, m in [0.5, 1): 11 significant bits keep a quantum of 2^(e-11) */
    const int q = e - 11 < -24 ? -24 : e - 11; /* below 2^-14: the subnormals' fixed quantum 2^-24 */
    const float r = ldexpf(rintf(ldexpf(x, -q)), q);
    return fabsf(r) > 65504.0f ? copysignf(INFINITY, x) : r;
}

/* one codebook for n values (stride 1); returns iterations. wt: weights >= 0 with a positive
 * sum, or NULL. fp16: the levels end rounded to float16 (the codes then index the nearest). */
static int kmeans1d(const float *x, const float *wt, int64_t n, int K, int max_iters, uint64_t seed,
                    qd_kmeans_init init, int fp16, float *c, uint8_t *code)
{
    double *d2 = qd_xmalloc((size_t)n * sizeof(double));
    if (init == QD_KMEANS_LINEAR)
        linear_init(x, n, K, c);
    else
        plusplus_init(x, wt, n, K, seed, c, d2);
    qsort(c, (size_t)K, sizeof(float), cmp_float);
    double *sw = qd_xmalloc((size_t)K * sizeof(double)), *sx = qd_xmalloc((size_t)K * sizeof(double));
    int it = 0;
    for (; it < max_iters; it++) {
        int changed = it == 0; /* the first pass always updates the centroids */
        memset(sw, 0, (size_t)K * sizeof(double));
        memset(sx, 0, (size_t)K * sizeof(double));
        for (int64_t i = 0; i < n; i++) {
            int j = nearest(c, K, x[i]);
            changed += it > 0 && code[i] != j;
            code[i] = (uint8_t)j;
            double w = wt ? wt[i] : 1.0;
            sw[j] += w;
            sx[j] += w * x[i];
        }
        if (!changed) break;
        for (int j = 0; j < K; j++)
            if (sw[j] > 0) c[j] = (float)(sx[j] / sw[j]);
        qsort(c, (size_t)K, sizeof(float), cmp_float);
    }
    for (int j = 0; fp16 && j < K; j++) c[j] = qd_kmeans_round_fp16(c[j]); /* monotone: still ascending */
    for (int j = 0; j < K; j++) c[j] += 0.0f; /* -0 becomes +0: the same bits after a merge over ranks */
    for (int64_t i = 0; i < n; i++) code[i] = (uint8_t)nearest(c, K, x[i]);
    free(sw);
    free(sx);
    free(d2);
    return it;
}

static double wsum(const float *wt, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += wt[i];
    return s;
}

int qd_kmeans_quantize(const float *w, int64_t rows, int64_t cols, const float *weights, const qd_kmeans_opts *o,
                       float *codebook, uint8_t *codes)
{
    if (o->bits < 1 || o->bits > 8) return qd_err_set(QD_EINVAL, "kmeans: bits must be 1..8, got %d", o->bits);
    int rc = qd_check_finite(w, rows, cols, "weight");
    if (rc) return rc;
    if (weights) {
        for (int64_t i = 0; i < rows * cols; i++)
            if (!(weights[i] >= 0.0f) || !isfinite(weights[i]))
                return qd_err_set(QD_EINVAL, "kmeans: weight [%lld, %lld] = %g, must be finite and >= 0",
                                  (long long)(i / cols), (long long)(i % cols), (double)weights[i]);
    }
    int K = 1 << o->bits, iters = o->max_iters > 0 ? o->max_iters : 50, worst = 0;
    if (o->per_row) {
        for (int64_t r = 0; r < rows; r++) {
            const float *wr = weights ? weights + r * cols : NULL;
            int n = kmeans1d(w + r * cols, wr && wsum(wr, cols) > 0 ? wr : NULL, cols, K, iters, o->seed + (uint64_t)r,
                             o->init, o->fp16, codebook + r * K, codes + r * cols);
            if (n > worst) worst = n;
        }
    } else
        worst = kmeans1d(w, weights && wsum(weights, rows * cols) > 0 ? weights : NULL, rows * cols, K, iters, o->seed,
                         o->init, o->fp16, codebook, codes);
    return worst;
}

/* FNV-1a over the bytes of the values: a seed that follows the data, not its position */
static uint64_t hash_values(const float *x, int64_t n, uint64_t h)
{
    const unsigned char *b = (const unsigned char *)x;
    h ^= 0xcbf29ce484222325ull;
    for (int64_t i = 0; i < n * (int64_t)sizeof(float); i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

int qd_kmeans_rows(const float *w, int64_t rows, int64_t cols, int64_t G, const float *colw, const qd_kmeans_opts *o,
                   float *codebook, uint8_t *codes)
{
    if (o->bits < 1 || o->bits > 8) return qd_err_set(QD_EINVAL, "kmeans: bits must be 1..8, got %d", o->bits);
    int rc = qd_check_finite(w, rows, cols, "weight");
    if (rc) return rc;
    for (int64_t c = 0; colw && c < cols; c++)
        if (!(colw[c] >= 0.0f) || !isfinite(colw[c]))
            return qd_err_set(QD_EINVAL, "kmeans: weight of column %lld = %g, must be finite and >= 0", (long long)c,
                              (double)colw[c]);
    const int K = 1 << o->bits, iters = o->max_iters > 0 ? o->max_iters : 50;
    const int64_t ng = qd_kmeans_ngroups(cols, G), gs = ng > 1 ? G : cols;
    int worst = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < ng; g++) {
            const int64_t c0 = g * gs, n = QD_MIN(gs, cols - c0);
            const float *x = w + r * cols + c0, *wt = colw ? colw + c0 : NULL;
            if (wt && !(wsum(wt, n) > 0)) wt = NULL; /* no signal in this group: plain k-means */
            int it = kmeans1d(x, wt, n, K, iters, hash_values(x, n, o->seed), o->init, o->fp16,
                              codebook + (r * ng + g) * K, codes + r * cols + c0);
            if (it > worst) worst = it;
        }
    return worst;
}

void qd_kmeans_dequantize(const uint8_t *codes, int64_t rows, int64_t cols, int64_t G, int bits, const float *codebook,
                          float *out)
{
    const int K = 1 << bits;
    const int64_t ng = qd_kmeans_ngroups(cols, G), gs = ng > 1 ? G : cols;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) out[r * cols + c] = codebook[(r * ng + c / gs) * K + codes[r * cols + c]];
}
