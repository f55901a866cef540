/* quant/quant.h — the math of quantization, as pure functions on arrays (no MPI, no files).
 * Companion headers: quant/kmeans.h (codebook quantization), quant/fixed.h (Q7/Q15/Q31 fixed
 * point and int8 requantization), quant/gptq.h, quant/adaround.h.
 *
 * Conventions (they are part of the file format, docs/FORMAT.md):
 *   - a weight matrix is row-major [rows = out features, cols = in features];
 *   - bits 2..8; integer codes are unsigned, q in [0, maxq], maxq = 2^bits - 1, and dequantize as
 *         w' = scale * (float)(q - zero)
 *     with one (scale float32 > 0, zero int32) per group: per tensor (1 group), per output row,
 *     or per G >= 1 consecutive input columns of a row (the last group of a row may be shorter;
 *     act-order files map columns to groups with g_idx[col] instead);
 *   - symmetric schemes use zero = 2^(bits-1) = (maxq+1)/2 (so int8 = q - 128, and +xmax
 *     clamps to maxq), asymmetric ones an integer zero in [0, maxq];
 *   - quantization divides by the scale (x / scale, not x * (1/scale)) and rounds half to even
 *     (rintf in the default FP environment):
 *         q = clamp(rint(x / scale) + zero, 0, maxq).
 *     Why half to even: the GPTQ reference rounds with torch.round, which is half-to-even, and
 *     exact ties do occur in real weights (gptq-reference, layer 0 attention.attention.value,
 *     4-bit per channel, row 144 col 25: W/scale = -4.5 exactly -> -4, where roundf gives -5).
 *     Matching it makes our scales, zeros and codes bit-identical to the reference's.
 *
 * Parameters follow the GPTQ reference's find_params (range widened to include 0; all-zero ->
 * [-1, 1]; computed in float32 in the reference's operation order, so scales/zeros are
 * bit-identical), optionally refined by a clipping search over shrink factors. Two deliberate
 * differences, both outside what the reference data exercises:
 *   - a constant group c != 0 whose reference scale |c|/maxq does not reproduce c exactly gets
 *     scale |c| and a zero one step away (see qd_find_params_rows), so constant and all-zero
 *     groups always reconstruct exactly and no scale is ever 0;
 *   - symmetric groups with no negative value use [-xmax, xmax] (the reference keeps xmin = 0
 *     there, which with zero = (maxq+1)/2 clips everything above about xmax/2).
 */
#ifndef QD_QUANT_H
#define QD_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "common/qd_common.h"

typedef enum { QD_GRAN_TENSOR = 0, QD_GRAN_CHANNEL = 1, QD_GRAN_GROUP = 2 } qd_granularity;

typedef struct {
    int bits; /* 2..8 */
    int sym;  /* 1: symmetric (zero = 2^(bits-1)); 0: asymmetric */
    qd_granularity gran;
    int64_t group_size; /* G >= 1 for QD_GRAN_GROUP (ignored otherwise) */
    int scale_f16;      /* 1: RTN scales rounded to float16 numbers before coding (the file then
                         * stores them as float16: half the bytes of the scales, same codes) */
} qd_qscheme;

/* Clipping search: grid == 0 means plain min-max. Otherwise the reference's search: for
 * i = 0 .. int(maxshrink*grid) - 1, p = 1 - i/grid, range [p*xmin, p*xmax] (symmetric: zero kept);
 * keep the (scale, zero) with the least sum |q(x) - x|^norm (strictly less: ties keep the larger
 * range). i = 0 is min-max itself, so the search never does worse than min-max in its own norm.
 * Presets:
 *   QD_CLIP_MSE       norm 2: minimizes the squared error, hence MSE <= min-max on every group.
 *                     This is what the `mse` clipping option means.
 *   QD_CLIP_GPTQ_MSE  the GPTQ reference's mse=True defaults (grid 100, maxshrink 0.8, norm
 *                     2.4): minimizes the 2.4-norm, which usually but not always lowers the MSE.
 * (QD_CLIP_MSE_DEFAULT is the older name of QD_CLIP_GPTQ_MSE.) */
typedef struct {
    int grid;
    float maxshrink;
    float norm;
} qd_clip_opts;

#define QD_CLIP_MINMAX      ((qd_clip_opts){0, 0.0f, 0.0f})
#define QD_CLIP_MSE         ((qd_clip_opts){100, 0.8f, 2.0f})
#define QD_CLIP_GPTQ_MSE    ((qd_clip_opts){100, 0.8f, 2.4f})
#define QD_CLIP_MSE_DEFAULT QD_CLIP_GPTQ_MSE

/* Quantization parameters of a [rows, cols] matrix: ngroups per row (1 for tensor/channel,
 * ceil(cols/G) for groups); scales and zeros are [rows][ngroups] (per-tensor repeats the same
 * value on every row, so readers need no special case). */
typedef struct {
    int64_t rows, cols;
    int64_t ngroups;
    int64_t group_size; /* columns per group (cols for tensor/channel) */
    int bits, sym;
    qd_granularity gran;
    float *scales;  /* [rows][ngroups] */
    int32_t *zeros; /* [rows][ngroups] */
} qd_qparams;

static inline int qd_maxq(int bits) { return (1 << bits) - 1; }
static inline int qd_valid_bits(int bits) { return bits >= 2 && bits <= 8; }

/* The one check of a scheme: bits 2..8, a known granularity, group size >= 1 for groups.
 * QD_OK, or QD_EINVAL with a message prefixed by `what` (none when NULL). Every quantizer and
 * the job configuration call it. */
int qd_qscheme_check(const qd_qscheme *s, const char *what);
/* The same for the options of the calibrated methods (GPTQ, SparseGPT): groups of group_size
 * columns, or per channel when group_size <= 0. */
int qd_qscheme_check_groups(int bits, int64_t group_size, const char *what);

/* Quantize one value: q = clamp(rint(x / scale) + zero, 0, maxq). rintf rounds half to even. */
static inline int qd_quantize1(float x, float scale, int32_t zero, int maxq)
{
    float q = __builtin_rintf(x / scale) + (float)zero;
    return q < 0.0f ? 0 : q > (float)maxq ? maxq : (int)q;
}
static inline float qd_dequantize1(int q, float scale, int32_t zero) { return scale * (float)(q - zero); }

/* (scale, zero) of each of `rows` rows of the block x[r*ld + c], c in [0, n), n >= 1, exactly as
 * the GPTQ reference's find_params in float32:
 *     xmin = min(min(x), 0), xmax = max(max(x), 0);
 *     sym: xmax = max(|xmin|, xmax), xmin = -xmax (the reference: only if xmin < 0);
 *     xmin == xmax == 0 -> [-1, 1];
 *     scale = (xmax - xmin) / maxq;  zero = rint(-xmin / scale) (asym) or (maxq + 1) / 2 (sym),
 * optionally refined by the clipping search (clip NULL or grid 0: min-max). Writes
 * scale[r*sstride], zero[r*sstride]. Constant rows reconstruct exactly: when the above does not
 * give back a constant c != 0, scale = |c| and zero = 0 (c > 0) / 1 (c < 0) / (maxq+1)/2 (sym).
 * Inputs must be finite (callers check with qd_check_finite). */
void qd_find_params_rows(const float *x, int64_t rows, int64_t n, int64_t ld, int bits, int sym,
                         const qd_clip_opts *clip, float *scale, int32_t *zero, int64_t sstride);

/* The min-max part of qd_find_params_rows for a group whose min and max are known (lo <= hi,
 * finite): the same scale and zero bit for bit. For fused kernels that find the range
 * themselves. */
void qd_params_from_range(float lo, float hi, int bits, int sym, float *scale, int32_t *zero);

/* QD_OK, or QD_ENONFINITE with qd_errmsg() naming `what` and the [row, col] of the first NaN/Inf. */
int qd_check_finite(const float *x, int64_t rows, int64_t cols, const char *what);
/* QD_OK, or QD_EFORMAT naming `what` and the first column whose g_idx is outside [0, ngroups). */
int qd_check_g_idx(const int32_t *g_idx, int64_t cols, int64_t ngroups, const char *what);

int qd_qparams_alloc(qd_qparams *p, int64_t rows, int64_t cols, const qd_qscheme *s);

void qd_qparams_free(qd_qparams *p);
/* Rounds n scales to float16 numbers in place (qd_qscheme.scale_f16; a scale below float16's
 * least number becomes that number). QD_EINVAL naming `what` where one is beyond float16's range. */
int qd_scales_round_f16(float *scales, int64_t n, const char *what);

/* Parameters of a whole [rows, cols] matrix for a scheme (allocates p; free with
 * qd_qparams_free). Per tensor: one (scale, zero) over all elements, repeated on every row.
 * Rejects NaN/Inf (QD_ENONFINITE naming [row, col]). */
int qd_quant_params(const float *w, int64_t rows, int64_t cols, const qd_qscheme *s, const qd_clip_opts *clip,
                    qd_qparams *p);

/* One row, column c in group c / G: codes[c] = qd_quantize1(x[c], scales[g], zeros[g], maxq),
 * and out[c] = scales[g] * (codes[c] - zeros[g]). The scalar definition of the results. */
void qd_rtn_quantize_row(const float *x, int64_t n, int64_t G, const float *scales, const int32_t *zeros, int maxq,
                         uint8_t *codes);
void qd_dequantize_row(const uint8_t *codes, int64_t n, int64_t G, const float *scales, const int32_t *zeros,
                       float *out);

/* Round to nearest: codes[r][c] (unsigned, unpacked) for the parameters p; g_idx[c] maps a
 * column to its group (act-order files; validate with qd_check_g_idx) or NULL for
 * c / group_size. */
void qd_rtn_quantize(const float *w, const qd_qparams *p, const int32_t *g_idx, uint8_t *codes);
void qd_dequantize(const uint8_t *codes, const qd_qparams *p, const int32_t *g_idx, float *out);

/* Packing (docs/FORMAT.md "Packing"): code i of a row occupies bits [i*b, i*b + b) of the row's
 * little-endian bit stream (low bits first); every row starts on a byte boundary and takes
 * ceil(cols*b/8) bytes, the unused high bits of its last byte zero. 3-bit: 8 codes in 3 bytes;
 * 4-bit: byte k = q[2k] | q[2k+1] << 4; 8-bit: one byte per code. Codes must be <= maxq. */
#define QD_PACKED_ROW_BYTES(cols, bits) (((int64_t)(cols) * (bits) + 7) / 8)
int64_t qd_packed_row_bytes(int64_t cols, int bits);
void qd_pack_row(const uint8_t *codes, int64_t n, int bits, uint8_t *out);
void qd_unpack_row(const uint8_t *in, int64_t n, int bits, uint8_t *codes);
void qd_pack_matrix(const uint8_t *codes, int64_t rows, int64_t cols, int bits, uint8_t *out);
void qd_unpack_matrix(const uint8_t *in, int64_t rows, int64_t cols, int bits, uint8_t *codes);

/* Error of q against w over n elements, accumulated in double. rel_fro is 0 for w == q and Inf
 * for w == 0 != q; sqnr_db is +Inf when w == q. */
typedef struct {
    double mse;     /* mean squared error */
    double max_abs; /* largest |w - q| */
    double rel_fro; /* ||w - q||_F / ||w||_F */
    double sqnr_db; /* 10 log10(||w||^2 / ||w - q||^2) */
} qd_qerror;
qd_qerror qd_quant_error(const float *w, const float *q, int64_t n);
/* Relative output error of a Linear through its inputs' Hessian H [cols][cols] (2/N sum x x^T):
 * tr(D H D^T) / tr(W H W^T), D = W - Q; i.e. ||(W - Q) X^T||^2 / ||W X^T||^2. Sums in double. */
double qd_output_rel_error(const float *W, const float *Q, const float *H, int64_t rows, int64_t cols);

#endif /* QD_QUANT_H */
