/* model/model.h — FP32 forward passes of the supported architectures: one encoder parameterised
 * by the checkpoint's config.json, for the text family (BERT, RoBERTa, XLM-RoBERTa, DistilBERT,
 * MPNet, ELECTRA, ALBERT) and the vision family (ViT, DeiT, BEiT, DINOv2 with or without
 * registers, CLIP's vision tower).
 *
 * A model is loaded from a Hugging Face directory: config.json + the checkpoint (safetensors, an
 * index of shards, pytorch_model.bin, or whatever shard/ can open). Weights stay in the
 * checkpoint's mapping when they are F32 (zero-copy); other float dtypes are converted once at
 * load.
 *
 * The forward pass is exposed in stages so that callers can run it whole (eval), block by block
 * (sequential calibration: quantize block k, then feed its quantized outputs to block k + 1) or
 * spread over ranks (pipeline calibration: rank r owns blocks [k0, k1)):
 *
 *     qd_model_embed   (batch)        -> h [B, T, hidden]     the residual stream
 *     qd_model_block   (k, h)         -> h                    encoder block k, in place
 *     qd_model_head    (h)            -> pooled [B, hidden], logits
 *
 * What varies between the families is data in qd_model_config, not code: where the LayerNorms
 * sit (after each residual add, BERT-style, or before each sub-block, ViT-style), the activation,
 * the position scheme (learned absolute positions counted from 0 or, RoBERTa-style, after the
 * padding id; none), an additive attention bias (MPNet's relative position buckets, BEiT's
 * relative position table), per-channel layer scales (BEiT, DINOv2), a factorised embedding
 * projected to the hidden width (ELECTRA, ALBERT), blocks sharing one set of weights (ALBERT),
 * prefix tokens (CLS, DeiT's distillation token, DINOv2's registers) and the head.
 *
 * Every Linear of the encoder is numbered (qd_model_linear): the blocks own sets of six linears in
 * the order query, key, value, attention output, intermediate, output (block k uses set k, except
 * in ALBERT where blocks share sets: a set is one tensor per Linear, quantized once, and its
 * `layer` is the first block that uses it). Linears that read the same input (query/key/value)
 * share an `input_group`, so calibration statistics are kept once per group. Hooks
 * (qd_model_hooks) see each Linear's input and may replace its product, which is how calibration
 * collects statistics and how quantized inference swaps in integer kernels.
 *
 * Conventions, as in Hugging Face transformers:
 *   text:   h0 = LN(word[id] + pos[p] + type[tt]) (then a Linear to the hidden width when the
 *           embedding is narrower); post-LN blocks: a = LN(h + O(attn(Q h, K h, V h) + bias));
 *           h = LN(a + Out(act(Inter a))); padding keys are masked out of the softmax.
 *   vision: h0 = [CLS; (DIST;) conv_patch(pixels)] + pos (DINOv2: position embeddings resampled
 *           bicubically to the input's patch grid; registers inserted after CLS without
 *           position); CLIP: then LN; pre-LN blocks: h += s1 * O(attn(LN1 h) + bias);
 *           h += s2 * Out(act(Inter LN2 h)); final LN; head on CLS, patch mean or both. ViT head
 *           size from `attention_head_size` when given, else hidden / heads; q/k/v bias when
 *           present in the checkpoint.
 *   heads:  from config.json's `architectures` (see qd_head_kind); an unknown one is an error
 *           naming it; without `architectures`, the tensors decide.
 * All errors name the directory and the tensor or config field.
 * A model object keeps the buffers of its last forward call: calls on one object must not run
 * concurrently (load one object per thread).
 */
#ifndef QD_MODEL_H
#define QD_MODEL_H

#include <stdint.h>

#include "common/qd_common.h"

/* The input family: token ids (BERT family) or pixels (ViT family). */
typedef enum { QD_ARCH_BERT = 1, QD_ARCH_VIT = 2 } qd_arch;
typedef enum { QD_ACT_GELU = 0, QD_ACT_GELU_TANH, QD_ACT_RELU, QD_ACT_SILU, QD_ACT_QUICK_GELU, QD_ACT_TANH } qd_act;
/* LayerNorm after each residual add (BERT) or before each sub-block (ViT). */
typedef enum { QD_NORM_POST = 0, QD_NORM_PRE } qd_norm_place;
/* Text positions: learned, position t of the sequence; learned, counted after the padding id for
 * non-padding tokens (RoBERTa, XLM-R, MPNet: pad_id + 1 + index among non-padding tokens, padding
 * tokens at pad_id); none. */
typedef enum { QD_POS_LEARNED = 0, QD_POS_AFTER_PAD, QD_POS_NONE } qd_pos_scheme;
/* Additive attention bias: none, MPNet's relative position buckets (one table for all blocks),
 * BEiT's relative position table (per block or shared). */
typedef enum { QD_RELPOS_NONE = 0, QD_RELPOS_BUCKETS, QD_RELPOS_TABLE } qd_relpos;
/* The task head: none (an encoder: pooled embeddings), one label vector per item (sequence or
 * image classification), one per token (token classification, ELECTRA's discriminator). */
typedef enum { QD_HEAD_NONE = 0, QD_HEAD_SEQUENCE, QD_HEAD_TOKEN, QD_HEAD_IMAGE } qd_head_kind;
/* Sentence embedding of a text encoder: mask-weighted mean (sentence-transformers' default) or the
 * first token; from 1_Pooling/config.json when present. */
typedef enum { QD_POOL_MEAN = 0, QD_POOL_CLS } qd_pool;

#define QD_MODEL_MAX_LAYERS 256

typedef struct {
    qd_arch arch;
    char model_type[32];   /* "bert", "roberta", "vit", "dinov2", ... as in config.json */
    char architecture[64]; /* config.json architectures[0], or "" */
    int hidden, layers, heads, head_size, intermediate;
    /* heads each layer keeps: heads minus those listed for it in config.json's pruned_heads
     * ({"layer": [head, ...]}, transformers' convention for structurally pruned attention; the
     * query/key/value rows and attention-output columns of the others are gone) */
    int layer_heads[QD_MODEL_MAX_LAYERS];
    int pruned_heads; /* some layer keeps fewer than heads */
    qd_act act;
    double ln_eps;
    int qkv_bias; /* query/key/value have biases (BEiT: query and value only) */
    qd_norm_place norm;
    qd_relpos relpos;
    int layer_scale;           /* per-channel scales on both residual branches (BEiT, DINOv2) */
    int linear_sets;           /* distinct sets of block weights: layers, or fewer when blocks share (ALBERT) */
    int set_groups, set_inner; /* ALBERT: num_hidden_groups, inner_group_num (else layers, 1) */
    /* BERT family */
    int vocab_size, max_position, type_vocab;
    int embed_size; /* width of the token embeddings (ELECTRA, ALBERT: projected to hidden) */
    qd_pos_scheme pos;
    int pad_id; /* padding token id (QD_POS_AFTER_PAD counts positions after it) */
    int has_pooler;
    qd_pool pool;
    /* ViT family */
    int image_h, image_w, patch_h, patch_w, channels; /* image_*: the input size the model takes */
    int pos_grid_h, pos_grid_w;                       /* patch grid of the learned position embeddings (0: none) */
    int n_prefix;    /* tokens before the patches: CLS (+ distillation) (+ registers) */
    int n_registers; /* DINOv2 register tokens (part of n_prefix) */
    /* heads */
    qd_head_kind head;
    int num_labels;    /* logits per item (sequence / image heads) or per token (token heads); 0: none */
    int embedding_dim; /* size of qd_model_embedding's vectors */
} qd_model_config;

enum { QD_LIN_Q = 0, QD_LIN_K, QD_LIN_V, QD_LIN_O, QD_LIN_INTER, QD_LIN_OUT, QD_LIN_PER_BLOCK };

typedef struct {
    char name[160]; /* module name; the tensors are name + ".weight" / ".bias" */
    int layer;      /* the first encoder block that uses it (its owner) */
    int last_layer; /* the last block that uses it (> layer only when blocks share weights) */
    int kind;       /* QD_LIN_* */
    int in, out;
    int input_group; /* linears with the same input share a group (query/key/value) */
    const float *W;  /* [out, in], row-major */
    const float *b;  /* [out] or NULL */
} qd_linear;

typedef struct qd_model qd_model;

/* Inputs of one forward call. BERT: ids/type_ids/mask are [B, T] (type_ids and mask may be NULL:
 * all zeros / all ones). ViT: pixels [B, C, H, W] preprocessed; T is set by qd_model_tokens. */
typedef struct {
    int B, T;
    const int32_t *ids, *type_ids, *mask;
    const float *pixels;
} qd_batch;

typedef struct {
    void *user;
    /* The input X [rows, in] of linear `li`, just before it is applied (rows = B * T; valid[r] = 0
     * marks a padded token, NULL when all are real). Called once per input group (for the first
     * linear of the group), in the block that owns the linear only: blocks that reuse shared
     * weights (ALBERT) do not report them again, so statistics are those of the first use in any
     * calibration layout. Non-zero return aborts the forward with that code. */
    int (*linear_input)(void *user, const qd_model *m, int li, const float *X, int64_t rows, const uint8_t *valid);
    /* Compute Y [rows, out] = X W^T + b for linear `li` instead of the FP32 weights. Return 1 when
     * done, 0 to fall back to FP32, negative to abort. */
    int (*linear_apply)(void *user, const qd_model *m, int li, const float *X, int64_t rows, float *Y);
    /* Optional: each tensor that integer-only inference quantizes on its own (static activation
     * calibration), as the forward pass computes it: x [rows, cols] at point `point` of block
     * `layer` (QD_TAP_*), or of the model when layer is -1 (QD_TAP_M_*). valid[r] = 0 marks a
     * padded row (NULL: all real). Attention scores and probabilities come one item and head at a
     * time, [T queries, T keys], with the item's token mask as valid for rows and columns alike.
     * Non-zero return aborts the forward with that code. */
    int (*tap)(void *user, const qd_model *m, int layer, int point, const float *x, int64_t rows, int64_t cols,
               const uint8_t *valid);
} qd_model_hooks;

/* Tap points of a block (qd_model_hooks.tap); BERT is post-LN, ViT pre-LN:
 *   QKV_IN   input of query/key/value (BERT: the block input; ViT: layernorm_before's output)
 *   Q, K, V  their outputs;  SCORES  Q Kᵀ / √d before masking;  PROBS  the softmax
 *   CTX      input of attention.output.dense;  ATTN_OUT  its output
 *   RES1     the residual sum after attention (BERT: the input of attention.output.LayerNorm)
 *   MLP_IN   input of intermediate.dense (the LayerNorm before it);  INTER  its output (the
 *            activation's input);  ACT  the activation's output (input of output.dense)
 *   MLP_OUT  output.dense's output;  RES2  the residual sum after the MLP;  OUT  the block output
 *            (BERT: output.LayerNorm's output; ViT: RES2) */
enum {
    QD_TAP_QKV_IN = 0,
    QD_TAP_Q,
    QD_TAP_K,
    QD_TAP_V,
    QD_TAP_SCORES,
    QD_TAP_PROBS,
    QD_TAP_CTX,
    QD_TAP_ATTN_OUT,
    QD_TAP_RES1,
    QD_TAP_MLP_IN,
    QD_TAP_INTER,
    QD_TAP_ACT,
    QD_TAP_MLP_OUT,
    QD_TAP_RES2,
    QD_TAP_OUT,
    QD_TAP_PER_BLOCK
};
/* Model-level tap points (layer -1): ViT input pixels [B, C·H·W]; the embeddings (BERT: word +
 * position + type before the LayerNorm; ViT: patches + position with the prefix tokens); BERT's
 * embeddings LayerNorm output (qd_model_embed_hooks). */
enum { QD_TAP_M_INPUT = 0, QD_TAP_M_EMBED, QD_TAP_M_EMBED_NORM, QD_TAP_M_POINTS };
/* config.json's text alone into c (no tensor is consulted): for readers of a model file that
 * records the configuration (export/). `path` names the source in messages. */
int qd_model_parse_config(const char *path, const char *text, size_t len, qd_model_config *c);

/* Load config.json and the weights from `dir` (or a checkpoint path whose directory holds the
 * config). QD_OK, or a negative code with qd_errmsg() naming the file / field / tensor. */
int qd_model_load(const char *dir, qd_model **out);
/* The same with flags. QD_MODEL_LAZY_LINEARS: the encoder Linear weights are bound (shapes
 * checked) but not read, so their pages stay out of memory until used — for inference where a
 * quantized copy replaces them (their NaN check is then the quantized file's business). */
#define QD_MODEL_LAZY_LINEARS      1u
/* QD_MODEL_LAZY_EMBEDDINGS: the same for the BERT word embedding table (an inference engine that
 * reads a quantized copy, or only the rows of the tokens it sees, keeps the rest out of memory). */
#define QD_MODEL_LAZY_EMBEDDINGS   2u
/* QD_MODEL_STREAM_LINEARS: the encoder Linear weights are checked (shape, dtype) but not read:
 * qd_model_block_load reads block k's (converted to F32, checked finite) and
 * qd_model_block_release gives them back (their memory freed, the checkpoint's pages dropped)
 * after the last block that runs them, so a pass that goes block after block holds one block's
 * weights instead of the model's. Until loaded, a block's L->W is NULL. */
#define QD_MODEL_STREAM_LINEARS    4u
/* QD_MODEL_STREAM_EMBEDDINGS: the BERT word embedding table is checked (shape, dtype) but neither
 * read nor converted: embedding a batch reads the rows of its tokens from the checkpoint (each
 * checked finite), so a pass that embeds its samples once holds a row per token instead of the
 * [vocab, E] table as F32 (250 MB at vocab 30522 x 2048). qd_model_tensors then has no word_emb. */
#define QD_MODEL_STREAM_EMBEDDINGS 8u
int qd_model_load_flags(const char *dir, unsigned flags, qd_model **out);
/* Both are no-ops without QD_MODEL_STREAM_LINEARS. */
int qd_model_block_load(qd_model *m, int layer);
void qd_model_block_release(qd_model *m, int layer);
void qd_model_free(qd_model *m);
/* Drops the pages of the encoder Linear weights that are mapped from the checkpoint from this
 * process's memory (they stay valid: a later read faults them in again from the page cache).
 * For an engine that has packed its own copy and never reads them again. */
void qd_model_release_linears(const qd_model *m);

const qd_model_config *qd_model_cfg(const qd_model *m);
/* Whether the forward passes run this model_type of config.json ("bert", "vit", "deit", ...). */
int qd_model_type_known(const char *model_type);
int qd_model_num_linears(const qd_model *m);
const qd_linear *qd_model_linear(const qd_model *m, int li);
/* Index of the linear whose module name (or weight tensor name) is `name`, or -1. */
int qd_model_find_linear(const qd_model *m, const char *name);
/* The float tensors around the encoder Linears (NULL where the architecture has none), for
 * inference engines that convert them once (integer-only inference). Shapes as in the
 * checkpoint: BERT word [vocab, H], pos [max_pos, H], type [type_vocab, H]; ViT cls/dist [H],
 * patch_W [H, C·ph·pw], pos [n_prefix + patches, H]; heads [num_labels, H]. Block k's LayerNorms:
 * ln1 (BERT attention.output.LayerNorm, ViT layernorm_before) and ln2. cls_W/cls_b: the head's
 * output layer; head_cls_norm: the head is that one layer on the final LayerNorm of the first
 * token (ViT's); pos_has_cls: the vision position embeddings cover the prefix tokens. The float
 * engine's view of the same tensors is qd_model_get_tensors below. */
typedef struct {
    const float *word_emb, *pos_emb, *type_emb, *emb_ln_g, *emb_ln_b;
    const float *cls_tok, *dist_tok, *patch_W, *patch_b, *final_ln_g, *final_ln_b;
    const float *pool_W, *pool_b, *cls_W, *cls_b, *dist_W, *dist_b;
    int head_cls_norm, pos_has_cls;
} qd_model_int_tensors;
void qd_model_int_tensors_get(const qd_model *m, qd_model_int_tensors *t);
/* Number of distinct linear inputs (groups) and the first linear of a group. */
int qd_model_num_groups(const qd_model *m);
int qd_model_group_first(const qd_model *m, int group);
/* The checkpoint tensor name of the model's word/patch embedding etc. (for messages) and dir. */
const char *qd_model_dir(const qd_model *m);

/* Tokens per item: ViT: n_prefix + patches (text_len ignored); BERT: text_len. */
int qd_model_tokens(const qd_model *m, int text_len);
/* Vision models whose position embeddings can be resampled (DINOv2): take images of h x w pixels
 * from now on (multiples of the patch size). Others: QD_EUNSUPPORTED unless h x w is the input
 * size already. */
int qd_model_set_image_size(qd_model *m, int h, int w);
/* Floats of logits per item for a batch of T tokens: num_labels, or T * num_labels for token
 * heads; 0 without a head. */
int64_t qd_model_logits_per_item(const qd_model *m, int T);

/* The stages. `h` holds B * T * hidden floats. hooks may be NULL. */
int qd_model_embed(const qd_model *m, const qd_batch *b, float *h);
/* The same, with hooks whose tap sees the model-level points (QD_TAP_M_*). */
int qd_model_embed_hooks(const qd_model *m, const qd_batch *b, float *h, const qd_model_hooks *hooks);
int qd_model_block(const qd_model *m, int layer, const qd_batch *b, float *h, const qd_model_hooks *hooks);
/* pooled [B, hidden]: transformers' pooler_output (text: tanh(dense(h[:, 0])) when the model has
 * a pooler; ViT, DeiT, DINOv2, CLIP: the final LayerNorm of CLS; BEiT: LayerNorm of the patch
 * mean, or the final LayerNorm of CLS) — QD_EUNSUPPORTED when the model has none; logits
 * [B, qd_model_logits_per_item] (needs a head). Either may be NULL. h is not modified. */
int qd_model_head(const qd_model *m, const qd_batch *b, const float *h, float *pooled, float *logits);
/* transformers' last_hidden_state: the final LayerNorm of every token where the model applies it
 * to the sequence (ViT, DeiT, DINOv2, BEiT without mean pooling), else a copy of h. */
int qd_model_final_norm(const qd_model *m, const qd_batch *b, const float *h, float *out);
/* Mask-weighted mean of h over tokens (sentence-transformers pooling): out [B, hidden]. */
void qd_model_mean_pool(const qd_model *m, const qd_batch *b, const float *h, float *out);
/* The item's embedding, out [B, embedding_dim]: text: the mean-pooled (or first-token, per
 * 1_Pooling/config.json) last hidden state; vision: the pooled output (CLIP with a projection:
 * image_embeds). */
int qd_model_embedding(const qd_model *m, const qd_batch *b, const float *h, float *out);

/* Whole pass: embed, every block, head. logits/pooled as in qd_model_head; hidden, when not NULL,
 * receives the residual stream after the embeddings and after every block:
 * (layers + 1) * B * T * hidden floats. */
int qd_model_forward(const qd_model *m, const qd_batch *b, const qd_model_hooks *hooks, float *pooled, float *logits,
                     float *hidden);

/* What a head or pooled output reads from the last hidden state h [B, T, hidden]. */
typedef enum {
    QD_SRC_NONE = 0,
    QD_SRC_FIRST,           /* h[:, 0] */
    QD_SRC_FIRST_NORM,      /* final LN of h[:, 0] */
    QD_SRC_POOLER,          /* tanh(pooler(h[:, 0])) */
    QD_SRC_MEAN_PATCH,      /* mean of h[:, n_prefix:] */
    QD_SRC_MEAN_PATCH_NORM, /* pooler LN of the mean of h[:, n_prefix:] (BEiT mean pooling) */
    QD_SRC_CLS_MEAN_NORM,   /* [final LN h[:, 0]; mean of final LN h[:, n_prefix:]] (DINOv2), 2 * hidden */
    QD_SRC_EACH,            /* every token (token heads) */
} qd_head_src;

/* The float tensors around the encoder Linears, for inference engines that run the forward pass
 * themselves (runtime/): pointers into the model, NULL where the architecture has none. */
typedef struct {
    const float *word_emb, *pos_emb, *type_emb; /* text: [vocab, E], [max_position, E], [types, E] */
    const float *emb_ln_g, *emb_ln_b;           /* text: the embeddings' LN; CLIP: pre_layrnorm */
    const float *emb_proj_W, *emb_proj_b;       /* text: projection to the hidden width (ELECTRA, ALBERT) */
    const float *cls_tok, *dist_tok, *reg_tok;  /* vision: [hidden] tokens, [registers, hidden] */
    const float *patch_W, *patch_b;             /* vision: [hidden, C * ph * pw], [hidden] */
    const float *vis_pos;                       /* vision: position embeddings at the input grid (prefix first) */
    int vis_pos_has_prefix;                     /* they cover the CLS (and DIST) tokens */
    char word_emb_name[128];                    /* text: the word table's checkpoint name */
    const float *final_ln_g, *final_ln_b;       /* vision: final LN (CLIP: post_layernorm) */
    const float *pool_W, *pool_b;               /* text pooler dense [hidden, hidden] */
    const float *proj_W;                        /* CLIP visual_projection [embedding_dim, hidden] */
    qd_head_src pooled_src;                     /* what pooler_output reads */
    /* the head: out(act(pre(x))) or out(x), x read from head_src (head_in wide) */
    qd_head_src head_src;
    int head_in;
    const float *head_pre_W, *head_pre_b; /* [head_in, head_in], or NULL */
    qd_act head_pre_act;
    const float *head_out_W, *head_out_b;   /* [num_labels, head_in] */
    const float *head_dist_W, *head_dist_b; /* DeiT's distillation head on token 1, or NULL */
} qd_model_tensors;
void qd_model_get_tensors(const qd_model *m, qd_model_tensors *t);
/* LayerNorms of block k (post-LN: after attention, after the MLP; pre-LN: before them), the set
 * of six linears the block runs, its layer scales on the two residual branches (NULL without). */
void qd_model_block_norms(const qd_model *m, int k, const float **ln1_g, const float **ln1_b, const float **ln2_g,
                          const float **ln2_b);
int qd_model_block_set(const qd_model *m, int k);
void qd_model_block_scales(const qd_model *m, int k, const float **ls1, const float **ls2);
/* The additive attention bias of block k (config relpos): MPNet's [32 buckets, heads] table and
 * the bucket of a relative position key - query; BEiT's table [rows, heads] of block k and the
 * index [T, T] into it (T: the model's tokens). NULL where the model has none. */
const float *qd_model_rel_buckets(const qd_model *m);
int32_t qd_model_rel_bucket(int rel);
const float *qd_model_block_rel_table(const qd_model *m, int k);
const int32_t *qd_model_rel_index(const qd_model *m);

/* Building blocks (exposed for tests and for quantized inference). */
void qd_layernorm(const float *x, int64_t rows, int n, const float *g, const float *beta, double eps, float *y);
void qd_activation(qd_act act, float *x, int64_t n);
/* Y[rows, out] = X[rows, in] W[out, in]^T + b (b may be NULL), OpenBLAS sgemm. */
void qd_linear_f32(const float *X, int64_t rows, int in, const float *W, const float *b, int out, float *Y);

#endif /* QD_MODEL_H */
