/* Job options from the command line and from JSON (--config files, service submissions). */
#include "coordinator/job_config.h"
#include "quant/actq.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "worker/calib_run.h"

/* quantize's modes and calibrate's are the same two ways of sharing calibration over ranks */
_Static_assert((int)QD_CALIB_SEQUENTIAL == (int)QD_CALIB_DATA_PARALLEL && (int)QD_CALIB_FP == (int)QD_CALIB_PIPELINE,
               "calibration mode numbers differ between quantize and calibrate");

static int set_err(char *msg, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int set_err(char *msg, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
    return -1;
}

static int parse_bits(const char *key, const char *val, int *out, char *msg, size_t cap)
{
    char *end;
    long b = strtol(val, &end, 10);
    if (!*val || *end || !qd_valid_bits((int)b)) return set_err(msg, cap, "'%s' must be 2..8, got '%s'", key, val);
    *out = (int)b;
    return 0;
}

static int parse_gran(const char *key, const char *val, int *out, char *msg, size_t cap)
{
    if (!strcmp(val, "tensor"))
        *out = QD_GRAN_TENSOR;
    else if (!strcmp(val, "channel"))
        *out = QD_GRAN_CHANNEL;
    else if (!strcmp(val, "group"))
        *out = QD_GRAN_GROUP;
    else
        return set_err(msg, cap, "'%s' must be tensor, channel or group, got '%s'", key, val);
    return 0;
}

static int parse_group(const char *key, const char *val, int64_t *out, char *msg, size_t cap)
{
    char *end;
    long long g = strtoll(val, &end, 10);
    if (!*val || *end || g < 1) return set_err(msg, cap, "'%s' must be a positive integer, got '%s'", key, val);
    *out = g;
    return 0;
}

static int parse_clip(const char *key, const char *val, int *out, char *msg, size_t cap)
{
    if (!strcmp(val, "minmax"))
        *out = 0;
    else if (!strcmp(val, "mse"))
        *out = 1;
    else
        return set_err(msg, cap, "'%s' must be minmax or mse, got '%s'", key, val);
    return 0;
}

static int parse_method(const char *key, const char *val, int *out, char *msg, size_t cap)
{
    qd_method m;
    if (qd_method_from_name(val, &m))
        return set_err(msg, cap, "'%s' must be rtn, gptq, adaround or kmeans, got '%s'", key, val);
    *out = (int)m;
    return 0;
}

static int add_pattern(char dst[QD_PATTERN_MAX], const char *key, const char *val, char *msg, size_t cap)
{
    if (!*val || strlen(val) >= QD_PATTERN_MAX)
        return set_err(msg, cap, "'%s' must be a glob pattern of 1..%d characters", key, QD_PATTERN_MAX - 1);
    snprintf(dst, QD_PATTERN_MAX, "%s", val);
    return 0;
}

/* One branch per configuration key, each with its own range and message (long: a flat list of keys;
 * the option parser and the --config reader share it). */
int qd_job_config_set(qd_job_config *c, const char *key, const char *val, char *msg, size_t cap)
{
    int v = 0;
    if (!strcmp(key, "method")) {
        if (parse_method(key, val, &v, msg, cap)) return -1;
        c->method = (qd_method)v;
    } else if (!strcmp(key, "bits")) {
        if (parse_bits(key, val, &c->scheme.bits, msg, cap)) return -1;
    } else if (!strcmp(key, "granularity")) {
        if (parse_gran(key, val, &v, msg, cap)) return -1;
        c->scheme.gran = (qd_granularity)v;
    } else if (!strcmp(key, "group_size")) {
        if (parse_group(key, val, &c->scheme.group_size, msg, cap)) return -1;
        c->scheme.gran = QD_GRAN_GROUP;
    } else if (!strcmp(key, "clip")) {
        if (parse_clip(key, val, &c->clip_mse, msg, cap)) return -1;
    } else if (!strcmp(key, "scales")) {
        if (strcmp(val, "float32") && strcmp(val, "float16"))
            return set_err(msg, cap, "'%s' must be float32 or float16, got '%s'", key, val);
        c->scheme.scale_f16 = !strcmp(val, "float16");
    } else if (!strcmp(key, "shard")) {
        if (!strcmp(val, "tensor"))
            c->shard = QD_SHARD_TENSOR;
        else if (!strcmp(val, "layer"))
            c->shard = QD_SHARD_LAYER;
        else if (!strcmp(val, "rows"))
            c->shard = QD_SHARD_ROWS;
        else
            return set_err(msg, cap, "'%s' must be layer, tensor or rows, got '%s'", key, val);
    } else if (!strcmp(key, "include")) {
        if (c->n_include >= QD_MAX_PATTERNS)
            return set_err(msg, cap, "'%s': at most %d patterns", key, QD_MAX_PATTERNS);
        if (add_pattern(c->include[c->n_include], key, val, msg, cap)) return -1;
        c->n_include++;
    } else if (!strcmp(key, "progress")) {
        if (!strcmp(val, "bar"))
            c->progress = QD_PROGRESS_BAR;
        else if (!strcmp(val, "lines"))
            c->progress = QD_PROGRESS_LINES;
        else if (!strcmp(val, "none"))
            c->progress = QD_PROGRESS_NONE;
        else if (!strcmp(val, "auto"))
            c->progress = QD_PROGRESS_AUTO;
        else
            return set_err(msg, cap, "'%s' must be auto, bar, lines or none, got '%s'", key, val);
    } else if (!strcmp(key, "calib")) {
        if (!*val) return set_err(msg, cap, "'%s' must be a path", key);
        c->calib = val;
    } else if (!strcmp(key, "nsamples") || !strcmp(key, "seqlen") || !strcmp(key, "calib_seed") ||
               !strcmp(key, "microbatch") || !strcmp(key, "block_size")) {
        char *end;
        long long x = strtoll(val, &end, 10);
        long long lo = !strcmp(key, "seqlen") ? 3 : !strcmp(key, "microbatch") || !strcmp(key, "block_size") ? 1 : 0;
        if (!*val || *end || x < lo || x > (1 << 30))
            return set_err(msg, cap, "'%s' must be an integer >= %lld, got '%s'", key, lo, val);
        if (key[0] == 'n')
            c->nsamples = (int)x;
        else if (key[0] == 's')
            c->seqlen = (int)x;
        else if (key[0] == 'c')
            c->calib_seed = (int)x;
        else if (key[0] == 'm')
            c->microbatch = (int)x;
        else
            c->block_size = (int)x;
    } else if (!strcmp(key, "smooth")) {
        char *end;
        double d = strtod(val, &end);
        if (!*val || *end || !(d > 0 && d <= 1))
            return set_err(msg, cap, "'%s' (SmoothQuant alpha) must be a number in (0, 1], got '%s'", key, val);
        c->smooth = d;
    } else if (!strcmp(key, "damp")) {
        char *end;
        double d = strtod(val, &end);
        if (!*val || *end || !(d > 0 && d < 1))
            return set_err(msg, cap, "'%s' must be a number in (0, 1), got '%s'", key, val);
        c->damp = d;
    } else if (!strcmp(key, "adaround_iters")) {
        char *end;
        long long x = strtoll(val, &end, 10);
        if (!*val || *end || x < 1 || x > 100000000)
            return set_err(msg, cap, "'%s' must be a positive integer, got '%s'", key, val);
        c->ada_iters = (int)x;
    } else if (!strcmp(key, "adaround_batch")) {
        char *end;
        long long x = strtoll(val, &end, 10);
        if (!*val || *end || x < 0 || x > (1 << 30))
            return set_err(msg, cap,
                           "'%s' must be an integer >= 0 (calibration rows per step; 0: the Hessian form), got '%s'",
                           key, val);
        c->ada_batch = (int)x;
    } else if (!strcmp(key, "adaround_lambda") || !strcmp(key, "adaround_warmup") || !strcmp(key, "adaround_lr")) {
        char *end;
        double d = strtod(val, &end);
        int ok = *val && !*end && d >= 0 && d < 1e6;
        if (key[9] == 'w') ok = ok && d < 1;
        if (key[9] == 'l' && key[10] == 'r') ok = ok && d > 0;
        if (!ok) return set_err(msg, cap, "'%s': bad value '%s' (lambda >= 0, warmup in [0, 1), lr > 0)", key, val);
        if (key[9] == 'w')
            c->ada_warmup = d;
        else if (key[10] == 'r')
            c->ada_lr = d;
        else
            c->ada_lambda = d;
    } else if (!strcmp(key, "adaround_beta")) {
        double a, b;
        char tail;
        if (sscanf(val, "%lf,%lf%c", &a, &b, &tail) != 2 || !(a > 0) || !(b > 0))
            return set_err(msg, cap, "'%s' must be START,END (two positive numbers), got '%s'", key, val);
        c->ada_beta_start = a;
        c->ada_beta_end = b;
    } else if (!strcmp(key, "mem_per_rank")) { /* bytes, or with a K, M, G or T suffix (powers of 1024) */
        char *end;
        double d = strtod(val, &end);
        static const char suf[] = "KMGT";
        const char *u = *end ? strchr(suf, *end) : NULL;
        if (u && *u) {
            for (const char *k = suf; k <= u; k++) d *= 1024.0;
            end++;
        }
        if (!*val || *end || !(d > 0))
            return set_err(msg, cap, "'%s' must be a size such as 6G or 5500M, got '%s'", key, val);
        c->mem_per_rank = d;
    } else if (!strcmp(key, "activations")) {
        if (!strcmp(val, "static"))
            c->act_static = 1;
        else if (!strcmp(val, "none") || !strcmp(val, "dynamic"))
            c->act_static = 0;
        else
            return set_err(msg, cap, "'%s' must be static or none, got '%s'", key, val);
    } else if (!strcmp(key, "act_bits")) {
        if (parse_bits(key, val, &c->act_bits, msg, cap)) return -1;
    } else if (!strcmp(key, "act_calib")) {
        qd_actq_method m;
        if (qd_actq_method_from_name(val, &m))
            return set_err(msg, cap, "'%s' must be minmax, percentile, mse or entropy, got '%s'", key, val);
        c->act_calib = (int)m;
    } else if (!strcmp(key, "act_outliers")) {
        char *end;
        double d = strtod(val, &end);
        if (!*val || *end || !(d >= 0 && d < 1e6))
            return set_err(msg, cap, "'%s' must be a number >= 0 (0: no outlier channels), got '%s'", key, val);
        c->act_outliers = d;
    } else if (!strcmp(key, "act_percentile")) {
        char *end;
        double d = strtod(val, &end);
        if (!*val || *end || !(d > 50 && d <= 100))
            return set_err(msg, cap, "'%s' must be a number in (50, 100], got '%s'", key, val);
        c->act_percentile = d;
    } else if (!strcmp(key, "kmeans_seed") || !strcmp(key, "kmeans_iters")) {
        char *end;
        long long x = strtoll(val, &end, 10);
        long long lo = key[7] == 'i' ? 1 : 0;
        if (!*val || *end || x < lo || x > (1 << 30))
            return set_err(msg, cap, "'%s' must be an integer >= %lld, got '%s'", key, lo, val);
        if (key[7] == 'i')
            c->kmeans_iters = (int)x;
        else
            c->kmeans_seed = (int)x;
    } else if (!strcmp(key, "kmeans_init")) {
        if (!strcmp(val, "kmeans++"))
            c->kmeans_init = QD_KMEANS_PLUSPLUS;
        else if (!strcmp(val, "linear"))
            c->kmeans_init = QD_KMEANS_LINEAR;
        else
            return set_err(msg, cap, "'%s' must be kmeans++ or linear, got '%s'", key, val);
    } else if (!strcmp(key, "calib_mode")) {
        int m = qd_calib_mode_from_name(val);
        if (m < 0)
            return set_err(msg, cap, "'%s' must be data or pipeline (or their old names sequential, fp), got '%s'", key,
                           val);
        c->calib_mode = m;
    } else if (!strcmp(key, "sparsity")) {
        if (qd_sparsity_parse(val, &c->sparsity)) return set_err(msg, cap, "%s", qd_errmsg());
    } else if (!strcmp(key, "prune")) {
        int m = qd_prune_method_parse(val);
        if (m < 0) return set_err(msg, cap, "'%s' must be sparsegpt, magnitude or wanda, got '%s'", key, val);
        c->prune = m;
    } else
        return set_err(msg, cap, "unknown key '%s'", key);
    return 0;
}

static const char *k_bools[] = {
    "sym",    "include_embeddings", "include_head",    "act_order", "static_groups", "overwrite",
    "resume", "prune_only",         "kmeans_weighted", NULL};
static const char *k_strings[] = {"method",        "granularity", "clip",        "shard",    "calib", "calib_mode",
                                  "adaround_beta", "model",       "out",         "sparsity", "prune", "mem_per_rank",
                                  "activations",   "act_calib",   "kmeans_init", "scales",   NULL};
static const char *k_ints[] = {
    "bits",           "group_size",     "nsamples", "seqlen",      "calib_seed",   "microbatch", "block_size",
    "adaround_iters", "adaround_batch", "act_bits", "kmeans_seed", "kmeans_iters", NULL};

static int in_list(const char *k, const char **l)
{
    for (; *l; l++)
        if (!strcmp(k, *l)) return 1;
    return 0;
}

static int dup_key(const cJSON *it, char *msg, size_t cap, const char *where)
{
    for (const cJSON *b = it->next; b; b = b->next)
        if (b->string && it->string && !strcmp(b->string, it->string))
            return set_err(msg, cap, "duplicate key '%s%s'", where, it->string);
    return 0;
}

static int json_int(const cJSON *it, const char *name, long long *out, char *msg, size_t cap)
{
    if (!cJSON_IsNumber(it) || it->valuedouble != (double)(long long)it->valuedouble)
        return set_err(msg, cap, "key '%s' must be an integer", name);
    *out = (long long)it->valuedouble;
    return 0;
}

/* one element of "overrides" */
static int parse_override(qd_override *v, const cJSON *o, int idx, char *msg, size_t cap)
{
    char name[96], where[32];
    snprintf(where, sizeof where, "overrides[%d]", idx);
    memset(v, 0, sizeof *v);
    v->method = v->bits = v->sym = v->clip_mse = v->gran = -1;
    v->group_size = -1;
    if (!cJSON_IsObject(o)) return set_err(msg, cap, "overrides[%d] must be an object", idx);
    for (const cJSON *it = o->child; it; it = it->next) {
        const char *k = it->string ? it->string : "";
        snprintf(name, sizeof name, "overrides[%d].%s", idx, k);
        if (dup_key(it, msg, cap, "overrides[].")) return -1;
        if (!strcmp(k, "pattern")) {
            if (!cJSON_IsString(it)) return set_err(msg, cap, "key '%s' must be a string", name);
            if (add_pattern(v->pattern, name, it->valuestring, msg, cap)) return -1;
        } else if (!strcmp(k, "skip") || !strcmp(k, "sym")) {
            if (!cJSON_IsBool(it)) return set_err(msg, cap, "key '%s' must be true or false", name);
            if (k[1] == 'k')
                v->skip = cJSON_IsTrue(it);
            else
                v->sym = cJSON_IsTrue(it);
        } else if (!strcmp(k, "bits") || !strcmp(k, "group_size")) {
            long long x = 0;
            if (json_int(it, name, &x, msg, cap)) return -1;
            char val[32];
            snprintf(val, sizeof val, "%lld", x);
            if (k[0] == 'b' ? parse_bits(name, val, &v->bits, msg, cap)
                            : parse_group(name, val, &v->group_size, msg, cap))
                return -1;
        } else if (!strcmp(k, "method") || !strcmp(k, "granularity") || !strcmp(k, "clip")) {
            if (!cJSON_IsString(it)) return set_err(msg, cap, "key '%s' must be a string", name);
            const char *s = it->valuestring;
            int rc = k[0] == 'm'   ? parse_method(name, s, &v->method, msg, cap)
                     : k[0] == 'g' ? parse_gran(name, s, &v->gran, msg, cap)
                                   : parse_clip(name, s, &v->clip_mse, msg, cap);
            if (rc) return -1;
        } else if (!strcmp(k, "sparsity")) { /* non-uniform sparsity: this tensor's pattern */
            if (!cJSON_IsString(it) || qd_sparsity_parse(it->valuestring, &v->sp))
                return set_err(msg, cap, "key '%s' must be a pattern string (\"0.6\", \"2:4\")%s%s", name,
                               cJSON_IsString(it) ? ": " : "", cJSON_IsString(it) ? qd_errmsg() : "");
            if (!qd_sparsity_active(&v->sp))
                return set_err(msg, cap, "key '%s' must prune (a fraction above 0 or N:M; 'skip' keeps a tensor float)",
                               name);
            v->has_sp = 1;
        } else
            return set_err(msg, cap, "%s: unknown key '%s'", where, k);
    }
    if (!v->pattern[0])
        return set_err(msg, cap, "%s: 'pattern' must be a non-empty string (a glob on tensor names)", where);
    return 0;
}

int qd_job_config_from_json(qd_job_config *c, const cJSON *o, int allow_paths, char *msg, size_t cap)
{
    if (!cJSON_IsObject(o)) return set_err(msg, cap, "the job configuration must be a JSON object");
    for (const cJSON *it = o->child; it; it = it->next) {
        const char *k = it->string ? it->string : "";
        if (dup_key(it, msg, cap, "")) return -1;
        if (in_list(k, k_bools)) {
            if (!cJSON_IsBool(it)) return set_err(msg, cap, "key '%s' must be true or false", k);
            int v = cJSON_IsTrue(it);
            if (!strcmp(k, "sym"))
                c->scheme.sym = v;
            else if (!strcmp(k, "include_embeddings"))
                c->include_embeddings = v;
            else if (!strcmp(k, "include_head"))
                c->include_head = v;
            else if (!strcmp(k, "act_order"))
                c->act_order = v;
            else if (!strcmp(k, "static_groups"))
                c->static_groups = v;
            else if (!strcmp(k, "prune_only"))
                c->prune_only = v;
            else if (!strcmp(k, "kmeans_weighted"))
                c->kmeans_weighted = v;
            else if (!allow_paths)
                return set_err(msg, cap, "unknown key '%s' (give it on the command line)", k);
            else if (!strcmp(k, "overwrite"))
                c->overwrite = v;
            else
                c->resume = v;
        } else if (in_list(k, k_ints)) {
            long long x = 0;
            if (json_int(it, k, &x, msg, cap)) return -1;
            char v[32];
            snprintf(v, sizeof v, "%lld", x);
            if (qd_job_config_set(c, k, v, msg, cap)) return -1;
        } else if (in_list(k, k_strings)) {
            if (!cJSON_IsString(it)) return set_err(msg, cap, "key '%s' must be a string", k);
            if (!strcmp(k, "model") || !strcmp(k, "out")) {
                if (!allow_paths) return set_err(msg, cap, "unknown key '%s' (give it on the command line)", k);
                if (!strcmp(k, "model"))
                    c->model = it->valuestring;
                else
                    c->out = it->valuestring;
            } else if (qd_job_config_set(c, k, it->valuestring, msg, cap))
                return -1;
        } else if (!strcmp(k, "damp") || !strcmp(k, "adaround_lambda") || !strcmp(k, "adaround_warmup") ||
                   !strcmp(k, "adaround_lr") || !strcmp(k, "smooth") || !strcmp(k, "act_percentile") ||
                   !strcmp(k, "act_outliers")) {
            if (!cJSON_IsNumber(it)) return set_err(msg, cap, "key '%s' must be a number", k);
            char v[64];
            snprintf(v, sizeof v, "%.17g", it->valuedouble);
            if (qd_job_config_set(c, k, v, msg, cap)) return -1;
        } else if (!strcmp(k, "include")) {
            if (!cJSON_IsArray(it)) return set_err(msg, cap, "key 'include' must be an array of glob patterns");
            int idx = 0;
            for (const cJSON *e = it->child; e; e = e->next, idx++) {
                if (!cJSON_IsString(e)) return set_err(msg, cap, "key 'include[%d]' must be a string", idx);
                if (qd_job_config_set(c, "include", e->valuestring, msg, cap)) return -1;
            }
        } else if (!strcmp(k, "overrides")) {
            if (!cJSON_IsArray(it)) return set_err(msg, cap, "key 'overrides' must be an array of objects");
            int idx = 0;
            for (const cJSON *e = it->child; e; e = e->next, idx++) {
                if (c->n_overrides >= QD_MAX_PATTERNS)
                    return set_err(msg, cap, "'overrides': at most %d entries", QD_MAX_PATTERNS);
                if (parse_override(&c->overrides[c->n_overrides], e, idx, msg, cap)) return -1;
                c->n_overrides++;
            }
        } else
            return set_err(msg, cap, "unknown key '%s'", k);
    }
    return 0;
}

/* ---- the bridge used by the service (coordinator/job_hooks.h) ---------------------------- */

int qd_job_config_check_json(const cJSON *job, char *msg, size_t msgcap)
{
    qd_job_config c;
    qd_job_config_default(&c);
    if (qd_job_config_from_json(&c, job, 1, msg, msgcap)) return -1;
    if (qd_job_config_validate(&c)) {
        snprintf(msg, msgcap, "%s", qd_errmsg());
        return -1;
    }
    return 0;
}

int qd_job_run_json(const cJSON *job, MPI_Comm comm, const qd_job_hooks *hooks)
{
    qd_job_config c;
    qd_job_config_default(&c);
    c.quiet = 1;
    char msg[512];
    if (qd_job_config_from_json(&c, job, 1, msg, sizeof msg)) return qd_err_set(QD_ECONFIG, "%s", msg);
    if (!c.model || !c.out) return qd_err_set(QD_ECONFIG, "the job needs 'model' and 'out'");
    return qd_job_run(&c, comm, hooks);
}
