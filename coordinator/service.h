/* coordinator/service.h — qdist as a long-running service over ZeroMQ.
 *
 * `mpirun -n N qdist serve --bind tcp://127.0.0.1:5555` keeps one MPI allocation alive and runs
 * the jobs clients submit, one at a time, in FIFO order; every rank takes part in each job.
 * Rank 0 owns the sockets (a ROUTER for requests, a PUB for events) in a thread of its own that
 * never calls MPI; the main thread of every rank runs jobs. The other ranks wait for the next job
 * in MPI_Bcast, not by polling files. Protocol: docs/service.md.
 *
 * The request layer (parsing, validation, path confinement) is separate from the sockets so that
 * it can be tested without them.
 */
#ifndef QD_SERVICE_H
#define QD_SERVICE_H

#include <cjson/cJSON.h>
#include <mpi.h>
#include <stddef.h>

#include "coordinator/job_hooks.h"
#include "coordinator/service_auth.h"

#define QD_SVC_MAX_MSG   (1 << 20) /* ZMQ_MAXMSGSIZE: larger messages drop the peer */
#define QD_SVC_MAX_ALLOW 16

typedef struct {
    const char *bind;                         /* request endpoint (ROUTER) */
    const char *events;                       /* event endpoint (PUB), or NULL */
    const char *allow_dirs[QD_SVC_MAX_ALLOW]; /* realpath'd roots; none given = cwd */
    int n_allow;
    int max_queue;                 /* queued (not running) jobs accepted at most */
    const char *curve_secret_file; /* server secret key (z85, 40 chars) or NULL */
    int insecure;                  /* allow a non-loopback bind without CURVE */
    qd_svc_auth auth;              /* with CURVE: client and admin keys (service_auth.h) */
    const char *state_dir;         /* the durable job table's directory, or NULL (memory only) */
    long long keep_jobs;           /* ended jobs kept for `status` at most (older ones pruned) */
} qd_service_opts;

/* A `status` without an id lists the waiting and running jobs and this many recent ended ones. */
#define QD_SVC_STATUS_RECENT 100

/* Runs the service on comm until a shutdown request; collective over comm. Returns the exit
 * code (0 after a clean shutdown). */
int qd_service_run(const qd_service_opts *opt, MPI_Comm comm);

/* ---- request layer (no sockets) ----------------------------------------------------------- */

/* Machine-readable error codes of replies. */
#define QD_SVC_ERRORS(X)                    \
    X(BAD_JSON, "bad_json")                 \
    X(BAD_REQUEST, "bad_request")           \
    X(BAD_TYPE, "bad_type")                 \
    X(UNKNOWN_KEY, "unknown_key")           \
    X(MISSING_FIELD, "missing_field")       \
    X(PATH_NOT_ALLOWED, "path_not_allowed") \
    X(NOT_FOUND, "not_found")               \
    X(EXISTS, "exists")                     \
    X(QUEUE_FULL, "queue_full")             \
    X(SHUTTING_DOWN, "shutting_down")       \
    X(BAD_STATE, "bad_state")               \
    X(STATE_ERROR, "state_error")           \
    X(NOT_PERMITTED, "not_permitted")

typedef enum {
    QD_SVC_OK = 0,
#define X(e, s) QD_SVC_##e,
    QD_SVC_ERRORS(X)
#undef X
} qd_svc_err;

const char *qd_svc_err_name(qd_svc_err e);

/* Validates a submitted job object in place: known keys and types, model, calib and out inside
 * the allowed roots (realpath; no `..` or symlink escape), out not existing unless overwrite.
 * On success replaces "model" and "out" with their resolved absolute paths and returns
 * QD_SVC_OK; otherwise an error code and a message in msg. */
qd_svc_err qd_svc_validate_job(cJSON *job, const char *const *allow_dirs, int n_allow, char *msg, size_t msgcap);

/* The paths of a job confined to the allowed roots: model and calib (when given) resolved with
 * realpath and inside a root; out's directory likewise and its name not a symbolic link. Replaces
 * them with the resolved paths. Part of qd_svc_validate_job, and done again when the job starts
 * (a directory may have been swapped for a symbolic link while it waited). */
qd_svc_err qd_svc_confine_job(cJSON *job, const char *const *allow_dirs, int n_allow, char *msg, size_t msgcap);

/* Is this endpoint local to the machine (tcp on 127.0.0.0/8, localhost or ::1; ipc; inproc)? */
int qd_svc_endpoint_is_loopback(const char *endpoint);

/* Is `path` (already realpath'd) equal to or below `root` (realpath'd)? */
int qd_svc_path_within(const char *path, const char *root);

#endif
