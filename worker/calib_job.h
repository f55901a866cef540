/* worker/calib_job.h — the calibrated phase of a quantization job: every tensor whose method
 * needs calibration (worker/method.h: the Hessian of its Linear's input, or the input rows) is
 * quantized here, over the ranks of the job's communicator, before the file is written.
 *
 * Two calibration modes (DESIGN.md; --calib-mode, qd_calib_mode_name):
 *   data (default)        block after block: the block's Linear inputs come from the blocks
 *                         before it *as already quantized* (GPTQ-style error feedback through
 *                         depth). Samples are split over ranks (data parallel) and every rank
 *                         keeps its samples' residual streams. A block's input groups go to
 *                         ranks (whole groups by longest-processing-time when there are at
 *                         least as many groups as ranks, else each group a contiguous range of
 *                         ranks); a group's statistics are summed onto its first rank and handed
 *                         to the others of its range only (collective/coll_calib.h), so a rank
 *                         that quantizes no row of a Linear never holds its sums or Hessian; its
 *                         tensors' fixed row units are spread over the group's ranks, and the
 *                         quantized block is all-gathered so every rank can run it. Only the
 *                         block in hand has Hessians.
 *   pipeline              one calibration of the FP32 model, pipelined over layer-sharded ranks
 *                         (each rank holds its blocks' statistics), then every rank quantizes
 *                         its blocks' tensors at once; results are all-gathered.
 * Units of QD_CALIB_UNIT_ROWS rows are quantized alone with the layer's statistics (and the
 * method's prepared state, e.g. GPTQ's factorization), and the statistics are exact integer sums
 * (model/calib.h), so the results are the same bits for any number of ranks. A block's results
 * are handed to the job's writer as soon as the block is gathered (qd_calib_stream) and freed:
 * no rank holds finished results. Resuming, a block whose tensors the file already holds is read
 * back from it (its quantized weights are what the later blocks' inputs pass through) instead of
 * being calibrated again, so the resumed file is the uninterrupted one.
 * Methods that learn from the input rows (AdaRound's mini-batch form) get each Linear input's
 * calibration rows (every sample's real tokens, in sample order: in data mode the block in
 * hand's, broadcast micro-batch by micro-batch from the rank that ran it; in pipeline mode a rank's
 * own blocks', which every micro-batch passes in order), so every rank hands the method the same
 * rows.
 */
#ifndef QD_CALIB_JOB_H
#define QD_CALIB_JOB_H

#include <cjson/cJSON.h>
#include <mpi.h>

#include "model/calib_data.h"
#include "model/model.h"
#include "collective/h5model.h"
#include "shard/safetensors.h"
#include "worker/job_spec.h"

#define QD_CALIB_UNIT_ROWS 64

/* The phases a rank's time is measured in: opening the model and data ("read"), the forward
 * passes ("forward"), the statistics' reductions over ranks ("reduce"), the methods' units
 * ("quantize"), gathering each block's results and dequantizing them ("gather"), writing them
 * to the file as blocks finish, or reading a resumed file's back ("write"). */
enum { QD_PH_READ, QD_PH_FORWARD, QD_PH_REDUCE, QD_PH_QUANTIZE, QD_PH_GATHER, QD_PH_WRITE, QD_CALIB_NPHASES };
extern const char *const qd_calib_phase_names[QD_CALIB_NPHASES];

typedef struct {
    int64_t rows, cols, ng;
    int64_t row0, row1; /* the rows held: the arrays below hold rows [row0, row1) of the tensor */
    int calibrated;     /* the tensor's method ran here (its rows may be held by other ranks) */
    int has_g_idx;      /* its method records a column order (act-order): known before it runs */
    int float_kept;     /* pruned and kept in float (fweight) */
    uint8_t *codes;     /* [row1 - row0, cols] unpacked; NULL: no rows held */
    float *scales;      /* [rows, ng] */
    int32_t *zeros;     /* [rows, ng] */
    float *codebook;    /* codebook methods: [row1 - row0, cbr = ng * 2^bits]; else NULL */
    int64_t cbr;
    int32_t *g_idx;   /* [cols] when the method reorders columns (act-order), else NULL */
    double damp_used; /* GPTQ: largest damping used over its units (relative to mean diag H) */
    int64_t dead_columns;
    uint8_t *mask;  /* [rows, cols] 1 = kept, when the job prunes (worker/sparse_unit.h); else NULL */
    float *fweight; /* [rows, cols] prune-only: the pruned float weights (codes unused); else NULL */
} qd_calib_result;

typedef struct {
    qd_calib_result *t; /* one per checkpoint tensor */
    int n;
    char *calibration_json; /* what the file's "calibration" attribute records */
    double seconds;
    double unit_cpu;                /* this rank's CPU seconds in the methods' units (all its threads) */
    double estimate_bytes;          /* this rank's estimated peak (qd_calib_job_estimate's formula) */
    double phase[QD_CALIB_NPHASES]; /* this rank's seconds per phase (qd_calib_phase_names) */
    double reduce_bytes;            /* bytes of statistics this rank sent into reductions */
    double stats_bytes;             /* the most bytes of reduced statistics (sums) this rank held at once */
    int hessians;                   /* Hessians this rank formed (each factorized once where it is formed) */
    char estimate_text[512];
} qd_calib_results;

/* The calibrated phase in two steps, so that the file exists before the first block is done.
 * qd_calib_job_begin loads the model (block weights not read) and the calibration data, computes
 * this rank's estimate and checks it against the memory a rank can have (a job that does not fit
 * stops here, before anything is written), and fills out: the results' shapes (their arrays come
 * with their block), has_g_idx and calibration_json. Collective over comm; every rank returns
 * the same status. */
typedef struct qd_calib_job qd_calib_job;
int qd_calib_job_begin(const qd_job_config *cfg, MPI_Comm comm, qd_checkpoint *ck, const qd_job_tensor *jt,
                       int progress, qd_calib_results *out, qd_calib_job **job);

/* Where finished results go. write: called on every rank after each block's results are gathered
 * (pipeline mode: once, after all), with the checkpoint indices of its calibrated tensors whose
 * record is not complete yet; every rank holds their whole results then, which are freed when
 * it returns. It returns an agreed status (nonzero stops the phase). complete: tensor -> its
 * record in the file being resumed is complete (NULL: none); w, rec: that file's writer and each
 * tensor's record, to read complete tensors back (data mode: a block whose calibrated tensors
 * are all complete is read back, not calibrated; pruned and codebook tensors are computed again
 * and not written twice). */
typedef struct {
    int (*write)(void *user, const int *tensors, int n);
    void *user;
    const uint8_t *complete;
    qd_h5m_writer *w;
    const int *rec;
} qd_calib_stream;

/* Runs calibration and the methods of the tensors that need it, block after block (`progress`:
 * rank 0 prints a line per block, with each rank's memory). Collective; the same status on every
 * rank. Then qd_calib_job_end (always, also after a failed begin that returned a job). */
int qd_calib_job_blocks(qd_calib_job *job, const qd_calib_stream *stream);
void qd_calib_job_end(qd_calib_job *job);
/* The calibration data's part of a "calibration" record (data, kind, nsamples, seqlen,
 * real_tokens, seed) added to o (also used by the static activation record). */
void qd_calib_json_data(cJSON *o, const qd_job_config *cfg, const qd_calib_data *data);
void qd_calib_results_free(qd_calib_results *r);

/* Memory the busiest of `ranks` ranks needs for the calibrated phase (bytes), with a one-line
 * breakdown: the runtime, mapped weights, its samples' activations, the statistics and Hessians in
 * hand (one block in data mode, its own blocks in pipeline mode), the methods' working set, the
 * results, and with input rows kept (AdaRound's mini-batch form) those rows (again one block, or a
 * rank's own blocks). Opens the model (weights not read) and the calibration data once; QD_OK or
 * an error naming what could not be opened. (A running job computes its own rank's figure into
 * qd_calib_results.) */
int qd_calib_job_estimate(const qd_job_config *cfg, qd_checkpoint *ck, const qd_job_tensor *jt, int ranks,
                          double *worst, char *breakdown, size_t cap);

/* ---- inside worker/: the plan of a block and the estimate of one rank ---------------------- */
/* Who quantizes block k's calibrated tensors (data mode): each input group (its tensors share H
 * and the method's prepared state) gets a contiguous range of ranks [lo, lo + n). With at least
 * as many groups as ranks, whole groups go to ranks by longest-processing-time on their methods'
 * balance cost (GPTQ: the O(C^3) factorization once per group plus 2 R C^2 per tensor); with
 * fewer, every group gets one rank and each rank left goes to the group whose ranks have the most
 * work each (the factorization, which every rank of a range repeats, plus its share of the
 * units). A group's statistics reach only its ranks. Deterministic; results do not depend on it.
 * lin_tensor: model Linear -> checkpoint tensor with a calibrated method, or -1. */
#define QD_CALIB_PLAN_MAX 64
typedef struct {
    int nbt, bt[QD_CALIB_PLAN_MAX];                  /* the block's calibrated Linears, in model order */
    int tg[QD_CALIB_PLAN_MAX];                       /* Linear b -> its group (index in grp) */
    int ng, grp[QD_CALIB_PLAN_MAX];                  /* the input groups (model group numbers) */
    int lo[QD_CALIB_PLAN_MAX], n[QD_CALIB_PLAN_MAX]; /* per group: its ranks */
} qd_calib_plan;
void qd_calib_plan_block(const qd_job_config *cfg, const qd_model *m, const qd_job_tensor *jt, const int *lin_tensor,
                         int size, int k, qd_calib_plan *p);
static inline int qd_calib_plan_has(const qd_calib_plan *p, int i, int rank)
{
    return rank >= p->lo[i] && rank < p->lo[i] + p->n[i];
}
/* Whether group i's range (more than one rank) has its first rank alone form H and prepare, the
 * others receiving the prepared state: every tensor of the group quantizes from it alone (the
 * method's prep_parts, no rows kept, no H beside the factor). */
int qd_calib_plan_solo(const qd_job_config *cfg, const qd_job_tensor *jt, const int *lin_tensor, const qd_calib_plan *p,
                       int i);

/* The estimate for one rank, from the loaded model and the calibration data's shape (N samples of
 * T tokens, `rows` of them real). */
void qd_calib_estimate_rank(const qd_job_config *cfg, qd_checkpoint *ck, const qd_job_tensor *jt, const qd_model *m,
                            int N, int T, int64_t rows, int ranks, int rank, double *bytes, char *breakdown,
                            size_t cap);

#endif
