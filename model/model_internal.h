/* model/model_internal.h — the model object, shared by the model/ sources only. */
#ifndef QD_MODEL_INTERNAL_H
#define QD_MODEL_INTERNAL_H

#include "model/model.h"
#include "shard/safetensors.h"

typedef struct {
    const float *ln1_g, *ln1_b; /* post-LN: after attention; pre-LN: before attention */
    const float *ln2_g, *ln2_b; /* post-LN: after the MLP;   pre-LN: before the MLP */
    const float *ls1, *ls2;     /* layer scales [hidden] (BEiT lambda_1/2, DINOv2 layer_scale1/2), or NULL */
    const float *rel_table;     /* BEiT: [num_relative_distance, heads], this block's or the shared one */
    int set;                    /* which set of six linears the block runs */
} qd_block_w;

/* A head: out(act(pre(x))) or out(x), x taken from `src`. */
typedef struct {
    qd_head_src src;
    int in;                     /* width of x */
    const float *pre_W, *pre_b; /* [in, in], or NULL */
    qd_act pre_act;
    const float *out_W, *out_b;   /* [num_labels, in] */
    const float *dist_W, *dist_b; /* DeiT's distillation head on token 1 (averaged with out) */
} qd_head;

struct qd_model {
    char dir[4096];
    char prefix[32]; /* "bert.", "roberta.", "vision_model.", ... or "" */
    qd_model_config cfg;
    qd_checkpoint *ck;
    /* embeddings */
    const float *word_emb, *pos_emb, *type_emb; /* text: [vocab, E], [max_position, E], [types, E] */
    int word_emb_ti; /* the word table's checkpoint tensor, read row by row (QD_MODEL_STREAM_EMBEDDINGS) */
    const float *emb_ln_g, *emb_ln_b;          /* text: the embeddings' LN; CLIP: pre_layrnorm */
    const float *emb_proj_W, *emb_proj_b;      /* [hidden, E] when E != hidden (ELECTRA, ALBERT) */
    const float *cls_tok, *dist_tok, *reg_tok; /* vision: [hidden], [hidden], [registers, hidden] */
    const float *patch_W, *patch_b;            /* [hidden, C * ph * pw], [hidden] or NULL */
    const float *vis_pos;                      /* vision: position embeddings at the input's grid, or NULL */
    float *pos_resampled;                      /* owned copy when the grid differs from pos_grid */
    int pos_has_cls;                           /* vision position embeddings cover the prefix tokens */
    int pos_aa;                                /* resampling with antialias (DINOv2 with registers) */
    const float *final_ln_g, *final_ln_b;      /* vision: final LN (CLIP: post_layernorm) */
    int final_norm_seq;                        /* the final LN applies to the whole sequence */
    const float *pool_W, *pool_b;              /* text pooler dense */
    const float *pool_ln_g, *pool_ln_b;        /* BEiT mean pooling's LN */
    const float *proj_W;                       /* CLIP visual_projection [embedding_dim, hidden] */
    qd_head_src pooled_src;                    /* pooler_output */
    qd_head head;
    /* attention bias */
    const float *rel_buckets; /* MPNet: [buckets, heads] */
    int32_t *rel_index;       /* BEiT: [T, T] index into the block's table */
    int rel_rows;             /* rows of the BEiT tables */
    qd_block_w *blk;
    qd_linear *lin;
    int n_lin, cap_lin;
    unsigned flags; /* QD_MODEL_* load flags */
    float *scratch; /* a block's buffers, kept between calls */
    size_t scratch_bytes;
    int *lin_tensor; /* linear -> its weight's checkpoint tensor (QD_MODEL_STREAM_LINEARS) */
    float **lin_buf; /* linear -> its converted weight while its block is loaded, or NULL */
    float **owned;   /* converted (non-F32) tensors */
    int n_owned, cap_owned;
};

int qd_model_parse_config(const char *path, const char *text, size_t len, qd_model_config *c);

/* Bicubic resampling of a grid of vectors, src [ih * iw, C] -> dst [oh * ow, C], as torch's
 * interpolate(mode="bicubic", align_corners=False): antialias = 0: the cubic convolution with
 * a = -0.75 over 4 taps; antialias = 1: the cubic filter with a = -0.5 stretched by the scale
 * when downsampling, weights normalised (PIL's). model/resample.c. */
void qd_resample_bicubic(const float *src, int C, int ih, int iw, int oh, int ow, int antialias, float *dst);

#endif
