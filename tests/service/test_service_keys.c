/* A CURVE service where keys identify clients: a client sees, cancels and finds by token only the
 * jobs submitted with its own key; an admin key sees everything, may shut the service down and
 * may subscribe to the events, which other keys may not; a key outside --curve-clients and a
 * client without CURVE get no answer at all. Also the key-file reader and the ZAP decision. */
#include <ctype.h>
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

typedef struct {
    char pub[41], sec[41];
} keypair;

static char g_ep[PATH_MAX + 32], g_ev[PATH_MAX + 32], g_dir[PATH_MAX];
static keypair g_srv, g_a, g_b, g_admin, g_stranger;

/* One round trip with key k (NULL: no CURVE); NULL when no reply comes within ms. */
static cJSON *rpc(const keypair *k, const char *req, int ms)
{
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_REQ);
    int lin = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &lin, sizeof lin);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &ms, sizeof ms);
    if (k) {
        zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, g_srv.pub, 41);
        zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, k->pub, 41);
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, k->sec, 41);
    }
    zmq_connect(s, g_ep);
    cJSON *r = NULL;
    if (zmq_send(s, req, strlen(req), 0) >= 0) {
        char buf[1 << 16];
        int n = zmq_recv(s, buf, sizeof buf - 1, 0);
        if (n >= 0) r = cJSON_ParseWithLength(buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
    }
    zmq_close(s);
    zmq_ctx_term(ctx);
    return r;
}

static const char *code_of(const cJSON *r)
{
    const cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "error"), "code");
    return cJSON_IsTrue(cJSON_GetObjectItem(r, "ok")) ? "ok" : cJSON_IsString(c) ? c->valuestring : "(no reply)";
}

/* The reply's code ("ok" or the error code) for key k. */
static const char *ask(const keypair *k, const char *req)
{
    static char code[64];
    cJSON *r = rpc(k, req, 10000);
    snprintf(code, sizeof code, "%s", r ? code_of(r) : "(no reply)");
    cJSON_Delete(r);
    return code;
}

static int n_jobs(const keypair *k)
{
    cJSON *r = rpc(k, "{\"op\":\"status\"}", 10000);
    int n = cJSON_GetArraySize(cJSON_GetObjectItem(r, "jobs"));
    cJSON_Delete(r);
    return n;
}

static void submit(const keypair *k, const char *token, char id[32])
{
    /* the key's first characters name the output; Z85 has '/', '.', ':' and others a file name
     * must not carry (a '/' made a directory that does not exist: "not_found") */
    char tag[9];
    for (int i = 0; i < 8; i++) tag[i] = isalnum((unsigned char)k->pub[i]) ? k->pub[i] : '_';
    tag[8] = 0;
    char req[4 * PATH_MAX];
    snprintf(req, sizeof req,
             "{\"op\":\"submit\",\"token\":\"%s\",\"job\":{\"model\":\"%s/corrupt\",\"out\":\"%s/%s-%s.h5\"}}", token,
             g_dir, g_dir, token, tag);
    cJSON *r = rpc(k, req, 10000);
    const cJSON *jid = cJSON_GetObjectItem(r, "id");
    CHECK_MSG(cJSON_IsString(jid), "submit: %s", r ? code_of(r) : "(no reply)");
    snprintf(id, 32, "%s", cJSON_IsString(jid) ? jid->valuestring : "?");
    cJSON_Delete(r);
}

/* A subscriber with key k: how many events arrive while a job is submitted. */
static int events_seen(const keypair *k)
{
    void *ctx = zmq_ctx_new(), *sub = zmq_socket(ctx, ZMQ_SUB);
    int lin = 0, ms = 200;
    zmq_setsockopt(sub, ZMQ_LINGER, &lin, sizeof lin);
    zmq_setsockopt(sub, ZMQ_RCVTIMEO, &ms, sizeof ms);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    zmq_setsockopt(sub, ZMQ_CURVE_SERVERKEY, g_srv.pub, 41);
    zmq_setsockopt(sub, ZMQ_CURVE_PUBLICKEY, k->pub, 41);
    zmq_setsockopt(sub, ZMQ_CURVE_SECRETKEY, k->sec, 41);
    zmq_connect(sub, g_ev);
    usleep(500000); /* the handshake and the subscription */
    char id[32];
    submit(&g_admin, k == &g_admin ? "ev-admin" : "ev-other", id);
    int n = 0;
    char buf[4096];
    for (int i = 0; i < 10; i++)
        if (zmq_recv(sub, buf, sizeof buf, 0) >= 0) n++;
    zmq_close(sub);
    zmq_ctx_term(ctx);
    return n;
}

static void *clients(void *arg)
{
    (void)arg;
    char a1[32], b1[32], req[256];
    submit(&g_a, "t1", a1);
    snprintf(req, sizeof req, "{\"op\":\"status\",\"id\":\"%s\"}", a1);
    CHECK_STREQ(ask(&g_a, req), "ok");
    CHECK_STREQ(ask(&g_b, req), "not_found"); /* B cannot read A's job */
    CHECK_STREQ(ask(&g_admin, req), "ok");
    snprintf(req, sizeof req, "{\"op\":\"cancel\",\"id\":\"%s\"}", a1);
    CHECK_STREQ(ask(&g_b, req), "not_found"); /* nor cancel it */
    CHECK(strcmp(ask(&g_a, req), "not_found") != 0);
    /* the same token from another key is another job; from the same key, the same job */
    submit(&g_b, "t1", b1);
    CHECK(strcmp(a1, b1) != 0);
    char a1again[32];
    submit(&g_a, "t1", a1again);
    CHECK_STREQ(a1again, a1);
    /* listings: each key its own, the admin all */
    CHECK_EQ(n_jobs(&g_a), 1);
    CHECK_EQ(n_jobs(&g_b), 1);
    CHECK_EQ(n_jobs(&g_admin), 2);
    /* a key outside --curve-clients, and a client without CURVE: no answer at all */
    CHECK(rpc(&g_stranger, "{\"op\":\"status\"}", 1500) == NULL);
    CHECK(rpc(NULL, "{\"op\":\"status\"}", 1500) == NULL);
    /* events: the admin's subscription receives them, a client's does not */
    CHECK_GT(events_seen(&g_admin), 0);
    CHECK_EQ(events_seen(&g_b), 0);
    /* only an admin may stop the service */
    CHECK_STREQ(ask(&g_a, "{\"op\":\"shutdown\"}"), "not_permitted");
    CHECK_STREQ(ask(&g_admin, "{\"op\":\"shutdown\"}"), "ok");
    return NULL;
}

static void write_keys(const char *name, const keypair *const *k, int n)
{
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    FILE *f = fopen(p, "w");
    fprintf(f, "# keys\n\n");
    for (int i = 0; i < n; i++) fprintf(f, "  %s\n", k[i]->pub);
    fclose(f);
}

static void key_files(void)
{
    qd_svc_keys k = {0};
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/clients", g_dir);
    CHECK_EQ(qd_svc_keys_read(&k, p), 0);
    CHECK_EQ(k.n, 2);
    CHECK(qd_svc_keys_has(&k, g_a.pub) && qd_svc_keys_has(&k, g_b.pub) && !qd_svc_keys_has(&k, g_admin.pub));
    snprintf(p, sizeof p, "%s/badkeys", g_dir);
    FILE *f = fopen(p, "w");
    fprintf(f, "%s\nshort\n", g_a.pub);
    fclose(f);
    CHECK_EQ(qd_svc_keys_read(&k, p), QD_EFORMAT);
    CHECK_CONTAINS(qd_errmsg(), "badkeys:2");
    qd_svc_keys_free(&k);

    /* the ZAP decision */
    qd_svc_auth a = {0};
    snprintf(p, sizeof p, "%s/clients", g_dir);
    qd_svc_keys_read(&a.clients, p);
    snprintf(p, sizeof p, "%s/admins", g_dir);
    qd_svc_keys_read(&a.admins, p);
    unsigned char raw[32];
    char uid[41];
    zmq_z85_decode(raw, g_a.pub);
    CHECK_EQ(qd_svc_auth_decide(&a, QD_SVC_ZAP_REQUESTS, "CURVE", raw, 32, uid), 1);
    CHECK_STREQ(uid, g_a.pub);
    CHECK_EQ(qd_svc_auth_decide(&a, QD_SVC_ZAP_EVENTS, "CURVE", raw, 32, uid), 0);
    CHECK_EQ(qd_svc_auth_decide(&a, QD_SVC_ZAP_REQUESTS, "PLAIN", raw, 32, uid), 0);
    CHECK_EQ(qd_svc_auth_decide(&a, QD_SVC_ZAP_REQUESTS, "CURVE", raw, 31, uid), 0);
    CHECK_EQ(qd_svc_auth_decide(&a, "other", "CURVE", raw, 32, uid), 0);
    zmq_z85_decode(raw, g_admin.pub);
    CHECK_EQ(qd_svc_auth_decide(&a, QD_SVC_ZAP_EVENTS, "CURVE", raw, 32, uid), 1);
    zmq_z85_decode(raw, g_stranger.pub);
    CHECK_EQ(qd_svc_auth_decide(&a, QD_SVC_ZAP_REQUESTS, "CURVE", raw, 32, uid), 0);
    qd_svc_keys_free(&a.clients);
    CHECK_EQ(qd_svc_auth_decide(&a, QD_SVC_ZAP_REQUESTS, "CURVE", raw, 32, uid), 1); /* no list: any key */
    qd_svc_keys_free(&a.admins);
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
    keypair *all[] = {&g_srv, &g_a, &g_b, &g_admin, &g_stranger};
    if (rank == 0) {
        char tmpl[] = "/tmp/qd-keys-XXXXXX";
        snprintf(g_dir, sizeof g_dir, "%s", mkdtemp(tmpl));
        for (int i = 0; i < 5; i++) CHECK_EQ(zmq_curve_keypair(all[i]->pub, all[i]->sec), 0);
        char p[PATH_MAX + 64];
        snprintf(p, sizeof p, "%s/corrupt", g_dir);
        mkdir(p, 0755);
        snprintf(p, sizeof p, "%s/corrupt/model.safetensors", g_dir);
        FILE *f = fopen(p, "wb");
        fwrite("\xff\xff\xff\xff\x00\x00\x00\x00{\"a\":", 1, 13, f);
        fclose(f);
        snprintf(p, sizeof p, "%s/server.key", g_dir);
        f = fopen(p, "w");
        fprintf(f, "%s\n", g_srv.sec);
        fclose(f);
        const keypair *cl[] = {&g_a, &g_b}, *ad[] = {&g_admin};
        write_keys("clients", cl, 2);
        write_keys("admins", ad, 1);
        snprintf(g_ep, sizeof g_ep, "ipc://%s/svc.sock", g_dir);
        snprintf(g_ev, sizeof g_ev, "ipc://%s/ev.sock", g_dir);
        key_files();
    }
    MPI_Bcast(g_ep, sizeof g_ep, MPI_CHAR, 0, MPI_COMM_WORLD);
    MPI_Bcast(g_ev, sizeof g_ev, MPI_CHAR, 0, MPI_COMM_WORLD);
    MPI_Bcast(g_dir, sizeof g_dir, MPI_CHAR, 0, MPI_COMM_WORLD);
    char keyfile[PATH_MAX + 64], p[PATH_MAX + 64];
    snprintf(keyfile, sizeof keyfile, "%s/server.key", g_dir);
    qd_service_opts o = {.bind = g_ep, .events = g_ev, .max_queue = 8, .n_allow = 1, .curve_secret_file = keyfile};
    o.allow_dirs[0] = g_dir;
    if (rank == 0) {
        snprintf(p, sizeof p, "%s/clients", g_dir);
        CHECK_EQ(qd_svc_keys_read(&o.auth.clients, p), 0);
        snprintf(p, sizeof p, "%s/admins", g_dir);
        CHECK_EQ(qd_svc_keys_read(&o.auth.admins, p), 0);
    }
    pthread_t th;
    if (rank == 0) pthread_create(&th, NULL, clients, NULL);
    int rc = qd_service_run(&o, MPI_COMM_WORLD);
    CHECK_EQ(rc, 0);
    if (rank == 0) {
        pthread_join(th, NULL);
        qd_svc_keys_free(&o.auth.clients);
        qd_svc_keys_free(&o.auth.admins);
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
        if (system(cmd)) {}
    }
    int local = qd_test_failures_, total = 0;
    MPI_Allreduce(&local, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Finalize();
    if (rank == 0) printf("test_service_keys on %d ranks: %d failures\n", size, total);
    return total ? 1 : 0;
}
