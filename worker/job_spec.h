/* worker/job_spec.h — what a quantization job is: its configuration (method, scheme, overrides,
 * calibration and the methods' options; defaults, validation, the JSON the model file records)
 * and its work table (which tensors are quantized with which method and scheme, kept as float or
 * copied raw, and what each costs the planner). Shared by the job (worker/job.c), its calibrated
 * phase (worker/calib_job.c) and `qdist plan`; knows nothing of ranks or files. */
#ifndef QD_JOB_SPEC_H
#define QD_JOB_SPEC_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "quant/prune.h"
#include "quant/quant.h"
#include "shard/plan.h"
#include "shard/safetensors.h"
#include "worker/method.h"

#define QD_MAX_PATTERNS 32
#define QD_PATTERN_MAX  256

/* A per-tensor override (mixed precision): the first pattern (fnmatch glob on the tensor name)
 * that matches a tensor selected for quantization changes its scheme or keeps it float. Fields
 * < 0 are unset. */
typedef struct {
    char pattern[QD_PATTERN_MAX];
    int skip;   /* keep as float */
    int method; /* qd_method or -1 */
    int bits, sym, clip_mse;
    int gran; /* qd_granularity or -1 */
    int64_t group_size;
    int has_sp;     /* sp set: this tensor's pruning pattern instead of the job's */
    qd_sparsity sp; /* (non-uniform sparsity over layers; the job must prune) */
} qd_override;

/* How rank 0 shows progress. AUTO: a bar on a terminal, one line per tensor otherwise. */
typedef enum { QD_PROGRESS_AUTO = 0, QD_PROGRESS_BAR, QD_PROGRESS_LINES, QD_PROGRESS_NONE } qd_progress;

typedef struct {
    const char *model; /* checkpoint file or directory */
    const char *out;   /* output .h5 (written as OUT.partial, renamed on success) */
    qd_method method;
    qd_qscheme scheme; /* bits, sym, granularity, group size */
    int clip_mse;      /* MSE clipping search instead of min-max */
    qd_shard_mode shard;
    int overwrite, resume, quiet;
    qd_progress progress;
    int include_embeddings;                        /* also quantize 2-D embedding tables */
    int include_head;                              /* also quantize pooler/classifier weights */
    char include[QD_MAX_PATTERNS][QD_PATTERN_MAX]; /* globs: also quantize matching 2-D floats */
    int n_include;
    qd_override overrides[QD_MAX_PATTERNS];
    int n_overrides;
    /* calibration (methods gptq, adaround) */
    const char *calib;   /* samples: text/TSV file (BERT), IDX file or image folder (ViT) */
    int nsamples;        /* default 128 (0 = all) */
    int seqlen;          /* tokens per text sample, default 128 */
    int calib_seed;      /* selection seed, default 0 */
    int calib_mode;      /* QD_CALIB_SEQUENTIAL (default) or QD_CALIB_FP */
    int microbatch;      /* samples per forward call, default 8 */
    double mem_per_rank; /* bytes a rank may use (--mem-per-rank); 0: what its host and cgroup have */
    double smooth;       /* SmoothQuant migration strength alpha in (0, 1] (worker/smooth.h); 0: off */
    /* GPTQ */
    double damp;    /* default 0.01 */
    int block_size; /* default 128 */
    int act_order, static_groups;
    /* AdaRound (quant/adaround.h; 0 = its default) */
    int ada_iters;                       /* default 10000 */
    double ada_lambda;                   /* default 0.01 */
    double ada_beta_start, ada_beta_end; /* default 20, 2 */
    double ada_warmup;                   /* default 0.2 */
    double ada_lr;                       /* default 1e-3 */
    int ada_batch;                       /* calibration rows (tokens) per step, drawn with calib_seed from the
                                  * layer's input rows; default 0: the Hessian form, every step
                                  * sees all the data through H */
    /* static activation scales (worker/act_calib.h): recorded in /activations for integer-only
     * inference; calibrated on the FP32 model with the calibration options above */
    int act_static;        /* --activations static */
    int act_bits;          /* default 8 */
    int act_calib;         /* quant/actq.h qd_actq_method, default minmax */
    double act_percentile; /* default 99.99 */
    double act_outliers;   /* static outlier channels: absmax above this times the median channel's
                              (default 4; 0: none) */
    /* pruning of every quantized tensor (quant/prune.h, quant/sparsegpt.h; worker/sparse_unit.h) */
    qd_sparsity sparsity; /* inactive (default): dense */
    int prune; /* qd_prune_method, or -1 (default: sparsegpt with gptq, magnitude with rtn); with gptq the mask's criterion (sparsegpt: joint pruning and
                           * quantization; magnitude/wanda: GPTQ keeping their mask); rtn: magnitude only */
    int prune_only; /* keep the pruned weights in float (needs the calibrated path: method gptq) */
    /* K-means codebooks (quant/kmeans.h) */
    int kmeans_init;     /* qd_kmeans_init: k-means++ (default) or linear */
    int kmeans_weighted; /* centroids weighted by the Hessian diagonal (needs calib) */
    int kmeans_seed;     /* k-means++ seed, default 0 */
    int kmeans_iters;    /* Lloyd iterations at most, default 50 */
    int ada_tiles;       /* set by qd_job_run, not by callers: 1 when every rank of the job
                                  * has the bfloat16 tiles (kernels/gemm_bf16.h) for the Hessian
                                  * form's product, so all ranks compute it the same way */
} qd_job_config;

enum { QD_CALIB_SEQUENTIAL = 0, QD_CALIB_FP = 1 };

/* The calibration modes of `quantize` and `calibrate` by one pair of names, for how the ranks
 * share the calibration: "data" (samples split over ranks; quantize then calibrates block after
 * block on the outputs of the blocks already quantized) or "pipeline" (ranks own contiguous
 * blocks and one FP32 calibration flows through them). The names quantize used before,
 * "sequential" and "fp", are accepted as aliases of data and pipeline. Returns
 * QD_CALIB_SEQUENTIAL (= QD_CALIB_DATA_PARALLEL) or QD_CALIB_FP (= QD_CALIB_PIPELINE), or -1. */
int qd_calib_mode_from_name(const char *name);
const char *qd_calib_mode_name(int mode); /* "data" or "pipeline" */

/* Defaults: rtn, 8 bits, symmetric, per output channel, min-max, sharding by rows. */
void qd_job_config_default(qd_job_config *c);
/* The configuration as a JSON object (recorded in the file, compared on --resume). Holds what
 * changes the file's contents, not how the work is spread (shard) or shown. */
cJSON *qd_job_config_json(const qd_job_config *c);
/* QD_OK, or QD_ECONFIG naming the problem (e.g. a method that needs calibration data). */
int qd_job_config_validate(const qd_job_config *c);

/* ---- the work table (shared by the job and `qdist plan`) ------------------------------- */
typedef enum { QD_JOB_QUANT = 0, QD_JOB_FLOAT = 1, QD_JOB_RAW = 2 } qd_job_kind;

#define QD_JOB_MAX_BLOCKS 16
typedef struct {
    qd_job_kind kind;
    int64_t rows, cols; /* quantized: [out, in]; float: [shape[0], numel / shape[0]] */
    qd_method method;   /* quantized: the job's or an override's */
    qd_qscheme scheme;
    int clip_mse;
    /* Row blocks: error sums are kept per block (so metrics do not depend on how rows were
     * split) and row sharding cuts at block boundaries. blk_rows = ceil(rows / 16). */
    int64_t blk_rows;
    int nblk;
    int splittable; /* row ranges are independent (not per-tensor parameters, not raw) */
    qd_sparsity sp; /* pruning pattern of a quantized tensor (inactive: dense) */
    int prune;      /* qd_prune_method */
} qd_job_tensor;

/* Fills t[0 .. qd_ckpt_num_tensors(ck)) and the planner's items (costs from the method table). */
void qd_job_table(const qd_job_config *cfg, const qd_checkpoint *ck, qd_job_tensor *t, qd_plan_item *pi);

/* What the method of tensor jt reads: its scheme and the job's options. */
void qd_job_method_opts(const qd_job_config *cfg, const qd_job_tensor *jt, qd_method_opts *o);
/* The method of a quantized tensor, and what it needs from calibration. */
const qd_method_def *qd_job_method(const qd_job_tensor *jt);
qd_method_needs qd_job_needs(const qd_job_config *cfg, const qd_job_tensor *jt);
/* Whether any tensor of the table uses a method that needs calibration. */
int qd_job_needs_calibration(const qd_job_config *cfg, const qd_job_tensor *jt, int n);

#endif
