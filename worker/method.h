/* worker/method.h — the quantization methods as one table.
 *
 * A method says what it needs from calibration (nothing, the Hessian of each Linear's input, or
 * the input rows themselves), how it quantizes one unit of rows of a weight given those
 * statistics, what it records in the model file beyond codes, scales and zeros (GPTQ with
 * act-order: g_idx), and what a tensor costs the planner. Its math lives in quant/ as pure
 * functions (quant/gptq.h, quant/adaround.h, ...); the entry here binds that math to a job's
 * options, and the job (worker/job.c, worker/calib_job.c) runs every method the same way:
 * methods that need nothing in the write phase, piece by piece, the others in the calibrated
 * phase, unit by unit, on the rank that owns the unit.
 *
 * Adding a method: a file worker/method_<name>.c defining `const qd_method_def qd_method_<name>`,
 * and one line in QD_METHODS below. Its options go in qd_method_opts (filled from the job's
 * configuration by qd_job_method_opts, worker/job_spec.c). The method files look alike on
 * purpose (a few small static functions and one designated initializer each): that is the
 * table's shape, not repeated logic. */
#ifndef QD_METHOD_H
#define QD_METHOD_H

#include <stdint.h>

#include "quant/adaround.h"
#include "quant/gptq.h"
#include "quant/kmeans.h"
#include "quant/prune.h"
#include "quant/quant.h"
#include "worker/rtn_rows.h"

/* id, name (as in files and on the command line) */
#define QD_METHODS(X)     \
    X(RTN, rtn)           \
    X(GPTQ, gptq)         \
    X(ADAROUND, adaround) \
    X(KMEANS, kmeans)

typedef enum {
#define QD_METHOD_ENUM_(id, name) QD_METHOD_##id,
    QD_METHODS(QD_METHOD_ENUM_)
#undef QD_METHOD_ENUM_
        QD_METHOD_COUNT_
} qd_method;

typedef enum { QD_NEEDS_NOTHING = 0, QD_NEEDS_HESSIAN, QD_NEEDS_ROWS } qd_method_needs;

/* Everything a method reads about one tensor: its scheme and the job's options. */
typedef struct {
    qd_qscheme scheme;
    int clip_mse;          /* scales from the MSE clipping search */
    qd_gptq_opts gptq;     /* GPTQ, resolved for the tensor's scheme (and SparseGPT's damping) */
    qd_adaround_opts ada;  /* AdaRound's steps, regulariser, learning rate, seed, tile product */
    int ada_batch;         /* AdaRound: calibration rows per step (> 0: the mini-batch form from the
                            * input rows), or 0: every step through the Hessian */
    qd_sparsity sp;        /* pruning (quant/prune.h; inactive: dense) */
    int prune, prune_only; /* qd_prune_method; keep the pruned weights in float */
    qd_kmeans_opts km;     /* K-means: init, seed, iterations (bits from the scheme) */
    int km_weighted;       /* K-means: centroids weighted by the Hessian diagonal of the input */
} qd_method_opts;

/* The statistics of one Linear's input: H [cols][cols] = 2/N sum x x^T (QD_NEEDS_HESSIAN), or
 * the N calibration rows X [N][cols] in sample order (QD_NEEDS_ROWS). */
typedef struct {
    int64_t cols;
    const float *H;
    const float *X;
    int64_t N;
} qd_layer_stats;

/* One unit's result: codes [n][cols] (unpacked), scales and zeros [n][ngroups] (codebook
 * methods: codebook [n][ngroups][2^bits] instead), and, when the job prunes, the kept weights
 * mask [n][cols]; GPTQ reports its diagnostics. */
typedef struct {
    uint8_t *codes;
    float *codebook;
    float *scales;
    int32_t *zeros;
    uint8_t *mask;
    double damp_used;
    int64_t dead_columns;
} qd_unit_out;

#define QD_PREP_PARTS 4

typedef struct qd_method_def {
    const char *name;
    int per_tensor; /* can work with one scale for the whole tensor */
    int codebook;   /* records a codebook of 2^bits levels per group (docs/FORMAT.md), not scales */
    /* What it needs from calibration with these options. */
    qd_method_needs (*needs)(const qd_method_opts *o);
    /* Work of one [rows, cols] weight for the planner (shard/plan.h), and for spreading a block's
     * tensors over ranks, where prep_shared says the previous tensor already prepared the same
     * input (NULL: the planner's cost). */
    double (*cost)(int64_t rows, int64_t cols, const qd_method_opts *o);
    double (*balance_cost)(int64_t rows, int64_t cols, int prep_shared, const qd_method_opts *o);
    /* What depends on the statistics only (GPTQ: the factorization of H^-1), made once for all
     * the units of a layer, and of the next layers reading the same input when same_prep says
     * their options allow it. NULL: nothing to prepare. prep is the method's own data. */
    int (*prepare)(const qd_method_opts *o, const qd_layer_stats *s, void **prep);
    int (*same_prep)(const qd_method_opts *a, const qd_method_opts *b);
    void (*release)(void *prep);
    /* The prepared state as byte ranges (part 0 the head, prep_head() bytes), so that with more
     * ranks than inputs one rank of a layer's range prepares it and sends the others the same
     * bits, instead of each forming H and preparing (prep_from_head: a state sized by a received
     * head, its other parts to be received into). NULL: every rank of the range prepares.
     * prep_alone: whether these options quantize from the prepared state alone (no H). */
    int (*prep_parts)(void *prep, void *part[QD_PREP_PARTS], size_t bytes[QD_PREP_PARTS]);
    void *(*prep_from_head)(const void *head);
    int (*prep_alone)(const qd_method_opts *o);
    size_t (*prep_head)(void);
    /* One unit: W [n][cols] (the unit's rows, overwritten: prune-only leaves the pruned rows
     * there) into out. QD_OK or an error with qd_errmsg() set. */
    int (*quantize)(const qd_method_opts *o, const qd_layer_stats *s, const void *prep, float *W, int64_t n,
                    qd_unit_out *out);
    /* Methods that need nothing may quantize straight into the file's layout, fused (rows of the
     * write phase: packed codes, parameters and error sums per block; worker/rtn_rows.h's
     * contract). NULL: the job runs `quantize` and packs. */
    int (*quantize_packed)(const qd_method_opts *o, const float *x, int64_t n, int64_t cols, uint8_t *packed,
                           float *scales, int32_t *zeros, int64_t blk_rows, qd_errsum *blk, const char *what,
                           int64_t row0);
    /* The group of each input column when the method reorders them (g_idx [cols], recorded as the
     * dataset g_idx); returns 0 and leaves g_idx alone when it keeps the natural order. NULL:
     * never. */
    int (*g_idx)(const qd_method_opts *o, const qd_layer_stats *s, int32_t *g_idx);
} qd_method_def;

#define QD_METHOD_DECL_(id, name) extern const qd_method_def qd_method_##name;
QD_METHODS(QD_METHOD_DECL_)
#undef QD_METHOD_DECL_

const qd_method_def *qd_method_get(qd_method m);
const char *qd_method_name(qd_method m);                /* "rtn", "gptq", "adaround", "kmeans"; "unknown" */
int qd_method_from_name(const char *s, qd_method *out); /* 0, or -1 if unknown */
/* The options every method starts from (the defaults of the job's configuration). */
void qd_method_default_opts(qd_method_opts *o);
/* Whether method m needs calibration data (with its default options). */
int qd_method_calibrated(qd_method m);
/* The method's planner cost with options o (NULL: the defaults). */
double qd_method_cost(qd_method m, int64_t rows, int64_t cols, const qd_method_opts *o);
/* Floats per row of a codebook method's result: ngroups * 2^bits; 0 for other methods. */
int64_t qd_method_codebook_row(qd_method m, const qd_qscheme *s, int64_t cols);
/* Columns per group of a scheme for a row of `cols` (cols for per-channel and per-tensor). */
int64_t qd_scheme_group_cols(const qd_qscheme *s, int64_t cols);

#endif
