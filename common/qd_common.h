/* qd_common.h — what every qdist module shares: error codes, the last-error message, the
 * invariant assert, logging, and the MPI/HDF5 call checks.
 *
 * Two error channels (STYLE.md):
 *   - errors a caller can handle (bad file, unsupported dtype, NaN weight, disk full) are returned
 *     as negative QD_E* codes; the function that detects them also records a message naming the
 *     file, tensor or field with qd_err_set(), which the caller reads with qd_errmsg();
 *   - broken invariants (a bug) go through QD_ASSERT*, which prints file:line and the values and
 *     then calls the abort hook: MPI_Abort inside an MPI job (so no rank hangs), abort() otherwise.
 *
 * This header knows nothing of MPI or HDF5: QD_MPI_CHECK / QD_H5_CHECK expand to calls into
 * collective/, which owns those libraries.
 */
#ifndef QD_COMMON_H
#define QD_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifndef QD_VERSION
#define QD_VERSION "0.0.0"
#endif

/* ---- error codes: one X-macro list --------------------------------------------------------- */
#define QD_ERRNO_MAP(X)                        \
    X(OK, 0, "success")                        \
    X(EINVAL, -1, "invalid argument")          \
    X(ENOMEM, -2, "out of memory")             \
    X(EIO, -3, "I/O error")                    \
    X(ENOENT, -4, "no such file or directory") \
    X(EFORMAT, -5, "malformed file")           \
    X(EDTYPE, -6, "unsupported data type")     \
    X(ESHAPE, -7, "wrong shape")               \
    X(ENOTFOUND, -8, "not found")              \
    X(ENONFINITE, -9, "NaN or Inf value")      \
    X(ECONFIG, -10, "invalid configuration")   \
    X(EUSAGE, -11, "usage error")              \
    X(EMPI, -12, "MPI error")                  \
    X(EHDF5, -13, "HDF5 error")                \
    X(EMISMATCH, -14, "does not match")        \
    X(EEXIST, -15, "already exists")           \
    X(EINTR, -16, "interrupted")               \
    X(ENUMERIC, -17, "numerical failure")      \
    X(EUNSUPPORTED, -18, "not supported")      \
    X(EPEER, -19, "failed on another rank")    \
    X(ECANCELED, -20, "canceled")              \
    X(ETIMEDOUT, -21, "timed out")             \
    X(EPERM, -22, "not permitted")

typedef enum {
#define QD_ERR_ENUM(name, val, msg) QD_##name = (val),
    QD_ERRNO_MAP(QD_ERR_ENUM)
#undef QD_ERR_ENUM
        QD_ERR_MIN_ = -23
} qd_status;

/* Short text of a code ("malformed file"); "unknown error" for anything else. */
const char *qd_strerror(int code);
/* Name of a code ("QD_EFORMAT"), for machine-readable replies. */
const char *qd_errname(int code);

/* Record the detail of the error being returned (thread-local, printf-style) and return `code`,
 * so that `return qd_err_set(QD_EFORMAT, "%s: tensor '%s': ...", path, name);` is one line. */
int qd_err_set(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefix the recorded message with more context ("loading model: " + old message). */
int qd_err_wrap(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The last recorded message ("" if none) and its code. */
const char *qd_errmsg(void);
int qd_errcode(void);
void qd_err_clear(void);

/* ---- invariants ---------------------------------------------------------------------------- */
/* Called by QD_ASSERT after printing; must not return. The coordinator installs one that calls
 * MPI_Abort(MPI_COMM_WORLD, ...) once MPI is up. Default: abort(). */
typedef void (*qd_abort_fn)(int code);
void qd_set_abort_hook(qd_abort_fn fn);
_Noreturn void qd_fatal(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define QD_ASSERT(cond)                                                            \
    do {                                                                           \
        if (!(cond)) qd_fatal(__FILE__, __LINE__, "assertion `%s` failed", #cond); \
    } while (0)
#define QD_ASSERT_INT_(a, op, b)                                                                                    \
    do {                                                                                                            \
        long long qa_ = (long long)(a), qb_ = (long long)(b);                                                       \
        if (!(qa_ op qb_))                                                                                          \
            qd_fatal(__FILE__, __LINE__, "assertion `%s %s %s` failed (%lld %s %lld)", #a, #op, #b, qa_, #op, qb_); \
    } while (0)
#define QD_ASSERT_EQ(a, b) QD_ASSERT_INT_(a, ==, b)
#define QD_ASSERT_NE(a, b) QD_ASSERT_INT_(a, !=, b)
#define QD_ASSERT_LT(a, b) QD_ASSERT_INT_(a, <, b)
#define QD_ASSERT_LE(a, b) QD_ASSERT_INT_(a, <=, b)
#define QD_ASSERT_GE(a, b) QD_ASSERT_INT_(a, >=, b)

/* ---- MPI / HDF5 call checks (implemented in collective/) ------------------------------------ */
/* Every MPI call goes through QD_MPI_CHECK: communicators use MPI_ERRORS_RETURN, so a failure
 * comes back here, is printed with MPI_Error_string, and the job is aborted on all ranks. */
void qd_mpi_fail(int rc, const char *call, const char *file, int line);
void qd_h5_fail(long long rc, const char *call, const char *file, int line);
#define QD_MPI_CHECK(call)                                                             \
    do {                                                                               \
        int qrc_ = (call);                                                             \
        if (qrc_ != 0 /* MPI_SUCCESS */) qd_mpi_fail(qrc_, #call, __FILE__, __LINE__); \
    } while (0)
/* HDF5 returns negative herr_t/hid_t on failure. Evaluates to the call's value. */
#define QD_H5_CHECK(call)                                          \
    ({                                                             \
        __typeof__(call) qh_ = (call);                             \
        if (qh_ < 0) {                                             \
            qd_h5_fail((long long)qh_, #call, __FILE__, __LINE__); \
        }                                                          \
        qh_;                                                       \
    })

/* ---- logging: only rank 0 talks to the user unless told otherwise ------------------------- */
typedef enum { QD_LOG_ERROR = 0, QD_LOG_WARN = 1, QD_LOG_INFO = 2, QD_LOG_DEBUG = 3 } qd_log_level;
void qd_log_set_level(qd_log_level lvl);
qd_log_level qd_log_get_level(void);
/* Rank used as the prefix of messages; -1 (default) = no prefix. */
void qd_log_set_rank(int rank);
void qd_log(qd_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- small helpers ------------------------------------------------------------------------- */
/* malloc that asserts on failure (for sizes the program controls; use plain malloc + QD_ENOMEM
 * where the size comes from input). Zeroed. */
void *qd_xcalloc(size_t n, size_t size);
void *qd_xmalloc(size_t size);
char *qd_xstrdup(const char *s);
/* Seconds from a monotonic clock. */
double qd_now(void);
/* CPU seconds this process has used, all threads (BLAS's too). */
double qd_process_cpu(void);
/* n*m without overflow; returns 0 and sets *out on success, -1 on overflow. */
int qd_mul_overflow(uint64_t a, uint64_t b, uint64_t *out);
/* "768,3072": a shape as messages write it, cut to fit buf. Returns buf. */
char *qd_shape_text(const int64_t *shape, int ndim, char *buf, size_t cap);

#define QD_MIN(a, b)    ((a) < (b) ? (a) : (b))
#define QD_MAX(a, b)    ((a) > (b) ? (a) : (b))
#define QD_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif /* QD_COMMON_H */
