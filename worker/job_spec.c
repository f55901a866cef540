/* worker/job_spec.c — a job's configuration and work table (see job_spec.h). */
#include "worker/job_spec.h"

#include <fnmatch.h>
#include <stdio.h>
#include <string.h>

#include "collective/h5model.h"
#include "quant/actq.h"
#include "shard/select.h"
#include "worker/sparse_unit.h"

int qd_calib_mode_from_name(const char *name)
{
    if (!strcmp(name, "data") || !strcmp(name, "sequential")) return QD_CALIB_SEQUENTIAL;
    if (!strcmp(name, "pipeline") || !strcmp(name, "fp")) return QD_CALIB_FP;
    return -1;
}

const char *qd_calib_mode_name(int mode) { return mode == QD_CALIB_FP ? "pipeline" : "data"; }

void qd_job_config_default(qd_job_config *c)
{
    memset(c, 0, sizeof *c);
    c->method = QD_METHOD_RTN;
    c->scheme.bits = 8;
    c->scheme.sym = 1;
    c->scheme.gran = QD_GRAN_CHANNEL;
    c->scheme.group_size = 128;
    c->shard = QD_SHARD_ROWS;
    c->nsamples = 128;
    c->seqlen = 128;
    c->microbatch = 8;
    c->damp = 0.01;
    c->block_size = 128;
    c->ada_iters = 10000;
    c->ada_lambda = 0.01;
    c->ada_beta_start = 20;
    c->ada_beta_end = 2;
    c->ada_warmup = 0.2;
    c->ada_lr = 1e-3;
    c->act_bits = 8;
    c->act_percentile = 99.99;
    c->act_outliers = 4;
    c->prune = -1;
    c->kmeans_iters = 50;
}

/* Whether the job's method or an override's is m. */
static int uses_method(const qd_job_config *c, qd_method m)
{
    int used = c->method == m;
    for (int i = 0; i < c->n_overrides; i++) used |= c->overrides[i].method == (int)m;
    return used;
}

cJSON *qd_job_config_json(const qd_job_config *c)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "method", qd_method_name(c->method));
    cJSON_AddNumberToObject(o, "bits", c->scheme.bits);
    cJSON_AddStringToObject(o, "granularity", qd_h5m_gran_name(c->scheme.gran));
    cJSON_AddNumberToObject(o, "group_size", c->scheme.gran == QD_GRAN_GROUP ? (double)c->scheme.group_size : -1);
    cJSON_AddBoolToObject(o, "sym", c->scheme.sym);
    cJSON_AddStringToObject(o, "clip", c->clip_mse ? "mse" : "minmax");
    if (c->scheme.scale_f16) cJSON_AddStringToObject(o, "scales", "float16"); /* float32 files: as before */
    cJSON_AddBoolToObject(o, "include_embeddings", c->include_embeddings);
    cJSON_AddBoolToObject(o, "include_head", c->include_head);
    if (c->n_include) {
        cJSON *arr = cJSON_AddArrayToObject(o, "include");
        for (int i = 0; i < c->n_include; i++) cJSON_AddItemToArray(arr, cJSON_CreateString(c->include[i]));
    }
    if (c->n_overrides) {
        cJSON *arr = cJSON_AddArrayToObject(o, "overrides");
        for (int i = 0; i < c->n_overrides; i++) {
            const qd_override *v = &c->overrides[i];
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "pattern", v->pattern);
            if (v->skip) cJSON_AddBoolToObject(e, "skip", 1);
            if (v->method >= 0) cJSON_AddStringToObject(e, "method", qd_method_name((qd_method)v->method));
            if (v->bits >= 0) cJSON_AddNumberToObject(e, "bits", v->bits);
            if (v->gran >= 0) cJSON_AddStringToObject(e, "granularity", qd_h5m_gran_name((qd_granularity)v->gran));
            if (v->group_size >= 0) cJSON_AddNumberToObject(e, "group_size", (double)v->group_size);
            if (v->sym >= 0) cJSON_AddBoolToObject(e, "sym", v->sym);
            if (v->clip_mse >= 0) cJSON_AddStringToObject(e, "clip", v->clip_mse ? "mse" : "minmax");
            if (v->has_sp) {
                char sp[32];
                qd_sparsity_format(&v->sp, sp, sizeof sp);
                cJSON_AddStringToObject(e, "sparsity", sp);
            }
            cJSON_AddItemToArray(arr, e);
        }
    }
    int calibrated = qd_method_calibrated(c->method);
    for (int i = 0; i < c->n_overrides; i++)
        if (c->overrides[i].method >= 0) calibrated |= qd_method_calibrated((qd_method)c->overrides[i].method);
    calibrated |= c->smooth > 0;
    if (c->smooth > 0) cJSON_AddNumberToObject(o, "smooth", c->smooth); /* absent: files without it unchanged */
    if (uses_method(c, QD_METHOD_KMEANS)) { /* absent for other jobs: their files are unchanged */
        cJSON *k = cJSON_AddObjectToObject(o, "kmeans");
        cJSON_AddStringToObject(k, "init", c->kmeans_init == QD_KMEANS_LINEAR ? "linear" : "kmeans++");
        cJSON_AddBoolToObject(k, "weighted", c->kmeans_weighted);
        cJSON_AddNumberToObject(k, "seed", c->kmeans_seed);
        cJSON_AddNumberToObject(k, "iters", c->kmeans_iters);
        calibrated |= c->kmeans_weighted;
    }
    if (calibrated) {
        cJSON *g = cJSON_AddObjectToObject(o, "gptq");
        cJSON_AddNumberToObject(g, "damp", c->damp);
        cJSON_AddNumberToObject(g, "block_size", c->block_size);
        cJSON_AddBoolToObject(g, "act_order", c->act_order);
        cJSON_AddBoolToObject(g, "static_groups", c->static_groups);
        cJSON *a = cJSON_AddObjectToObject(o, "adaround");
        cJSON_AddNumberToObject(a, "iters", c->ada_iters);
        cJSON_AddNumberToObject(a, "lambda", c->ada_lambda);
        cJSON_AddNumberToObject(a, "beta_start", c->ada_beta_start);
        cJSON_AddNumberToObject(a, "beta_end", c->ada_beta_end);
        cJSON_AddNumberToObject(a, "warmup", c->ada_warmup);
        cJSON_AddNumberToObject(a, "lr", c->ada_lr);
        if (c->ada_batch > 0) cJSON_AddNumberToObject(a, "batch", c->ada_batch); /* absent: the Hessian form */
        int ada = c->method == QD_METHOD_ADAROUND;
        for (int i = 0; i < c->n_overrides; i++) ada |= c->overrides[i].method == QD_METHOD_ADAROUND;
        /* the Hessian form's product (the two give slightly different roundings): recorded only
         * for jobs that use AdaRound, so other files are unchanged */
        if (ada && c->ada_batch <= 0) cJSON_AddStringToObject(a, "product", c->ada_tiles ? "bf16x3" : "float");
        cJSON *k = cJSON_AddObjectToObject(o, "calibration");
        cJSON_AddStringToObject(k, "data", c->calib ? c->calib : "");
        cJSON_AddNumberToObject(k, "nsamples", c->nsamples);
        cJSON_AddNumberToObject(k, "seqlen", c->seqlen);
        cJSON_AddNumberToObject(k, "seed", c->calib_seed);
        cJSON_AddStringToObject(k, "mode", qd_calib_mode_name(c->calib_mode));
        cJSON_AddNumberToObject(k, "microbatch", c->microbatch);
    }
    if (qd_sparsity_active(&c->sparsity)) { /* absent for dense jobs: their files are unchanged */
        char sp[32];
        qd_sparsity_format(&c->sparsity, sp, sizeof sp);
        cJSON *p = cJSON_AddObjectToObject(o, "sparsity");
        cJSON_AddStringToObject(p, "pattern", sp);
        cJSON_AddStringToObject(p, "method", qd_prune_method_name(qd_sparse_prune_method(c, c->method)));
        cJSON_AddBoolToObject(p, "prune_only", c->prune_only);
    }
    if (c->act_static) { /* absent for weight-only files, so they stay as they were */
        cJSON *a = cJSON_AddObjectToObject(o, "activations");
        cJSON_AddStringToObject(a, "mode", "static");
        cJSON_AddNumberToObject(a, "bits", c->act_bits);
        cJSON_AddStringToObject(a, "calib", qd_actq_method_name((qd_actq_method)c->act_calib));
        if (c->act_calib == QD_ACTQ_PERCENTILE) cJSON_AddNumberToObject(a, "percentile", c->act_percentile);
        cJSON_AddNumberToObject(a, "outliers", c->act_outliers);
        cJSON_AddStringToObject(a, "data", c->calib ? c->calib : "");
        cJSON_AddNumberToObject(a, "nsamples", c->nsamples);
        cJSON_AddNumberToObject(a, "seqlen", c->seqlen);
        cJSON_AddNumberToObject(a, "seed", c->calib_seed);
    }
    return o;
}

static int method_ok(const qd_job_config *c, qd_method m, const char *where)
{
    if (m == QD_METHOD_KMEANS && c->kmeans_weighted && !c->calib)
        return qd_err_set(QD_ECONFIG,
                          "%smethod kmeans with --weighted needs calibration data (the Hessian diagonal of each "
                          "Linear's input): --calib PATH",
                          where);
    if (m == QD_METHOD_KMEANS && qd_sparsity_active(&c->sparsity))
        return qd_err_set(QD_ECONFIG, "%smethod kmeans does not prune: drop --sparsity", where);
    if (qd_method_calibrated(m) && !c->calib)
        return qd_err_set(QD_ECONFIG,
                          "%smethod '%s' needs calibration data: --calib PATH (a text or TSV file for "
                          "BERT models, an IDX file or an image folder for ViT models)",
                          where, qd_method_name(m));
    return QD_OK;
}

int qd_job_config_validate(const qd_job_config *c)
{
    int rc = method_ok(c, c->method, "");
    if (rc) return rc;
    for (int i = 0; i < c->n_overrides; i++)
        if (c->overrides[i].method >= 0) {
            char where[QD_PATTERN_MAX + 32];
            snprintf(where, sizeof where, "override '%s': ", c->overrides[i].pattern);
            if ((rc = method_ok(c, (qd_method)c->overrides[i].method, where))) return rc;
        }
    if (!qd_valid_bits(c->scheme.bits)) return qd_err_set(QD_ECONFIG, "bits must be 2..8, got %d", c->scheme.bits);
    if (c->smooth > 0) { /* SmoothQuant scales the weights before round to nearest (worker/smooth.h) */
        int other = c->method != QD_METHOD_RTN;
        for (int i = 0; i < c->n_overrides; i++)
            other |= c->overrides[i].method >= 0 && c->overrides[i].method != QD_METHOD_RTN;
        if (other) return qd_err_set(QD_ECONFIG, "smooth (SmoothQuant) goes with method rtn only");
        if (!c->calib)
            return qd_err_set(QD_ECONFIG, "smooth (SmoothQuant) needs calibration data: --calib PATH (a text or TSV "
                                          "file for BERT models, an IDX file or an image folder for ViT models)");
    }
    if (c->scheme.scale_f16) { /* the scales are rounded where round to nearest computes them */
        int other = c->method != QD_METHOD_RTN;
        for (int i = 0; i < c->n_overrides; i++)
            other |= c->overrides[i].method >= 0 && c->overrides[i].method != QD_METHOD_RTN;
        if (other) return qd_err_set(QD_ECONFIG, "scales float16 goes with method rtn only");
    }
    if (c->act_static && !c->calib)
        return qd_err_set(QD_ECONFIG, "--activations static needs calibration data: --calib PATH (a text or TSV file "
                                      "for BERT models, an IDX file or an image folder for ViT models)");
    if (c->act_static && (!qd_valid_bits(c->act_bits) || !(c->act_percentile > 50 && c->act_percentile <= 100) ||
                          !(c->act_outliers >= 0)))
        return qd_err_set(QD_ECONFIG, "act_bits must be 2..8, act_percentile in (50, 100] and act_outliers >= 0");
    if (c->scheme.gran == QD_GRAN_GROUP && c->scheme.group_size < 1)
        return qd_err_set(QD_ECONFIG, "group_size must be >= 1");
    if (!qd_method_get(c->method)->per_tensor && c->scheme.gran == QD_GRAN_TENSOR)
        return qd_err_set(QD_ECONFIG, "method '%s' works per channel or per group, not per tensor",
                          qd_method_name(c->method));
    if (c->ada_iters < 1 || !(c->ada_lambda >= 0) || !(c->ada_beta_start > 0) || !(c->ada_beta_end > 0) ||
        !(c->ada_warmup >= 0 && c->ada_warmup < 1) || !(c->ada_lr > 0))
        return qd_err_set(QD_ECONFIG,
                          "adaround: iters >= 1, lambda >= 0, beta > 0, warmup in [0, 1) and lr > 0 are needed");
    if (c->ada_batch < 0)
        return qd_err_set(QD_ECONFIG,
                          "adaround: batch (calibration rows per step) must be >= 0 (0: the Hessian form), got %d",
                          c->ada_batch);
    if (c->kmeans_iters < 1) return qd_err_set(QD_ECONFIG, "kmeans_iters must be >= 1, got %d", c->kmeans_iters);
    if (c->nsamples < 0) return qd_err_set(QD_ECONFIG, "nsamples must be >= 0");
    if (c->seqlen < 3) return qd_err_set(QD_ECONFIG, "seqlen must be >= 3");
    if (c->microbatch < 1) return qd_err_set(QD_ECONFIG, "microbatch must be >= 1");
    if (!(c->damp > 0 && c->damp < 1)) return qd_err_set(QD_ECONFIG, "damp must be in (0, 1), got %g", c->damp);
    if (c->block_size < 1) return qd_err_set(QD_ECONFIG, "block_size must be >= 1");
    return qd_sparse_config_validate(c);
}

/* ---- the work table ------------------------------------------------------------------ */

/* The scheme of a tensor selected for quantization: the first matching override applies.
 * Returns 0 if an override keeps the tensor float. */
static int resolve_scheme(const qd_job_config *cfg, const char *name, qd_job_tensor *jt)
{
    jt->method = cfg->method;
    jt->scheme = cfg->scheme;
    jt->clip_mse = cfg->clip_mse;
    for (int i = 0; i < cfg->n_overrides; i++) {
        const qd_override *v = &cfg->overrides[i];
        if (fnmatch(v->pattern, name, 0) != 0) continue;
        if (v->skip) return 0;
        if (v->method >= 0) jt->method = (qd_method)v->method;
        if (v->bits >= 0) jt->scheme.bits = v->bits;
        if (v->sym >= 0) jt->scheme.sym = v->sym;
        if (v->gran >= 0) jt->scheme.gran = (qd_granularity)v->gran;
        if (v->group_size >= 0) {
            jt->scheme.group_size = v->group_size;
            if (v->gran < 0) jt->scheme.gran = QD_GRAN_GROUP;
        }
        if (v->clip_mse >= 0) jt->clip_mse = v->clip_mse;
        break;
    }
    if (qd_method_get(jt->method)->codebook) jt->scheme.sym = 1; /* levels have no zero point */
    return 1;
}

static int should_quantize(const qd_job_config *cfg, const qd_tensor_info *t)
{
    if (!t->float_like || t->ndim != 2 || t->numel == 0) return 0;
    if (qd_shard_default_quantizable(t)) return 1;
    const char *n = t->name;
    size_t len = strlen(n);
    int is_weight = len > 7 && !strcmp(n + len - 7, ".weight");
    if (cfg->include_embeddings && strstr(n, "embed") && is_weight) return 1;
    if (cfg->include_head && (strstr(n, "pooler") || strstr(n, "classifier")) && is_weight) return 1;
    for (int i = 0; i < cfg->n_include; i++)
        if (fnmatch(cfg->include[i], n, 0) == 0) return 1;
    return 0;
}

void qd_job_method_opts(const qd_job_config *cfg, const qd_job_tensor *jt, qd_method_opts *o)
{
    qd_method_default_opts(o);
    o->scheme = jt->scheme;
    o->clip_mse = jt->clip_mse;
    qd_gptq_opts *g = &o->gptq;
    g->bits = jt->scheme.bits;
    g->sym = jt->scheme.sym;
    g->group_size = jt->scheme.gran == QD_GRAN_GROUP ? jt->scheme.group_size : -1;
    g->act_order = cfg->act_order;
    g->static_groups = cfg->static_groups;
    g->damp = (float)cfg->damp;
    g->block_size = cfg->block_size;
    if (jt->clip_mse) g->clip = QD_CLIP_MSE;
    qd_adaround_opts *a = &o->ada;
    a->iters = cfg->ada_iters;
    a->lambda = (float)cfg->ada_lambda;
    a->beta_start = (float)cfg->ada_beta_start;
    a->beta_end = (float)cfg->ada_beta_end;
    a->warmup = (float)cfg->ada_warmup;
    a->lr = (float)cfg->ada_lr;
    a->seed = (uint64_t)cfg->calib_seed;
    a->tiles = cfg->ada_tiles; /* agreed by all ranks (qd_job_run) */
    o->ada_batch = cfg->ada_batch;
    o->sp = jt->sp;
    o->prune = jt->prune;
    o->prune_only = cfg->prune_only;
    o->km.bits = jt->scheme.bits;
    o->km.max_iters = cfg->kmeans_iters;
    o->km.seed = (uint64_t)cfg->kmeans_seed;
    o->km.init = (qd_kmeans_init)cfg->kmeans_init;
    o->km_weighted = cfg->kmeans_weighted;
}

const qd_method_def *qd_job_method(const qd_job_tensor *jt) { return qd_method_get(jt->method); }

qd_method_needs qd_job_needs(const qd_job_config *cfg, const qd_job_tensor *jt)
{
    if (jt->kind != QD_JOB_QUANT) return QD_NEEDS_NOTHING;
    qd_method_opts o;
    qd_job_method_opts(cfg, jt, &o);
    return qd_job_method(jt)->needs(&o);
}

int qd_job_needs_calibration(const qd_job_config *cfg, const qd_job_tensor *jt, int n)
{
    for (int i = 0; i < n; i++)
        if (qd_job_needs(cfg, &jt[i]) != QD_NEEDS_NOTHING) return 1;
    return 0;
}

void qd_job_table(const qd_job_config *cfg, const qd_checkpoint *ck, qd_job_tensor *jt, qd_plan_item *pi)
{
    int n = qd_ckpt_num_tensors(ck);
    for (int i = 0; i < n; i++) {
        const qd_tensor_info *t = qd_ckpt_tensor(ck, i);
        qd_job_tensor *j = &jt[i];
        memset(j, 0, sizeof *j);
        j->kind = should_quantize(cfg, t) && resolve_scheme(cfg, t->name, j) ? QD_JOB_QUANT
                  : t->float_like                                            ? QD_JOB_FLOAT
                                                                             : QD_JOB_RAW;
        j->rows = t->ndim ? t->shape[0] : 1;
        j->cols = j->rows ? (int64_t)t->numel / j->rows : 0;
        j->blk_rows = j->rows > 0 ? (j->rows + QD_JOB_MAX_BLOCKS - 1) / QD_JOB_MAX_BLOCKS : 1;
        j->nblk = j->rows > 0 ? (int)((j->rows + j->blk_rows - 1) / j->blk_rows) : 1;
        if (j->kind == QD_JOB_QUANT) {
            j->sp = cfg->sparsity;
            for (int k = 0; k < cfg->n_overrides; k++) /* the first override that matches, as for the scheme */
                if (fnmatch(cfg->overrides[k].pattern, t->name, 0) == 0) {
                    if (cfg->overrides[k].has_sp) j->sp = cfg->overrides[k].sp;
                    break;
                }
            j->prune = qd_sparse_prune_method(cfg, j->method);
        }
        j->splittable = t->numel > 0 && j->nblk > 1 &&
                        (j->kind == QD_JOB_FLOAT || (j->kind == QD_JOB_QUANT && j->scheme.gran != QD_GRAN_TENSOR));
        double numel = (double)t->numel;
        qd_plan_item *p = &pi[i];
        if (j->kind == QD_JOB_QUANT) {
            qd_method_opts o;
            qd_job_method_opts(cfg, j, &o);
            p->cost = qd_job_method(j)->cost(j->rows, j->cols, &o);
            /* the input as mapped (+ an F32 copy for other dtypes), the packed codes, the scales */
            p->mem = numel * (double)qd_dtype_size(t->dtype) + (t->dtype == QD_DT_F32 ? 0 : 4 * numel) +
                     numel * j->scheme.bits / 8 + (double)j->rows * (double)qd_rtn_ngroups(&j->scheme, j->cols) * 8;
        } else {
            p->cost = qd_plan_cost_copy((int64_t)t->numel);
            p->mem = (double)t->nbytes + (j->kind == QD_JOB_FLOAT && t->dtype != QD_DT_F32 ? 4 * numel : 0);
        }
        p->block = qd_shard_block_index(t->name);
        p->parts = j->splittable ? j->nblk : 1;
    }
}
