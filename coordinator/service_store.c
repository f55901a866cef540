/* The service's durable job table in SQLite (service_store.h). */
#include "coordinator/service_store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/qd_common.h"

#define SCHEMA_VERSION 1

struct qd_svc_store {
    sqlite3 *db;
    int lock_fd;   /* STATE_DIR/lock, flock'ed; -1 in memory */
    int sync_full; /* the synchronous pragma in force: 1 FULL, 0 NORMAL */
    char path[PATH_MAX];
};

static const char *g_state_names[] = {"queued", "running", "done", "failed", "cancelled"};

const char *qd_sj_state_name(qd_sj_state s)
{
    return (unsigned)s < QD_ARRAY_LEN(g_state_names) ? g_state_names[s] : "?";
}

static int state_of(const char *name)
{
    for (int i = 0; i < (int)QD_ARRAY_LEN(g_state_names); i++)
        if (name && !strcmp(name, g_state_names[i])) return i;
    return -1;
}

void qd_svc_job_id(long long seq, char id[24]) { snprintf(id, 24, "j%lld", seq); }

long long qd_svc_job_seq(const char *id)
{
    if (!id || id[0] != 'j' || id[1] < '1' || id[1] > '9') return -1;
    long long v = 0;
    for (const char *p = id + 1; *p; p++) {
        if (*p < '0' || *p > '9' || v > (LLONG_MAX - 9) / 10) return -1;
        v = 10 * v + (*p - '0');
    }
    return v;
}

void qd_svc_rec_free(qd_svc_rec *r)
{
    if (!r) return;
    free(r->job);
    free(r->summary);
    free(r->err_msg);
    memset(r, 0, sizeof *r);
}

static int db_fail(qd_svc_store *st, const char *what)
{
    return qd_err_set(QD_EIO, "%s: %s: %s", st->path, what, sqlite3_errmsg(st->db));
}

static int exec(qd_svc_store *st, const char *sql)
{
    char *em = NULL;
    if (sqlite3_exec(st->db, sql, NULL, NULL, &em) != SQLITE_OK) {
        int rc = qd_err_set(QD_EIO, "%s: %s", st->path, em ? em : sqlite3_errmsg(st->db));
        sqlite3_free(em);
        return rc;
    }
    return QD_OK;
}

/* Commits of accepted jobs and of state changes sync the WAL (FULL); progress does not (NORMAL:
 * still safe against a crash of the process, only a power cut may lose it). */
static int set_sync(qd_svc_store *st, int full)
{
    if (st->sync_full == full) return QD_OK;
    int rc = exec(st, full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    if (rc == QD_OK) st->sync_full = full;
    return rc;
}

static sqlite3_stmt *prep(qd_svc_store *st, const char *sql)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
        db_fail(st, "prepare");
        return NULL;
    }
    return s;
}

/* Runs a statement that returns no rows; returns sqlite3_changes or a negative code. */
static long long step_done(qd_svc_store *st, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);
    long long ch = sqlite3_changes(st->db);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) return db_fail(st, what);
    return ch;
}

static const char *const k_schema =
    "CREATE TABLE IF NOT EXISTS jobs("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " owner TEXT NOT NULL DEFAULT '',"
    " token TEXT,"
    " state TEXT NOT NULL CHECK(state IN ('queued','running','done','failed','cancelled')),"
    " job TEXT NOT NULL,"
    " submitted REAL NOT NULL, started REAL, ended REAL,"
    " tensors_done INTEGER NOT NULL DEFAULT 0, tensors_total INTEGER NOT NULL DEFAULT 0,"
    " cancel INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,"
    " out_ino INTEGER NOT NULL DEFAULT 0,"
    " summary TEXT, err_code TEXT, err_msg TEXT,"
    " UNIQUE(owner, token));"
    "CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, seq);";

static int open_lock(qd_svc_store *st, const char *dir)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return qd_err_set(QD_EIO, "--state-dir %s: cannot create: %s", dir, strerror(errno));
    char lp[PATH_MAX];
    if (snprintf(lp, sizeof lp, "%s/lock", dir) >= (int)sizeof lp ||
        snprintf(st->path, sizeof st->path, "%s/jobs.db", dir) >= (int)sizeof st->path)
        return qd_err_set(QD_EINVAL, "--state-dir %s: path too long", dir);
    st->lock_fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (st->lock_fd < 0) return qd_err_set(QD_EIO, "%s: %s", lp, strerror(errno));
    if (flock(st->lock_fd, LOCK_EX | LOCK_NB) != 0)
        return qd_err_set(QD_EIO, "%s: %s", lp,
                          errno == EWOULDBLOCK ? "another qdist service uses this state directory" : strerror(errno));
    /* the holder's pid, for operators (and the load benchmark's memory figures) */
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(st->lock_fd, 0) != 0 || pwrite(st->lock_fd, pid, (size_t)n, 0) != n)
        return qd_err_set(QD_EIO, "%s: %s", lp, strerror(errno));
    return QD_OK;
}

/* The database is usable: not damaged, a schema this program knows. */
static int check_db(qd_svc_store *st)
{
    sqlite3_stmt *s = prep(st, "PRAGMA quick_check");
    if (!s) return qd_errcode();
    int rc = sqlite3_step(s);
    const char *res = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(s, 0) : NULL;
    int ok = res && !strcmp(res, "ok");
    char what[256];
    snprintf(what, sizeof what, "%s", res ? res : sqlite3_errmsg(st->db));
    sqlite3_finalize(s);
    if (!ok) return qd_err_set(QD_EIO, "%s: the database is damaged (%s)", st->path, what);
    s = prep(st, "PRAGMA user_version");
    if (!s) return qd_errcode();
    int ver = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
    sqlite3_finalize(s);
    if (ver > SCHEMA_VERSION)
        return qd_err_set(QD_EIO, "%s: schema version %d; this qdist knows up to %d", st->path, ver, SCHEMA_VERSION);
    if (ver < 0) return db_fail(st, "user_version");
    return QD_OK;
}

int qd_svc_store_open(const char *state_dir, qd_svc_store **out)
{
    *out = NULL;
    qd_svc_store *st = qd_xcalloc(1, sizeof *st);
    st->lock_fd = -1;
    st->sync_full = -1;
    snprintf(st->path, sizeof st->path, "(memory)");
    int rc = state_dir ? open_lock(st, state_dir) : QD_OK;
    if (rc == QD_OK) {
        int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
        if (sqlite3_open_v2(state_dir ? st->path : ":memory:", &st->db, flags, NULL) != SQLITE_OK)
            rc = db_fail(st, "cannot open");
    }
    if (rc == QD_OK) sqlite3_busy_timeout(st->db, 5000);
    if (rc == QD_OK && state_dir) rc = check_db(st);
    /* WAL: a commit appends to the log, readers never block the writer, and a crash at any point
     * leaves the last committed state */
    if (rc == QD_OK && state_dir) rc = exec(st, "PRAGMA journal_mode=WAL");
    if (rc == QD_OK) rc = set_sync(st, 1);
    if (rc == QD_OK) rc = exec(st, "BEGIN IMMEDIATE");
    if (rc == QD_OK) {
        rc = exec(st, k_schema);
        if (rc == QD_OK) rc = exec(st, "PRAGMA user_version=1");
        rc = rc == QD_OK ? exec(st, "COMMIT") : (exec(st, "ROLLBACK"), rc);
    }
    if (rc != QD_OK) {
        qd_svc_store_close(st);
        return rc;
    }
    *out = st;
    return QD_OK;
}

void qd_svc_store_close(qd_svc_store *st)
{
    if (!st) return;
    if (st->db) sqlite3_close(st->db);
    if (st->lock_fd >= 0) close(st->lock_fd); /* drops the flock */
    free(st);
}

const char *qd_svc_store_path(const qd_svc_store *st) { return st->path; }

static void bind_text_or_null(sqlite3_stmt *s, int i, const char *t)
{
    if (t)
        sqlite3_bind_text(s, i, t, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, i);
}

int qd_svc_store_submit(qd_svc_store *st, const char *owner, const char *token, const char *job_json, double now,
                        long long *seq, int *existed)
{
    *existed = 0;
    *seq = -1;
    if (token && !*token) token = NULL;
    int rc = set_sync(st, 1);
    if (rc) return rc;
    if ((rc = exec(st, "BEGIN IMMEDIATE"))) return rc;
    if (token) {
        long long found = qd_svc_store_find(st, owner, token);
        if (found < 0) goto fail;
        if (found > 0) {
            *seq = found;
            *existed = 1;
            return exec(st, "COMMIT");
        }
    }
    sqlite3_stmt *s =
        prep(st, "INSERT INTO jobs(owner, token, state, job, submitted) VALUES(?1, ?2, 'queued', ?3, ?4)");
    if (!s) goto fail;
    sqlite3_bind_text(s, 1, owner ? owner : "", -1, SQLITE_TRANSIENT);
    bind_text_or_null(s, 2, token);
    sqlite3_bind_text(s, 3, job_json, -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(s, 4, now);
    if (step_done(st, s, "submit") < 0) goto fail;
    *seq = sqlite3_last_insert_rowid(st->db);
    return exec(st, "COMMIT");
fail:
    rc = qd_errcode() ? qd_errcode() : QD_EIO;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", qd_errmsg());
    exec(st, "ROLLBACK"); /* keeps the first error's message, not the rollback's */
    return qd_err_set(rc, "%s", msg);
}

#define REC_COLUMNS                                                                                               \
    "seq, state, owner, job, submitted, started, ended, tensors_done, tensors_total, cancel, attempts, out_ino, " \
    "summary, err_code, err_msg"

static char *col_dup(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? qd_xstrdup((const char *)t) : NULL;
}

static void read_rec(sqlite3_stmt *s, qd_svc_rec *r)
{
    memset(r, 0, sizeof *r);
    r->seq = sqlite3_column_int64(s, 0);
    int stt = state_of((const char *)sqlite3_column_text(s, 1));
    r->state = stt < 0 ? QD_SJ_FAILED : (qd_sj_state)stt;
    const unsigned char *o = sqlite3_column_text(s, 2);
    snprintf(r->owner, sizeof r->owner, "%s", o ? (const char *)o : "");
    r->job = col_dup(s, 3);
    r->submitted = sqlite3_column_double(s, 4);
    r->started = sqlite3_column_double(s, 5);
    r->ended = sqlite3_column_double(s, 6);
    r->done = sqlite3_column_int(s, 7);
    r->total = sqlite3_column_int(s, 8);
    r->cancel = sqlite3_column_int(s, 9);
    r->attempts = sqlite3_column_int(s, 10);
    r->out_ino = sqlite3_column_int64(s, 11);
    r->summary = col_dup(s, 12);
    const unsigned char *ec = sqlite3_column_text(s, 13);
    snprintf(r->err_code, sizeof r->err_code, "%s", ec ? (const char *)ec : "");
    r->err_msg = col_dup(s, 14);
}

/* One row or QD_ENOTFOUND. */
static int get_one(qd_svc_store *st, sqlite3_stmt *s, qd_svc_rec *r)
{
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) read_rec(s, r);
    sqlite3_finalize(s);
    if (rc == SQLITE_ROW) return QD_OK;
    if (rc == SQLITE_DONE) return QD_ENOTFOUND;
    return db_fail(st, "read");
}

long long qd_svc_store_find(qd_svc_store *st, const char *owner, const char *token)
{
    sqlite3_stmt *s = prep(st, "SELECT seq FROM jobs WHERE owner=?1 AND token=?2");
    if (!s) return qd_errcode();
    sqlite3_bind_text(s, 1, owner ? owner : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, token ? token : "", -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    long long seq = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_finalize(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? seq : db_fail(st, "find");
}

int qd_svc_store_get(qd_svc_store *st, long long seq, qd_svc_rec *r)
{
    sqlite3_stmt *s = prep(st, "SELECT " REC_COLUMNS " FROM jobs WHERE seq=?1");
    if (!s) return qd_errcode();
    sqlite3_bind_int64(s, 1, seq);
    return get_one(st, s, r);
}

int qd_svc_store_next(qd_svc_store *st, qd_sj_state state, qd_svc_rec *r)
{
    sqlite3_stmt *s = prep(st, "SELECT " REC_COLUMNS " FROM jobs WHERE state=?1 ORDER BY seq LIMIT 1");
    if (!s) return qd_errcode();
    sqlite3_bind_text(s, 1, qd_sj_state_name(state), -1, SQLITE_STATIC);
    return get_one(st, s, r);
}

long long qd_svc_store_count(qd_svc_store *st, qd_sj_state state, const char *owner)
{
    sqlite3_stmt *s = prep(st, "SELECT COUNT(*) FROM jobs WHERE state=?1 AND (?2 IS NULL OR owner=?2)");
    if (!s) return qd_errcode();
    sqlite3_bind_text(s, 1, qd_sj_state_name(state), -1, SQLITE_STATIC);
    bind_text_or_null(s, 2, owner);
    long long n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_finalize(s);
    return n < 0 ? db_fail(st, "count") : n;
}

int qd_svc_store_list(qd_svc_store *st, const char *owner, int recent, void (*fn)(void *ctx, const qd_svc_rec *r),
                      void *ctx)
{
    sqlite3_stmt *s = prep(st, "SELECT " REC_COLUMNS " FROM jobs WHERE (?1 IS NULL OR owner=?1) AND"
                               " (state IN ('queued','running') OR seq IN (SELECT seq FROM jobs WHERE"
                               " state IN ('done','failed','cancelled') AND (?1 IS NULL OR owner=?1)"
                               " ORDER BY seq DESC LIMIT ?2)) ORDER BY seq");
    if (!s) return qd_errcode();
    bind_text_or_null(s, 1, owner);
    sqlite3_bind_int(s, 2, recent);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        qd_svc_rec r;
        read_rec(s, &r);
        fn(ctx, &r);
        qd_svc_rec_free(&r);
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? QD_OK : db_fail(st, "list");
}

int qd_svc_store_start(qd_svc_store *st, long long seq, double now, long long out_ino)
{
    int rc = set_sync(st, 1);
    if (rc) return rc;
    sqlite3_stmt *s = prep(st, "UPDATE jobs SET state='running', started=?2, attempts=attempts+1,"
                               " out_ino=CASE WHEN state='queued' THEN ?3 ELSE out_ino END"
                               " WHERE seq=?1 AND state IN ('queued','running')");
    if (!s) return qd_errcode();
    sqlite3_bind_int64(s, 1, seq);
    sqlite3_bind_double(s, 2, now);
    sqlite3_bind_int64(s, 3, out_ino);
    long long ch = step_done(st, s, "start");
    return ch < 0 ? (int)ch : ch > 0;
}

int qd_svc_store_progress(qd_svc_store *st, long long seq, int done, int total)
{
    int rc = set_sync(st, 0);
    if (rc) return rc;
    sqlite3_stmt *s = prep(st, "UPDATE jobs SET tensors_done=?2, tensors_total=?3 WHERE seq=?1 AND state='running'");
    if (!s) return qd_errcode();
    sqlite3_bind_int64(s, 1, seq);
    sqlite3_bind_int(s, 2, done);
    sqlite3_bind_int(s, 3, total);
    long long ch = step_done(st, s, "progress");
    return ch < 0 ? (int)ch : QD_OK;
}

int qd_svc_store_end(qd_svc_store *st, long long seq, qd_sj_state state, double now, const char *summary,
                     const char *err_code, const char *err_msg)
{
    QD_ASSERT(state == QD_SJ_DONE || state == QD_SJ_FAILED || state == QD_SJ_CANCELLED);
    int rc = set_sync(st, 1);
    if (rc) return rc;
    sqlite3_stmt *s = prep(st, "UPDATE jobs SET state=?2, ended=?3, summary=?4, err_code=?5, err_msg=?6"
                               " WHERE seq=?1 AND state='running'");
    if (!s) return qd_errcode();
    sqlite3_bind_int64(s, 1, seq);
    sqlite3_bind_text(s, 2, qd_sj_state_name(state), -1, SQLITE_STATIC);
    sqlite3_bind_double(s, 3, now);
    bind_text_or_null(s, 4, summary);
    bind_text_or_null(s, 5, err_code && *err_code ? err_code : NULL);
    bind_text_or_null(s, 6, err_msg);
    long long ch = step_done(st, s, "end");
    return ch < 0 ? (int)ch : QD_OK;
}

int qd_svc_store_cancel_queued(qd_svc_store *st, long long seq, double now)
{
    int rc = set_sync(st, 1);
    if (rc) return rc;
    sqlite3_stmt *s = prep(st, "UPDATE jobs SET state='cancelled', ended=?2 WHERE seq=?1 AND state='queued'");
    if (!s) return qd_errcode();
    sqlite3_bind_int64(s, 1, seq);
    sqlite3_bind_double(s, 2, now);
    long long ch = step_done(st, s, "cancel");
    return ch < 0 ? (int)ch : ch > 0;
}

int qd_svc_store_request_cancel(qd_svc_store *st, long long seq)
{
    int rc = set_sync(st, 1);
    if (rc) return rc;
    sqlite3_stmt *s = prep(st, "UPDATE jobs SET cancel=1 WHERE seq=?1 AND state='running'");
    if (!s) return qd_errcode();
    sqlite3_bind_int64(s, 1, seq);
    long long ch = step_done(st, s, "cancel");
    return ch < 0 ? (int)ch : ch > 0;
}

long long qd_svc_store_prune(qd_svc_store *st, long long keep)
{
    int rc = set_sync(st, 0);
    if (rc) return rc;
    sqlite3_stmt *s = prep(st, "DELETE FROM jobs WHERE state IN ('done','failed','cancelled') AND seq <"
                               " (SELECT COALESCE(MIN(seq), 0) FROM (SELECT seq FROM jobs WHERE"
                               " state IN ('done','failed','cancelled') ORDER BY seq DESC LIMIT ?1))");
    if (!s) return qd_errcode();
    sqlite3_bind_int64(s, 1, keep);
    return step_done(st, s, "prune");
}
