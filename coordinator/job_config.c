/* Job options from the command line and from JSON (--config files, service submissions). */
#include "coordinator/job_config.h"

#include <stdlib.h>
#include <string.h>

static int set_err(char *msg, size_t cap, const char *fmt, const char *a, const char *b) {
    snprintf(msg, cap, fmt, a, b);
    return -1;
}

int qd_job_config_set(qd_job_config *c, const char *key, const char *val, char *msg, size_t cap) {
    char *end;
    if (!strcmp(key, "method")) {
        if (!strcmp(val, "rtn")) c->method = QD_METHOD_RTN;
        else return set_err(msg, cap, "'%s': method '%s' is not available (rtn)", key, val);
    } else if (!strcmp(key, "bits")) {
        long b = strtol(val, &end, 10);
        if (*end || !qd_valid_bits((int)b)) return set_err(msg, cap, "'%s' must be 2..8, got '%s'", key, val);
        c->scheme.bits = (int)b;
    } else if (!strcmp(key, "granularity")) {
        if (!strcmp(val, "tensor")) c->scheme.gran = QD_GRAN_TENSOR;
        else if (!strcmp(val, "channel")) c->scheme.gran = QD_GRAN_CHANNEL;
        else if (!strcmp(val, "group")) c->scheme.gran = QD_GRAN_GROUP;
        else return set_err(msg, cap, "'%s' must be tensor, channel or group, got '%s'", key, val);
    } else if (!strcmp(key, "group_size")) {
        long g = strtol(val, &end, 10);
        if (*end || g < 1) return set_err(msg, cap, "'%s' must be a positive integer, got '%s'", key, val);
        c->scheme.group_size = g;
        c->scheme.gran = QD_GRAN_GROUP;
    } else if (!strcmp(key, "clip")) {
        if (!strcmp(val, "minmax")) c->clip_mse = 0;
        else if (!strcmp(val, "mse")) c->clip_mse = 1;
        else return set_err(msg, cap, "'%s' must be minmax or mse, got '%s'", key, val);
    } else if (!strcmp(key, "shard")) {
        if (!strcmp(val, "tensor") || !strcmp(val, "rows")) c->shard = QD_SHARD_TENSOR;
        else if (!strcmp(val, "layer")) c->shard = QD_SHARD_LAYER;
        else return set_err(msg, cap, "'%s' must be layer, tensor or rows, got '%s'", key, val);
    } else
        return set_err(msg, cap, "unknown key '%s'%s", key, "");
    return 0;
}

static const char *k_bools[] = {"sym", "include_embeddings", "include_head", "overwrite", "resume", NULL};
static const char *k_strings[] = {"method", "granularity", "clip", "shard", "model", "out", NULL};
static const char *k_ints[] = {"bits", "group_size", NULL};

static int in_list(const char *k, const char **l) {
    for (; *l; l++)
        if (!strcmp(k, *l)) return 1;
    return 0;
}

/* "overrides": [{"pattern": GLOB, "skip": bool, "bits": int, "granularity": str, "group_size": int,
 *                "sym": bool, "clip": str}, ...] */
static int parse_overrides(qd_job_config *c, const cJSON *arr, char *msg, size_t cap) {
    if (!cJSON_IsArray(arr)) return set_err(msg, cap, "key '%s' must be an array of objects%s", "overrides", "");
    c->n_overrides = 0;
    int idx = 0;
    for (const cJSON *e = arr->child; e; e = e->next, idx++) {
        char where[64];
        snprintf(where, sizeof where, "overrides[%d]", idx);
        if (!cJSON_IsObject(e)) return set_err(msg, cap, "%s must be an object%s", where, "");
        if (c->n_overrides == QD_MAX_OVERRIDES) return set_err(msg, cap, "%s: at most 32 overrides%s", where, "");
        qd_override *v = &c->overrides[c->n_overrides];
        memset(v, 0, sizeof *v);
        v->bits = v->sym = v->clip_mse = v->gran = -1;
        v->group_size = -1;
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(e, "pattern");
        if (!cJSON_IsString(pat) || !pat->valuestring[0] || strlen(pat->valuestring) >= sizeof v->pattern)
            return set_err(msg, cap, "%s: 'pattern' must be a non-empty string (a glob on tensor names)%s", where, "");
        snprintf(v->pattern, sizeof v->pattern, "%s", pat->valuestring);
        for (const cJSON *it = e->child; it; it = it->next) {
            const char *k = it->string ? it->string : "";
            char sub[600];
            if (!strcmp(k, "pattern")) continue;
            if (!strcmp(k, "skip") || !strcmp(k, "sym")) {
                if (!cJSON_IsBool(it)) return set_err(msg, cap, "%s: '%s' must be true or false", where, k);
                if (!strcmp(k, "skip")) v->skip = cJSON_IsTrue(it);
                else v->sym = cJSON_IsTrue(it);
            } else if (!strcmp(k, "bits") || !strcmp(k, "group_size")) {
                if (!cJSON_IsNumber(it) || it->valuedouble != (double)(long)it->valuedouble)
                    return set_err(msg, cap, "%s: '%s' must be an integer", where, k);
                long val = (long)it->valuedouble;
                if (!strcmp(k, "bits")) {
                    if (!qd_valid_bits((int)val)) return set_err(msg, cap, "%s: '%s' must be 2..8", where, k);
                    v->bits = (int)val;
                } else {
                    if (val < 1) return set_err(msg, cap, "%s: '%s' must be positive", where, k);
                    v->group_size = val;
                }
            } else if (!strcmp(k, "granularity") || !strcmp(k, "clip")) {
                if (!cJSON_IsString(it)) return set_err(msg, cap, "%s: '%s' must be a string", where, k);
                qd_job_config tmp = *c;
                if (qd_job_config_set(&tmp, k, it->valuestring, sub, sizeof sub)) return set_err(msg, cap, "%s: %s", where, sub);
                if (!strcmp(k, "clip")) v->clip_mse = tmp.clip_mse;
                else v->gran = (int)tmp.scheme.gran;
            } else
                return set_err(msg, cap, "%s: unknown key '%s'", where, k);
        }
        c->n_overrides++;
    }
    return 0;
}

int qd_job_config_from_json(qd_job_config *c, const cJSON *o, int allow_paths, char *msg, size_t cap) {
    if (!cJSON_IsObject(o)) {
        snprintf(msg, cap, "the job configuration must be a JSON object");
        return -1;
    }
    for (const cJSON *it = o->child; it; it = it->next) {
        const char *k = it->string ? it->string : "";
        for (const cJSON *b = it->next; b; b = b->next)
            if (b->string && !strcmp(b->string, k)) return set_err(msg, cap, "duplicate key '%s'%s", k, "");
        if (!strcmp(k, "overrides")) {
            if (parse_overrides(c, it, msg, cap)) return -1;
        } else if (in_list(k, k_bools)) {
            if (!cJSON_IsBool(it)) return set_err(msg, cap, "key '%s' must be true or false%s", k, "");
            int v = cJSON_IsTrue(it);
            if (!strcmp(k, "sym")) c->scheme.sym = v;
            else if (!strcmp(k, "include_embeddings")) c->include_embeddings = v;
            else if (!strcmp(k, "include_head")) c->include_head = v;
            else if (!allow_paths) return set_err(msg, cap, "unknown key '%s'%s", k, "");
            else if (!strcmp(k, "overwrite")) c->overwrite = v;
            else c->resume = v;
        } else if (in_list(k, k_ints)) {
            if (!cJSON_IsNumber(it) || it->valuedouble != (double)(long)it->valuedouble)
                return set_err(msg, cap, "key '%s' must be an integer%s", k, "");
            char v[32];
            snprintf(v, sizeof v, "%ld", (long)it->valuedouble);
            if (qd_job_config_set(c, k, v, msg, cap)) return -1;
        } else if (in_list(k, k_strings)) {
            if (!cJSON_IsString(it)) return set_err(msg, cap, "key '%s' must be a string%s", k, "");
            if (!strcmp(k, "model") || !strcmp(k, "out")) {
                if (!allow_paths) return set_err(msg, cap, "unknown key '%s'%s", k, "");
                if (!strcmp(k, "model")) c->model = it->valuestring;
                else c->out = it->valuestring;
            } else if (qd_job_config_set(c, k, it->valuestring, msg, cap))
                return -1;
        } else
            return set_err(msg, cap, "unknown key '%s'%s", k, "");
    }
    return 0;
}

/* ---- the bridge used by the service (coordinator/job_hooks.h) ---------------------------- */

int qd_job_config_check_json(const cJSON *job, char *msg, size_t msgcap) {
    qd_job_config c;
    qd_job_config_default(&c);
    return qd_job_config_from_json(&c, job, 1, msg, msgcap);
}

int qd_job_run_json(const cJSON *job, MPI_Comm comm, const qd_job_hooks *hooks) {
    qd_job_config c;
    qd_job_config_default(&c);
    c.quiet = 1;
    char msg[512];
    if (qd_job_config_from_json(&c, job, 1, msg, sizeof msg)) return qd_err_set(QD_ECONFIG, "%s", msg);
    if (!c.model || !c.out) return qd_err_set(QD_ECONFIG, "the job needs 'model' and 'out'");
    return qd_job_run(&c, comm, hooks);
}
