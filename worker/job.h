/* worker/job.h — one quantization job over the ranks of a communicator: open the checkpoint,
 * plan, quantize each rank's own tensors (read straight from the checkpoint; nothing goes through
 * rank 0), and write one HDF5 model with parallel HDF5. Work proceeds in rounds: in round k every
 * rank handles its k-th tensor, then all ranks exchange what they did (progress, errors, cancel),
 * so an error on one rank stops every rank at the same point, with the failing rank's message. */
#ifndef QD_JOB_H
#define QD_JOB_H

#include <mpi.h>

#include "coordinator/job_hooks.h"
#include "quant/quant.h"
#include "shard/plan.h"

typedef enum { QD_METHOD_RTN = 0, QD_METHOD_GPTQ, QD_METHOD_ADAROUND } qd_method;

/* A per-tensor override (mixed precision): the first pattern (fnmatch glob on the tensor name)
 * that matches a tensor selected for quantization changes its scheme or keeps it float. Fields
 * < 0 are unset. */
#define QD_MAX_OVERRIDES 32
typedef struct {
    char pattern[256];
    int skip;               /* keep as float */
    int bits, sym, clip_mse;
    int gran;               /* qd_granularity or -1 */
    int64_t group_size;
} qd_override;

typedef struct {
    const char *model;           /* checkpoint file or directory */
    const char *out;             /* output .h5 (written as OUT.partial, renamed on success) */
    qd_method method;
    qd_qscheme scheme;           /* bits, sym, granularity, group size */
    int clip_mse;                /* MSE clipping search instead of min-max */
    qd_shard_mode shard;
    int overwrite, resume, quiet;
    int include_embeddings;      /* also quantize 2-D embedding tables */
    int include_head;            /* also quantize pooler/classifier weights */
    qd_override overrides[QD_MAX_OVERRIDES];
    int n_overrides;
} qd_job_config;

void qd_job_config_default(qd_job_config *c);
/* The configuration as a JSON object (recorded in the file, compared on --resume). */
cJSON *qd_job_config_json(const qd_job_config *c);

/* Runs the job; collective over comm. QD_OK, QD_EINTR (signal: partial file kept),
 * QD_ECANCELED (hooks), or a negative code with qd_errmsg() set on every rank. */
int qd_job_run(const qd_job_config *cfg, MPI_Comm comm, const qd_job_hooks *hooks);

/* Set by SIGTERM/SIGINT handlers: stop after the tensor in hand. */
void qd_job_request_stop(void);

#endif
