/* kernels/gemm_pack.h — layouts of the packed GEMM weights (kernels/gemm.h), shared by
 * kernels/gemm.c (packing), the reference and the ISA versions. Not for other modules.
 *
 * Both layouts cut W[N][K] into panels of QD_GEMM_NR = 16 output channels (the microkernels' tile
 * width); columns past N are zero codes with zero scale and bias, so a kernel may compute them and
 * drop them. Each panel holds the whole K, so any K block of a panel is one contiguous slice.
 *
 * int8 (qd_gemm_w8): codes widened to int16 at pack time, k in pairs for vpmaddwd:
 *     w[((p * kp2) + j) * 32 + 2 * c + (k & 1)] = W[16p + c][2j + (k & 1)], j = k / 2 < kp2 = ceil(K/2)
 *   (0 past K). One 64-byte row per pair of k feeds two ymm of 8 int32 lanes (columns 0-7, 8-15).
 *
 * 4-bit (qd_gemm_w4): groups padded to gp = roundup(G, 16) columns of k (codes 0 and activations 0
 *   in the padding contribute nothing), the last group as well, so a panel is ng · gp / 4 steps of
 *   4 k; one step is 32 bytes for the 16 channels:
 *     byte 4c + i of step s (c < 8, i < 4): low nibble  = q[16p + c][k], high nibble = q[16p + 8 + c][k],
 *     k = (s / (gp/4)) · G + 4 (s % (gp/4)) + i  (code 0 where that k leaves the group or K)
 *   so that (byte & 15) and (byte >> 4) are directly vpmaddubsw operands: per channel 4 unsigned
 *   codes against the 4 int8 activations of the same k, broadcast as one dword.
 *   scales/zeros per panel and group: sc[(p * ng + g) * 16 + c], zero 0 and scale 0 past N.
 */
#ifndef QD_KERNELS_GEMM_PACK_H
#define QD_KERNELS_GEMM_PACK_H

#include <stdint.h>

#include "kernels/gemm.h"

#define QD_GEMM_NR 16

/* zeroed, 64-byte aligned memory for packed weights; NULL on failure (free with free) */
void *qd_gemm_alloc64(size_t bytes);

struct qd_gemm_w8 {
    int64_t N, K;
    int64_t np;    /* panels: ceil(N / 16) */
    int64_t kp2;   /* pairs of k: ceil(K / 2) */
    int16_t *w;    /* [np][kp2][16][2] */
    float *scales; /* [np * 16], 0 past N */
    float *bias;   /* [np * 16], 0 past N; NULL when the weights have none */
};

struct qd_gemm_w4 {
    int64_t N, K, G;
    int64_t np;     /* panels: ceil(N / 16) */
    int64_t ng;     /* groups: ceil(K / G) */
    int64_t gp;     /* padded group length: roundup(G, 16) */
    uint8_t *q;     /* [np][ng * gp / 4][32] */
    float *scales;  /* [np][ng][16] */
    int32_t *zeros; /* [np][ng][16] */
    float *bias;    /* [np * 16] or NULL */
};

/* int8 code W[n][k] of a packed w8 (n < N, k < K) */
static inline int32_t qd_gemm_w8_at(const struct qd_gemm_w8 *w, int64_t n, int64_t k)
{
    return w->w[((n / 16) * w->kp2 + k / 2) * 32 + 2 * (n % 16) + (k & 1)];
}

/* 4-bit code q[n][k] of a packed w4 */
static inline int32_t qd_gemm_w4_at(const struct qd_gemm_w4 *w, int64_t n, int64_t k)
{
    const int64_t g = k / w->G, kk = k - g * w->G, s = g * (w->gp / 4) + kk / 4, c = n % 16;
    const uint8_t b = w->q[((n / 16) * w->ng * (w->gp / 4) + s) * 32 + 4 * (c & 7) + (kk & 3)];
    return c < 8 ? b & 15 : b >> 4;
}

static inline float qd_gemm_w4_scale(const struct qd_gemm_w4 *w, int64_t n, int64_t g)
{
    return w->scales[((n / 16) * w->ng + g) * 16 + n % 16];
}
static inline int32_t qd_gemm_w4_zero(const struct qd_gemm_w4 *w, int64_t n, int64_t g)
{
    return w->zeros[((n / 16) * w->ng + g) * 16 + n % 16];
}

/* The 4-bit GEMM fields of the AVX2 table (kernels/avx2/gemm_w4.c), set by
 * qd_kernels_fill_avx2_gemm. */
struct qd_kernel_table;
void qd_kernels_avx2_gemm_w4(struct qd_kernel_table *t);

#endif /* QD_KERNELS_GEMM_PACK_H */
