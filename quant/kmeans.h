/* quant/kmeans.h — non-uniform (codebook) quantization: each row (or the whole tensor) gets
 * K = 2^bits centroids found by k-means (k-means++ seeding from a fixed seed, then Lloyd
 * iterations until no assignment changes or the limit), optionally weighted per element (e.g. by
 * the Hessian diagonal, as SqueezeLLM does). Codes index the centroids, which are sorted
 * ascending. Deterministic. */
#ifndef QD_KMEANS_H
#define QD_KMEANS_H

#include <stdint.h>

typedef struct {
    int bits;      /* 1..8: K = 2^bits */
    int per_row;   /* 1: one codebook per row; 0: one for the tensor */
    int max_iters; /* Lloyd iterations at most (default 50) */
    uint64_t seed;
} qd_kmeans_opts;

/* codebook: [rows][K] (per_row) or [K], sorted ascending; codes: [rows][cols], each the index of
 * the nearest centroid. weights [rows][cols] finite >= 0, or NULL (all 1); a codebook whose
 * weights are all 0 is fitted unweighted. Seeds: o->seed for the tensor, o->seed + r for row r.
 * Returns the number of Lloyd iterations of the slowest codebook, or a negative QD_E* code
 * (QD_EINVAL for bad bits or weights, QD_ENONFINITE for NaN/Inf in w). */
int qd_kmeans_quantize(const float *w, int64_t rows, int64_t cols, const float *weights, const qd_kmeans_opts *o,
                       float *codebook, uint8_t *codes);

#endif
