/* quant/actq.c — static activation ranges from calibration statistics (see actq.h). */
#include "quant/actq.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/qd_common.h"

static const char *k_methods[] = {"minmax", "percentile", "mse", "entropy"};

const char *qd_actq_method_name(qd_actq_method m) { return (unsigned)m < 4 ? k_methods[m] : "?"; }

int qd_actq_method_from_name(const char *s, qd_actq_method *m)
{
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, k_methods[i])) {
            *m = (qd_actq_method)i;
            return 0;
        }
    return -1;
}

static const char *k_points[] = {"qkv_in", "q",      "k",     "v",   "scores",  "probs", "ctx", "attn_out",
                                 "res1",   "mlp_in", "inter", "act", "mlp_out", "res2",  "out"};

const char *qd_actq_point_name(int p) { return p >= 0 && p < 15 ? k_points[p] : "?"; }

void qd_actq_params(double lo, double hi, int bits, float *scale, int32_t *zero_point)
{
    const double qmin = -ldexp(1.0, bits - 1), qmax = ldexp(1.0, bits - 1) - 1;
    if (lo > 0) lo = 0;
    if (hi < 0) hi = 0;
    if (!(hi - lo > 0) || !isfinite(hi - lo)) {
        *scale = 1.0f;
        *zero_point = 0;
        return;
    }
    const float s = (float)((hi - lo) / (qmax - qmin));
    double z = round(qmin - lo / s); /* ties away from zero, as TFLite's nudged zero point */
    *scale = s;
    *zero_point = (int32_t)(z < qmin ? qmin : z > qmax ? qmax : z);
}

/* expected squared error of quantize-dequantize of the histogram with range [lo, hi] */
static double hist_mse(const qd_actq_stats *st, double A, double lo, double hi, int bits)
{
    float s;
    int32_t z;
    qd_actq_params(lo, hi, bits, &s, &z);
    const double qmin = -ldexp(1.0, bits - 1), qmax = ldexp(1.0, bits - 1) - 1, w = 2.0 * A / QD_ACTQ_BINS;
    double err = 0;
    for (int b = 0; b < QD_ACTQ_BINS; b++) {
        if (!st->hist[b]) continue;
        const double x = -A + (b + 0.5) * w;
        double q = nearbyint(x / s) + z;
        q = q < qmin ? qmin : q > qmax ? qmax : q;
        const double d = x - s * (q - z);
        err += (double)st->hist[b] * d * d;
    }
    return err;
}

/* TensorRT's entropy calibration on the magnitude histogram: the threshold bin count i in
 * [levels, NB/2] whose clipped distribution P (outliers folded into the last bin) is closest
 * in KL divergence to its quantization Q onto `levels` levels. */
static double entropy_threshold(const qd_actq_stats *st, double A)
{
    const int NH = QD_ACTQ_BINS / 2, levels = 128;
    double *h = calloc((size_t)NH, sizeof *h), *P = calloc((size_t)NH, sizeof *P), *Q = calloc((size_t)NH, sizeof *Q);
    QD_ASSERT(h && P && Q);
    for (int b = 0; b < NH; b++) h[b] = (double)st->hist[NH + b] + (double)st->hist[NH - 1 - b];
    double best = INFINITY;
    int best_i = NH;
    for (int i = levels; i <= NH; i++) {
        double outl = 0;
        for (int b = i; b < NH; b++) outl += h[b];
        for (int b = 0; b < i; b++) P[b] = h[b];
        P[i - 1] += outl;
        /* Q: merge i bins into `levels` groups, spread each group's mass over its non-empty bins */
        for (int g = 0; g < levels; g++) {
            const int b0 = (int)((int64_t)g * i / levels), b1 = (int)((int64_t)(g + 1) * i / levels);
            double mass = 0;
            int nz = 0;
            for (int b = b0; b < b1; b++) {
                mass += h[b];
                nz += h[b] > 0;
            }
            for (int b = b0; b < b1; b++) Q[b] = h[b] > 0 && nz ? mass / nz : 0;
        }
        double sp = 0, sq = 0;
        for (int b = 0; b < i; b++) {
            sp += P[b];
            sq += Q[b];
        }
        if (!(sp > 0) || !(sq > 0)) continue;
        double kl = 0;
        for (int b = 0; b < i; b++) {
            if (P[b] <= 0) continue;
            const double p = P[b] / sp, q = Q[b] / sq;
            kl += q > 0 ? p * log(p / q) : p * 40.0; /* a bin Q cannot represent: heavy penalty */
        }
        if (kl < best) {
            best = kl;
            best_i = i;
        }
    }
    free(h);
    free(P);
    free(Q);
    return A * best_i / NH;
}

int qd_actq_range(const qd_actq_stats *st, qd_actq_method m, double percentile, int bits, double *lo, double *hi)
{
    double mn = st->min, mx = st->max;
    if (!(mn <= mx)) mn = mx = 0; /* nothing observed */
    if (mn > 0) mn = 0;
    if (mx < 0) mx = 0;
    const double A = fmax(fabs(mn), fabs(mx));
    *lo = mn;
    *hi = mx;
    if (m == QD_ACTQ_MINMAX || !(A > 0)) return 0;
    if (!st->hist) return -1;
    int64_t total = 0;
    for (int b = 0; b < QD_ACTQ_BINS; b++) total += st->hist[b];
    if (total <= 0) return 0;
    const double w = 2.0 * A / QD_ACTQ_BINS;
    if (m == QD_ACTQ_PERCENTILE) {
        if (!(percentile > 50 && percentile <= 100)) return -1;
        const double p = percentile / 100.0;
        /* hi: the upper edge of the first bin where the count up to it reaches p of the total;
         * lo: the lower edge of the first bin where it exceeds (1 - p) of the total */
        int64_t cum = 0;
        int blo = -1, bhi = QD_ACTQ_BINS - 1;
        for (int b = 0; b < QD_ACTQ_BINS; b++) {
            cum += st->hist[b];
            if (blo < 0 && (double)cum > (1.0 - p) * (double)total) blo = b;
            if ((double)cum >= p * (double)total) {
                bhi = b;
                break;
            }
        }
        if (blo < 0) blo = 0;
        *lo = fmin(0.0, fmax(mn, -A + blo * w));
        *hi = fmax(0.0, fmin(mx, -A + (bhi + 1) * w));
        return 0;
    }
    if (m == QD_ACTQ_MSE) {
        double best = INFINITY, ba = 1.0;
        for (int k = 0; k <= 80; k++) {
            const double a = 1.0 - 0.01 * k;
            const double e = hist_mse(st, A, a * mn, a * mx, bits);
            if (e < best) {
                best = e;
                ba = a;
            }
        }
        *lo = ba * mn;
        *hi = ba * mx;
        return 0;
    }
    const double T = entropy_threshold(st, A);
    *lo = fmax(mn, -T);
    *hi = fmin(mx, T);
    return 0;
}

int qd_actq_outliers(const float *chmin, const float *chmax, int C, double threshold, int cap, int32_t *ch)
{
    if (!(threshold > 0) || C < 2 || cap < 1) return 0;
    float *a = qd_xmalloc((size_t)C * sizeof(float)), *srt = qd_xmalloc((size_t)C * sizeof(float));
    for (int c = 0; c < C; c++) srt[c] = a[c] = fmaxf(fabsf(chmin[c]), fabsf(chmax[c]));
    /* the median by insertion sort (C is a hidden or intermediate width: thousands at most) */
    for (int i = 1; i < C; i++) {
        float v = srt[i];
        int j = i - 1;
        for (; j >= 0 && srt[j] > v; j--) srt[j + 1] = srt[j];
        srt[j + 1] = v;
    }
    const double med = srt[(C - 1) / 2];
    int n = 0;
    if (med > 0) {
        /* the `cap` largest above the threshold: repeatedly take the largest remaining */
        uint8_t *taken = qd_xcalloc((size_t)C, 1);
        for (; n < cap; n++) {
            int best = -1;
            for (int c = 0; c < C; c++)
                if (!taken[c] && a[c] > threshold * med && (best < 0 || a[c] > a[best])) best = c;
            if (best < 0) break;
            taken[best] = 1;
        }
        n = 0;
        for (int c = 0; c < C; c++)
            if (taken[c]) ch[n++] = c;
        free(taken);
    }
    free(a);
    free(srt);
    return n;
}

void qd_actq_outlier_params(double lo, double hi, float scale, int bits, int32_t *e, int32_t *zero_point)
{
    const double qmin = -ldexp(1.0, bits - 1), qmax = ldexp(1.0, bits - 1) - 1;
    if (lo > 0) lo = 0;
    if (hi < 0) hi = 0;
    int k = 1;
    while (k < 24 && ldexp(scale, k) * (qmax - qmin) < hi - lo) k++;
    const double s = ldexp(scale, k);
    double z = round(qmin - lo / s);
    *e = k;
    *zero_point = (int32_t)(z < qmin ? qmin : z > qmax ? qmax : z);
}

void qd_actrec_alloc(qd_actrec *r, int n)
{
    memset(r, 0, sizeof *r);
    r->n = n;
    size_t k = (size_t)(n > 0 ? n : 1);
    r->name = qd_xcalloc(k, sizeof *r->name);
    r->min = qd_xcalloc(k, sizeof(float));
    r->max = qd_xcalloc(k, sizeof(float));
    r->lo = qd_xcalloc(k, sizeof(float));
    r->hi = qd_xcalloc(k, sizeof(float));
    r->scale = qd_xcalloc(k, sizeof(float));
    r->zero_point = qd_xcalloc(k, sizeof(int32_t));
    r->count = qd_xcalloc(k, sizeof(int64_t));
    r->out_off = qd_xcalloc(k + 1, sizeof(int32_t));
    r->out_ch = qd_xcalloc(1, sizeof(int32_t));
    r->out_shift = qd_xcalloc(k, sizeof(int32_t));
    r->out_zp = qd_xcalloc(k, sizeof(int32_t));
    r->out_lo = qd_xcalloc(k, sizeof(float));
    r->out_hi = qd_xcalloc(k, sizeof(float));
    r->bits = 8;
}

void qd_actrec_free(qd_actrec *r)
{
    free(r->name);
    free(r->min);
    free(r->max);
    free(r->lo);
    free(r->hi);
    free(r->scale);
    free(r->zero_point);
    free(r->count);
    free(r->calibration);
    free(r->out_off);
    free(r->out_ch);
    free(r->out_shift);
    free(r->out_zp);
    free(r->out_lo);
    free(r->out_hi);
    memset(r, 0, sizeof *r);
}

int qd_actrec_find(const qd_actrec *r, const char *name)
{
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->name[i], name)) return i;
    return -1;
}
