/* train/graph.h — the BERT and ViT forward passes with what their backward passes need, and
 * the backward passes themselves.
 *
 * A network (qd_tg_net) holds every parameter of a model in one flat buffer `w` with the
 * gradients in a second buffer `g` of the same layout, so that the optimizer, gradient clipping
 * and the cross-rank sum each see one array. Parameters carry their Hugging Face names
 * (canonical prefix "bert." / "vit.", LayerNorm .weight/.bias), which is how checkpoints are
 * read and written.
 *
 * The forward pass mirrors model/forward.c (same operations, same order of float sums, mean and
 * variance of LayerNorm in double, the kernels' GELU and softmax exponential) but keeps the
 * activations of every block for the backward pass. qd_tg_backward accumulates (+=) the
 * gradient of the loss, given d(loss)/d(logits) (and/or d(loss)/d(pooled)), into `g` for every
 * trainable parameter, and stops descending once no trainable parameter is left below.
 *
 * Quantization-aware training plugs in per Linear: `weff[li]`, when set, is the weight the
 * forward pass uses instead of the parameter (e.g. fake-quantized), and `gweff[li]` receives its
 * gradient; train/fakequant.c maps that gradient to the latent weights and the step sizes.
 *
 * The file is compiled twice: as float (the program) and, with QD_TRAIN_F64 defined, as double
 * for the finite-difference checks of the tests; QD_TG(name) gives each build its own names.
 */
#ifndef QD_TRAIN_GRAPH_H
#define QD_TRAIN_GRAPH_H

#include <stdint.h>

#include "model/model.h"

#ifdef QD_TRAIN_F64
typedef double qd_real;
#define QD_TG(x) qd_tg64_##x
#else
typedef float qd_real;
#define QD_TG(x) qd_tg_##x
#endif

/* What a parameter is (offsets of the singletons are kept by role). */
enum {
    QD_TP_WORD = 0,
    QD_TP_POS,
    QD_TP_TYPE,
    QD_TP_ELN_G,
    QD_TP_ELN_B,
    QD_TP_CLS_TOK,
    QD_TP_PATCH_W,
    QD_TP_PATCH_B,
    QD_TP_FLN_G,
    QD_TP_FLN_B,
    QD_TP_POOL_W,
    QD_TP_POOL_B,
    QD_TP_CLS_W,
    QD_TP_CLS_B,
    QD_TP_SINGLE_, /* per-block and extra parameters below */
    QD_TP_LIN_W = QD_TP_SINGLE_,
    QD_TP_LIN_B,
    QD_TP_LN1_G,
    QD_TP_LN1_B,
    QD_TP_LN2_G,
    QD_TP_LN2_B,
    QD_TP_EXTRA /* added by a caller (e.g. quantization step sizes) */
};

#ifndef QD_TPARAM_DEFINED
#define QD_TPARAM_DEFINED
typedef struct {
    char name[192];
    int role;  /* QD_TP_* */
    int layer; /* block, -1 outside the encoder */
    int lin;   /* linear index (6 per block as model/), -1 if none */
    int ndim;
    int64_t shape[4];
    int64_t off, numel; /* in the flat buffers */
    int trainable;
    int decay;      /* AdamW weight decay applies (matrices and embeddings; not biases, norms) */
    double lr_mult; /* learning rate multiplier (1) */
} qd_tparam;
#endif

typedef struct QD_TG(cache) QD_TG(cache);

typedef struct QD_TG(net) {
    qd_model_config c;
    char prefix[16]; /* "bert." or "vit." */
    qd_tparam *p;
    int np, cap;
    int64_t n;                /* floats in w and g */
    qd_real *w, *g;           /* values, gradients */
    int64_t o[QD_TP_SINGLE_]; /* offsets of the singletons, -1 when absent */
    int64_t *lw, *lb;         /* per linear: weight and bias offsets (bias -1 when none) */
    int64_t *ln;              /* per block: ln1 g, ln1 b, ln2 g, ln2 b */
    const qd_real **weff;     /* per linear: weight used by the forward pass, NULL = the parameter */
    qd_real **gweff;          /* per linear: where its weight gradient goes when weff is set */
    QD_TG(cache) * cache;
    /* Learned activation quantization of the Linears' inputs (NULL: none): per block and point
     * (QD_TG_AQ_*), aq[] the offset of the parameter log s (-1: that input stays float), aqz[] the
     * zero point; int8: x -> s (clamp(round(x / s) + z, -128, 127) - z). The step's gradient is
     * LSQ's (straight-through for round; scaled by aqg[]); aq_round = 0 replaces round by the
     * identity, where LSQ's gradient is the exact derivative (the finite-difference check). */
    int64_t *aq;
    int *aqz;
    double *aqg;
    int aq_round;
} QD_TG(net);

#ifndef QD_TG_AQ_DEFINED
#define QD_TG_AQ_DEFINED
/* the quantized Linear inputs of a block, as the activation record names them */
enum { QD_TG_AQ_QKV = 0, QD_TG_AQ_CTX, QD_TG_AQ_MLP, QD_TG_AQ_ACT, QD_TG_AQ_PER_BLOCK };
#endif
/* Enable the activation quantizers (every aq[] -1, aqz 0, aqg 1, aq_round 1); idempotent. */
void QD_TG(net_aq_enable)(QD_TG(net) * n);

/* A network of the config's shape with zero weights, trainable everywhere. BERT needs a pooler
 * when num_labels > 0 (the Hugging Face BertForSequenceClassification head); ViT with a
 * distillation token is not supported. extra: parameters to reserve for qd_tg_net_add. */
int QD_TG(net_create)(const qd_model_config *c, QD_TG(net) * *out);
void QD_TG(net_free)(QD_TG(net) * n);
/* Append a parameter (also after allocation: the buffers grow, its values start at 0); returns
 * its index. Offsets of earlier parameters do not change. */
int QD_TG(net_add)(QD_TG(net) * n, const char *name, int role, int layer, int lin, int ndim, const int64_t *shape,
                   int trainable, int decay);
/* Allocate w and g (zeros) once every parameter is added; the first forward does it too. */
int QD_TG(net_alloc)(QD_TG(net) * n);
/* Index of a parameter by name, or -1. */
int QD_TG(net_find)(const QD_TG(net) * n, const char *name);
/* g = 0 (and every gweff buffer the caller registered: it zeroes those itself). */
void QD_TG(net_zero_grad)(QD_TG(net) * n);

/* Forward pass of a batch (B items of T tokens; model/model.h's qd_batch). logits [B, L] (may be
 * NULL), pooled [B, hidden] (may be NULL): BERT the mask-weighted mean of the last hidden state
 * (sentence-transformers pooling), ViT the final LayerNorm of CLS. Keeps the activations for
 * qd_tg_backward of the same batch. */
int QD_TG(forward)(QD_TG(net) * n, const qd_batch *b, qd_real *logits, qd_real *pooled);
/* Backward pass of the last forward: dlogits [B, L] and dpooled [B, hidden], either NULL for 0.
 * Gradients are added into n->g (and gweff). */
int QD_TG(backward)(QD_TG(net) * n, const qd_batch *b, const qd_real *dlogits, const qd_real *dpooled);

/* Bytes of activations the forward pass keeps for the backward pass of B items of T tokens,
 * plus the backward pass's own buffers. */
int64_t QD_TG(activation_bytes)(const qd_model_config *c, int B, int T);

/* ---- losses (train/loss.c) ----------------------------------------------------------------
 * Each returns the summed loss of the B items times `scale` and adds scale * d(loss)/d(input)
 * into grad (when not NULL). scale = 1 / (items of the whole batch) gives the batch mean. */
/* Cross-entropy of logits [B, L] against labels; *correct (may be NULL) += argmax hits. */
double QD_TG(loss_ce)(const qd_real *logits, int B, int L, const int32_t *labels, double scale, qd_real *grad,
                      int *correct);
/* Distillation: tau^2 KL(softmax(t / tau) || softmax(z / tau)) per item. */
double QD_TG(loss_kl)(const qd_real *logits, const qd_real *teacher, int B, int L, double tau, double scale,
                      qd_real *grad);
/* Mean squared error per item: mean over the N values of (z - t)^2. */
double QD_TG(loss_mse)(const qd_real *x, const qd_real *target, int B, int N, double scale, qd_real *grad);

#endif
