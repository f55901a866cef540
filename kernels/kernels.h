/* kernels/kernels.h — qdist's hot loops, chosen once at run time from CPUID.
 *
 * Every kernel has a scalar reference (kernels/ref/) that defines the results, and may have ISA
 * versions (kernels/avx2/, compiled with per-file -mavx2 -mfma -mf16c) that give the same bits.
 * One table of function pointers is filled on first use (thread-safe): the reference first, then
 * whatever the best ISA the CPU supports overrides. QD_KERNELS=ref|avx2|auto in the environment
 * forces a choice (ref: always available; avx2 on a CPU without it falls back to ref with a
 * warning). A binary built anywhere runs everywhere: only kernels/avx2/ holds AVX2 code, and it is
 * reached only through the table after the CPUID check.
 *
 * Adding a kernel: a field in qd_kernel_table, its reference in kernels/ref/ (set in
 * qd_kernels_fill_ref), optionally an ISA version set in qd_kernels_fill_avx2; fields an ISA does
 * not override keep the reference.
 *
 * Quantization conventions (quant/quant.h, docs/FORMAT.md):
 *   codes q in [0, maxq], maxq = 2^bits - 1;
 *   q = clamp(rint(x / scale) + zero, 0, maxq): true division, round half to even, zero added as
 *       float, clamped in float (a NaN quotient gives 0; never undefined behaviour);
 *   x' = scale * (float)(q - zero);
 *   groups: column c of a row belongs to group c / G (G >= 1; the last group may be shorter;
 *       per channel: G = n), scales[g] float32 and zeros[g] int32, g in [0, ceil(n / G));
 *   packing: code i occupies bits [i*b, i*b + b) of the row's little-endian bit stream; a row is
 *       ceil(n*b/8) bytes. 4 bit: byte k = q[2k] | q[2k+1] << 4 (high nibble 0 past the end);
 *       8 bit: one byte per code.
 */
#ifndef QD_KERNELS_H
#define QD_KERNELS_H

#include <stdint.h>

#include "common/qd_common.h"

struct qd_gemm_w8;
struct qd_gemm_w4;
struct qd_gemm_wf;
struct qd_requant;

/* One AdaRound step over n weights (quant/adaround.h; kernels/ref/adaround.c defines every
 * operation). With gw (dL/dW~ at the current V) not NULL, first the gradient and Adam:
 *     g = gw a + b;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
 *     V = V - lrc1 m / (sqrt(v ic2) + eps)      (b1 0.9, b2 0.999, eps 1e-8: kernels/ada_coef.h)
 * then, at the (new) V: sg = 1 / (1 + exp(-V)) (-V clamped to [-20, 20], exp as exp_sum's),
 * h = clip(1.2 sg - 0.1, 0, 1), dh = 1.2 sg (1 - sg) where 1.2 sg - 0.1 is inside (0, 1), else 0;
 *     E = c0 - sm h,  a = sm dh,
 *     b = lambda d(1 - |2h - 1|^beta)/dh dh = -2 lambda beta sign(t) |t|^(beta - 1) dh, t = 2h - 1,
 * |t|^(beta - 1) = exp((beta - 1) log |t|) (0 where t = 0), and if reg is not NULL,
 * reg = 1 - |t| |t|^(beta - 1); lambda = 0: b = 0 (and reg = 0) without the power. It runs with
 * subnormal inputs and results flushed to zero (MXCSR FTZ and DAZ, restored on return). */
typedef struct qd_ada_step {
    int64_t n;
    const float *c0, *sm; /* per weight: E = c0 - sm h (sm = 0 where the code is clamped) */
    float *V, *m, *v;     /* Adam's variable and moments */
    float *a, *b;         /* out: dL/dV = gw a + b at the new V */
    float *E;             /* out: W - W~ */
    float *reg;           /* out, or NULL: the regulariser per weight */
    float lrc1, ic2;      /* lr / (1 - b1^t), 1 / (1 - b2^t) */
    float beta, lambda;   /* the regulariser at the new V */
} qd_ada_step;

/* One column step of GPTQ (quant/gptq.c) over the n rows of a row tile, the block kept
 * transposed (T[i][r]: block column i, tile row r), for column i of cnt:
 *     w = T[i][r];  qf = clamp(rint(w / s[r]) + (float)z[r], 0, maxq)   (rintf: half to even)
 *     q[r] = s[r] * (float)(qf - z[r]);  qc[r] = qf;  e[r] = (w - q[r]) / d
 *     err[r] += (double)(w - q[r])^2 / (d * (double)d) / 2
 *     T[j][r] -= e[r] * hrow[j]   for j in (i, cnt), two roundings (no FMA)
 * Rows are independent and get the same operations in the same order in every ISA version. */
typedef struct qd_gptq_col {
    float *T; /* [cnt][ldt] */
    int64_t ldt, n, cnt;
    const float *s;    /* [n] scales of the column's group */
    const int32_t *z;  /* [n] zeros */
    const float *hrow; /* [cnt] row of the inverse Hessian factor from the block start */
    float d;           /* its diagonal element at column i */
    int maxq;
    float *q;    /* [n] out: dequantized */
    uint8_t *qc; /* [n] out: codes */
    float *e;    /* [n] out: scaled error */
    double *err; /* [n] accumulated */
} qd_gptq_col;

/* the constants of one AdamW step (kernels' adamw) */
typedef struct {
    float b1, b2, omb1, omb2, cf, rbc2, eps, decay, pstep;
} qd_adamw_args;

typedef struct qd_kernel_table {
    /* "ref", "avx2", "avxvnni" (avx2 + AVX-VNNI GEMMs), "avx512" (avx2 + AVX-512 versions of some
     * kernels), "avx512vnni" (avx512 + AVX-512 VNNI GEMMs), "amx" (avx512vnni + AMX-INT8 tiles) */
    const char *isa;

    /* codes[c] (one byte each, unpacked) for c in [0, n); any maxq in [1, 255] */
    void (*quantize_codes)(const float *x, int64_t n, int64_t G, const float *scales, const int32_t *zeros, int maxq,
                           uint8_t *codes);
    /* 4-bit codes packed two per byte: out[ceil(n/2)] */
    void (*quantize_q4)(const float *x, int64_t n, int64_t G, const float *scales, const int32_t *zeros, uint8_t *out);
    /* out[c] = scales[g] * (codes[c] - zeros[g]) from unpacked codes (any bit width) */
    void (*dequantize_codes)(const uint8_t *codes, int64_t n, int64_t G, const float *scales, const int32_t *zeros,
                             float *out);
    /* the same from 4-bit packed codes in[ceil(n/2)] */
    void (*dequantize_q4)(const uint8_t *in, int64_t n, int64_t G, const float *scales, const int32_t *zeros,
                          float *out);

    /* ---- integer GEMMs: results defined in kernels/gemm.h, weights packed by kernels/gemm.c ---- */
    /* x[M][K] -> q[M][K] int8 per row, dynamic (static_scale NULL) or static */
    void (*quantize_rows_s8)(const float *x, int64_t M, int64_t K, int64_t ldx, const float *static_scale,
                             float *scales, int8_t *q, int64_t ldq);
    /* int8 A[M][K] x packed int8 W -> float, raw int32, or requantized int8 C[M][N] */
    void (*gemm_s8_f32)(const int8_t *A, int64_t lda, const float *a_scales, int64_t M, const struct qd_gemm_w8 *W,
                        float *C, int64_t ldc);
    void (*gemm_s8_s32)(const int8_t *A, int64_t lda, int64_t M, const struct qd_gemm_w8 *W, int32_t *C, int64_t ldc);
    void (*gemm_s8_s8)(const int8_t *A, int64_t lda, int64_t M, const struct qd_gemm_w8 *W, const struct qd_requant *rq,
                       int8_t *C, int64_t ldc);
    /* int8 or float A[M][K] x packed 4-bit W -> float C[M][N] */
    void (*gemm_w4_s8)(const int8_t *A, int64_t lda, const float *a_scales, int64_t M, const struct qd_gemm_w4 *W,
                       float *C, int64_t ldc);
    void (*gemm_w4_f32)(const float *A, int64_t lda, int64_t M, const struct qd_gemm_w4 *W, float *C, int64_t ldc);

    /* Elementwise math of the forward pass (kernels/ref/act.c defines every operation; fmaf where
     * the vector code fuses):
     *   gelu:    x = 0.5 x (1 + erf(x / sqrt 2)), erf by a rational approximation on [-4, 4]
     *            (|error| <= 3.4e-7; +-1 outside);
     *   exp_sum: x = exp(x - mx) (Cephes-style: 2^n times a degree-7 polynomial; 0 where
     *            x - mx < -87.33), returns the sum: 8 partial sums over i mod 8 for the first
     *            n - n % 8 values, added lane 0..7 in order, then the tail in order. x - mx <= 0. */
    void (*gelu)(float *x, int64_t n);
    float (*exp_sum)(float *x, int64_t n, float mx);

    /* AdaRound (see qd_ada_step above), and y = log(x) for normal x > 0 (its polynomial:
     * kernels/ada_coef.h; exposed for tests) */
    void (*adaround_step)(const qd_ada_step *s, const float *gw);
    void (*log)(const float *x, int64_t n, float *y);
    /* AdaRound's sparse update of the gradient product: for each row r in [0, R) and column c in
     * [0, C), y[r ld + c] = fmaf(val[k], H[idx[k] C + c], y[r ld + c]) for k = ptr[r] ..
     * ptr[r + 1] - 1 in that order (one rounding per term; the ISA versions give the same bits).
     * H is [C][C] row-major. */
    void (*ada_sparse_update)(const int64_t *ptr, const int32_t *idx, const float *val, int64_t R, const float *H,
                              int64_t C, float *y, int64_t ld);

    /* Training (train/optim.c). adamw: one AdamW step over n values, in float with these roundings
     * (fmaf: one rounding): gr = g cf; m = fmaf(b1, m, omb1 gr); v = fmaf(b2, v, (omb2 gr) gr);
     * den = fmaf(sqrtf(v), rbc2, eps); w = fmaf(w, decay, -((pstep m) / den)).
     * sumsq: sum of x^2 in double (each square exact), value i added to lane i mod 8 in order, the
     * lanes reduced ((0 + 1) + (2 + 3)) + ((4 + 5) + (6 + 7)). */
    void (*adamw)(float *w, const float *g, float *m, float *v, int64_t n, const qd_adamw_args *a);
    double (*sumsq)(const float *x, int64_t n);

    /* ---- the inference runtime: GEMMs of kernels/gemm.h's inference path, block pieces of
     * kernels/infer.h (definitions there) ---- */
    int layout; /* QD_GEMM_LAYOUT_* its integer GEMMs read without falling back to the reference */
    void (*quantize_rows_u8)(const float *x, int64_t M, int64_t K, int64_t ldx, const float *col_mul, float *scales,
                             uint8_t *q, int64_t ldq);
    void (*gemm_u8_f32)(const uint8_t *A, int64_t lda, const float *a_scales, int64_t M, const struct qd_gemm_w8 *W,
                        int64_t n0, int64_t n1, float *C, int64_t ldc);
    void (*gemm_u8w4_f32)(const uint8_t *A, int64_t lda, const float *a_scales, int64_t M, const struct qd_gemm_w4 *W,
                          int64_t n0, int64_t n1, float *C, int64_t ldc);
    void (*gemm_f32)(const float *A, int64_t lda, int64_t M, const struct qd_gemm_wf *W, int64_t n0, int64_t n1,
                     float *C, int64_t ldc);
    void (*layernorm)(const float *x, const float *r, int64_t rows, int64_t n, int64_t ld, const float *g,
                      const float *b, float eps, float *y, float *sum);
    /* m[k] = max(m[k], |x[r][k] * s[k]|) over rows r (s NULL: |x[r][k]|); NaN never raises m */
    void (*col_absmax)(const float *x, int64_t rows, int64_t K, int64_t ldx, const float *s, float *m);
    void (*attn_scores)(const float *q, const float *k, int64_t ld, int64_t T, int64_t d, float scale, float *S,
                        int64_t lds, float *kt);
    void (*softmax_rows)(float *S, int64_t rows, int64_t n, int64_t lds);
    void (*attn_context)(const float *P, int64_t ldp, const float *v, int64_t ld, int64_t T, int64_t d, float *ctx,
                         int64_t ldc);
    /* GPTQ's column step (qd_gptq_col above) */
    void (*gptq_column)(const qd_gptq_col *a, int64_t i);

    /* The fused round-to-nearest path of the job (worker/rtn_rows.c). Values are taken in 8
     * lanes, element c of a call in lane c % 8, and the lanes are reduced in a fixed order, so
     * every ISA gives the same bits:
     *   range_f32: min and max of x[0, n) (n >= 1): for n >= 16 lane k starts at x[k] and takes
     *       v < lo ? v : lo and v > hi ? v : hi over x[k + 8], x[k + 16], ... while they fill
     *       whole 8-blocks; the lanes are folded into x[0] in lane order, then the rest of x in
     *       order (for n < 16 all of x in order). Returns 1 when every value is finite, else 0
     *       (lo and hi then mean nothing).
     *   all_finite: 1 when every value of x[0, n) is finite.
     *   rtn_group: codes of one group with one (s, z): q = clamp(((x / s + M) - M) + (float)z,
     *       0, maxq) with M = 1.5 * 2^23 (rint for |x / s| < 2^22, larger values clamp to the
     *       same end), selects as q < 0 ? 0 : q and q > maxq ? maxq : q; then with
     *       d = (double)x - (double)(s * (q - z)), lane sums of d^2 and of (double)x^2 and lane
     *       maxima of |d| (|d| > m ? |d| : m), reduced as ((l0 + l1) + (l2 + l3)) + ((l4 + l5)
     *       + (l6 + l7)) and added to *e2, *w2; *mx = max(*mx, lane maxima in lane order). */
    int (*range_f32)(const float *x, int64_t n, float *lo, float *hi);
    /* Codebook lookup of one row (K-means, quant/kmeans.h): out[c] = cb[(c / G) * L + codes[c]]
     * for c in [0, n), L levels per group; a copy of a level, so every ISA gives the same bits. */
    void (*lut_row)(const uint8_t *codes, int64_t n, int64_t G, int L, const float *cb, float *out);
    int (*all_finite)(const float *x, int64_t n);
    void (*rtn_group)(const float *x, int64_t n, float s, int32_t z, int maxq, uint8_t *codes, double *e2, double *w2,
                      double *mx);
} qd_kernel_table;

/* The table selected for this process (CPUID and QD_KERNELS; filled on the first call). */
const qd_kernel_table *qd_kernels(void);
/* Name of the selected ISA: "ref", "avx2", "avxvnni", "avx512", "avx512vnni" or "amx". */
const char *qd_kernels_isa(void);
/* A given ISA's table (the names above), or NULL when this CPU or build lacks it (tests, benches). */
const qd_kernel_table *qd_kernels_table(const char *isa);

/* Packed row quantization through the selected table, bits 4 or 8 (8: one byte per code).
 * out holds ceil(n*bits/8) bytes. Other widths are a caller bug (QD_ASSERT). */
void qd_kernels_quantize_row(const float *x, int64_t n, int64_t G, const float *scales, const int32_t *zeros, int bits,
                             uint8_t *out);
void qd_kernels_dequantize_row(const uint8_t *in, int64_t n, int64_t G, const float *scales, const int32_t *zeros,
                               int bits, float *out);

/* Filling functions of the ISA files (dispatch.c calls them; not for other modules). */
void qd_kernels_fill_ref(qd_kernel_table *t);
void qd_kernels_fill_avx2(qd_kernel_table *t);
/* The GEMM fields (kernels/ref/gemm.c, kernels/avx2/gemm*.c), called after the two above. */
void qd_kernels_fill_ref_gemm(qd_kernel_table *t);
void qd_kernels_fill_avx2_gemm(qd_kernel_table *t);
void qd_kernels_fill_ref_act(qd_kernel_table *t);
void qd_kernels_fill_avx2_act(qd_kernel_table *t);
void qd_kernels_fill_ref_adaround(qd_kernel_table *t);
void qd_kernels_fill_ref_train(qd_kernel_table *t);
void qd_kernels_fill_avx2_train(qd_kernel_table *t);
void qd_kernels_fill_avx2_adaround(qd_kernel_table *t);
/* The inference runtime's kernels (kernels/<isa>/infer.c and gemm_u8.c). The ISA files that
 * need compiler flags the compiler may lack return 0 when they were built as stubs. */
void qd_kernels_fill_ref_infer(qd_kernel_table *t);
void qd_kernels_fill_avx2_infer(qd_kernel_table *t);
int qd_kernels_fill_avx512_infer(qd_kernel_table *t);
int qd_kernels_fill_avxvnni(qd_kernel_table *t);
int qd_kernels_fill_avx512vnni(qd_kernel_table *t);
int qd_kernels_fill_amx_int8(qd_kernel_table *t);
void qd_kernels_fill_ref_gptq_rtn(qd_kernel_table *t);
void qd_kernels_fill_avx2_gptq_rtn(qd_kernel_table *t);
void qd_kernels_fill_ref_lut(qd_kernel_table *t);
void qd_kernels_fill_avx2_lut(qd_kernel_table *t);

#endif /* QD_KERNELS_H */
