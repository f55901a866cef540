/* worker/gptq_job.h — the calibrated part of a quantization job: GPTQ on every tensor whose
 * method is gptq, over the ranks of the job's communicator, before the file is written.
 *
 * Two calibration modes (DESIGN.md; --calib-mode):
 *   sequential (default)  block after block: the block's Linear inputs come from the blocks
 *                         before it *as already quantized* (GPTQ-style error feedback through
 *                         depth). Samples are split over ranks (data parallel) and every rank
 *                         keeps its samples' residual streams; a block's statistics are
 *                         all-reduced, its tensors' fixed row units are spread over all ranks,
 *                         and the quantized block is all-gathered so every rank can run it.
 *                         Only the block in hand has Hessians.
 *   fp                    one calibration of the FP32 model, pipelined over layer-sharded ranks
 *                         (each rank holds its blocks' statistics), then every rank quantizes
 *                         its blocks' tensors at once; results are all-gathered.
 * Units of QD_GPTQ_UNIT_ROWS rows are quantized alone with the layer's prepared inverse Hessian,
 * and the statistics are exact integer sums (model/calib.h), so the results are the same bits
 * for any number of ranks. Results are held unpacked on every rank until the job writes them.
 * AdaRound tensors learn their rounding through H too, unless the job gives a batch
 * (cfg->ada_batch > 0, the mini-batch form): then the input groups of their Linears also keep
 * their calibration rows (every sample's real tokens, in sample order: in sequential mode the
 * block in hand's, broadcast micro-batch by micro-batch from the rank that ran it; in fp mode a
 * rank's own blocks', which every micro-batch passes in order), so every rank hands AdaRound the
 * same rows.
 */
#ifndef QD_GPTQ_JOB_H
#define QD_GPTQ_JOB_H

#include <mpi.h>

#include "shard/safetensors.h"
#include "worker/job.h"

#define QD_GPTQ_UNIT_ROWS 64

typedef struct {
    int64_t rows, cols, ng;
    uint8_t *codes;   /* [rows, cols] unpacked; NULL: tensor not quantized here */
    float *scales;    /* [rows, ng] */
    int32_t *zeros;   /* [rows, ng] */
    int32_t *g_idx;   /* [cols] with act-order, else NULL */
    double damp_used; /* largest damping used over its units (relative to mean diag H) */
    int64_t dead_columns;
    uint8_t *mask;  /* [rows, cols] 1 = kept, when the job prunes (worker/sparse_unit.h); else NULL */
    float *fweight; /* [rows, cols] prune-only: the pruned float weights (codes unused); else NULL */
} qd_gptq_result;

typedef struct {
    qd_gptq_result *t; /* one per checkpoint tensor */
    int n;
    char *calibration_json; /* what the file's "calibration" attribute records */
    double seconds;
    double estimate_bytes; /* this rank's estimated peak (qd_calib_job_estimate's formula) */
    char estimate_text[512];
} qd_gptq_results;

/* Whether any tensor of the table uses a calibrated method. */
int qd_job_needs_calibration(const qd_job_tensor *jt, int n);

/* Runs calibration and GPTQ for the tensors of jt (one entry per checkpoint tensor of ck) whose
 * method is gptq. Collective over comm; every rank returns the same status and, on success, the
 * same results. `progress`: rank 0 prints a line per block. */
int qd_gptq_job_run(const qd_job_config *cfg, MPI_Comm comm, qd_checkpoint *ck, const qd_job_tensor *jt, int progress,
                    qd_gptq_results *out);
void qd_gptq_results_free(qd_gptq_results *r);

/* Memory the busiest of `ranks` ranks needs for the calibrated phase (bytes), with a one-line
 * breakdown: the runtime, mapped weights, its samples' activations, the statistics and Hessians in
 * hand (one block in sequential mode, its own blocks in fp mode), GPTQ's (or AdaRound's) working
 * set, the results, and with AdaRound's mini-batch form the calibration rows kept (again one block,
 * or a rank's own blocks). Opens the model (weights not read) and the calibration data once; QD_OK or an error
 * naming what could not be opened. (A running job computes its own rank's figure into
 * qd_gptq_results.) */
int qd_calib_job_estimate(const qd_job_config *cfg, qd_checkpoint *ck, const qd_job_tensor *jt, int ranks,
                          double *worst, char *breakdown, size_t cap);

/* GPTQ options of one tensor of the job. */
void qd_job_gptq_opts(const qd_job_config *cfg, const qd_job_tensor *jt, void *gptq_opts /* qd_gptq_opts * */);

#endif
