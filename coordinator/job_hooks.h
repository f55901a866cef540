/* coordinator/job_hooks.h — how a running job talks to whoever started it (the batch CLI or the
 * service): progress events out, a cancel request in. Both are used on rank 0 only; the job
 * agrees a cancel with the other ranks at its next item boundary. */
#ifndef QD_JOB_HOOKS_H
#define QD_JOB_HOOKS_H

#include <cjson/cJSON.h>

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

/* ---- a job as JSON (the keys of a --config file plus "model", "out", "overwrite") ---------- */
#include <mpi.h>
#include <stddef.h>
/* 0 if every key is known and well-typed; otherwise non-zero and a message naming the key. */
int qd_job_config_check_json(const cJSON *job, char *msg, size_t msgcap);
/* Runs the job on every rank of comm (collective; every rank passes the same JSON). Returns
 * QD_OK, QD_ECANCELED (stopped by hooks->cancel_requested, partial file kept) or another
 * negative code with qd_errmsg() set on every rank. */
int qd_job_run_json(const cJSON *job, MPI_Comm comm, const qd_job_hooks *hooks);

#endif
