/* quant/quant.h — the math of quantization, as pure functions on arrays (no MPI, no files).
 *
 * Conventions (they are part of the file format, docs/FORMAT.md):
 *   - a weight matrix is row-major [rows = out features, cols = in features];
 *   - integer codes are unsigned, q in [0, maxq], maxq = 2^bits - 1, and dequantize as
 *         w' = scale * (q - zero)
 *     with one (scale, zero) per group: per tensor (1 group), per output row, or per G consecutive
 *     input columns of a row (the last group of a row may be shorter);
 *   - symmetric schemes use zero = 2^(bits-1) (so int8 = q - 128), asymmetric ones an integer
 *     zero in [0, maxq];
 *   - rounding is round-half-to-even (rintf in the default FP environment), as the GPTQ reference
 *     (torch.round) does, and quantization divides by the scale (x / scale, not x * (1/scale)):
 *         q = clamp(rint(x / scale) + zero, 0, maxq).
 *
 * Parameters follow the GPTQ reference's finder (min/max widened to include 0), optionally with
 * the MSE-optimal clipping search over shrink factors.
 */
#ifndef QD_QUANT_H
#define QD_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "common/qd_common.h"

typedef enum { QD_GRAN_TENSOR = 0, QD_GRAN_CHANNEL = 1, QD_GRAN_GROUP = 2 } qd_granularity;

typedef struct {
    int bits;               /* 2..8 */
    int sym;                /* 1: symmetric (zero = 2^(bits-1)); 0: asymmetric */
    qd_granularity gran;
    int64_t group_size;     /* G >= 1 for QD_GRAN_GROUP (ignored otherwise) */
} qd_qscheme;

/* Clipping search: grid == 0 means plain min-max. Otherwise the reference's search: for
 * i = 0 .. maxshrink*grid - 1, p = 1 - i/grid, range [p*xmin, p*xmax]; keep the (scale, zero)
 * with the least sum |q(x) - x|^norm. Defaults (GPTQ reference): grid 100, maxshrink 0.8,
 * norm 2.4. */
typedef struct {
    int grid;
    float maxshrink;
    float norm;
} qd_clip_opts;

#define QD_CLIP_MINMAX ((qd_clip_opts){0, 0.0f, 0.0f})
#define QD_CLIP_MSE_DEFAULT ((qd_clip_opts){100, 0.8f, 2.4f})

/* Quantization parameters of a [rows, cols] matrix: ngroups per row (1 for tensor/channel,
 * ceil(cols/G) for groups); scales and zeros are [rows][ngroups] (per-tensor repeats the same
 * value on every row, so readers need no special case). */
typedef struct {
    int64_t rows, cols;
    int64_t ngroups;
    int64_t group_size;     /* columns per group (cols for tensor/channel) */
    int bits, sym;
    qd_granularity gran;
    float *scales;          /* [rows][ngroups] */
    int32_t *zeros;         /* [rows][ngroups] */
} qd_qparams;

static inline int qd_maxq(int bits) { return (1 << bits) - 1; }
static inline int qd_valid_bits(int bits) { return bits >= 2 && bits <= 8; }

/* Quantize one value: q = clamp(rint(x / scale) + zero, 0, maxq). rintf rounds half to even. */
static inline int qd_quantize1(float x, float scale, int32_t zero, int maxq) {
    float q = __builtin_rintf(x / scale) + (float)zero;
    return q < 0.0f ? 0 : q > (float)maxq ? maxq : (int)q;
}
static inline float qd_dequantize1(int q, float scale, int32_t zero) {
    return scale * (float)(q - zero);
}

/* (scale, zero) of each of `rows` rows of the block x[r*ld + c], c in [0, n), exactly as the GPTQ
 * reference's find_params (min/max widened to include 0; all-zero -> [-1, 1]; symmetric zero =
 * 2^(bits-1)), optionally refined by the clipping search. Writes scale[r*sstride], zero[r*sstride].
 * Constant rows reconstruct exactly. Inputs must be finite (callers check with
 * qd_check_finite). */
void qd_find_params_rows(const float *x, int64_t rows, int64_t n, int64_t ld, int bits, int sym,
                         const qd_clip_opts *clip, float *scale, int32_t *zero, int64_t sstride);

/* QD_OK, or QD_ENONFINITE with qd_errmsg() naming `what` and the [row, col] of the first NaN/Inf. */
int qd_check_finite(const float *x, int64_t rows, int64_t cols, const char *what);

int qd_qparams_alloc(qd_qparams *p, int64_t rows, int64_t cols, const qd_qscheme *s);

void qd_qparams_free(qd_qparams *p);

/* Parameters of a whole [rows, cols] matrix for a scheme (allocates p; free with
 * qd_qparams_free). Per tensor: one (scale, zero) over all elements, repeated on every row.
 * Rejects NaN/Inf (QD_ENONFINITE naming [row, col]). */
int qd_quant_params(const float *w, int64_t rows, int64_t cols, const qd_qscheme *s, const qd_clip_opts *clip,
                    qd_qparams *p);

/* Round to nearest: codes[r][c] (unsigned, unpacked) for the parameters p; g_idx[c] maps a
 * column to its group (act-order files) or NULL for c / group_size. */
void qd_rtn_quantize(const float *w, const qd_qparams *p, const int32_t *g_idx, uint8_t *codes);
void qd_dequantize(const uint8_t *codes, const qd_qparams *p, const int32_t *g_idx, float *out);

/* Packing (docs/FORMAT.md "Packing"): code i of a row occupies bits [i*b, i*b + b) of the row's
 * little-endian bit stream; every row starts on a byte boundary, ceil(cols*b/8) bytes. */
int64_t qd_packed_row_bytes(int64_t cols, int bits);
void qd_pack_row(const uint8_t *codes, int64_t n, int bits, uint8_t *out);
void qd_unpack_row(const uint8_t *in, int64_t n, int bits, uint8_t *codes);
void qd_pack_matrix(const uint8_t *codes, int64_t rows, int64_t cols, int bits, uint8_t *out);
void qd_unpack_matrix(const uint8_t *in, int64_t rows, int64_t cols, int bits, uint8_t *codes);

typedef struct {
    double mse;      /* mean squared error */
    double max_abs;  /* largest |w - q| */
    double rel_fro;  /* ||w - q||_F / ||w||_F */
    double sqnr_db;  /* 10 log10(||w||^2 / ||w - q||^2) */
} qd_qerror;
qd_qerror qd_quant_error(const float *w, const float *q, int64_t n);

#endif /* QD_QUANT_H */
