/* runtime/intmodel.h — integer-only inference of a BERT or ViT encoder (I-BERT style): int8
 * activations with static scales, int8 × int8 → int32 GEMMs, requantization by Q31 multipliers,
 * residual additions as rescaled int32 adds, and integer GELU, softmax and LayerNorm
 * (kernels/intops.h). Between the input quantization (ViT pixels; BERT starts from token ids)
 * and the output dequantization (ViT logits; BERT mean-pooled embeddings or the [CLS] state)
 * nothing runs in floating point, which --trace-ops shows op by op.
 *
 * This module is the prepared model and its forward pass only: plain integer arrays, no model
 * file, no BLAS, no MPI, so it also builds for AArch64 alone (tests/arm/). runtime/intprep.h
 * builds it from a checkpoint, its qdist model file and the file's static activation scales;
 * qd_imodel_save / qd_imodel_load keep it in a flat file of named arrays.
 *
 * Number formats (docs/integer-only.md):
 *   int8 activations   per-tensor scale s and zero point z (real = s · (q - z)), from calibration;
 *   residual stream    int32 at a per-tensor scale S = range / 2^16 (static), saturated to ±(2^24 - 1);
 *   LayerNorm outputs  int8, and for BERT's residual path the same value with 8 more fractional
 *                      bits (int32, scale s / 256);
 *   attention scores   int32 accumulators, brought to Q12 inside the softmax; probabilities u8 (1/256);
 *   GELU input         Q10 (int32); output int8.
 * Stages can be switched to float one by one (QD_IFLOAT_*) to measure what each integer
 * approximation costs; the trace then shows them as float.
 */
#ifndef QD_INTMODEL_H
#define QD_INTMODEL_H

#include <stdint.h>

#include "kernels/intops.h"

enum { QD_IARCH_BERT = 1, QD_IARCH_VIT = 2 };
enum { QD_IACT_GELU = 0, QD_IACT_RELU = 1 };
/* stages run in float instead (dequantize, float op, quantize): for the cost table */
enum { QD_IFLOAT_GELU = 1, QD_IFLOAT_SOFTMAX = 2, QD_IFLOAT_LAYERNORM = 4 };

#define QD_IRES_LIM ((1 << 24) - 1) /* residual stream saturation */
#define QD_IOUT_MAX 32              /* outlier channels per GEMM input at most */

typedef struct {
    int32_t arch, act;
    int32_t hidden, layers, heads, head_size, inter;
    int32_t n_prefix, channels, image_h, image_w, patch_h, patch_w; /* ViT */
    int32_t vocab, max_pos, type_vocab;                             /* BERT */
    int32_t num_labels;                                             /* ViT classifier outputs (0: none) */
} qd_imodel_cfg;

/* y = x Wᵀ + b with int8 x (zero point folded into bias) and int8 W per output channel */
typedef struct {
    int32_t N, K;
    int8_t *w;        /* [N][K] */
    int32_t *bias;    /* [N] b / (s_x s_w[n]) - z_x Σ_k w[n][k] */
    int32_t *M0, *sh; /* [N] Q31 multipliers to the output format */
    float *real;      /* [N] s_x s_w[n]: the accumulator's real scale (float stages, output) */
    /* static outlier channels of the input (kernels/intops.h qd_isplit): the producer writes them
     * at s_x · 2^oe with zero point ozp */
    int32_t n_out, oe, ozp;
    int32_t *och;     /* [n_out] */
    int8_t *wo;       /* [n_out][N]: their weight columns as rows */
    qd_igemm *packed; /* for qd_intops() (not saved) */
} qd_ilinear;

/* integer LayerNorm parameters (kernels/intops.h qd_iln) and the float ones for QD_IFLOAT_LAYERNORM */
typedef struct {
    int32_t *g;
    int64_t *beta;
    int32_t gsh, zp;
    int64_t eps;
    float s_in, s_out;    /* input (residual) and output (int8) scales */
    float *gamma, *betaf; /* [N] */
    float epsf;
} qd_ilnorm;

typedef struct {
    qd_ilinear qkv; /* query, key, value as one [3A][H] product */
    qd_ilinear o, inter, out;
    qd_ilnorm ln1, ln2; /* BERT: attention.output.LayerNorm, output.LayerNorm; ViT: before, after */
    int32_t z_in, z_q, z_k, z_v, z_ctx, z_mlp, z_act; /* int8 zero points */
    qd_isoftmax sm;                                   /* scores to Q12 */
    int32_t ctx_M0, ctx_sh;                           /* P·V (scale s_v / 256) to int8 ctx */
    int32_t r1_M0, r1_sh, r2_M0, r2_sh;               /* residual inputs to RES1, RES2 */
    qd_igelu gelu;
    float s_q, s_k, s_v, s_act, s_score; /* float stages: scales (s_score = s_q s_k / √d) */
} qd_iblock;

typedef struct qd_imodel {
    qd_imodel_cfg cfg;
    qd_iblock *blk;
    /* embeddings: BERT tables at the embedding sum's scale; ViT patches, CLS + position */
    int32_t *word, *pos, *type; /* BERT [vocab][H], [max_pos][H], [type_vocab][H] */
    qd_ilnorm emb_ln;           /* BERT embeddings LayerNorm */
    float s_in;                 /* ViT input (pixels) scale, zero point z_in */
    int32_t z_in;
    qd_ilinear patch;           /* ViT patch embedding [H][C ph pw] to the embedding scale */
    int32_t *cls;               /* ViT [n_prefix][H] prefix rows, position included */
    int32_t *pos_patch;         /* ViT [patches][H] */
    qd_ilnorm final_ln;         /* ViT final LayerNorm (on the CLS row) */
    qd_ilinear cls_head;        /* ViT classifier, output dequantized with `real` */
    float s_out;                /* BERT: scale of the last block's fine output (mean pooling) */
    int float_ops;              /* QD_IFLOAT_* */
    const qd_intops_table *ops; /* the kernels the Linears are packed for (qd_imodel_pack) */
    /* scratch, grown per call */
    void *ws;
    int64_t ws_bytes;
} qd_imodel;

/* One record per operation executed (the --trace-ops listing): what ran, on which layer (-1:
 * outside the blocks), its operand types ("i8", "u8", "i32", "f32", "i32 ids", ...) and shape. */
typedef void (*qd_itrace_fn)(void *user, const char *op, int layer, const char *in, const char *out, int64_t rows,
                             int64_t cols);

typedef struct {
    int B, T;
    const int32_t *ids, *type_ids, *mask; /* BERT [B][T] (type_ids, mask may be NULL) */
    const float *pixels;                  /* ViT [B][C][H][W], preprocessed */
} qd_ibatch;

/* The three steps of qd_imodel_forward, for callers that check the integer graph alone.
 * qd_imodel_quantize_input: ViT pixels [B][C][H][W] to int8 patches [B·patches][C·ph·pw] at the
 * input scale (the float step before the integer graph). qd_imodel_run: the integer graph — ViT
 * from int8 patches to out [B][num_labels] (classifier accumulators with the bias, int32); BERT
 * from b->ids to out [B][H] (the mean-pooled last state, int32 at scale s_out) and, when cls is
 * not NULL, the first token's last state [B][H]; no floating-point operation unless float_ops
 * asks for float stages. qd_imodel_dequantize: out to float (ViT logits; BERT embeddings). */
void qd_imodel_quantize_input(const qd_imodel *im, int B, const float *pixels, int8_t *patches);
int qd_imodel_run(qd_imodel *im, const qd_ibatch *b, const int8_t *patches, int32_t *out, int32_t *cls,
                  qd_itrace_fn trace, void *trace_user);
void qd_imodel_dequantize(const qd_imodel *im, int B, const int32_t *out, float *y);

/* Runs the batch. ViT: logits [B][num_labels]. BERT: pooled [B][H] mean-pooled embeddings (mask
 * weighted) and, when cls is not NULL, the last hidden state of each item's first token [B][H]
 * (for a float classification head after the output dequantization). trace may be NULL. */
int qd_imodel_forward(qd_imodel *im, const qd_ibatch *b, float *logits, float *pooled, float *cls, qd_itrace_fn trace,
                      void *trace_user);

/* Pack every Linear for the selected kernels (after building or loading), or for a given table
 * (tests compare ISAs on the whole model); the forward then runs on that table. */
int qd_imodel_pack(qd_imodel *im);
int qd_imodel_pack_ops(qd_imodel *im, const qd_intops_table *ops);
void qd_imodel_free(qd_imodel *im);

/* A flat file of the prepared model: "QDIM" magic, version, the configuration, then named
 * arrays (name, element type, count, little-endian data). Integer-only inference needs nothing
 * else; the AArch64 tests read it. */
int qd_imodel_save(const qd_imodel *im, const char *path);
int qd_imodel_load(const char *path, qd_imodel **out);

#endif
