/* kernels/infer.h — the float pieces of a transformer block for the inference runtime (runtime/),
 * beside the GEMMs of kernels/gemm.h: LayerNorm with the residual add, and one attention head of
 * one sequence. Each is defined to the bit by its scalar reference (kernels/ref/infer.c); the
 * AVX2 and AVX-512 versions follow the same operations in the same order lane by lane, so a whole
 * forward pass gives the same bits whatever the table (QD_KERNELS=ref included) and whatever the
 * thread count or the other sequences of a batch.
 *
 * Sums of n floats ("sum16"): 16 partial sums p[l] = Σ v[i] over i ≡ l (mod 16) in order of i,
 * then p[l] += p[l + s] for s = 8, 4, 2, 1 (l < s); the sum is p[0]. (A 16-lane accumulator
 * reduced by halves; AVX2 keeps two 8-lane ones.)
 *
 * qd_layernorm_rows, per row (x, r, y, sum rows at stride ld; r and sum may be NULL):
 *     v = x + r (one rounding; v = x without r); sum = v when asked;
 *     mean = sum16(v) / n;  d = v - mean;  var = sum16(d * d) / n  (the square rounded);
 *     rstd = 1 / sqrtf(var + eps);  y = ((d * rstd) * g) + b   (each operation rounded, no fma)
 *   y may alias x (or r, or sum).
 *
 * One attention head of one sequence of T tokens, head size d; q, k, v rows at stride ld (the
 * fused QKV rows), scores and probabilities S [T][lds] (lds >= T16 = roundup(T, 16)), ctx rows
 * at stride ldc; three steps, so that a profile can time the softmax alone:
 *   qd_attn_scores:  S[i][j] = (fmaf chain over c in order: Σ q[i][c] k[j][c]) * scale, and
 *                    S[i][j] = 0 for j in [T, T16); kt holds d * T16 floats of scratch;
 *   qd_softmax_rows: per row, mx = max_j s_j; e_j = exp(s_j - mx) (kernels.h exp_sum's exponential,
 *                    0 below its range); sum = sum16(e); s_j = e_j * (1 / sum)   (j < n);
 *   qd_attn_context: ctx[i][c] = fmaf chain over j in order: Σ P[i][j] v[j][c].
 *   No mask: the runtime runs each sequence at its own length (nothing is padded).
 */
#ifndef QD_KERNELS_INFER_H
#define QD_KERNELS_INFER_H

#include <stdint.h>

void qd_layernorm_rows(const float *x, const float *r, int64_t rows, int64_t n, int64_t ld, const float *g,
                       const float *b, float eps, float *y, float *sum);
void qd_attn_scores(const float *q, const float *k, int64_t ld, int64_t T, int64_t d, float scale, float *S,
                    int64_t lds, float *kt);
void qd_softmax_rows(float *S, int64_t rows, int64_t n, int64_t lds);
void qd_attn_context(const float *P, int64_t ldp, const float *v, int64_t ld, int64_t T, int64_t d, float *ctx,
                     int64_t ldc);

/* m[k] = max(m[k], |x[r][k] s[k]|) over rows r, s NULL: |x[r][k]| (the outlier columns' scan;
 * a maximum is exact in any order) */
void qd_col_absmax(const float *x, int64_t rows, int64_t K, int64_t ldx, const float *s, float *m);

/* The reference's 16-lane sum (above), exposed for the ISA versions' tests. */
float qd_sum16_ref(const float *v, int64_t n);

#endif /* QD_KERNELS_INFER_H */
