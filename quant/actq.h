/* quant/actq.h — static activation quantization: a per-tensor range, scale and zero point for
 * each tensor integer-only inference quantizes, chosen from calibration statistics.
 *
 * Statistics per tensor (kept by worker/act_calib.c, summed exactly over ranks): the observed
 * minimum and maximum, the number of values, and a histogram of QD_ACTQ_BINS equal bins over
 * [-A, A], A = max(|min|, |max|) (bin of x: qd_actq_bin). Everything below is a pure function of
 * those integers and floats, so the result is the same for any number of ranks.
 *
 * Range methods (--act-calib):
 *   minmax      [min, max];
 *   percentile  [q(1 - p), q(p)] with q the histogram quantile (bin edges), p = percentile / 100;
 *   mse         [α min, α max] for the α in {1, 0.99, ..., 0.20} with the smallest expected squared
 *               error of quantize-dequantize over the histogram (bin centres); ties keep the larger α;
 *   entropy     TensorRT's KL-divergence threshold T on the histogram of |x| (2048 magnitude bins,
 *               128 levels), then [max(min, -T), min(max, T)].
 * Every range is widened to contain 0. Parameters (asymmetric, signed codes of `bits` bits,
 * qmin = -2^(bits-1), qmax = 2^(bits-1) - 1): scale = (hi - lo) / (qmax - qmin), zero point =
 * clamp(round(qmin - lo / scale), qmin, qmax) (ties away from zero, as TFLite's nudged range);
 * real = scale · (q - zero). A range of width 0 gives
 * scale 1 and zero point 0. */
#ifndef QD_ACTQ_H
#define QD_ACTQ_H

#include <stdint.h>

#define QD_ACTQ_BINS 4096

typedef enum { QD_ACTQ_MINMAX = 0, QD_ACTQ_PERCENTILE, QD_ACTQ_MSE, QD_ACTQ_ENTROPY } qd_actq_method;

typedef struct {
    float min, max; /* observed (min > max: nothing observed) */
    int64_t count;
    int64_t *hist; /* [QD_ACTQ_BINS] or NULL (minmax only) */
} qd_actq_stats;

const char *qd_actq_method_name(qd_actq_method m);
int qd_actq_method_from_name(const char *s, qd_actq_method *m);

/* Histogram bin of x for the half-width A = max(|min|, |max|) > 0. */
static inline int qd_actq_bin(float x, float A)
{
    double t = ((double)x + A) * (QD_ACTQ_BINS / (2.0 * A));
    int b = t >= QD_ACTQ_BINS ? QD_ACTQ_BINS - 1 : t > 0 ? (int)t : 0;
    return b;
}

/* The chosen range [lo, hi] (containing 0) of one tensor. 0, or -1 for a method that needs the
 * histogram when st->hist is NULL or percentile outside (50, 100]. */
int qd_actq_range(const qd_actq_stats *st, qd_actq_method m, double percentile, int bits, double *lo, double *hi);
/* Scale and zero point of a range (see above). */
void qd_actq_params(double lo, double hi, int bits, float *scale, int32_t *zero_point);

/* The record of a model's static activation scales (written by the quantize job, read by
 * integer-only inference; docs/FORMAT.md, /activations). Tensor names: "input", "embeddings",
 * "embeddings.norm", "final_norm", and "layer.K.POINT" with POINT one of qd_actq_point_name. */
#define QD_ACTQ_NAME_LEN 48 /* bytes of a tensor name in the record, NUL included */
typedef struct {
    int n;
    char (*name)[QD_ACTQ_NAME_LEN];
    float *min, *max; /* observed */
    float *lo, *hi;   /* chosen range */
    float *scale;
    int32_t *zero_point;
    int64_t *count;
    int bits;
    qd_actq_method method;
    double percentile;
    char *calibration; /* JSON: data, nsamples, seqlen, seed, real_tokens (may be NULL) */
    /* static outlier channels (the inputs of the Linears, where a few channels are far larger than
     * the rest): tensor i's channels out_ch[out_off[i] .. out_off[i + 1]) are quantized at
     * scale[i] · 2^out_shift[i] with zero point out_zp[i], over their own range [out_lo, out_hi];
     * scale/zero_point/lo/hi then describe the other channels */
    double outlier_threshold; /* a channel is an outlier when its absmax exceeds this times the
                                 median channel's (0: none) */
    int32_t *out_off;         /* [n + 1] */
    int32_t *out_ch;          /* [out_off[n]] */
    int32_t *out_shift, *out_zp;
    float *out_lo, *out_hi;
} qd_actrec;

/* Outlier channels of a tensor from per-channel ranges: channels whose max(|min_c|, |max_c|) exceeds
 * threshold times the median channel's, the largest `cap` of them (ties: lower index first), in
 * increasing channel order. Returns their count; 0 when threshold <= 0 or the median is 0. */
int qd_actq_outliers(const float *chmin, const float *chmax, int C, double threshold, int cap, int32_t *ch);
/* The outlier group's format: the shift e >= 1 that makes scale · 2^e cover [lo, hi] (widened to
 * 0) in `bits` bits, and the zero point. */
void qd_actq_outlier_params(double lo, double hi, float scale, int bits, int32_t *e, int32_t *zero_point);

/* Name of block tap point p (model/model.h QD_TAP_*): "qkv_in", "q", ..., "out". */
const char *qd_actq_point_name(int p);
/* Index of a tensor in the record, or -1. */
int qd_actrec_find(const qd_actrec *r, const char *name);
/* Allocate n entries (zeroed); free everything. */
void qd_actrec_alloc(qd_actrec *r, int n);
void qd_actrec_free(qd_actrec *r);

#endif
