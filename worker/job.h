/* worker/job.h — one quantization job over the ranks of a communicator: open the checkpoint,
 * plan, quantize each rank's own tensors or row ranges (read straight from the checkpoint's
 * mapping; nothing goes through rank 0), and write one HDF5 model with parallel HDF5
 * (docs/FORMAT.md). Work proceeds in rounds: every rank works through its next pieces for a
 * fraction of a second, then all ranks exchange what they did (progress, errors, stop
 * requests), so an error on one rank stops every rank at the same point with the failing rank's
 * message, and completion marks are written only for data already flushed. */
#ifndef QD_JOB_H
#define QD_JOB_H

#include <cjson/cJSON.h>
#include <mpi.h>

#include "worker/job_spec.h"

/* How a running job talks to whoever started it (the batch CLI or the service): progress events
 * out, a cancel request in. Both are used on rank 0 only; the job agrees a cancel with the other
 * ranks at its next round. */
typedef struct {
    void *ctx;
    /* An event (type: "started", "plan", "tensor", "finished", "failed"; fields: an object the
     * callee may read but not keep). NULL = no events. */
    void (*event)(void *ctx, const char *type, const cJSON *fields);
    /* Non-zero when the job should stop after the tensor in hand (partial file kept, resumable).
     * NULL = never. */
    int (*cancel_requested)(void *ctx);
} qd_job_hooks;

static inline void qd_job_emit(const qd_job_hooks *h, const char *type, const cJSON *fields)
{
    if (h && h->event) h->event(h->ctx, type, fields);
}

/* Runs the job; collective over comm. QD_OK, QD_EINTR (signal: partial file kept),
 * QD_ECANCELED (hooks), or a negative code with qd_errmsg() set on every rank. hooks may be
 * NULL. */
int qd_job_run(const qd_job_config *cfg, MPI_Comm comm, const qd_job_hooks *hooks);

/* Set by SIGTERM/SIGINT handlers: stop after the piece in hand. */
void qd_job_request_stop(void);

#endif
