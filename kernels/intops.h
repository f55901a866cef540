/* kernels/intops.h — the kernels of integer-only inference (runtime/intmodel.h): int8 GEMMs with
 * int32 accumulators, requantization by Q31 multipliers, rescaled residual additions, and the
 * I-BERT-style integer GELU, softmax (exp) and LayerNorm (integer square root). No kernel here
 * executes a floating-point instruction.
 *
 * One table of function pointers, chosen once at run time (kernels/intops_dispatch.c): the
 * scalar reference (kernels/ref/intops.c) defines every bit; kernels/avx2/intops.c (x86-64 with
 * AVX2, following kernels/dispatch.c's choice and QD_KERNELS) and kernels/neon/intops.c (AArch64;
 * the int8 GEMM with SDOT where the CPU reports it, plain NEON otherwise) give the same bits.
 *
 * Notation: Q31 multiplier (M0, sh) = the real factor M0 · 2^(sh - 31), M0 in [2^30, 2^31) or 0
 * (quant/fixed.h qd_quantize_multiplier); mbqm = TFLite's MultiplyByQuantizedMultiplier
 * (kernels/ref/fixedpoint.h); rshift_up(x, n) = floor(x / 2^n + 1/2); sat8 = clamp to
 * [-128, 127]. Rows are [M][N] with leading dimensions in elements.
 *
 *   igemm_s32   C[m][n] = Σ_k A[m][k] · W[n][k], exact int32 (K <= 65536); W packed by igemm_pack.
 *   requant_s8  out = max(sat8(mbqm(acc + bias[n], M0[n], sh[n]) + zp), lo)   (lo = -128, or the
 *               zero point for a fused ReLU). bias may be NULL; per-tensor: pass arrays of one
 *               value with `per_channel` 0. The sums acc + bias saturate to int32.
 * requant_s8, layernorm and gelu_s8 may split static outlier channels off (qd_isplit, NULL: none).
 *   rescale_add out = clamp(mbqm(acc + bias[n], M0[n], sh[n]) + mbqm(res, rM0, rsh), ±lim): a
 *               Linear's accumulator added to a residual in the residual's own scale, both brought
 *               to the output scale (TFLite's ADD of two quantized tensors, kept in int32).
 *   layernorm   integer LayerNorm of int32 rows (qd_iln below): int8 output and, when `fine` is
 *               not NULL, the same values with 8 more fractional bits (int32) for the residual.
 *   gelu_s8     I-BERT's i-GELU on accumulators brought to Q10 (qd_igelu below), output int8.
 *   softmax_u8  I-BERT's i-exp softmax of one row of int32 scores brought to Q12 (qd_isoftmax).
 *   qk_s32      S[i][j] = Σ_d (Q[i][d] - zq) (K[j][d] - zk) for one attention head.
 *   pv_s32      C[i][d] = Σ_j P[i][j] (V[j][d] - zv), P unsigned 8-bit probabilities.
 */
#ifndef QD_KERNELS_INTOPS_H
#define QD_KERNELS_INTOPS_H

#include <stdint.h>

/* Integer LayerNorm of one row x[N] (int32, real scale S, |x| < 2^24):
 *   f    = max(0, 23 - bitlen(max |x|));  x' = x · 2^f      (small rows lose nothing to the mean)
 *   mu   = rdiv(Σ x', N)  (round half up);  d = x' - mu;  v = rdiv(Σ d², N) + e
 *          e = min(eps · 2^(2f - 32), 2^60) (rshift_up when 2f < 32)
 *   k    = min(15, (62 - bitlen(v)) / 2);  sig = max(isqrt(v · 4^k), 1)          (σ · 2^(f+k))
 *   b    = bitlen(sig);  R = floor((2^(b+30) - 1) / sig) in [2^30, 2^31)
 *   n    = rshift_up(d · R, b + 14 - k)          (d / σ in Q16)
 *   y    = n · g[c] + beta[c]                    (int64; g = γ / s_out · 2^gsh, beta = β / s_out · 2^(16+gsh))
 *   out  = sat8(rshift_up(y, 16 + gsh) + zp);   fine = sat32(rshift_up(y, 8 + gsh))  (scale s_out / 256)
 * eps = round(ε / S² · 2^32) (at most 2^62); isqrt is floor(sqrt) (kernels/ref/fixedpoint.h). Every step fits int64 for
 * N <= 2^12. */
typedef struct {
    const int32_t *g;    /* [N] */
    const int64_t *beta; /* [N] */
    int32_t gsh;         /* fractional bits of g */
    int32_t zp;          /* output zero point */
    int64_t eps;         /* ε / S² · 2^32 */
} qd_iln;

/* I-BERT i-GELU on x = mbqm(acc + bias[n], M0[n], sh[n]) in Q10 (x / 1024 is the real input):
 *   u = min(|x|, xb)                   (xb = 2562 ≈ 1.769 · √2 · 1024: erf's clip at |x/√2| = 1.769)
 *   L = (u - xb)² + qc                 (qc = floor(1 / (a S²)), a = -0.2888, S = 2^-10 / √2)
 *   t = sign(x) · L + q1               (q1 = floor(1 / S_L), S_L = a S²: 1 + erf in units of S_L; t <= 0)
 *   f = mbqm(-t, fM0, fsh)             ((1 + erf(x / √2)) / 2 in Q15: fM0, fsh = -S_L / 2 · 2^15)
 *   y = x >= xb ? x : x <= -xb ? 0 : rshift_up(x · f, 15)      (GELU(x) in Q10)
 *   out = sat8(mbqm(y, oM0, osh) + zp)                          (oM0, osh: 2^-10 / s_out)
 * Every intermediate fits int32 (|x · f| < 2^27 inside the clip). */
typedef struct {
    int32_t xb, qc, q1;
    int32_t fM0, fsh;
    int32_t oM0, osh, zp;
} qd_igelu;

/* I-BERT i-exp softmax of one row, the scores brought to Q12: x[j] = mbqm(s[j], M0, sh):
 *   m = max x over kept j;  dd = m - x >= 0 (int64);  z = floor(dd / qln2)
 *   e = 0 when z > 30, else ((qb - dd + z·qln2)² + qc) >> z      (p = -dd + z·qln2 in (-qln2, 0];
 *       exp(p) ≈ 0.3585 (p + 1.353)² + 0.344 with qb = floor(1.353 · 4096), qc = floor(0.344 /
 *       (0.3585 · 2^-24)); e < 2^26)
 *   sum = Σ e (int64);  R = floor(2^46 / sum);  P[j] = min(rshift_up(e · R, 38), 255)
 * qln2 = floor(ln 2 · 4096). Columns with keep[j] == 0 get P = 0 (keep NULL, or nothing kept: all
 * columns count). P's scale is 1/256. */
typedef struct {
    int32_t M0, sh;
    int32_t qln2, qb, qc;
} qd_isoftmax;

/* Static outlier channels of an int8 output (an integer form of LLM.int8()'s decomposition, with
 * the channels chosen at calibration): the n channels ch[] of each row are written to their own
 * tensor out[m * ld + j] at the main scale times 2^e with zero point zp, and the main output holds
 * the main zero point there (real 0). A consumer adds (X_out · W_outᵀ) << e to the main product
 * (outlier_add), so both parts meet in the main accumulator's units exactly. */
typedef struct {
    int32_t n;
    const int32_t *ch;
    int32_t e, zp;
    int8_t *out;
    int64_t ld;
} qd_isplit;

typedef struct qd_igemm qd_igemm;

typedef struct qd_intops_table {
    const char *isa; /* "ref", "avx2", "avx512", "neon", "neon-dot" */

    /* int8 weights W[N][K] (row n at w + n * ldw) packed for igemm_s32; NULL when out of memory or
     * K > 65536 */
    qd_igemm *(*igemm_pack)(const int8_t *w, int64_t N, int64_t K, int64_t ldw);
    void (*igemm_free)(qd_igemm *g);
    void (*igemm_s32)(const int8_t *A, int64_t lda, int64_t M, const qd_igemm *W, int32_t *C, int64_t ldc);

    void (*requant_s8)(const int32_t *acc, int64_t M, int64_t N, int64_t lda, const int32_t *bias, const int32_t *M0,
                       const int32_t *sh, int per_channel, int32_t zp, int32_t lo, int8_t *out, int64_t ldo,
                       const qd_isplit *sp);
    void (*rescale_add)(const int32_t *acc, int64_t M, int64_t N, int64_t lda, const int32_t *bias, const int32_t *M0,
                        const int32_t *sh, const int32_t *res, int64_t ldr, int32_t rM0, int32_t rsh, int32_t lim,
                        int32_t *out, int64_t ldo);
    void (*layernorm)(const int32_t *x, int64_t M, int64_t N, int64_t ldx, const qd_iln *p, int8_t *out, int64_t ldo,
                      int32_t *fine, int64_t ldf, const qd_isplit *sp);
    void (*gelu_s8)(const int32_t *acc, int64_t M, int64_t N, int64_t lda, const int32_t *bias, const int32_t *M0,
                    const int32_t *sh, const qd_igelu *p, int8_t *out, int64_t ldo, const qd_isplit *sp);
    /* acc[m][n] += (Σ_j xo[m][j] wo[j][n]) << e, j < Ko (the outlier channels' product; wo is
     * [Ko][N], the weight columns of the outlier channels as rows) */
    void (*outlier_add)(const int8_t *xo, int64_t ldx, int64_t M, const int8_t *wo, int64_t N, int64_t Ko, int32_t e,
                        int32_t *acc, int64_t ldc);
    void (*softmax_u8)(const int32_t *s, int64_t n, const uint8_t *keep, const qd_isoftmax *p, uint8_t *P);
    void (*qk_s32)(const int8_t *Q, int64_t ldq, int32_t zq, const int8_t *K, int64_t ldk, int32_t zk, int64_t Tq,
                   int64_t Tk, int64_t d, int32_t *S, int64_t lds);
    void (*pv_s32)(const uint8_t *P, int64_t ldp, const int8_t *V, int64_t ldv, int32_t zv, int64_t Tq, int64_t Tk,
                   int64_t d, int32_t *C, int64_t ldc);
} qd_intops_table;

/* The table for this process: QD_KERNELS=ref forces the reference; otherwise the best the CPU
 * has (x86-64: kernels/dispatch.c's choice; AArch64: NEON, with SDOT when HWCAP reports it;
 * QD_KERNELS=neon keeps plain NEON). */
const qd_intops_table *qd_intops(void);
/* A given ISA's table, or NULL where this CPU or build lacks it (tests, benches). */
const qd_intops_table *qd_intops_table_for(const char *isa);

void qd_intops_fill_ref(qd_intops_table *t);
void qd_intops_fill_avx2(qd_intops_table *t);
void qd_intops_fill_avx512(qd_intops_table *t); /* over the AVX2 table: the per-element kernels */
void qd_intops_fill_neon(qd_intops_table *t, int dot);

#endif
