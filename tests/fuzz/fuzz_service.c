/* libFuzzer target: the service's request layer (coordinator/service_req.c) on arbitrary bytes,
 * as a client's message reaches it, against an in-memory job table. The first byte picks the
 * client (no key, one of two keys, an admin key); the rest is the message. Every reply must be a
 * JSON object {"ok": true, ...} or {"ok": false, "error": {"code": <a known code>, "message": <not
 * empty>}}, and a refused request must leave the table as it was. Submissions name paths under a
 * scratch directory made here (the seeds use them: m/ a model directory, o.h5 an output). */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/qd_common.h"
#include "coordinator/service_req.h"

static qd_service_opts g_opt;
static qd_svc g_svc;
static char g_root[PATH_MAX];
static long g_runs;
static int g_home; /* the scratch directory (requests' relative paths resolve there) */
static int g_cwd;  /* libFuzzer's (its corpus and artifacts are relative to it) */

static int known_code(const char *c)
{
    for (int e = QD_SVC_BAD_JSON; e <= QD_SVC_NOT_PERMITTED; e++)
        if (!strcmp(c, qd_svc_err_name((qd_svc_err)e))) return 1;
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char tmpl[] = "/tmp/qd-fuzz-svc-XXXXXX";
    if (!mkdtemp(tmpl) || !realpath(tmpl, g_root)) abort();
    g_cwd = open(".", O_RDONLY | O_DIRECTORY);
    if (g_cwd < 0 || chdir(g_root) || mkdir("m", 0700) || mkdir("d", 0700)) abort();
    FILE *f = fopen("m/config.json", "w");
    if (!f) abort();
    fputs("{\"model_type\": \"vit\"}\n", f);
    fclose(f);
    g_opt.allow_dirs[0] = g_root;
    g_opt.n_allow = 1;
    g_opt.max_queue = 8;
    g_opt.keep_jobs = 100;
    g_opt.events = "inproc://events"; /* events are queued (and dropped below) */
    if (qd_svc_init(&g_svc, &g_opt)) abort();
    g_home = open(".", O_RDONLY | O_DIRECTORY);
    if (g_home < 0 || fchdir(g_cwd)) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static const char *const owners[] = {"", "rq.7GJ+Yc%bN>B0p(4VUk2=Ks!tLwaM9[zE)fPdT",
                                         "A3x<m8R^bq!Lz0cN#Vw5uH2kY.jT1oSgD$eP6fQ"};
    if (size < 1) return 0;
    const char *owner = owners[data[0] % 3];
    int admin = !owner[0] || (data[0] & 4);
    /* a fresh table now and then: accepted jobs would otherwise pile up */
    if (++g_runs % 2000 == 0) {
        qd_svc_free(&g_svc);
        if (qd_svc_init(&g_svc, &g_opt)) abort();
    }
    if (fchdir(g_home)) abort();
    cJSON *reply = qd_svc_request(&g_svc, owner, admin, (const char *)data + 1, size - 1);
    if (!cJSON_IsObject(reply)) abort();
    cJSON *ok = cJSON_GetObjectItemCaseSensitive(reply, "ok");
    if (!cJSON_IsBool(ok)) abort();
    if (cJSON_IsFalse(ok)) {
        cJSON *err = cJSON_GetObjectItemCaseSensitive(reply, "error");
        cJSON *code = cJSON_GetObjectItemCaseSensitive(err, "code");
        cJSON *msg = cJSON_GetObjectItemCaseSensitive(err, "message");
        if (!cJSON_IsString(code) || !known_code(code->valuestring)) abort();
        if (!cJSON_IsString(msg) || !msg->valuestring[0]) abort();
    }
    char *txt = cJSON_PrintUnformatted(reply); /* what goes on the wire */
    if (!txt) abort();
    if (getenv("QD_FUZZ_VERBOSE")) fprintf(stderr, "%s\n", txt); /* to see a seed's reply */
    free(txt);
    cJSON_Delete(reply);
    /* the socket thread would publish these; here they are dropped, and a shutdown undone */
    pthread_mutex_lock(&g_svc.mu);
    for (int i = 0; i < g_svc.nev; i++) free(g_svc.evq[i]);
    g_svc.nev = 0;
    g_svc.shutdown = 0;
    pthread_mutex_unlock(&g_svc.mu);
    /* an output a submission named stays absent: nothing runs here */
    unlink("o.h5");
    if (fchdir(g_cwd)) abort();
    return 0;
}
