/* export/desc.h — the model a qdist file holds, described for the exporters: its configuration
 * (model/'s qd_model_config, parsed from the file's model_config) and the file's tensor name of
 * every part of the forward pass that model/forward.c runs, resolved and shape-checked against
 * the configuration. Writers for other runtimes build their graphs from this description, so the
 * graph is the same forward pass as qdist's own.
 *
 * Supported: BERT (with or without the "bert." prefix, optional pooler and sequence-classification
 * head), RoBERTa, XLM-R and CamemBERT (BERT's layout under "roberta.", positions counted after the
 * padding id), DistilBERT, ELECTRA, ALBERT, MPNet (relative position buckets), their heads (text_head in desc.c), ViT (prefix
 * "vit." or none, classifier on CLS) and BEiT (relative position tables, layer scales, mean pooling).
 * Anything else (another model_type, DeiT's distillation token) is refused naming what. */
#ifndef QD_EXPORT_DESC_H
#define QD_EXPORT_DESC_H

#include "export/source.h"
#include "model/model.h"

#define QD_XD_NAME 200

typedef struct {
    char w[QD_XD_NAME], b[QD_XD_NAME]; /* b: "" when the Linear has no bias */
    int in, out;
} qd_xd_linear;

typedef struct {
    qd_xd_linear lin[QD_LIN_PER_BLOCK];        /* query, key, value, attention output, intermediate, output */
    char ln1_w[QD_XD_NAME], ln1_b[QD_XD_NAME]; /* BERT: attention.output.LayerNorm; ViT: layernorm_before */
    char ln2_w[QD_XD_NAME], ln2_b[QD_XD_NAME]; /* BERT: output.LayerNorm; ViT: layernorm_after */
    char ls1[QD_XD_NAME], ls2[QD_XD_NAME];     /* BEiT: layer scales of the two branches ("" if none) */
    char rel_table[QD_XD_NAME];                /* BEiT: this block's relative position table or the shared one */
} qd_xd_block;

enum { QD_XD_HEAD_NONE = 0, QD_XD_HEAD_FIRST, QD_XD_HEAD_EACH, QD_XD_HEAD_EACH_SQUEEZE };
enum { QD_XD_ACT_TANH = 0, QD_XD_ACT_RELU, QD_XD_ACT_MODEL }; /* MODEL: the encoder's activation */

typedef struct {
    qd_model_config cfg;
    /* BERT */
    char word_emb[QD_XD_NAME], pos_emb[QD_XD_NAME], type_emb[QD_XD_NAME]; /* type_emb "" if none */
    char emb_ln_w[QD_XD_NAME], emb_ln_b[QD_XD_NAME];
    int has_emb_proj;      /* ELECTRA with embedding_size != hidden: a Linear after the LayerNorm */
    qd_xd_linear emb_proj; /* [hidden, embedding_size] */
    int has_pooler;
    qd_xd_linear pooler;
    /* MPNet: the relative position bias table [buckets, heads] all blocks add to their scores */
    char rel_bias[QD_XD_NAME];
    /* ViT (pos_emb above: [1, tokens, hidden]) */
    char cls_token[QD_XD_NAME], patch_w[QD_XD_NAME], patch_b[QD_XD_NAME];
    char final_ln_w[QD_XD_NAME], final_ln_b[QD_XD_NAME]; /* "" with mean_pool */
    /* BEiT: pos_emb "" without absolute positions; mean_pool: the pooler output is pool_ln of the
     * patch tokens' mean (no norm on the sequence), else final_ln on the sequence, CLS pooled */
    int mean_pool, rel_rows;
    /* DINOv2: register tokens after CLS ("" if none); positions resampled to the input's patch
     * grid (bicubic, antialiased with registers), so the graph takes any image size; the
     * classifier reads [CLS, mean of the patch tokens] of the normalized sequence */
    char reg_tokens[QD_XD_NAME];
    int dinov2, pos_aa, cls_mean;
    /* CLIP vision: class_embedding [H], a patch projection without bias (patch_b ""), positions
     * [tokens, H], pre_layrnorm on the embeddings, post_layernorm (final_ln) on CLS only, the
     * sequence un-normalized; the projection to image_embeds (no bias) when the file has one; a
     * classifier on the mean of the patch tokens */
    int clip, has_proj;
    char pre_ln_w[QD_XD_NAME], pre_ln_b[QD_XD_NAME];
    qd_xd_linear proj;
    char pool_ln_w[QD_XD_NAME], pool_ln_b[QD_XD_NAME];
    /* head: classifier on the pooler output (BERT, ALBERT) or the final-norm CLS (ViT) */
    int has_classifier;
    qd_xd_linear classifier;
    /* the other text heads: out(act(pre(x))) or out(x) on the first token (RoBERTa family,
     * DistilBERT) or on every token (token classification, ELECTRA's discriminator, whose one
     * output per token is squeezed) */
    int head;                   /* QD_XD_HEAD_* */
    int has_head_pre, head_act; /* head_act: QD_XD_ACT_* */
    qd_xd_linear head_pre, head_out;
    qd_xd_block *blk; /* [cfg.layers] */
} qd_xdesc;

/* QD_OK, or an error naming the file and the field or tensor: QD_EUNSUPPORTED for an
 * architecture the exporters do not know, QD_ENOTFOUND for a missing tensor, QD_ESHAPE for one
 * whose shape differs from what the configuration implies. */
int qd_xdesc_build(const qd_xs *s, qd_xdesc *d);
void qd_xdesc_free(qd_xdesc *d);

#endif
