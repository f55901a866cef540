#include "common/qd_common.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *qd_strerror(int code)
{
    switch (code) {
#define QD_ERR_STR(name, val, msg) \
    case (val): return msg;
        QD_ERRNO_MAP(QD_ERR_STR)
#undef QD_ERR_STR
    default: return "unknown error";
    }
}

const char *qd_errname(int code)
{
    switch (code) {
#define QD_ERR_NAME(name, val, msg) \
    case (val): return "QD_" #name;
        QD_ERRNO_MAP(QD_ERR_NAME)
#undef QD_ERR_NAME
    default: return "QD_EUNKNOWN";
    }
}

static _Thread_local char g_errmsg[2048];
static _Thread_local int g_errcode;

int qd_err_set(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_errmsg, sizeof g_errmsg, fmt, ap);
    va_end(ap);
    g_errcode = code;
    return code;
}

int qd_err_wrap(int code, const char *fmt, ...)
{
    char prefix[1024], old[sizeof g_errmsg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, g_errmsg, sizeof old);
    if (old[0])
        snprintf(g_errmsg, sizeof g_errmsg, "%.1000s: %.1000s", prefix, old);
    else
        snprintf(g_errmsg, sizeof g_errmsg, "%s: %s", prefix, qd_strerror(code));
    g_errcode = code;
    return code;
}

const char *qd_errmsg(void) { return g_errmsg; }
int qd_errcode(void) { return g_errcode; }
void qd_err_clear(void)
{
    g_errmsg[0] = 0;
    g_errcode = 0;
}

static qd_abort_fn g_abort_hook;
void qd_set_abort_hook(qd_abort_fn fn) { g_abort_hook = fn; }

_Noreturn void qd_fatal(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "qdist: internal error at %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    if (g_abort_hook) g_abort_hook(70);
    abort();
}

static qd_log_level g_log_level = QD_LOG_INFO;
static int g_log_rank = -1;
void qd_log_set_level(qd_log_level lvl) { g_log_level = lvl; }
qd_log_level qd_log_get_level(void) { return g_log_level; }
void qd_log_set_rank(int rank) { g_log_rank = rank; }

void qd_log(qd_log_level lvl, const char *fmt, ...)
{
    if (lvl > g_log_level) return;
    static const char *names[] = {"error", "warning", "", "debug"};
    FILE *f = lvl <= QD_LOG_WARN ? stderr : stdout;
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (g_log_rank >= 0)
        fprintf(f, "qdist[%d]: %s%s%s\n", g_log_rank, names[lvl], names[lvl][0] ? ": " : "", buf);
    else
        fprintf(f, "qdist: %s%s%s\n", names[lvl], names[lvl][0] ? ": " : "", buf);
    fflush(f);
}

void *qd_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) qd_fatal(__FILE__, __LINE__, "out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

void *qd_xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p) qd_fatal(__FILE__, __LINE__, "out of memory allocating %zu bytes", size);
    return p;
}

char *qd_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = qd_xmalloc(n);
    memcpy(p, s, n);
    return p;
}

double qd_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double qd_process_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int qd_mul_overflow(uint64_t a, uint64_t b, uint64_t *out) { return __builtin_mul_overflow(a, b, out) ? -1 : 0; }

char *qd_shape_text(const int64_t *shape, int ndim, char *buf, size_t cap)
{
    size_t l = 0;
    buf[0] = 0;
    for (int d = 0; d < ndim && l < cap; d++)
        l += (size_t)snprintf(buf + l, cap - l, "%s%lld", d ? "," : "", (long long)shape[d]);
    return buf;
}
