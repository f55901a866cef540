/* worker/job.c — one quantization job over the ranks of a communicator (see job.h): open and
 * plan, the calibrated phase (worker/calib_job.c), the model file's records
 * (collective/h5model.h), rounds of pieces (worker/job_piece.c), the end and the summary. */
#include "worker/job.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "collective/collective.h"
#include "collective/h5model.h"
#include "common/qd_file.h"
#include "kernels/gemm_bf16.h"
#include "worker/act_calib.h"
#include "worker/calib_job.h"
#include "worker/job_piece.h"
#include "worker/smooth.h"
#include "worker/sparse_unit.h"

static volatile sig_atomic_t g_stop;
void qd_job_request_stop(void) { g_stop = 1; }

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void emit_kv(const qd_job_hooks *h, const char *type, cJSON *o)
{
    qd_job_emit(h, type, o);
    cJSON_Delete(o);
}

/* the progress display of rank 0 */
typedef struct {
    int mode; /* QD_PROGRESS_BAR / LINES / NONE */
    double t0;
    int shown;
} progress;

static void progress_tensor(progress *pg, const char *name, const qd_job_item *it, int done, int total, int64_t pieces)
{
    if (pg->mode == QD_PROGRESS_NONE) return;
    double el = qd_now() - pg->t0, eta = done ? el * (total - done) / done : 0;
    if (pg->mode == QD_PROGRESS_BAR) {
        char bar[31];
        int fill = total ? 30 * done / total : 30;
        for (int k = 0; k < 30; k++) bar[k] = k < fill ? '#' : '.';
        bar[30] = 0;
        printf("\r[%s] %4d/%-4d %5.1f%%  %6.1f s  ETA %6.1f s  %-44.44s", bar, done, total,
               total ? 100.0 * done / total : 100.0, el, eta, name);
        pg->shown = 1;
    } else if (it->j.kind == QD_JOB_QUANT) {
        printf("[%d/%d] %s  %s %d-bit  rel.err %.3e  %s %d  %.3f s  ETA %.1f s\n", done, total, name,
               qd_method_name(it->j.method), it->j.scheme.bits, it->m[0], pieces > 1 ? "pieces, last on rank" : "rank",
               it->last_rank, it->seconds, eta);
    } else
        printf("[%d/%d] %s  kept as float  rank %d  %.3f s\n", done, total, name, it->last_rank, it->seconds);
    fflush(stdout);
}

/* The state of one job on one rank. */
typedef struct {
    qd_job_config cfg;
    MPI_Comm comm;
    int rank, size;
    const qd_job_hooks *hooks;
    double t_start;
    char msg[1024];     /* the agreed error message */
    char partial[4096]; /* OUT.partial */
    qd_checkpoint *ck;
    int n, nq;          /* tensors, of them quantized */
    qd_job_item *items; /* [n] */
    qd_plan plan;
    qd_calib_results cres;
    qd_calib_job *calib; /* the calibrated phase between its start and its blocks, or NULL */
    qd_job_tensor *cjt;  /* what the calibrated phase works on (it keeps the pointer) */
    float **smooth;      /* SmoothQuant factors per tensor, or NULL */
    qd_actrec act;       /* static activation scales (--activations static) */
    qd_h5m_writer *w;
    int nresumed;
    progress pg;
    /* the rounds */
    int *mine, nmine;       /* this rank's pieces not yet complete, in plan order */
    int *pending, npending; /* items finished since the last completion marks */
    int done, stopped;
    double *rank_cpu; /* work CPU seconds per rank */
} job;

/* ---- open, plan, calibrate ------------------------------------------------------------------ */

static void model_type(const qd_checkpoint *ck, char *buf, size_t cap, char **text);

/* The job's scheme as one phrase: "gptq 4-bit asym group 32", "rtn 8-bit sym per channel",
 * with clipping, act-order, pruning and overrides when they apply. */
static void describe_scheme(const qd_job_config *c, char *buf, size_t cap)
{
    const qd_qscheme *sc = &c->scheme;
    int o = snprintf(buf, cap, "%s %d-bit %s ", qd_method_name(c->method), sc->bits, sc->sym ? "sym" : "asym");
    if (sc->gran == QD_GRAN_GROUP)
        o += snprintf(buf + o, cap - (size_t)o, "group %lld", (long long)sc->group_size);
    else
        o += snprintf(buf + o, cap - (size_t)o, "per %s", qd_h5m_gran_name(sc->gran));
    if (c->clip_mse) o += snprintf(buf + o, cap - (size_t)o, ", mse clipping");
    if (c->act_order)
        o += snprintf(buf + o, cap - (size_t)o, ", act-order%s", c->static_groups ? ", static groups" : "");
    if (qd_sparsity_active(&c->sparsity)) {
        char sp[32];
        qd_sparsity_format(&c->sparsity, sp, sizeof sp);
        o += snprintf(buf + o, cap - (size_t)o, ", pruned %s (%s)%s", sp,
                      qd_prune_method_name(qd_sparse_prune_method(c, c->method)),
                      c->prune_only ? ", kept in float" : "");
    }
    if (c->n_overrides)
        snprintf(buf + o, cap - (size_t)o, ", %d override%s", c->n_overrides, c->n_overrides > 1 ? "s" : "");
}

/* The configuration, the checkpoint and the output's state, checked on every rank and agreed. */
static int job_open(job *J)
{
    const qd_job_config *cfg = &J->cfg;
    int st = qd_job_config_validate(cfg);
    if (st == QD_OK) st = qd_ckpt_open(cfg->model, &J->ck);
    if (st == QD_OK && !cfg->overwrite && !cfg->resume && access(cfg->out, F_OK) == 0)
        st = qd_err_set(QD_EEXIST, "%s exists (use --overwrite to replace it)", cfg->out);
    if (st == QD_OK && cfg->resume && access(cfg->out, F_OK) == 0 && !cfg->overwrite)
        st = qd_err_set(QD_EEXIST, "%s is already complete (nothing to resume; --overwrite to redo it)", cfg->out);
    if (st == QD_OK && !cfg->resume && !cfg->overwrite && access(J->partial, F_OK) == 0)
        st = qd_err_set(QD_EEXIST, "%s exists from an interrupted run: --resume continues it, --overwrite starts again",
                        J->partial);
    st = qd_coll_agree_msg(J->comm, st, J->msg, sizeof J->msg, NULL);
    if (st) {
        if (J->ck) qd_ckpt_close(J->ck);
        J->ck = NULL;
        return st;
    }
    if (J->rank == 0) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", cfg->model);
        cJSON_AddStringToObject(o, "out", cfg->out);
        cJSON_AddNumberToObject(o, "ranks", J->size);
        emit_kv(J->hooks, "started", o);
    }
    return QD_OK;
}

/* The work table and the plan: the same on every rank (deterministic). */
static void job_plan(job *J)
{
    const qd_job_config *cfg = &J->cfg;
    const int n = J->n = qd_ckpt_num_tensors(J->ck), nz = n ? n : 1;
    J->items = qd_xcalloc((size_t)nz, sizeof *J->items);
    qd_job_tensor *jt = qd_xcalloc((size_t)nz, sizeof *jt);
    qd_plan_item *pi = qd_xcalloc((size_t)nz, sizeof *pi);
    qd_job_table(cfg, J->ck, jt, pi);
    for (int i = 0; i < n; i++) {
        J->items[i].j = jt[i];
        J->items[i].ti = i;
        J->items[i].rec = -1;
        J->nq += jt[i].kind == QD_JOB_QUANT;
    }
    free(jt);
    QD_ASSERT_EQ(qd_plan_make(pi, n, J->size, cfg->shard, &J->plan), 0);
    free(pi);
    for (int q = 0; q < J->plan.npieces; q++) J->items[J->plan.pieces[q].item].pieces_total++;
    J->pg = (progress){cfg->quiet                          ? QD_PROGRESS_NONE
                       : cfg->progress == QD_PROGRESS_AUTO ? QD_PROGRESS_LINES
                                                           : (int)cfg->progress,
                       J->t_start, 0};
    if (J->rank != 0) return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "tensors_total", n);
    cJSON_AddNumberToObject(o, "tensors_quantized", J->nq);
    cJSON_AddNumberToObject(o, "pieces", J->plan.npieces);
    cJSON_AddNumberToObject(o, "ranks", J->size);
    cJSON_AddStringToObject(o, "shard", qd_shard_mode_name(cfg->shard));
    cJSON_AddNumberToObject(o, "balance", J->plan.balance);
    emit_kv(J->hooks, "plan", o);
    if (!cfg->quiet) {
        char scheme[256];
        describe_scheme(cfg, scheme, sizeof scheme);
        printf("%s: %d tensors (%d to quantize: %s), %d rank%s, sharding by %s (%d pieces), balance max/mean %.3f\n",
               cfg->model, n, J->nq, scheme, J->size, J->size == 1 ? "" : "s", qd_shard_mode_name(cfg->shard),
               J->plan.npieces, J->plan.balance);
    }
}

static void emit_failed(job *J, int st)
{
    if (J->rank != 0) return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "code", qd_errname(st));
    cJSON_AddStringToObject(o, "message", J->msg);
    emit_kv(J->hooks, "failed", o);
}

/* Every rank's phase seconds and peak memory: rank 0 prints the busiest rank's per phase and
 * sends them all as a "calibration_phases" event (ranks, per-rank arrays). */
static void calib_phases(job *J)
{
    enum { NV = QD_CALIB_NPHASES + 5 };
    double mine[NV], *all = qd_xcalloc((size_t)J->size * NV, sizeof *all);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    for (int p = 0; p < QD_CALIB_NPHASES; p++) mine[p] = J->cres.phase[p];
    mine[QD_CALIB_NPHASES] = J->cres.reduce_bytes;
    mine[QD_CALIB_NPHASES + 1] = (double)ru.ru_maxrss * 1024.0;
    mine[QD_CALIB_NPHASES + 2] = J->cres.estimate_bytes;
    mine[QD_CALIB_NPHASES + 3] = J->cres.stats_bytes;
    mine[QD_CALIB_NPHASES + 4] = J->cres.hessians;
    qd_coll_gather(J->comm, mine, sizeof mine, all, 0);
    if (J->rank == 0) {
        double mx[NV] = {0};
        for (int r = 0; r < J->size; r++)
            for (int v = 0; v < NV; v++) mx[v] = QD_MAX(mx[v], all[r * NV + v]);
        if (!J->cfg.quiet) {
            printf("calibrated phases (busiest rank, s):");
            for (int p = 0; p < QD_CALIB_NPHASES; p++) printf(" %s %.2f", qd_calib_phase_names[p], mx[p]);
            printf("; statistics reduced %.1f MB per rank\n", mx[QD_CALIB_NPHASES] * 1e-6);
            printf("calibration statistics per rank: Hessians formed");
            for (int r = 0; r < J->size; r++) printf(" %.0f", all[r * NV + QD_CALIB_NPHASES + 4]);
            printf("; reduced sums held at most");
            for (int r = 0; r < J->size; r++) printf(" %.1f", all[r * NV + QD_CALIB_NPHASES + 3] * 1e-6);
            printf(" MB\n");
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "ranks", J->size);
        for (int v = 0; v < NV; v++) {
            static const char *extra[] = {"reduce_bytes", "peak_rss_bytes", "estimate_bytes", "stats_bytes",
                                          "hessians"};
            const char *nm = v < QD_CALIB_NPHASES ? qd_calib_phase_names[v] : extra[v - QD_CALIB_NPHASES];
            char key[48];
            snprintf(key, sizeof key, v < QD_CALIB_NPHASES ? "%s_s" : "%s", nm);
            cJSON *a = cJSON_AddArrayToObject(o, key);
            for (int r = 0; r < J->size; r++) cJSON_AddItemToArray(a, cJSON_CreateNumber(all[r * NV + v]));
        }
        emit_kv(J->hooks, "calibration_phases", o);
    }
    free(all);
}

/* the most bits b with 2^b <= n */
static int bits_within(int64_t n)
{
    int b = 0;
    while (b < 62 && ((int64_t)2 << b) <= n) b++;
    return b;
}

/* A job that would write an unchanged copy is an error: most often tensor names this version
 * does not recognise. A configuration whose overrides keep tensors float asked for it (an all-float
 * file is the FP32 reference that export and eval compare against). The same verdict on every rank
 * (the table is deterministic). */
static int job_check_work(job *J)
{
    /* A codebook of more levels than its group has weights is larger than the float weights it
     * replaces (8-bit K-means in groups of 32: 256 levels per 32 weights): refused, not clamped,
     * so that a file's bits always say how many levels each group holds. */
    for (int i = 0; i < J->n; i++) {
        const qd_job_tensor *j = &J->items[i].j;
        if (j->kind != QD_JOB_QUANT || !qd_method_get(j->method)->codebook) continue;
        const int64_t G = qd_scheme_group_cols(&j->scheme, j->cols), K = (int64_t)1 << j->scheme.bits;
        if (K <= G) continue;
        const int st =
            qd_err_set(QD_ECONFIG,
                       "tensor '%s': method %s at %d bits stores %lld levels per codebook, more than the "
                       "%lld weights of its %s, so the file would be larger than float weights: use at "
                       "most %d bits%s",
                       qd_ckpt_tensor(J->ck, J->items[i].ti)->name, qd_method_name(j->method), j->scheme.bits,
                       (long long)K, (long long)G, j->scheme.gran == QD_GRAN_GROUP ? "group" : "row", bits_within(G),
                       j->scheme.gran == QD_GRAN_GROUP ? ", larger groups (--group-size) or per channel" : "");
        snprintf(J->msg, sizeof J->msg, "%s", qd_errmsg());
        emit_failed(J, st);
        return st;
    }
    if (J->nq > 0) return QD_OK;
    for (int i = 0; i < J->cfg.n_overrides; i++)
        if (J->cfg.overrides[i].skip) return QD_OK;
    char arch[128];
    model_type(J->ck, arch, sizeof arch, NULL);
    const int st = qd_err_set(QD_EUNSUPPORTED,
                              "%s: nothing to quantize for architecture '%s' (config.json model_type): none of its %d "
                              "tensors is a 2-D float weight inside an encoder block named as qdist recognises "
                              "('encoder.layer.N.' and the like), so the output would be an unchanged copy. Select "
                              "tensors with --include PATTERN, or see 'qdist inspect %s'",
                              J->cfg.model, arch, J->n, J->cfg.model);
    snprintf(J->msg, sizeof J->msg, "%s", qd_errmsg());
    emit_failed(J, st);
    return st;
}

/* Methods that need calibration: the model and data opened and the memory checked on all ranks,
 * before the file exists (a job that does not fit leaves nothing behind); the blocks run once the
 * records are declared (job_calib_blocks). Then the static activation scales. */
static int job_calibrated(job *J)
{
    const qd_job_config *cfg = &J->cfg;
    const int n = J->n;
    qd_job_tensor *jt = J->cjt = qd_xcalloc((size_t)(n ? n : 1), sizeof *jt);
    for (int i = 0; i < n; i++) jt[i] = J->items[i].j;
    int st = QD_OK;
    if (qd_job_needs_calibration(cfg, jt, n)) {
        st = qd_calib_job_begin(cfg, J->comm, J->ck, jt, J->rank == 0 && !cfg->quiet, &J->cres, &J->calib);
        if (st == QD_OK) {
            for (int i = 0; i < n; i++)
                if (J->cres.t[i].calibrated) {
                    J->items[i].cq = &J->cres.t[i];
                    if (J->cres.t[i].float_kept) J->items[i].j.kind = QD_JOB_FLOAT; /* pruned, kept in float */
                }
        } else {
            snprintf(J->msg, sizeof J->msg, "%s", qd_errmsg());
            emit_failed(J, st);
        }
    }
    /* static activation scales: calibrated on all ranks (the same record everywhere), written
     * with the file's other records */
    if (st == QD_OK && cfg->act_static && (st = qd_act_job_run(cfg, J->comm, &J->act))) {
        snprintf(J->msg, sizeof J->msg, "%s", qd_errmsg());
        emit_failed(J, st);
    }
    return st;
}

/* Test hook: QD_FAULT_RANK=R with QD_FAULT_KILL_BLOCKS=K kills rank R (SIGKILL, as the kernel or
 * a scheduler would) once K blocks of the calibrated phase are in the file. */
static void calib_fault(const job *J)
{
    static int blocks;
    const char *r = getenv("QD_FAULT_RANK"), *k = getenv("QD_FAULT_KILL_BLOCKS");
    if (r && k && atoi(r) == J->rank && ++blocks == atoi(k)) raise(SIGKILL);
}

static int round_work_items(job *J, const uint8_t *want);
static int round_marks(job *J, int flush);

/* The calibrated phase's finished tensors ts[0 .. n): every rank writes its pieces of them (whole
 * results are on every rank), then they are marked complete and flushed, so that a job killed
 * later resumes after them. Agreed status. */
static int write_calibrated(void *user, const int *ts, int n)
{
    job *J = user;
    uint8_t *want = qd_xcalloc((size_t)(J->n ? J->n : 1), 1);
    for (int i = 0; i < n; i++) want[ts[i]] = 1;
    int st = round_work_items(J, want);
    if (st == QD_OK) st = round_marks(J, 1);
    if (st == QD_OK) st = qd_h5m_flush(J->w); /* the marks on disk too */
    for (int i = 0; i < n && st == QD_OK; i++) J->items[ts[i]].complete = 1;
    free(want);
    if (st == QD_OK) calib_fault(J);
    return st;
}

/* The calibrated blocks, their results written as they finish; then the phase's figures. */
static int job_calib_blocks(job *J)
{
    if (!J->calib) return QD_OK;
    const qd_job_config *cfg = &J->cfg;
    uint8_t *complete = qd_xcalloc((size_t)(J->n ? J->n : 1), 1);
    int *rec = qd_xcalloc((size_t)(J->n ? J->n : 1), sizeof *rec);
    for (int i = 0; i < J->n; i++) {
        complete[i] = (uint8_t)J->items[i].complete;
        rec[i] = J->items[i].rec;
    }
    const qd_calib_stream stream = {.write = write_calibrated, .user = J, .complete = complete, .w = J->w, .rec = rec};
    int st = qd_calib_job_blocks(J->calib, &stream);
    qd_calib_job_end(J->calib);
    J->calib = NULL;
    free(complete);
    free(rec);
    if (st == QD_OK) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double mx[2] = {(double)ru.ru_maxrss * 1024.0, J->cres.estimate_bytes};
        qd_coll_allreduce_doubles(J->comm, mx, 2, QD_COLL_MAX);
        if (J->rank == 0 && !cfg->quiet)
            printf("calibrated phase: %.1f s, peak RSS %.1f MB on the busiest rank (estimate %.1f MB: %s)\n",
                   J->cres.seconds, mx[0] * 1e-6, mx[1] * 1e-6, J->cres.estimate_text);
        calib_phases(J);
    } else
        snprintf(J->msg, sizeof J->msg, "%s", qd_errmsg());
    return st;
}

/* SmoothQuant factors (--smooth), the same on every rank, before the records are declared. */
static int job_smooth(job *J)
{
    if (!(J->cfg.smooth > 0)) return QD_OK;
    J->smooth = qd_xcalloc((size_t)(J->n ? J->n : 1), sizeof *J->smooth);
    int st = qd_smooth_factors(&J->cfg, J->comm, J->ck, J->smooth);
    if (st) {
        snprintf(J->msg, sizeof J->msg, "%s", qd_errmsg());
        emit_failed(J, st);
        return st;
    }
    for (int i = 0; i < J->n; i++) J->items[i].smooth = J->items[i].j.kind == QD_JOB_QUANT ? J->smooth[i] : NULL;
    return QD_OK;
}

/* ---- the model file's records --------------------------------------------------------------- */

/* config.json's model_type ("unknown" without one) and, when wanted, the whole text (NULL
 * without one; free it) */
static void model_type(const qd_checkpoint *ck, char *buf, size_t cap, char **text)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", qd_ckpt_dir(ck));
    char *txt = NULL;
    size_t len;
    if (qd_read_file(path, (size_t)64 << 20, "a model configuration", &txt, &len)) {
        txt = NULL;
        qd_err_clear();
    }
    cJSON *mc = txt ? cJSON_Parse(txt) : NULL;
    const cJSON *mt = mc ? cJSON_GetObjectItemCaseSensitive(mc, "model_type") : NULL;
    snprintf(buf, cap, "%s", cJSON_IsString(mt) ? mt->valuestring : "unknown");
    cJSON_Delete(mc);
    if (text)
        *text = txt;
    else
        free(txt);
}

/* The checkpoint the file was made from: its name and each file's header hash. */
static char *source_json(qd_checkpoint *ck)
{
    cJSON *src = cJSON_CreateObject();
    const char *base = strrchr(qd_ckpt_dir(ck), '/');
    cJSON_AddStringToObject(src, "name", base ? base + 1 : qd_ckpt_dir(ck));
    cJSON *files = cJSON_AddArrayToObject(src, "files");
    for (int f = 0; f < qd_ckpt_num_files(ck); f++) {
        const qd_st_file *sf = qd_ckpt_file(ck, f);
        char hex[65];
        for (int b = 0; b < 32; b++) snprintf(hex + 2 * b, 3, "%02x", sf->header_sha256[b]);
        cJSON *fo = cJSON_CreateObject();
        const char *fb = strrchr(sf->path, '/');
        cJSON_AddStringToObject(fo, "file", fb ? fb + 1 : sf->path);
        cJSON_AddStringToObject(fo, "header_sha256", hex);
        cJSON_AddItemToArray(files, fo);
    }
    char *t = cJSON_PrintUnformatted(src);
    cJSON_Delete(src);
    return t;
}

/* The record of item i as its kind, method and pruning say. */
static void item_record(const job *J, int i, qd_h5m_record *r)
{
    const qd_tensor_info *t = qd_ckpt_tensor(J->ck, i);
    const qd_job_item *it = &J->items[i];
    if (it->j.kind == QD_JOB_QUANT)
        qd_h5m_record_quantized(r, t->name, it->j.rows, it->j.cols, qd_dtype_name(t->dtype),
                                qd_method_name(it->j.method), &it->j.scheme, it->cq && it->cq->has_g_idx);
    else if (it->j.kind == QD_JOB_FLOAT)
        qd_h5m_record_float(r, t->name, t->ndim, t->shape, qd_dtype_name(t->dtype));
    else
        qd_h5m_record_raw(r, t->name, t->ndim, t->shape, qd_dtype_name(t->dtype), (int64_t)t->nbytes);
    if (it->smooth) qd_h5m_record_add(r, QD_H5M_SMOOTH); /* docs/FORMAT.md "Smoothing" */
    if (qd_sparsity_active(&it->j.sp)) {                 /* docs/FORMAT.md "Sparsity" */
        char sp[32];
        qd_sparsity_format(&it->j.sp, sp, sizeof sp);
        /* SparseGPT prunes an unstructured fraction per column block (quant/sparsegpt.h); the
         * others per row (the shapes were checked against the pattern with the job's options) */
        const int64_t block = it->j.prune == QD_PRUNE_SPARSEGPT ? J->cfg.block_size : 0;
        (void)qd_h5m_record_sparsity(r, sp, qd_prune_method_name(it->j.prune), block);
    }
}

/* Creates (or, resuming, reopens) the file and every record collectively, in the same order on
 * every rank; what the file records about the job is compared when resuming. */
static int job_records(job *J)
{
    const qd_job_config *cfg = &J->cfg;
    int resuming = cfg->resume && access(J->partial, F_OK) == 0;
    qd_coll_allreduce_ints(J->comm, &resuming, 1, QD_COLL_MIN);
    if (cfg->resume && !resuming && J->rank == 0 && !cfg->quiet)
        printf("--resume: no %s, starting from the beginning\n", J->partial);
    cJSON *qc = qd_job_config_json(cfg);
    char *qct = cJSON_PrintUnformatted(qc), *srct = source_json(J->ck);
    cJSON_Delete(qc);
    char arch[128], *cfgtxt = NULL;
    model_type(J->ck, arch, sizeof arch, &cfgtxt);
    const qd_h5m_header hdr = {.arch = arch,
                               .model_config = cfgtxt ? cfgtxt : "{}",
                               .quant_config = qct,
                               .source = srct,
                               .calibration =
                                   J->cres.calibration_json ? J->cres.calibration_json : "{\"method\":\"none\"}"};
    int st = qd_h5m_create(J->comm, cfg->out, &hdr, resuming, &J->w);
    free(cfgtxt);
    free(qct);
    free(srct);
    if (st) {
        snprintf(J->msg, sizeof J->msg, "%s", qd_errmsg());
        return st;
    }
    if (cfg->act_static) qd_h5m_write_activations(J->w, &J->act);
    for (int i = 0; i < J->n; i++) {
        qd_h5m_record r;
        item_record(J, i, &r);
        J->items[i].rec = qd_h5m_declare(J->w, &r);
        if (r.complete) {
            J->items[i].complete = 1;
            J->nresumed++;
            memcpy(J->items[i].m, r.metrics, sizeof J->items[i].m);
        }
    }
    if ((st = qd_h5m_reserve(J->w))) { /* a full disk: refused before any work */
        snprintf(J->msg, sizeof J->msg, "%s", qd_errmsg());
        qd_h5m_abandon(J->w);
        J->w = NULL;
        return st;
    }
    if (resuming && J->rank == 0 && !cfg->quiet)
        printf("resuming %s: %d of %d tensors already complete\n", J->partial, J->nresumed, J->n);
    /* the rounds' bookkeeping: the calibrated phase already writes through it */
    J->pending = qd_xcalloc((size_t)(J->n ? J->n : 1), sizeof(int));
    J->done = J->nresumed;
    J->rank_cpu = qd_xcalloc((size_t)J->size, sizeof(double));
    return QD_OK;
}

/* ---- rounds ---------------------------------------------------------------------------------- */

/* A round: each rank works through its next pieces for about round_s seconds (at most RB), then
 * all ranks exchange what they did. Rounds are the points where an error, a stop request or a
 * checkpoint is agreed; slicing by time rather than by piece keeps ranks with unequal pieces
 * from waiting on each other. */
enum { RB = 128 };

/* Test hooks: QD_FAULT_RANK=R with QD_FAULT_AFTER=K fails rank R's piece K+1 with an error; with
 * QD_FAULT_SIGNAL_AFTER=K it raises SIGTERM after K pieces (preemption); QD_FAULT_SLOW_MS=M makes
 * every piece take at least M ms (cancel and progress tests). */
typedef struct {
    int fault, sig_after;
    long slow_ms;
} faults;

static int env_int(const char *name, int dflt)
{
    const char *v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}

static faults read_faults(int rank)
{
    const int fault_rank = env_int("QD_FAULT_RANK", -1);
    faults f = {fault_rank == rank ? env_int("QD_FAULT_AFTER", -1) : -1,
                fault_rank == rank ? env_int("QD_FAULT_SIGNAL_AFTER", -1) : -1, env_int("QD_FAULT_SLOW_MS", 0)};
    if (f.sig_after >= 0) f.fault = -1;
    return f;
}

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void round_collect(job *J, const qd_piece_rec *recs);

/* Piece q on this rank, reported in *me with its CPU time. */
static void piece_run(job *J, int q, qd_piece_rec *me)
{
    const qd_plan_piece *p = &J->plan.pieces[q];
    memset(me, 0, sizeof *me);
    me->piece = q;
    const double c0 = thread_cpu();
    me->status = qd_job_piece(&J->cfg, J->ck, J->w, &J->items[p->item], p, me);
    me->cpu = thread_cpu() - c0;
}

/* This rank's pieces of the items in want (not complete), all of them, reported to every rank in
 * rounds of at most RB pieces (as many rounds on every rank). Agreed status. */
static int round_work_items(job *J, const uint8_t *want)
{
    int *mine = qd_xcalloc((size_t)(J->plan.npieces ? J->plan.npieces : 1), sizeof *mine), nm = 0;
    for (int q = 0; q < J->plan.npieces; q++) {
        const qd_plan_piece *p = &J->plan.pieces[q];
        if (p->owner == J->rank && want[p->item] && !J->items[p->item].complete) mine[nm++] = q;
    }
    int rounds = (nm + RB - 1) / RB;
    qd_coll_allreduce_ints(J->comm, &rounds, 1, QD_COLL_MAX);
    qd_piece_rec *me = qd_xcalloc(RB, sizeof *me), *all = qd_xcalloc((size_t)J->size * RB, sizeof *all);
    int st = QD_OK;
    for (int r = 0, next = 0; r < rounds && st == QD_OK; r++) {
        int cnt = 0, my_st = QD_OK;
        for (; next < nm && cnt < RB && my_st == QD_OK; next++, cnt++) {
            piece_run(J, mine[next], &me[cnt]);
            my_st = me[cnt].status;
        }
        for (int q = cnt; q < RB; q++) me[q].piece = -1;
        if (my_st) qd_err_wrap(my_st, "rank %d", J->rank);
        if ((st = qd_coll_agree_msg(J->comm, my_st, J->msg, sizeof J->msg, NULL))) break;
        qd_coll_allgather(J->comm, me, RB * sizeof *me, all);
        round_collect(J, all);
    }
    free(mine);
    free(me);
    free(all);
    return st;
}

/* This rank's share of a round: its next pieces from *next, reported in recs[0 .. *nme). Returns
 * the status of the last piece. */
static int round_work(job *J, const faults *fl, double round_s, int *next, qd_piece_rec *recs, int *nme)
{
    int my_st = QD_OK;
    const double r0 = qd_now();
    *nme = 0;
    while (*next < J->nmine && *nme < RB && my_st == QD_OK && !g_stop && (*nme == 0 || qd_now() - r0 < round_s)) {
        const qd_plan_piece *p = &J->plan.pieces[J->mine[*next]];
        qd_job_item *it = &J->items[p->item];
        qd_piece_rec *me = &recs[(*nme)++];
        if (fl->fault >= 0 && *next >= fl->fault) {
            memset(me, 0, sizeof *me);
            me->piece = J->mine[*next];
            me->status = qd_err_set(QD_EIO, "tensor '%s': injected fault (QD_FAULT_RANK=%d QD_FAULT_AFTER=%d)",
                                    qd_ckpt_tensor(J->ck, it->ti)->name, J->rank, fl->fault);
        } else
            piece_run(J, J->mine[*next], me);
        if (fl->slow_ms > 0) {
            struct timespec ts = {fl->slow_ms / 1000, (fl->slow_ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
        my_st = me->status;
        (*next)++;
        if (fl->sig_after >= 0 && *next == fl->sig_after) raise(SIGTERM); /* test hook: preemption */
    }
    for (int q = *nme; q < RB; q++) recs[q].piece = -1;
    return my_st;
}

/* Every rank's reports of a round, in rank order: error sums and times into the items; finished
 * tensors get their metrics, wait for their completion mark and are reported on rank 0. */
static void round_collect(job *J, const qd_piece_rec *recs)
{
    for (int q = 0; q < J->size * RB; q++) {
        const qd_piece_rec *rc = &recs[q];
        if (rc->piece < 0) continue;
        const qd_plan_piece *p = &J->plan.pieces[rc->piece];
        qd_job_item *it = &J->items[p->item];
        for (int b = 0; b < QD_JOB_MAX_BLOCKS; b++) {
            it->blk[b].err2 += rc->blk[b].err2;
            it->blk[b].w2 += rc->blk[b].w2;
            if (rc->blk[b].max_abs > it->blk[b].max_abs) it->blk[b].max_abs = rc->blk[b].max_abs;
        }
        it->seconds += rc->seconds;
        J->rank_cpu[q / RB] += rc->cpu;
        it->last_rank = q / RB;
        if (++it->pieces_done < it->pieces_total) continue;
        if (it->j.kind == QD_JOB_QUANT) qd_job_item_metrics(it, qd_ckpt_tensor(J->ck, it->ti));
        J->pending[J->npending++] = p->item;
        J->done++;
        if (J->rank != 0) continue;
        const char *name = qd_ckpt_tensor(J->ck, it->ti)->name;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "tensor", name);
        cJSON_AddNumberToObject(o, "rank", it->last_rank);
        cJSON_AddNumberToObject(o, "pieces", it->pieces_total);
        cJSON_AddStringToObject(o, "method", it->j.kind == QD_JOB_QUANT ? qd_method_name(it->j.method) : "copy");
        cJSON_AddNumberToObject(o, "seconds", it->seconds);
        if (it->j.kind == QD_JOB_QUANT) cJSON_AddNumberToObject(o, "rel_error", it->m[0]);
        cJSON_AddNumberToObject(o, "tensors_done", J->done);
        cJSON_AddNumberToObject(o, "tensors_total", J->n);
        emit_kv(J->hooks, "tensor", o);
        progress_tensor(&J->pg, name, it, J->done, J->n, it->pieces_total);
    }
}

/* Data on disk first, then the completion marks of the finished tensors (collective, same values
 * everywhere). The marks reach the file with the next flush or the close. At the end the close
 * writes everything, and a file that has not been closed stays OUT.partial, so the final flush
 * (an fsync through MPI-IO: ~0.1 s per 200 MB) is left out. */
static int round_marks(job *J, int flush)
{
    /* a failed write anywhere (disk full): no marks, the job ends with that error */
    int st = flush ? qd_h5m_flush(J->w) : qd_h5m_sync(J->w);
    if (st) return st;
    for (int q = 0; q < J->npending; q++) {
        const qd_job_item *it = &J->items[J->pending[q]];
        qd_h5m_mark_complete(J->w, it->rec, it->j.kind == QD_JOB_QUANT ? it->m : NULL);
    }
    J->npending = 0;
    return QD_OK;
}

/* The rounds until every piece is done, a rank fails (agreed status) or a stop is requested
 * (J->stopped). */
static int job_rounds(job *J)
{
    J->mine = qd_xcalloc((size_t)(J->plan.npieces ? J->plan.npieces : 1), sizeof(int));
    for (int q = 0; q < J->plan.npieces; q++)
        if (J->plan.pieces[q].owner == J->rank && !J->items[J->plan.pieces[q].item].complete) J->mine[J->nmine++] = q;
    int maxmine = J->nmine;
    qd_coll_allreduce_ints(J->comm, &maxmine, 1, QD_COLL_MAX);
    const faults fl = read_faults(J->rank);
    /* completion marks are written (after a flush) at most every mark_every seconds and at the
     * end: a crash loses at most that much work. QD_CHECKPOINT_SECONDS overrides (0: every
     * round). */
    const char *ck_env = getenv("QD_CHECKPOINT_SECONDS"), *rs_env = getenv("QD_ROUND_SECONDS");
    const double mark_every = ck_env ? atof(ck_env) : 2.0, round_s = rs_env ? atof(rs_env) : 0.25;
    double last_mark = qd_now();
    qd_piece_rec *mine_recs = qd_xcalloc(RB, sizeof(qd_piece_rec));
    qd_piece_rec *recs = qd_xcalloc((size_t)J->size * RB, sizeof(qd_piece_rec));
    int next = 0, any_left = maxmine > 0, st = QD_OK;
    while (any_left) {
        int nme = 0, my_st = round_work(J, &fl, round_s, &next, mine_recs, &nme);
        if (my_st) qd_err_wrap(my_st, "rank %d", J->rank);
        if ((st = qd_coll_agree_msg(J->comm, my_st, J->msg, sizeof J->msg, NULL))) break;
        qd_coll_allgather(J->comm, mine_recs, RB * sizeof(qd_piece_rec), recs);
        round_collect(J, recs);
        /* stop (signal, cancel), checkpoint and "anything left" decisions: everyone's flags and
         * rank 0's clock, combined so that every rank takes the same branch */
        const qd_job_hooks *h = J->hooks;
        int any[3] = {g_stop || (J->rank == 0 && h && h->cancel_requested && h->cancel_requested(h->ctx)),
                      J->rank == 0 && qd_now() - last_mark >= mark_every, next < J->nmine};
        qd_coll_allreduce_ints(J->comm, any, 3, QD_COLL_MAX);
        any_left = any[2];
        if (any[1] || !any_left || any[0]) {
            if ((st = round_marks(J, any[1] || any[0]))) break;
            last_mark = qd_now();
        }
        if (any[0] && any_left) {
            J->stopped = 1;
            break;
        }
    }
    free(mine_recs);
    free(recs);
    if (J->rank == 0 && J->pg.shown) printf("\n");
    return st;
}

/* ---- the end --------------------------------------------------------------------------------- */

/* Run bookkeeping, then the status (collective, same values on every rank) and the rename; or,
 * stopped or failed, the partial file kept. Agreed status. */
static int job_finish(job *J, int st)
{
    if (st == QD_OK && !J->stopped) {
        char when[64];
        time_t now = time(NULL);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
        const qd_h5m_run run = {.created = when,
                                .shard = qd_shard_mode_name(J->cfg.shard),
                                .ranks = J->size,
                                .resumed_tensors = J->nresumed,
                                .seconds = qd_now() - J->t_start};
        st = qd_h5m_finish(J->w, &run);
    } else {
        qd_h5m_abandon(J->w);
        if (st == QD_OK && J->stopped) {
            const qd_job_hooks *h = J->hooks;
            st = h && h->cancel_requested && !g_stop ? QD_ECANCELED : QD_EINTR;
            qd_err_set(st, "stopped after %d of %d tensors; the partial file %s is kept", J->done, J->n, J->partial);
        }
    }
    J->w = NULL;
    return qd_coll_agree_msg(J->comm, st, J->msg, sizeof J->msg, NULL);
}

/* CPU seconds over ranks, summed and the busiest rank's: the whole processes (every thread,
 * waits in MPI included) and the calibrated phase's units alone. Collective. */
typedef struct {
    double sum[2], max[2];
} cpu_totals;

static cpu_totals job_cpu(const job *J)
{
    cpu_totals c = {{qd_process_cpu(), J->cres.unit_cpu}, {0, 0}};
    memcpy(c.max, c.sum, sizeof c.max);
    qd_coll_allreduce_doubles(J->comm, c.sum, 2, QD_COLL_SUM);
    qd_coll_allreduce_doubles(J->comm, c.max, 2, QD_COLL_MAX);
    return c;
}

/* The summary's time and CPU lines. A calibrated job's work is its calibrated phase (forward
 * passes and the method's units), for which GB/s of input says nothing; an RTN job's is
 * streaming the weights. */
static void print_time(const job *J, const cpu_totals *c, double secs, double bin, double qin, double wsum, double wmax)
{
    const int size = J->size;
    const char *method = qd_method_name(J->cfg.method);
    if (J->cres.t) {
        printf("  time         %.2f s on %d rank%s: calibrated phase %.2f s (calibration and %s), writing %.2f s\n",
               secs, size, size == 1 ? "" : "s", J->cres.seconds, method,
               secs - J->cres.seconds > 0 ? secs - J->cres.seconds : 0);
        printf("  CPU          %.2f s in all, %.2f s on the busiest rank (whole processes, waits in MPI included)\n",
               c->sum[0], c->max[0]);
        printf("  units CPU    %.2f s in all, %.2f s on the busiest rank (%s of the row units)", c->sum[1], c->max[1],
               method);
        if (size > 1)
            printf(": balance %.0f%% (mean over ranks / busiest)",
                   c->max[1] > 0 ? 100.0 * c->sum[1] / (size * c->max[1]) : 0);
    } else {
        printf("  time         %.2f s on %d rank%s: %.2f GB/s of checkpoint tensors, %.2f GB/s of the weights "
               "quantized\n",
               secs, size, size == 1 ? "" : "s", secs > 0 ? bin / secs * 1e-9 : 0, secs > 0 ? qin / secs * 1e-9 : 0);
        printf("  work CPU     %.2f s in all, %.2f s on the busiest rank: %.2f GB/s per CPU-second", wsum, wmax,
               wsum > 0 ? bin / wsum * 1e-9 : 0);
        if (size > 1)
            printf(", parallel efficiency %.0f%% of the CPU time", wmax > 0 ? 100.0 * wsum / (size * wmax) : 0);
    }
    printf("\n");
}

/* Rank 0: the "finished" event and, unless quiet, the summary. Sizes have one meaning each (as
 * eval prints them): tensor data (the checkpoint's tensors; the file's datasets, by the records
 * written: quantized payload = codes, scales, zeros, g_idx, masks, plus the tensors kept) and
 * the file's bytes on disk. */
static void job_summary(job *J, const cpu_totals *c)
{
    const qd_job_config *cfg = &J->cfg;
    int64_t nqt = 0, nft = 0, params = 0, qparams = 0;
    double bin = 0, qin = 0, qpay = 0, kept = 0, sum_e = 0, max_e = 0;
    for (int i = 0; i < J->n; i++) {
        const qd_tensor_info *t = qd_ckpt_tensor(J->ck, i);
        const qd_job_item *it = &J->items[i];
        qd_h5m_record r;
        item_record(J, i, &r);
        params += (int64_t)t->numel;
        bin += (double)t->nbytes;
        if (it->j.kind == QD_JOB_QUANT) {
            nqt++;
            qparams += (int64_t)t->numel;
            qin += (double)t->nbytes;
            qpay += (double)qd_h5m_record_bytes(&r);
            sum_e += it->m[0];
            if (it->m[0] > max_e) max_e = it->m[0];
        } else {
            nft++;
            kept += (double)qd_h5m_record_bytes(&r);
        }
    }
    const int size = J->size;
    const double bout = qpay + kept;
    double secs = qd_now() - J->t_start, cpu_max = 0, cpu_sum = 0;
    for (int r = 0; r < size; r++) {
        cpu_sum += J->rank_cpu[r];
        if (J->rank_cpu[r] > cpu_max) cpu_max = J->rank_cpu[r];
    }
    struct stat sb;
    double fbytes = stat(cfg->out, &sb) == 0 ? (double)sb.st_size : 0;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "tensors_quantized", (double)nqt);
    cJSON_AddNumberToObject(o, "tensors_kept", (double)nft);
    cJSON_AddNumberToObject(o, "tensors_resumed", J->nresumed);
    cJSON_AddNumberToObject(o, "parameters", (double)params);
    cJSON_AddNumberToObject(o, "parameters_quantized", (double)qparams);
    cJSON_AddNumberToObject(o, "bytes_in", bin);
    cJSON_AddNumberToObject(o, "bytes_out", bout);
    cJSON_AddNumberToObject(o, "quantized_payload_bytes", qpay);
    cJSON_AddNumberToObject(o, "file_bytes", fbytes);
    cJSON_AddNumberToObject(o, "compression", bout > 0 ? bin / bout : 0);
    cJSON_AddNumberToObject(o, "mean_rel_error", nqt ? sum_e / (double)nqt : 0);
    cJSON_AddNumberToObject(o, "max_rel_error", max_e);
    cJSON_AddNumberToObject(o, "seconds", secs);
    if (J->cres.t) {
        cJSON_AddNumberToObject(o, "calibrated_seconds", J->cres.seconds);
        cJSON_AddNumberToObject(o, "unit_cpu_seconds", c->sum[1]);
        cJSON_AddNumberToObject(o, "unit_cpu_seconds_max_rank", c->max[1]);
    } else {
        cJSON_AddNumberToObject(o, "gb_per_s", secs > 0 ? bin / secs * 1e-9 : 0);
        cJSON_AddNumberToObject(o, "quantized_gb_per_s", secs > 0 ? qin / secs * 1e-9 : 0);
    }
    cJSON_AddNumberToObject(o, "work_cpu_seconds", cpu_sum);
    cJSON_AddNumberToObject(o, "work_cpu_seconds_max_rank", cpu_max);
    cJSON_AddNumberToObject(o, "process_cpu_seconds", c->sum[0]);
    emit_kv(J->hooks, "finished", o);
    if (cfg->quiet) return;
    char scheme[256];
    describe_scheme(cfg, scheme, sizeof scheme);
    printf("wrote %s\n", cfg->out);
    printf("  scheme       %s\n", scheme);
    printf("  tensors      %lld quantized, %lld kept as float%s\n", (long long)nqt, (long long)nft,
           J->nresumed ? " (some from the resumed file)" : "");
    printf("  parameters   %lld (%lld quantized)\n", (long long)params, (long long)qparams);
    printf("  tensor data  %.0f bytes in the checkpoint, %.0f in the file (%.2fx smaller): quantized payload %.0f "
           "bytes (codes, scales, zeros) for %.0f bytes of weights (%.2fx), %.0f bytes kept as float\n",
           bin, bout, bout > 0 ? bin / bout : 0, qpay, qin, qpay > 0 ? qin / qpay : 0, kept);
    printf("  file         %.0f bytes (tensor data + HDF5 structure and attributes)\n", fbytes);
    printf("  rel. error   mean %.3e, max %.3e (Frobenius, per tensor)\n", nqt ? sum_e / (double)nqt : 0, max_e);
    print_time(J, c, secs, bin, qin, cpu_sum, cpu_max);
}

int qd_job_run(const qd_job_config *cfg, MPI_Comm comm, const qd_job_hooks *hooks)
{
    job *J = qd_xcalloc(1, sizeof *J);
    J->cfg = *cfg;
    J->comm = comm;
    J->rank = qd_coll_rank(comm);
    J->size = qd_coll_size(comm);
    J->hooks = hooks;
    J->t_start = qd_now();
    snprintf(J->partial, sizeof J->partial, "%s.partial", cfg->out);
    /* AdaRound's Hessian product: the bfloat16 tiles only if every rank has them (hosts may
     * differ), so that a unit's result does not depend on which rank computed it */
    J->cfg.ada_tiles = qd_gemm_bf16_available();
    qd_coll_allreduce_ints(comm, &J->cfg.ada_tiles, 1, QD_COLL_MIN);
    g_stop = 0;
    struct sigaction sa, old_term, old_int;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGINT, &sa, &old_int);

    int st = job_open(J);
    if (st == QD_OK) {
        job_plan(J);
        st = job_check_work(J);
        if (st == QD_OK) st = job_calibrated(J);
        if (st == QD_OK) st = job_smooth(J);
        if (st == QD_OK) st = job_records(J);
        if (st == QD_OK) {
            st = job_calib_blocks(J);
            if (st == QD_OK) st = job_rounds(J);
            st = job_finish(J, st);
            const cpu_totals c = job_cpu(J); /* collective: on every rank */
            if (J->rank == 0 && st == QD_OK)
                job_summary(J, &c);
            else if (st != QD_OK)
                emit_failed(J, st);
        }
    }
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGINT, &old_int, NULL);
    if (st) qd_err_set(st, "%s", J->msg);
    free(J->mine);
    free(J->pending);
    free(J->rank_cpu);
    qd_calib_job_end(J->calib);
    free(J->cjt);
    qd_calib_results_free(&J->cres);
    for (int i = 0; J->smooth && i < J->n; i++) free(J->smooth[i]);
    free(J->smooth);
    qd_actrec_free(&J->act);
    if (J->ck) qd_plan_free(&J->plan);
    free(J->items);
    if (J->ck) qd_ckpt_close(J->ck);
    free(J);
    return st;
}
