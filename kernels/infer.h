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
 * qd_attention_head, one head of one sequence of T tokens, head size d; q, k, v rows at stride ld
 * (the fused QKV rows), ctx rows at stride ldc:
 *     s_j = (fmaf chain over c in order: Σ q[i][c] k[j][c]) * scale;
 *     mx = max_j s_j;  e_j = exp(s_j - mx) and their sum by the table's exp_sum (kernels.h);
 *     p_j = e_j * (1 / sum);
 *     ctx[i][c] = fmaf chain over j in order: Σ p_j v[j][c]
 *   No mask: the runtime runs each sequence at its own length (nothing is padded). work holds
 *   qd_attention_work_floats(T, d) floats (64-byte aligned).
 */
#ifndef QD_KERNELS_INFER_H
#define QD_KERNELS_INFER_H

#include <stdint.h>

void qd_layernorm_rows(const float *x, const float *r, int64_t rows, int64_t n, int64_t ld, const float *g,
                       const float *b, float eps, float *y, float *sum);
void qd_attention_head(const float *q, const float *k, const float *v, int64_t ld, int64_t T, int64_t d, float scale,
                       float *ctx, int64_t ldc, float *work);
/* floats of work for one head: K transposed [d][T16] and four rows of scores [4][T16],
 * T16 = roundup(T, 16) */
int64_t qd_attention_work_floats(int64_t T, int64_t d);

/* The reference's 16-lane sum (above), exposed for the ISA versions' tests. */
float qd_sum16_ref(const float *v, int64_t n);

#endif /* QD_KERNELS_INFER_H */
