/* The service's durable job table: ids, idempotent tokens, the state machine's conditional moves
 * (a cancelled job cannot start, an ended one cannot be cancelled), listing, pruning, what
 * survives closing and reopening the state directory, the directory lock, and a damaged or newer
 * database refused with a message naming the file. */
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/qd_common.h"
#include "coordinator/service_store.h"
#include "qd_test.h"

static void count_cb(void *ctx, const qd_svc_rec *r)
{
    long long *seen = ctx;
    seen[0]++;
    seen[1] = seen[1] * 100 + r->seq; /* the order, as digits */
}

static void ids(void)
{
    char id[24];
    qd_svc_job_id(42, id);
    CHECK_STREQ(id, "j42");
    CHECK_EQ(qd_svc_job_seq("j42"), 42);
    CHECK_EQ(qd_svc_job_seq("j0"), -1);
    CHECK_EQ(qd_svc_job_seq("j042"), -1);
    CHECK_EQ(qd_svc_job_seq("j"), -1);
    CHECK_EQ(qd_svc_job_seq("x1"), -1);
    CHECK_EQ(qd_svc_job_seq("j1x"), -1);
    CHECK_EQ(qd_svc_job_seq("j99999999999999999999999"), -1);
    CHECK_EQ(qd_svc_job_seq(NULL), -1);
}

/* The state machine on one table (in memory or on disk). */
static void machine(qd_svc_store *st)
{
    long long a, b, c, d;
    int ex;
    CHECK_EQ(qd_svc_store_submit(st, "", NULL, "{\"model\":\"m\",\"out\":\"a\"}", 100, &a, &ex), 0);
    CHECK_EQ(ex, 0);
    CHECK_EQ(qd_svc_store_submit(st, "", "t1", "{\"out\":\"b\"}", 101, &b, &ex), 0);
    CHECK_EQ(ex, 0);
    /* the same token again: the same job, nothing new */
    long long b2;
    CHECK_EQ(qd_svc_store_submit(st, "", "t1", "{\"out\":\"other\"}", 102, &b2, &ex), 0);
    CHECK_EQ(ex, 1);
    CHECK_EQ(b2, b);
    /* the same token from another owner: a job of its own */
    CHECK_EQ(qd_svc_store_submit(st, "KEYB", "t1", "{\"out\":\"c\"}", 103, &c, &ex), 0);
    CHECK_EQ(ex, 0);
    CHECK_EQ(qd_svc_store_submit(st, "KEYB", NULL, "{\"out\":\"d\"}", 104, &d, &ex), 0);
    CHECK(a < b && b < c && c < d);
    CHECK_EQ(qd_svc_store_count(st, QD_SJ_QUEUED, NULL), 4);
    CHECK_EQ(qd_svc_store_count(st, QD_SJ_QUEUED, "KEYB"), 2);
    CHECK_EQ(qd_svc_store_count(st, QD_SJ_QUEUED, "nobody"), 0);
    CHECK_EQ(qd_svc_store_find(st, "", "t1"), b);
    CHECK_EQ(qd_svc_store_find(st, "KEYB", "t1"), c);
    CHECK_EQ(qd_svc_store_find(st, "KEYB", "t2"), 0);

    qd_svc_rec r;
    CHECK_EQ(qd_svc_store_next(st, QD_SJ_QUEUED, &r), 0);
    CHECK_EQ(r.seq, a);
    CHECK_STREQ(r.job, "{\"model\":\"m\",\"out\":\"a\"}");
    CHECK_EQ(r.attempts, 0);
    CHECK(r.started == 0 && r.ended == 0 && r.summary == NULL && r.err_msg == NULL);
    qd_svc_rec_free(&r);
    CHECK_EQ(qd_svc_store_next(st, QD_SJ_RUNNING, &r), QD_ENOTFOUND);

    /* a runs; progress; the out inode of the first run is kept by a later one */
    CHECK_EQ(qd_svc_store_start(st, a, 110, 77), 1);
    CHECK_EQ(qd_svc_store_progress(st, a, 3, 9), 0);
    CHECK_EQ(qd_svc_store_start(st, a, 111, 88), 1); /* a restart resumes it */
    CHECK_EQ(qd_svc_store_get(st, a, &r), 0);
    CHECK_EQ(r.state, QD_SJ_RUNNING);
    CHECK_EQ(r.attempts, 2);
    CHECK_EQ(r.out_ino, 77);
    CHECK_EQ(r.done, 3);
    CHECK_EQ(r.total, 9);
    CHECK_NEAR(r.started, 111, 0);
    qd_svc_rec_free(&r);
    /* cancel of a queued job is final: it can no longer start; of a running one, a request */
    CHECK_EQ(qd_svc_store_cancel_queued(st, b, 112), 1);
    CHECK_EQ(qd_svc_store_start(st, b, 113, 0), 0);
    CHECK_EQ(qd_svc_store_cancel_queued(st, a, 113), 0);
    CHECK_EQ(qd_svc_store_request_cancel(st, a), 1);
    CHECK_EQ(qd_svc_store_request_cancel(st, b), 0);
    CHECK_EQ(qd_svc_store_end(st, a, QD_SJ_DONE, 120, "{\"tensors\":9}", NULL, NULL), 0);
    CHECK_EQ(qd_svc_store_get(st, a, &r), 0);
    CHECK_EQ(r.state, QD_SJ_DONE);
    CHECK_EQ(r.cancel, 1);
    CHECK_STREQ(r.summary, "{\"tensors\":9}");
    CHECK_STREQ(r.err_code, "");
    qd_svc_rec_free(&r);
    /* an ended job cannot be started, ended again or cancelled */
    CHECK_EQ(qd_svc_store_start(st, a, 121, 0), 0);
    CHECK_EQ(qd_svc_store_end(st, a, QD_SJ_FAILED, 122, NULL, "QD_EIO", "late"), 0);
    CHECK_EQ(qd_svc_store_get(st, a, &r), 0);
    CHECK_EQ(r.state, QD_SJ_DONE);
    qd_svc_rec_free(&r);
    CHECK_EQ(qd_svc_store_request_cancel(st, a), 0);

    CHECK_EQ(qd_svc_store_start(st, c, 130, 0), 1);
    CHECK_EQ(qd_svc_store_end(st, c, QD_SJ_FAILED, 131, NULL, "QD_EFORMAT", "model.safetensors: bad header"), 0);
    CHECK_EQ(qd_svc_store_get(st, c, &r), 0);
    CHECK_EQ(r.state, QD_SJ_FAILED);
    CHECK_STREQ(r.err_code, "QD_EFORMAT");
    CHECK_STREQ(r.err_msg, "model.safetensors: bad header");
    CHECK_STREQ(r.owner, "KEYB");
    qd_svc_rec_free(&r);
    CHECK_EQ(qd_svc_store_get(st, 999, &r), QD_ENOTFOUND);

    /* listing: active jobs and the most recent ended ones, in submission order */
    long long seen[2] = {0, 0};
    CHECK_EQ(qd_svc_store_list(st, NULL, 10, count_cb, seen), 0);
    CHECK_EQ(seen[0], 4);
    CHECK_EQ(seen[1], ((a * 100 + b) * 100 + c) * 100 + d);
    seen[0] = seen[1] = 0;
    CHECK_EQ(qd_svc_store_list(st, NULL, 1, count_cb, seen), 0); /* d queued + c, the last ended */
    CHECK_EQ(seen[0], 2);
    CHECK_EQ(seen[1], c * 100 + d);
    seen[0] = seen[1] = 0;
    CHECK_EQ(qd_svc_store_list(st, "KEYB", 10, count_cb, seen), 0);
    CHECK_EQ(seen[0], 2);

    /* shutdown --finish; prune keeps the newest ended jobs and never an active one */
    long long e;
    CHECK_EQ(qd_svc_store_submit(st, "", NULL, "{}", 140, &e, &ex), 0);
    CHECK_EQ(qd_svc_store_start(st, e, 141, 0), 1);
    CHECK_EQ(qd_svc_store_cancel_queued(st, d, 142), 1);
    CHECK_EQ(qd_svc_store_count(st, QD_SJ_CANCELLED, NULL), 2);
    CHECK_EQ(qd_svc_store_prune(st, 2), 2); /* a, b go; c, d stay; e runs */
    CHECK_EQ(qd_svc_store_get(st, a, &r), QD_ENOTFOUND);
    CHECK_EQ(qd_svc_store_get(st, c, &r), 0);
    qd_svc_rec_free(&r);
    CHECK_EQ(qd_svc_store_get(st, e, &r), 0);
    CHECK_EQ(r.state, QD_SJ_RUNNING);
    qd_svc_rec_free(&r);
    CHECK_EQ(qd_svc_store_prune(st, 100), 0);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

int main(void)
{
    ids();
    qd_svc_store *st = NULL;
    CHECK_EQ(qd_svc_store_open(NULL, &st), 0);
    if (st) {
        CHECK_STREQ(qd_svc_store_path(st), "(memory)");
        machine(st);
        qd_svc_store_close(st);
    }

    char dir[] = "/tmp/qd-store-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char sd[64], db[128];
    snprintf(sd, sizeof sd, "%s/state", dir); /* created by open */
    snprintf(db, sizeof db, "%s/jobs.db", sd);
    CHECK_EQ(qd_svc_store_open(sd, &st), 0);
    if (st) {
        CHECK_STREQ(qd_svc_store_path(st), db);
        machine(st);
        /* the directory is taken while the table is open */
        qd_svc_store *st2 = NULL;
        CHECK_EQ(qd_svc_store_open(sd, &st2), QD_EIO);
        CHECK(st2 == NULL);
        CHECK_CONTAINS(qd_errmsg(), "another qdist service uses this state directory");
        qd_svc_store_close(st);
    }
    /* reopened: everything is still there, and ids continue after the last one ever given */
    CHECK_EQ(qd_svc_store_open(sd, &st), 0);
    if (st) {
        qd_svc_rec r;
        CHECK_EQ(qd_svc_store_next(st, QD_SJ_RUNNING, &r), 0);
        CHECK_STREQ(r.job, "{}");
        CHECK_EQ(r.attempts, 1);
        qd_svc_rec_free(&r);
        CHECK_EQ(qd_svc_store_count(st, QD_SJ_FAILED, NULL), 1);
        long long f;
        int ex;
        CHECK_EQ(qd_svc_store_submit(st, "", NULL, "{}", 150, &f, &ex), 0);
        CHECK_EQ(f, 6);
        /* a token used before the restart still finds its job */
        CHECK_EQ(qd_svc_store_submit(st, "KEYB", "t1", "{}", 151, &f, &ex), 0);
        CHECK_EQ(ex, 1);
        CHECK_EQ(f, 3);
        qd_svc_store_close(st);
    }
    /* a newer schema is refused */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "sqlite3 '%s' 'PRAGMA user_version=7'", db);
    if (system(cmd) == 0) {
        CHECK_EQ(qd_svc_store_open(sd, &st), QD_EIO);
        CHECK_CONTAINS(qd_errmsg(), "schema version 7");
        CHECK_CONTAINS(qd_errmsg(), db);
    }
    /* a damaged database is refused, naming the file */
    snprintf(cmd, sizeof cmd, "rm -f '%s'-wal '%s'-shm", db, db);
    CHECK_EQ(system(cmd), 0);
    write_file(db, "this is not an SQLite database, but it is long enough to look like one........");
    CHECK_EQ(qd_svc_store_open(sd, &st), QD_EIO);
    CHECK_CONTAINS(qd_errmsg(), db);
    CHECK(st == NULL);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK_EQ(system(cmd), 0);
    QD_TEST_MAIN_END();
}
