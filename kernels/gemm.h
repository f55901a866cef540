/* kernels/gemm.h — integer GEMMs for quantized inference: Y = X · Wᵀ of a Linear layer with int8
 * or 4-bit weights, single-threaded and reentrant (callers split rows or ranks over threads).
 *
 * Weights are packed once, at load, into an opaque object laid out for the microkernels
 * (qd_gemm_w8_create / qd_gemm_w4_create, freed with the matching _free); every call takes the
 * packed object. All calls go through the dispatch table (kernels.h); the scalar references in
 * kernels/ref/gemm.c define the results and the AVX2 versions give the same bits:
 *
 *   INT8   acc[m][n] = Σ_k A[m][k] · W[n][k]                  int8 × int8, exact int32 (K ≤ 65536)
 *          f32 out:  C[m][n] = ((float)acc · a_scale[m]) · w_scale[n]  (+ bias[n])
 *          s32 out:  C[m][n] = acc
 *          s8 out:   C[m][n] = requantize(acc + bias32[n], mult[n], shift[n]) + zero_point,
 *                    saturated to [-128, 127] — quant/fixed.h's qd_requantize_s8 exactly
 *   INT4   q[n][k] codes 0..15, group g = k / G, scale s[n][g], zero z[n][g] in [0, 15]
 *          int8 act: isum_g = Σ_{k in g} A[m][k] · (q - z) (exact int32);
 *                    acc = 0.0f; for g in order: acc = fmaf(s[n][g], (float)isum_g, acc);
 *                    C[m][n] = acc · a_scale[m]  (+ bias[n])
 *          f32 act:  w' = s[n][g] · (float)(q - z) (kernels.h dequantization);
 *                    acc = 0.0f; for k in order: acc = fmaf(A[m][k], w'[n][k], acc);
 *                    C[m][n] = acc  (+ bias[n])
 *
 * Every product and sum is defined, so the results do not depend on the ISA, the blocking or the
 * number of rows per call. The int8 path never uses vpmaddubsw on raw int8 pairs (whose saturating
 * int16 sums are wrong for full-range data): see kernels/README.md for the exactness argument.
 *
 * Activation quantization (per row = per token, symmetric, codes in [-127, 127]):
 *   dynamic: scale[m] = absmax_k |x[m][k]| / 127 (NaN values ignored), 0 for an all-zero row;
 *   static:  scale[m] = the given scale (> 0, finite);
 *   q = clamp(rint(x / scale), -127, 127), true division, round half to even, NaN → 0; a zero
 *   scale (all-zero or underflowing row) gives q = 0.
 *
 * The inference path (qd_gemm_u8_f32, qd_gemm_u8w4_f32, qd_gemm_f32) takes activations coded as
 * unsigned bytes u = a + 128 (qd_quantize_rows_u8: the same codes a as above, shifted), computes
 * the output columns [n0, n1) only (n0 a multiple of 16; threads split the columns or the rows),
 * never allocates after its first call on a thread, and gives exactly the results of the int8 calls
 * with A = u - 128:
 *   u8 x int8:  C[m][n] = ((float)acc · a_scale[m]) · w_scale[n]  (+ bias[n]),  acc = Σ_k a · w
 *   u8 x 4-bit: as INT4 int8 act above
 *   FP32:       acc = 0.0f; for k in order: acc = fmaf(A[m][k], W[n][k], acc); C = acc (+ bias[n])
 * Weights for it are packed in the layout the selected table names (qd_kernels()->layout, through
 * qd_gemm_w8_create_layout): int16 pairs for AVX2 (vpmaddwd), bytes for vpdpbusd and AMX tiles
 * (gemm_pack.h); any table reads either layout, the reference directly, an ISA version through
 * the kernel of the other layout (or the reference). qd_gemm_w8_create / qd_gemm_w4_create pack the
 * int16-pair layout that the int8-activation calls above read fastest.
 */
#ifndef QD_KERNELS_GEMM_H
#define QD_KERNELS_GEMM_H

#include <stddef.h>
#include <stdint.h>

typedef struct qd_gemm_w8 qd_gemm_w8;
typedef struct qd_gemm_w4 qd_gemm_w4;
typedef struct qd_gemm_wf qd_gemm_wf;

/* Layouts of packed integer weights (gemm_pack.h); a table names the one its kernels read. */
enum { QD_GEMM_LAYOUT_I16 = 0, QD_GEMM_LAYOUT_VNNI = 1 };

/* Requantization of int32 accumulators to int8 (per output channel n), as TFLite/gemmlowp:
 * out = clamp(SRDHM(sat(acc + bias[n]) · 2^max(shift,0), mult[n]) / 2^max(-shift,0) + zero_point).
 * mult[n], shift[n] come from qd_quantize_multiplier (quant/fixed.h) of the real multiplier
 * a_scale · w_scale[n] / out_scale. */
typedef struct qd_requant {
    const int32_t *bias;  /* [N] added to the accumulator, |bias| <= 2^30; NULL: none */
    const int32_t *mult;  /* [N] Q31 multipliers M0 in [2^30, 2^31), or 0 */
    const int32_t *shift; /* [N] exponents: M = M0 · 2^(shift - 31); |shift| > 31 acts as ±31 */
    int32_t zero_point;   /* output zero point, |zero_point| <= 2^15 */
} qd_requant;

/* Largest K the int8 GEMM accepts: |acc| <= K · 2^14 <= 2^30 leaves room for the bias. */
#define QD_GEMM_MAX_K 65536

/* ---- packed weights -------------------------------------------------------------------------- */
/* w[n * ldw + k] int8 codes, scales[N] per output channel (> 0 for the f32 path), bias[N] or NULL
 * (copied). Returns 0, or QD_EINVAL (message in qd_errmsg) for bad shapes; QD_ENOMEM. */
int qd_gemm_w8_create(const int8_t *w, int64_t N, int64_t K, int64_t ldw, const float *scales, const float *bias,
                      qd_gemm_w8 **out);
void qd_gemm_w8_free(qd_gemm_w8 *w);

/* 4-bit weights in the project's packing (kernels.h): row n starts at packed + n * ldw bytes
 * (ldw >= ceil(K/2)), byte k = q[2k] | q[2k+1] << 4; G >= 1 columns per group,
 * scales[n * ng + g] and zeros[n * ng + g] for g < ng = ceil(K/G), zeros in [0, 15]; bias[N] or
 * NULL. Returns 0, QD_EINVAL or QD_ENOMEM. */
int qd_gemm_w4_create(const uint8_t *packed, int64_t N, int64_t K, int64_t ldw, int64_t G, const float *scales,
                      const int32_t *zeros, const float *bias, qd_gemm_w4 **out);
void qd_gemm_w4_free(qd_gemm_w4 *w);

/* The same in a given layout (tests and benchmarks pack for a table other than the selected one;
 * 4-bit weights whose G or K is not a multiple of 8 stay in the I16 layout). */
int qd_gemm_w8_create_layout(int layout, const int8_t *w, int64_t N, int64_t K, int64_t ldw, const float *scales,
                             const float *bias, qd_gemm_w8 **out);
int qd_gemm_w4_create_layout(int layout, const uint8_t *packed, int64_t N, int64_t K, int64_t ldw, int64_t G,
                             const float *scales, const int32_t *zeros, const float *bias, qd_gemm_w4 **out);

/* FP32 weights w[n * ldw + k], bias[N] or NULL (copied into 16-channel panels). 0, QD_EINVAL or
 * QD_ENOMEM. */
int qd_gemm_wf_create(const float *w, int64_t N, int64_t K, int64_t ldw, const float *bias, qd_gemm_wf **out);
void qd_gemm_wf_free(qd_gemm_wf *w);
size_t qd_gemm_wf_bytes(const qd_gemm_wf *w);

/* Column k of the dequantized weights, out[n] for n < N: scale[n] * w[n][k] (int8),
 * scale[n][g] * (q[n][k] - zero[n][g]) (4-bit), read back out of the packed codes in any layout
 * (the float outlier columns of the runtime's mixed-precision path). */
void qd_gemm_w8_column(const qd_gemm_w8 *W, int64_t k, float *out);
void qd_gemm_w4_column(const qd_gemm_w4 *W, int64_t k, float *out);

/* Shape and bytes held (packed codes, scales, zeros, bias) of a packed object. */
int64_t qd_gemm_w8_n(const qd_gemm_w8 *w);
int64_t qd_gemm_w8_k(const qd_gemm_w8 *w);
size_t qd_gemm_w8_bytes(const qd_gemm_w8 *w);
int64_t qd_gemm_w4_n(const qd_gemm_w4 *w);
int64_t qd_gemm_w4_k(const qd_gemm_w4 *w);
size_t qd_gemm_w4_bytes(const qd_gemm_w4 *w);

/* ---- calls through the selected table (kernels.h); A[m * lda + k], C[m * ldc + n] ------------ */
/* Per-row int8 quantization of x[M][K]: static_scale NULL: dynamic (scales[] written); else every
 * row uses *static_scale (and scales[m] = *static_scale). q[m * ldq + k]. */
void qd_quantize_rows_s8(const float *x, int64_t M, int64_t K, int64_t ldx, const float *static_scale, float *scales,
                         int8_t *q, int64_t ldq);
void qd_gemm_s8_f32(const int8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_w8 *W, float *C,
                    int64_t ldc);
void qd_gemm_s8_s32(const int8_t *A, int64_t lda, int64_t M, const qd_gemm_w8 *W, int32_t *C, int64_t ldc);
void qd_gemm_s8_s8(const int8_t *A, int64_t lda, int64_t M, const qd_gemm_w8 *W, const qd_requant *rq, int8_t *C,
                   int64_t ldc);
void qd_gemm_w4_s8(const int8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_w4 *W, float *C,
                   int64_t ldc);
void qd_gemm_w4_f32(const float *A, int64_t lda, int64_t M, const qd_gemm_w4 *W, float *C, int64_t ldc);

/* ---- the inference path ------------------------------------------------------------------------ */
/* q[m * ldq + k] = 128 + the int8 code of qd_quantize_rows_s8 (dynamic scales only) of the row
 * x[m][k] * col_mul[k] (one rounding; col_mul NULL: x itself). col_mul takes columns out (0) or
 * divides them by smoothing factors. */
void qd_quantize_rows_u8(const float *x, int64_t M, int64_t K, int64_t ldx, const float *col_mul, float *scales,
                         uint8_t *q, int64_t ldq);
void qd_gemm_u8_f32(const uint8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_w8 *W, int64_t n0,
                    int64_t n1, float *C, int64_t ldc);
void qd_gemm_u8w4_f32(const uint8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_w4 *W, int64_t n0,
                      int64_t n1, float *C, int64_t ldc);
void qd_gemm_f32(const float *A, int64_t lda, int64_t M, const qd_gemm_wf *W, int64_t n0, int64_t n1, float *C,
                 int64_t ldc);

#endif /* QD_KERNELS_GEMM_H */
