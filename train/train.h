/* train/train.h — training in float: networks read from and written to Hugging Face checkpoints,
 * AdamW, data sets of images or labelled text, fake quantization (QAT with learned step sizes,
 * scale-only fine-tuning of a quantized model) and the data-parallel fine-tuning loop that
 * `qdist finetune` runs.
 *
 * The loop's determinism: a batch is cut into grains of a fixed number of items; every grain's
 * gradient is computed whole on one rank (graph.c: the same bits whichever rank) and the grains
 * are summed by collective/coll_train.h's fixed tree, so 1, 2, 4 ... ranks produce bit-identical
 * weights. Optimizer steps run redundantly on every rank from the same summed gradient.
 */
#ifndef QD_TRAIN_H
#define QD_TRAIN_H

#include <mpi.h>
#include <stdint.h>

#include "model/model.h"
#include "train/graph.h"

typedef qd_tg_net qd_tnet;

/* ---- networks <-> checkpoints (netio.c) ---------------------------------------------------- */

/* A network shaped as the loaded model `m` (its config), with new_head > 0: a new classifier of
 * new_head classes (and a BERT pooler when the checkpoint has none), initialised N(0, 0.02) with
 * zero biases from `seed`, as Hugging Face initialises a new head. The weights are read from the
 * model's checkpoint (either prefix, gamma/beta LayerNorm names accepted). */
int qd_tnet_load(const qd_model *m, int new_head, uint64_t seed, qd_tnet **out);
/* Allocate the buffers once every parameter is added (qd_tg_net_add); idempotent. */
#define qd_tnet_alloc qd_tg_net_alloc
/* Write dir/model.safetensors (Hugging Face names; F32) and dir/config.json (the source
 * config with the head's num_labels, id2label/label2id and architectures), and copy the
 * tokenizer and preprocessor files of src_dir. */
int qd_tnet_save_hf(const qd_tnet *n, const char *src_dir, const char *dir);

/* Which parameters train: "none" (all), "embeddings", "body" (everything but the head: pooler,
 * final LayerNorm, classifier), or a number K: the embeddings and blocks 0 .. K-1. */
int qd_tnet_freeze(qd_tnet *n, const char *spec);
int64_t qd_tnet_trainable(const qd_tnet *n);

/* ---- AdamW (optim.c) ----------------------------------------------------------------------- */

typedef struct {
    double lr, beta1, beta2, eps, weight_decay;
    double warmup; /* fraction of the steps with a linear warm-up from 0 */
    int64_t total_steps;
    double clip; /* global gradient-norm clip, 0 = none */
} qd_adamw;

void qd_adamw_default(qd_adamw *o);
/* Learning rate at step t (0-based): linear warm-up, then linear decay to 0 at total_steps. */
double qd_adamw_lr(const qd_adamw *o, int64_t t);
/* One step over every trainable parameter of n with gradient g (packed: trainable parameters
 * in table order); m, v the same layout. t: the step number (0-based). Returns the gradient's
 * norm before clipping. */
double qd_adamw_step(const qd_adamw *o, qd_tnet *n, const float *g, float *m, float *v, int64_t t);

/* ---- data (data.c) --------------------------------------------------------------------------- */

typedef struct qd_tdata qd_tdata;
/* Items [first, first + count) (count 0: to the end) of an image set (IDX file or folder, ViT
 * models) or a text TSV (sentence<TAB>label, BERT models; tokenized with the model's vocab.txt
 * to at most seqlen tokens). Every item needs a label. */
int qd_tdata_open(const qd_model *m, const char *path, int first, int count, int seqlen, qd_tdata **out);
void qd_tdata_free(qd_tdata *d);
int qd_tdata_count(const qd_tdata *d);
int qd_tdata_classes(const qd_tdata *d); /* 1 + the largest label */
/* A batch of the items idx[0 .. n) (text: padded to the longest of them); labels [n]. Buffers
 * belong to d and stay valid until the next call. */
int qd_tdata_batch(qd_tdata *d, const int *idx, int n, qd_batch *b, int32_t **labels);

/* ---- fake quantization (fakequant.c) --------------------------------------------------------- */

typedef enum { QD_FQ_QAT = 1, QD_FQ_SCALE_ONLY = 2 } qd_fq_mode;
typedef struct qd_fq qd_fq;
/* Read every quantized encoder Linear of the qdist model file `h5path` and attach a fake
 * quantizer to its weight: QAT (latent weights and LSQ step sizes train) or scale-only (integer
 * codes fixed, step sizes train). Adds the step sizes as parameters "<linear>.weight_step" [out,
 * n_groups] (trainable) and freezes every other parameter but, for QAT, the latent weights. */
int qd_fq_attach(qd_tnet *n, const char *h5path, qd_fq_mode mode, qd_fq **out);
/* After the weights are loaded: latent weights = the file's dequantized weights, steps = its
 * scales (the starting point is exactly the quantized model). */
void qd_fq_init(qd_fq *f, qd_tnet *n);
/* Learned activation steps: the file's static activation record (/activations) gives the int8
 * step and zero point of every encoder Linear's input ("layer.K.qkv_in", "ctx", "mlp_in",
 * "act"); the steps become trainable parameters (LSQ, log s) and qd_fq_write writes them back
 * (scale, lo, hi) so integer-only inference and export use them. Inputs with static outlier
 * channels are left as recorded. *trained: the inputs that train. */
int qd_fq_attach_act(qd_fq *f, qd_tnet *n, int *trained);
/* Before a forward pass: the fake-quantized weights from the latent weights and steps. */
void qd_fq_prepare(qd_fq *f, qd_tnet *n);
/* Before a backward pass: clear the effective-weight gradients; after it: map them to the
 * latent weights (straight-through inside the clipping range) and the step sizes (LSQ). */
void qd_fq_zero_grad(qd_fq *f);
void qd_fq_map_grad(qd_fq *f, qd_tnet *n);
/* Write the result: a copy of the source file with new codes and scales, metrics against the
 * FP32 weights of m, recording how it was trained (JSON object text) in quant_config and the
 * training's rank count and seconds in /run. */
int qd_fq_write(qd_fq *f, const qd_tnet *n, const qd_model *m, const char *out_h5, const char *how_json, int ranks,
                double seconds);
int qd_fq_count(const qd_fq *f);
void qd_fq_free(qd_fq *f);

/* ---- the loop (finetune.c) ------------------------------------------------------------------- */

typedef struct {
    const char *model; /* checkpoint directory (FP32; the teacher when distilling) */
    const char *data;  /* training items */
    int data_first, data_count;
    const char *eval_data; /* evaluation items (may be NULL) */
    int eval_first, eval_count;
    /* held-out items (never trained on) that choose what is written: evaluated before training
     * and after every epoch; OUT gets the epoch with the best score, the start (epoch 0: for
     * QAT / scale-only the PTQ file itself) included, the earlier one on ties. NULL: the last. */
    const char *select_data;
    int select_first, select_count;
    /* plain fine-tuning of a pruned model: the masks of this qdist file's pruned records; the
     * pruned weights start at 0, get no gradient and stay exactly 0 in OUT */
    const char *mask_h5;
    int act_lsq;     /* --qat/--scale-only: learn the file's static activation steps too */
    const char *out; /* directory (FP32 fine-tuning) or .h5 file (qat, scale-only) */
    int head;        /* new classifier with this many classes, 0: keep the model's */
    const char *freeze;
    int epochs, batch, grain, seqlen, eval_batch;
    int64_t max_steps; /* stop after this many steps in all (0: epochs decide) */
    qd_adamw opt;
    uint64_t seed;
    int resume;
    int save_every; /* steps between checkpoints (0: every epoch only) */
    /* quantization-aware */
    const char *qinit; /* the qdist model file to start from */
    qd_fq_mode fq_mode;
    double distill;       /* weight of the KL term against the FP32 model's logits (0: labels only); -1: a
                     * model without a head, MSE to the FP32 model's embeddings */
    double temperature;   /* of the KL term */
    const char *log_json; /* per-epoch metrics, one JSON object a line (rank 0) */
    int quiet;
    int progress_every; /* steps between progress lines */
} qd_ft_config;

void qd_ft_config_default(qd_ft_config *c);
/* Collective over comm. QD_OK, QD_EINTR (SIGTERM/SIGINT: checkpoint written, resumable), or an
 * error with qd_errmsg() on every rank. */
int qd_ft_run(const qd_ft_config *c, MPI_Comm comm);
/* Set by the signal handlers: stop after the step in hand. */
void qd_ft_request_stop(void);
/* Activation memory of a training step of B items of T tokens (plan's estimate). */
int64_t qd_ft_activation_bytes(const qd_model_config *c, int B, int T);
/* qdist plan --train-batch: prints the memory of fine-tuning `model` with batch B (T tokens per
 * text item) on `ranks` ranks, per rank. */
int qd_ft_plan_print(const char *model, int B, int T, int ranks);

#endif
