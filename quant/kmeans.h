/* quant/kmeans.h — non-uniform (codebook) quantization: each row (or the whole tensor) gets
 * K = 2^bits centroids found by k-means (k-means++ seeding from a fixed seed, then Lloyd
 * iterations until no assignment changes or the limit), optionally weighted per element (e.g. by
 * the Hessian diagonal, as SqueezeLLM does). Codes index the centroids, which are sorted
 * ascending. Deterministic. */
#ifndef QD_KMEANS_H
#define QD_KMEANS_H

#include <stdint.h>

/* How the centroids start: k-means++ (weighted D^2 sampling from the seed) or K values evenly
 * spaced between the smallest and the largest value (no randomness). */
typedef enum { QD_KMEANS_PLUSPLUS = 0, QD_KMEANS_LINEAR = 1 } qd_kmeans_init;

typedef struct {
    int bits;      /* 1..8: K = 2^bits */
    int per_row;   /* 1: one codebook per row; 0: one for the tensor */
    int max_iters; /* Lloyd iterations at most (default 50) */
    uint64_t seed;
    qd_kmeans_init init;
    int fp16; /* 1: the final levels are rounded to float16 numbers (what the model file stores) and
               * the codes index the nearest rounded level; 0: float32 levels */
} qd_kmeans_opts;

/* x rounded to the nearest float16 number (ties to even), returned as a float; |x| beyond the
 * float16 range becomes +-inf. */
float qd_kmeans_round_fp16(float x);

/* codebook: [rows][K] (per_row) or [K], sorted ascending; codes: [rows][cols], each the index of
 * the nearest centroid. weights [rows][cols] finite >= 0, or NULL (all 1); a codebook whose
 * weights are all 0 is fitted unweighted. Seeds: o->seed for the tensor, o->seed + r for row r.
 * Returns the number of Lloyd iterations of the slowest codebook, or a negative QD_E* code
 * (QD_EINVAL for bad bits or weights, QD_ENONFINITE for NaN/Inf in w). */
int qd_kmeans_quantize(const float *w, int64_t rows, int64_t cols, const float *weights, const qd_kmeans_opts *o,
                       float *codebook, uint8_t *codes);

/* Codebooks per group of G consecutive columns of each row (G >= cols: one per row):
 * codebook [rows][ngroups][K] (ngroups = ceil(cols / G)), each sorted ascending; codes
 * [rows][cols]. colw [cols]: a weight per input column, finite >= 0 (the Hessian diagonal of the
 * layer's input: centroids minimise sum_c colw[c] (w - centroid)^2), or NULL. The k-means++ seed
 * of a group is o->seed mixed with the group's values (not its position), so the codebooks of a
 * row do not depend on which rows are quantized together: any split of the rows over ranks gives
 * the same bits. o->per_row is ignored. Returns the iterations of the slowest codebook, or a
 * negative QD_E* code. */
int qd_kmeans_rows(const float *w, int64_t rows, int64_t cols, int64_t G, const float *colw, const qd_kmeans_opts *o,
                   float *codebook, uint8_t *codes);

/* W[r][c] = codebook[r][c / G][codes[r][c]] (the layout of qd_kmeans_rows), out [rows][cols]. */
void qd_kmeans_dequantize(const uint8_t *codes, int64_t rows, int64_t cols, int64_t G, int bits, const float *codebook,
                          float *out);

/* Groups per row of qd_kmeans_rows. */
static inline int64_t qd_kmeans_ngroups(int64_t cols, int64_t G) { return G > 0 && G < cols ? (cols + G - 1) / G : 1; }

#endif
