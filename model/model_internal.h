/* model/model_internal.h — the model object, shared by the model/ sources only. */
#ifndef QD_MODEL_INTERNAL_H
#define QD_MODEL_INTERNAL_H

#include "model/model.h"
#include "shard/safetensors.h"

typedef struct {
    const float *ln1_g, *ln1_b; /* BERT: attention.output.LayerNorm; ViT: layernorm_before */
    const float *ln2_g, *ln2_b; /* BERT: output.LayerNorm;           ViT: layernorm_after */
} qd_block_w;

struct qd_model {
    char dir[4096];
    char prefix[16]; /* "bert.", "vit.", "deit." or "" */
    qd_model_config cfg;
    qd_checkpoint *ck;
    /* embeddings */
    const float *word_emb, *pos_emb, *type_emb, *emb_ln_g, *emb_ln_b; /* BERT */
    const float *cls_tok, *dist_tok, *patch_W, *patch_b;              /* ViT (pos_emb shared) */
    const float *final_ln_g, *final_ln_b;                             /* ViT */
    const float *pool_W, *pool_b;                                     /* BERT pooler */
    const float *cls_W, *cls_b, *dist_W, *dist_b;                     /* heads */
    qd_block_w *blk;
    qd_linear *lin;
    int n_lin, cap_lin;
    unsigned flags; /* QD_MODEL_* load flags */
    float *scratch; /* a block's buffers, kept between calls */
    size_t scratch_bytes;
    float **owned; /* converted (non-F32) tensors */
    int n_owned, cap_owned;
};

int qd_model_parse_config(const char *path, const char *text, size_t len, qd_model_config *c);

#endif
