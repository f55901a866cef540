/* coordinator/service_proto.h — the service's request layer (coordinator/service_proto.c): reply
 * error codes, validation of submitted jobs, path confinement, endpoint checks. Pure functions of
 * JSON and the file system: no sockets, no MPI, nothing of the service loop (service.h), so that it
 * is tested alone (tests/service/test_service_proto.c). */
#ifndef QD_SERVICE_PROTO_H
#define QD_SERVICE_PROTO_H

#include <cjson/cJSON.h>
#include <stddef.h>

#define QD_SVC_MAX_MSG (1 << 20) /* ZMQ_MAXMSGSIZE: larger messages drop the peer */

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

#endif /* QD_SERVICE_PROTO_H */
