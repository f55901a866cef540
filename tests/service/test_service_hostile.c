/* The service under bad and hostile input: invalid JSON, wrong types, unknown keys, missing
 * fields, paths outside the allowed roots, an existing output, an over-size message, multi-frame
 * garbage, many concurrent clients, a client that vanishes mid-request, and a job whose model is
 * corrupt. None may crash or wedge the service, and a failed job must not stop the next one.
 * Rank 0 runs the clients in a thread while every rank runs the service. */
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "collective/collective.h"
#include "coordinator/service.h"
#include "qd_test.h"

static char g_ep[PATH_MAX + 32], g_dir[PATH_MAX];

/* One REQ round trip; returns the parsed reply or NULL on timeout. */
static cJSON *rpc_raw(const void *data, size_t len)
{
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_REQ);
    int lin = 0, ms = 10000;
    zmq_setsockopt(s, ZMQ_LINGER, &lin, sizeof lin);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &ms, sizeof ms);
    zmq_connect(s, g_ep);
    cJSON *r = NULL;
    if (zmq_send(s, data, len, 0) >= 0) {
        char buf[1 << 16];
        int n = zmq_recv(s, buf, sizeof buf - 1, 0);
        if (n >= 0) r = cJSON_ParseWithLength(buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
    }
    zmq_close(s);
    zmq_ctx_term(ctx);
    return r;
}

static cJSON *rpc(const char *txt) { return rpc_raw(txt, strlen(txt)); }

static const char *err_code(const cJSON *r)
{
    const cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "error"), "code");
    return cJSON_IsString(c) ? c->valuestring : "(none)";
}

#define EXPECT_ERR(req, code)                         \
    do {                                              \
        cJSON *r_ = rpc(req);                         \
        CHECK_MSG(r_ != NULL, "no reply to %s", req); \
        if (r_) {                                     \
            CHECK_STREQ(err_code(r_), code);          \
        }                                             \
        cJSON_Delete(r_);                             \
    } while (0)

static void *status_client(void *arg)
{
    int *ok = arg;
    for (int i = 0; i < 10; i++) {
        cJSON *r = rpc("{\"op\":\"status\"}");
        *ok += r && cJSON_IsTrue(cJSON_GetObjectItem(r, "ok"));
        cJSON_Delete(r);
    }
    return NULL;
}

static const char *wait_state(const char *id)
{
    static char st[32];
    char req[128];
    snprintf(req, sizeof req, "{\"op\":\"status\",\"id\":\"%s\"}", id);
    for (int i = 0; i < 600; i++) {
        cJSON *r = rpc(req);
        const cJSON *s = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "job"), "state");
        snprintf(st, sizeof st, "%s", cJSON_IsString(s) ? s->valuestring : "?");
        cJSON_Delete(r);
        if (strcmp(st, "queued") && strcmp(st, "running")) return st;
        usleep(100000);
    }
    return "timeout";
}

static void submit_id(const char *job, char *id, size_t cap)
{
    char req[4 * PATH_MAX];
    snprintf(req, sizeof req, "{\"op\":\"submit\",\"job\":%s}", job);
    cJSON *r = rpc(req);
    const cJSON *jid = cJSON_GetObjectItem(r, "id");
    CHECK_MSG(cJSON_IsString(jid), "submit refused: %s", err_code(r));
    snprintf(id, cap, "%s", cJSON_IsString(jid) ? jid->valuestring : "");
    cJSON_Delete(r);
}

static void *clients(void *arg)
{
    (void)arg;
    char req[4 * PATH_MAX];
    EXPECT_ERR("{not json", "bad_json");
    EXPECT_ERR("", "bad_json");
    EXPECT_ERR("[1,2,3]", "bad_request");
    EXPECT_ERR("{}", "missing_field");
    EXPECT_ERR("{\"op\":5}", "bad_type");
    EXPECT_ERR("{\"op\":\"launch\"}", "bad_request");
    EXPECT_ERR("{\"op\":\"status\",\"foo\":1}", "unknown_key");
    EXPECT_ERR("{\"op\":\"status\",\"op\":\"status\"}", "bad_request");
    EXPECT_ERR("{\"op\":\"status\",\"id\":7}", "bad_type");
    EXPECT_ERR("{\"op\":\"status\",\"id\":\"nope\"}", "not_found");
    EXPECT_ERR("{\"op\":\"cancel\"}", "missing_field");
    EXPECT_ERR("{\"op\":\"submit\"}", "missing_field");
    EXPECT_ERR("{\"op\":\"submit\",\"job\":\"x\"}", "bad_type");
    EXPECT_ERR("{\"op\":\"shutdown\",\"mode\":\"later\"}", "bad_request");
    snprintf(req, sizeof req, "{\"op\":\"submit\",\"job\":{\"model\":\"/etc\",\"out\":\"%s/a.h5\"}}", g_dir);
    EXPECT_ERR(req, "path_not_allowed");
    snprintf(req, sizeof req, "{\"op\":\"submit\",\"job\":{\"model\":\"%s/corrupt\",\"out\":\"/tmp/a.h5\"}}", g_dir);
    EXPECT_ERR(req, "path_not_allowed");
    snprintf(req, sizeof req, "{\"op\":\"submit\",\"job\":{\"model\":\"%s/corrupt\",\"out\":\"%s/exists.h5\"}}", g_dir,
             g_dir);
    EXPECT_ERR(req, "exists");
    snprintf(req, sizeof req,
             "{\"op\":\"submit\",\"job\":{\"model\":\"%s/corrupt\",\"out\":\"%s/a.h5\",\"overwrite\":1}}", g_dir,
             g_dir);
    EXPECT_ERR(req, "bad_type");

    /* an over-size message: libzmq drops that peer; the service keeps serving others */
    {
        size_t big = QD_SVC_MAX_MSG + 1000;
        char *b = malloc(big);
        memset(b, 'x', big);
        void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_DEALER);
        int lin = 0, ms = 500;
        zmq_setsockopt(s, ZMQ_LINGER, &lin, sizeof lin);
        zmq_setsockopt(s, ZMQ_RCVTIMEO, &ms, sizeof ms);
        zmq_connect(s, g_ep);
        zmq_send(s, "", 0, ZMQ_SNDMORE);
        zmq_send(s, b, big, 0);
        char buf[64];
        CHECK(zmq_recv(s, buf, sizeof buf, 0) < 0); /* no reply: dropped */
        zmq_close(s);
        zmq_ctx_term(ctx);
        free(b);
    }
    /* multi-frame garbage from a DEALER: answered with an error, service unharmed */
    {
        void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_DEALER);
        int lin = 0, ms = 5000;
        zmq_setsockopt(s, ZMQ_LINGER, &lin, sizeof lin);
        zmq_setsockopt(s, ZMQ_RCVTIMEO, &ms, sizeof ms);
        zmq_connect(s, g_ep);
        zmq_send(s, "\x01\x02", 2, ZMQ_SNDMORE);
        zmq_send(s, "garbage", 7, ZMQ_SNDMORE);
        zmq_send(s, "\xff\xfe", 2, ZMQ_SNDMORE);
        zmq_send(s, "more", 4, ZMQ_SNDMORE);
        zmq_send(s, "end", 3, 0);
        char buf[1024];
        int n = zmq_recv(s, buf, sizeof buf - 1, 0);
        CHECK(n > 0);
        if (n > 0) {
            buf[n] = 0;
            CHECK_CONTAINS(buf, "bad_request");
        }
        zmq_close(s);
        zmq_ctx_term(ctx);
    }
    /* a client that sends and vanishes before the reply */
    for (int i = 0; i < 5; i++) {
        void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_REQ);
        int lin = 0;
        zmq_setsockopt(s, ZMQ_LINGER, &lin, sizeof lin);
        zmq_connect(s, g_ep);
        zmq_send(s, "{\"op\":\"status\"}", 15, 0);
        zmq_close(s);
        zmq_ctx_term(ctx);
    }
    /* many concurrent clients */
    {
        enum { NT = 16 };
        pthread_t th[NT];
        int ok[NT] = {0};
        for (int i = 0; i < NT; i++) pthread_create(&th[i], NULL, status_client, &ok[i]);
        int total = 0;
        for (int i = 0; i < NT; i++) {
            pthread_join(th[i], NULL);
            total += ok[i];
        }
        CHECK_EQ(total, NT * 10);
    }
    /* a job on a corrupt checkpoint fails with a message naming the file; the next job runs */
    char id1[32], id2[32], job[4 * PATH_MAX];
    snprintf(job, sizeof job, "{\"model\":\"%s/corrupt\",\"out\":\"%s/bad.h5\"}", g_dir, g_dir);
    submit_id(job, id1, sizeof id1);
    snprintf(job, sizeof job, "{\"model\":\"%s/vit-mnist-tiny\",\"out\":\"%s/good.h5\"}", qd_test_models_dir(), g_dir);
    /* the models dir is an allowed root too */
    submit_id(job, id2, sizeof id2);
    CHECK_STREQ(wait_state(id1), "failed");
    snprintf(req, sizeof req, "{\"op\":\"status\",\"id\":\"%s\"}", id1);
    cJSON *r = rpc(req);
    const cJSON *msg = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "job"), "error"), "message");
    CHECK_MSG(cJSON_IsString(msg) && strstr(msg->valuestring, "model.safetensors"), "error should name the file: %s",
              cJSON_IsString(msg) ? msg->valuestring : "(none)");
    cJSON_Delete(r);
    CHECK_STREQ(wait_state(id2), "done");
    snprintf(req, sizeof req, "%s/good.h5", g_dir);
    struct stat st;
    CHECK_EQ(stat(req, &st), 0);

    cJSON *sd = rpc("{\"op\":\"shutdown\"}");
    CHECK(sd && cJSON_IsTrue(cJSON_GetObjectItem(sd, "ok")));
    cJSON_Delete(sd);
    EXPECT_ERR("{\"op\":\"submit\",\"job\":{}}", "missing_field");
    return NULL;
}

int main(int argc, char **argv)
{
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    qd_coll_install_abort_hook();
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (rank == 0) {
        char tmpl[] = "/tmp/qd-hostile-XXXXXX";
        snprintf(g_dir, sizeof g_dir, "%s", mkdtemp(tmpl));
        char p[PATH_MAX + 64];
        snprintf(p, sizeof p, "%s/corrupt", g_dir);
        mkdir(p, 0755);
        snprintf(p, sizeof p, "%s/corrupt/model.safetensors", g_dir);
        FILE *f = fopen(p, "wb");
        fwrite("\xff\xff\xff\xff\x00\x00\x00\x00{\"a\":", 1, 13, f); /* header length lies */
        fclose(f);
        snprintf(p, sizeof p, "%s/exists.h5", g_dir);
        f = fopen(p, "w");
        fclose(f);
        snprintf(g_ep, sizeof g_ep, "ipc://%s/svc.sock", g_dir);
    }
    MPI_Bcast(g_ep, sizeof g_ep, MPI_CHAR, 0, MPI_COMM_WORLD);
    MPI_Bcast(g_dir, sizeof g_dir, MPI_CHAR, 0, MPI_COMM_WORLD);
    char models[PATH_MAX];
    if (!realpath(qd_test_models_dir(), models)) snprintf(models, sizeof models, "%s", qd_test_models_dir());
    qd_service_opts o = {.bind = g_ep, .max_queue = 4, .n_allow = 2};
    o.allow_dirs[0] = g_dir;
    o.allow_dirs[1] = models;
    pthread_t th;
    if (rank == 0) pthread_create(&th, NULL, clients, NULL);
    int rc = qd_service_run(&o, MPI_COMM_WORLD);
    CHECK_EQ(rc, 0);
    if (rank == 0) {
        pthread_join(th, NULL);
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
        if (system(cmd)) {}
    }
    int local = qd_test_failures_, total = 0;
    MPI_Allreduce(&local, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Finalize();
    if (rank == 0) printf("test_service_hostile on %d ranks: %d failures\n", size, total);
    return total ? 1 : 0;
}
