/* Request validation for the service (service_proto.h): pure functions of JSON and the file system,
 * no sockets. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "coordinator/job_hooks.h" /* qd_job_config_check_json */
#include "coordinator/service_proto.h"

const char *qd_svc_err_name(qd_svc_err e)
{
    switch (e) {
    case QD_SVC_OK: return "ok";
#define X(n, s) \
    case QD_SVC_##n: return s;
        QD_SVC_ERRORS(X)
#undef X
    }
    return "internal";
}

int qd_svc_path_within(const char *path, const char *root)
{
    size_t n = strlen(root);
    if (n == 1 && root[0] == '/') return path[0] == '/';
    if (strncmp(path, root, n) != 0) return 0;
    return path[n] == '\0' || path[n] == '/';
}

int qd_svc_endpoint_is_loopback(const char *ep)
{
    if (!strncmp(ep, "ipc://", 6) || !strncmp(ep, "inproc://", 9)) return 1;
    if (strncmp(ep, "tcp://", 6) != 0) return 0;
    const char *h = ep + 6;
    if (!strncmp(h, "localhost:", 10)) return 1;
    if (!strncmp(h, "[::1]:", 6)) return 1;
    if (strncmp(h, "127.", 4) != 0) return 0;
    /* 127.a.b.c: digits and dots up to the port */
    int dots = 0;
    for (const char *p = h; *p && *p != ':'; p++) {
        if (*p == '.')
            dots++;
        else if (*p < '0' || *p > '9')
            return 0;
    }
    return dots == 3;
}

static int within_any(const char *real, const char *const *roots, int n)
{
    for (int i = 0; i < n; i++)
        if (qd_svc_path_within(real, roots[i])) return 1;
    return 0;
}

/* Resolve the output path: its directory must exist (realpath), its last component must be a
 * plain name; the result is dir/name. A symlink at the final name is refused (it could point
 * outside the roots). */
static qd_svc_err resolve_out(const char *out, char *res, size_t cap, char *msg, size_t msgcap)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", out) >= (int)sizeof tmp) {
        snprintf(msg, msgcap, "field 'out': path too long");
        return QD_SVC_BAD_REQUEST;
    }
    char *slash = strrchr(tmp, '/');
    const char *dir = ".", *name = tmp;
    if (slash) {
        *slash = 0;
        dir = slash == tmp ? "/" : tmp;
        name = slash + 1;
    }
    if (!*name || !strcmp(name, ".") || !strcmp(name, "..")) {
        snprintf(msg, msgcap, "field 'out': '%s' does not name a file", out);
        return QD_SVC_BAD_REQUEST;
    }
    char rdir[PATH_MAX];
    if (!realpath(dir, rdir)) {
        snprintf(msg, msgcap, "field 'out': directory of '%s' does not exist", out);
        return QD_SVC_NOT_FOUND;
    }
    if (snprintf(res, cap, "%s/%s", strcmp(rdir, "/") ? rdir : "", name) >= (int)cap) {
        snprintf(msg, msgcap, "field 'out': path too long");
        return QD_SVC_BAD_REQUEST;
    }
    struct stat st;
    if (lstat(res, &st) == 0 && S_ISLNK(st.st_mode)) {
        snprintf(msg, msgcap, "field 'out': '%s' is a symbolic link", out);
        return QD_SVC_PATH_NOT_ALLOWED;
    }
    return QD_SVC_OK;
}

qd_svc_err qd_svc_validate_job(cJSON *job, const char *const *allow, int n_allow, char *msg, size_t msgcap)
{
    if (!cJSON_IsObject(job)) {
        snprintf(msg, msgcap, "field 'job' must be an object");
        return QD_SVC_BAD_TYPE;
    }
    cJSON *model = cJSON_GetObjectItemCaseSensitive(job, "model");
    cJSON *out = cJSON_GetObjectItemCaseSensitive(job, "out");
    cJSON *ow = cJSON_GetObjectItemCaseSensitive(job, "overwrite");
    if (!model) {
        snprintf(msg, msgcap, "job: missing field 'model'");
        return QD_SVC_MISSING_FIELD;
    }
    if (!out) {
        snprintf(msg, msgcap, "job: missing field 'out'");
        return QD_SVC_MISSING_FIELD;
    }
    if (!cJSON_IsString(model) || !model->valuestring[0]) {
        snprintf(msg, msgcap, "job: field 'model' must be a non-empty string");
        return QD_SVC_BAD_TYPE;
    }
    if (!cJSON_IsString(out) || !out->valuestring[0]) {
        snprintf(msg, msgcap, "job: field 'out' must be a non-empty string");
        return QD_SVC_BAD_TYPE;
    }
    if (ow && !cJSON_IsBool(ow)) {
        snprintf(msg, msgcap, "job: field 'overwrite' must be true or false");
        return QD_SVC_BAD_TYPE;
    }
    /* the quantization keys are those of a --config file */
    char cmsg[512] = "";
    if (qd_job_config_check_json(job, cmsg, sizeof cmsg) != 0) {
        snprintf(msg, msgcap, "job: %s", cmsg);
        return strstr(cmsg, "unknown key") ? QD_SVC_UNKNOWN_KEY : QD_SVC_BAD_TYPE;
    }

    char given_out[PATH_MAX];
    snprintf(given_out, sizeof given_out, "%s", out->valuestring); /* out is replaced below */
    int overwrite = cJSON_IsTrue(ow);
    qd_svc_err e = qd_svc_confine_job(job, allow, n_allow, msg, msgcap);
    if (e) return e;
    const char *rout = cJSON_GetObjectItemCaseSensitive(job, "out")->valuestring;
    struct stat st;
    if (stat(rout, &st) == 0 && !overwrite) {
        snprintf(msg, msgcap, "job: out '%s' exists (set \"overwrite\": true to replace it)", given_out);
        return QD_SVC_EXISTS;
    }
    return QD_SVC_OK;
}

/* An existing path (model, calib) resolved and inside the roots. */
static qd_svc_err confine_existing(cJSON *job, const char *key, const char *const *allow, int n_allow, char *msg,
                                   size_t msgcap)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(job, key);
    if (!v) return QD_SVC_OK;
    if (!cJSON_IsString(v) || !v->valuestring[0]) {
        snprintf(msg, msgcap, "job: field '%s' must be a non-empty string", key);
        return QD_SVC_BAD_TYPE;
    }
    char real[PATH_MAX];
    if (!realpath(v->valuestring, real)) {
        snprintf(msg, msgcap, "job: %s '%s': %s", key, v->valuestring, strerror(errno));
        return QD_SVC_NOT_FOUND;
    }
    if (!within_any(real, allow, n_allow)) {
        snprintf(msg, msgcap, "job: %s '%s' is outside the allowed directories", key, v->valuestring);
        return QD_SVC_PATH_NOT_ALLOWED;
    }
    cJSON_ReplaceItemInObjectCaseSensitive(job, key, cJSON_CreateString(real));
    return QD_SVC_OK;
}

qd_svc_err qd_svc_confine_job(cJSON *job, const char *const *allow, int n_allow, char *msg, size_t msgcap)
{
    qd_svc_err e = confine_existing(job, "model", allow, n_allow, msg, msgcap);
    if (!e) e = confine_existing(job, "calib", allow, n_allow, msg, msgcap);
    if (e) return e;
    cJSON *out = cJSON_GetObjectItemCaseSensitive(job, "out");
    if (!cJSON_IsString(out) || !out->valuestring[0]) {
        snprintf(msg, msgcap, "job: field 'out' must be a non-empty string");
        return QD_SVC_BAD_TYPE;
    }
    char rout[PATH_MAX];
    e = resolve_out(out->valuestring, rout, sizeof rout, msg, msgcap);
    if (e) return e;
    if (!within_any(rout, allow, n_allow)) {
        snprintf(msg, msgcap, "job: out '%s' is outside the allowed directories", out->valuestring);
        return QD_SVC_PATH_NOT_ALLOWED;
    }
    cJSON_ReplaceItemInObjectCaseSensitive(job, "out", cJSON_CreateString(rout));
    return QD_SVC_OK;
}
