/* train/finetune.c — the data-parallel fine-tuning loop (train.h): grains, the fixed-tree
 * gradient sum, AdamW, evaluation, checkpoints and resume. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "collective/collective.h"
#include "collective/coll_train.h"
#include "collective/coll_train_h5.h"
#include "shard/safetensors.h"
#include "shard/st_write.h"
#include "train/rng.h"
#include "train/train.h"

static volatile sig_atomic_t g_stop = 0;
void qd_ft_request_stop(void) { g_stop = 1; }

void qd_ft_config_default(qd_ft_config *c)
{
    memset(c, 0, sizeof *c);
    c->epochs = 3;
    c->batch = 32;
    c->seqlen = 128;
    c->eval_batch = 64;
    qd_adamw_default(&c->opt);
    c->temperature = 2.0;
    c->freeze = "none";
    c->progress_every = 0;
}

int64_t qd_ft_activation_bytes(const qd_model_config *c, int B, int T) { return qd_tg_activation_bytes(c, B, T); }

int qd_ft_plan_print(const char *model, int B, int T, int ranks)
{
    qd_model *m = NULL;
    int rc = qd_model_load_flags(model, QD_MODEL_LAZY_LINEARS, &m);
    if (rc) return rc;
    qd_model_config c = *qd_model_cfg(m);
    if (c.arch == QD_ARCH_VIT) T = qd_model_tokens(m, 0);
    if (c.num_labels <= 0) c.num_labels = 2, c.has_pooler = 1; /* a new head */
    qd_tnet *n = NULL;
    if ((rc = qd_tg_net_create(&c, &n))) {
        qd_model_free(m);
        return rc;
    }
    const int grain = (B + 7) / 8, grains = (B + grain - 1) / grain;
    const int mine = (grains + ranks - 1) / ranks;
    const double MB = 1.0 / (1 << 20), P = (double)n->n * 4;
    const double act = (double)qd_tg_activation_bytes(&c, grain, T);
    /* weights + gradients; packed gradient, AdamW m and v, and the tree sum's buffers (one per
     * level of the grains' tree held at once, rank 0 most) for a full fine-tuning */
    int levels = 1;
    while ((1 << (levels - 1)) < grains) levels++;
    const double opt = P * 3 + P * (levels + 1);
    printf("\ntraining (qdist finetune --batch %d on %d ranks): grains of %d items, %d per rank; activations for "
           "the backward pass of one grain (%d tokens each) %.1f MB (%.1f MB per item); weights + gradients %.1f "
           "MB, AdamW state and gradient sums up to %.1f MB (all parameters trained); peak about %.1f MB per rank\n",
           B, ranks, grain, mine, T, act * MB, act * MB / grain, 2 * P * MB, opt * MB, (act + 2 * P + opt) * MB);
    qd_tg_net_free(n);
    qd_model_free(m);
    return QD_OK;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The order of epoch e: a Fisher-Yates shuffle seeded by (seed, e); the same on every rank. */
static void epoch_order(int n, uint64_t seed, int epoch, int *idx)
{
    uint64_t s = seed * 0x2545f4914f6cdd1dull + (uint64_t)epoch + 1;
    for (int i = 0; i < n; i++) idx[i] = i;
    for (int i = n - 1; i > 0; i--) {
        uint64_t bound = (uint64_t)i + 1, lim = UINT64_MAX - UINT64_MAX % bound, r;
        do r = qd_train_splitmix(&s);
        while (r >= lim);
        int j = (int)(r % bound), t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}

typedef struct {
    const qd_ft_config *cfg;
    MPI_Comm comm;
    int rank, size;
    qd_model *m; /* FP32 model: source of weights, the teacher */
    qd_tnet *n;
    qd_fq *fq;
    qd_tdata *train, *eval, *sel;
    float *best;                    /* --select: the parameters of the best epoch so far */
    double *best_items, *sel_items; /* its held-out scores per item; the epoch's in hand */
    double best_score;              /* its score on the held-out items (-1: none yet) */
    int best_epoch;
    int nmask; /* --mask: the pruned patterns, one per masked weight */
    struct {
        int64_t off, numel;
        uint8_t *keep;
    } * mask;
    int64_t ntrain;        /* trainable values */
    float *gp, *mom, *vel; /* packed gradient, Adam moments [ntrain] */
    qd_coll_treesum *ts;
    int *order;
    float *logits, *teacher, *dlogits;
    int cap;
    int embed;     /* a model without a head: distil the FP32 model's embeddings (MSE) */
    float *hidden; /* the teacher's residual streams (embed) */
    int64_t hcap;
    char ckpt[4200];
    char *cfg_json;
    FILE *log;
} ft;

/* ---- settings recorded with a checkpoint (what decides the weights) ------------------------- */

/* The fingerprint of what training starts from: FNV-1a (64 bits) over the model's config.json and
 * every starting parameter value (the checkpoint's weights, a new head from --seed, the latent
 * weights and steps of a --qat/--scale-only file, --mask's zeros). A moved or renamed model
 * directory or file keeps it; other weights change it. */
static void fingerprint(const ft *f, char hex[17])
{
    uint64_t h = 0xcbf29ce484222325ull;
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", qd_model_dir(f->m));
    FILE *fp = fopen(path, "rb");
    if (fp) {
        int ch;
        while ((ch = fgetc(fp)) != EOF) h = (h ^ (uint64_t)(unsigned char)ch) * 0x100000001b3ull;
        fclose(fp);
    }
    const unsigned char *b = (const unsigned char *)f->n->w;
    for (int64_t i = 0; i < f->n->n * (int64_t)sizeof *f->n->w; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    snprintf(hex, 17, "%016llx", (unsigned long long)h);
}

static char *config_json(const qd_ft_config *c, const char *model_fp)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", c->model);
    cJSON_AddStringToObject(j, "model_fingerprint", model_fp);
    cJSON_AddStringToObject(j, "data", c->data);
    cJSON_AddNumberToObject(j, "data_first", c->data_first);
    cJSON_AddNumberToObject(j, "data_count", c->data_count);
    cJSON_AddNumberToObject(j, "head", c->head);
    cJSON_AddStringToObject(j, "freeze", c->freeze ? c->freeze : "none");
    cJSON_AddNumberToObject(j, "epochs", c->epochs);
    cJSON_AddNumberToObject(j, "batch", c->batch);
    cJSON_AddNumberToObject(j, "grain", c->grain);
    cJSON_AddNumberToObject(j, "seqlen", c->seqlen);
    cJSON_AddNumberToObject(j, "max_steps", (double)c->max_steps);
    cJSON_AddNumberToObject(j, "lr", c->opt.lr);
    cJSON_AddNumberToObject(j, "weight_decay", c->opt.weight_decay);
    cJSON_AddNumberToObject(j, "warmup", c->opt.warmup);
    cJSON_AddNumberToObject(j, "clip", c->opt.clip);
    cJSON_AddNumberToObject(j, "seed", (double)c->seed);
    if (c->select_data) {
        cJSON_AddStringToObject(j, "select", c->select_data);
        cJSON_AddNumberToObject(j, "select_first", c->select_first);
        cJSON_AddNumberToObject(j, "select_count", c->select_count);
    }
    if (c->mask_h5) cJSON_AddStringToObject(j, "mask", c->mask_h5);
    if (c->act_lsq) cJSON_AddBoolToObject(j, "act_lsq", 1);
    if (c->head <= 0 && c->distill < 0) cJSON_AddStringToObject(j, "loss", "embedding-mse");
    if (c->qinit) {
        cJSON_AddStringToObject(j, "init", c->qinit);
        cJSON_AddStringToObject(j, "mode", c->fq_mode == QD_FQ_QAT ? "qat" : "scale-only");
        cJSON_AddNumberToObject(j, "distill", c->distill);
        cJSON_AddNumberToObject(j, "temperature", c->temperature);
    }
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

/* ---- checkpoints ----------------------------------------------------------------------------- */

static int save_checkpoint(ft *f, int64_t step)
{
    int rc = QD_OK;
    if (f->rank == 0) {
        const qd_tnet *n = f->n;
        qd_st_out_tensor *t = qd_xcalloc((size_t)n->np + 3, sizeof *t);
        for (int i = 0; i < n->np; i++) {
            t[i].name = n->p[i].name;
            t[i].dtype = QD_DT_F32;
            t[i].ndim = 1;
            t[i].shape[0] = n->p[i].numel;
            t[i].data = n->w + n->p[i].off;
        }
        t[n->np] = (qd_st_out_tensor){
            .name = "optimizer.adam.m", .dtype = QD_DT_F32, .ndim = 1, .shape = {f->ntrain}, .data = f->mom};
        t[n->np + 1] = (qd_st_out_tensor){
            .name = "optimizer.adam.v", .dtype = QD_DT_F32, .ndim = 1, .shape = {f->ntrain}, .data = f->vel};
        int nt = n->np + 2;
        if (f->best && f->best_score >= 0)
            t[nt++] = (qd_st_out_tensor){
                .name = "select.best", .dtype = QD_DT_F32, .ndim = 1, .shape = {n->n}, .data = f->best};
        cJSON *md = cJSON_CreateObject();
        char sb[64];
        snprintf(sb, sizeof sb, "%lld", (long long)step);
        cJSON_AddStringToObject(md, "format", "qdist-finetune-checkpoint");
        cJSON_AddStringToObject(md, "step", sb);
        cJSON_AddStringToObject(md, "config", f->cfg_json);
        if (f->best) { /* the held-out score and epoch of "select.best", exactly */
            snprintf(sb, sizeof sb, "%d %a", f->best_epoch, f->best_score);
            cJSON_AddStringToObject(md, "select_best", sb);
        }
        char *mds = cJSON_PrintUnformatted(md);
        cJSON_Delete(md);
        rc = qd_st_write(f->ckpt, t, nt, mds);
        free(mds);
        free(t);
    }
    return qd_coll_agree_msg(f->comm, rc, NULL, 0, NULL);
}

/* The checkpoint's settings against this run's: the model (and a --qat/--scale-only/--mask
 * file) by the fingerprint of the starting parameters, not by the path they were given by;
 * everything else as written. */
static int same_settings(const char *a, const char *b)
{
    cJSON *ja = cJSON_Parse(a), *jb = cJSON_Parse(b);
    static const char *const by_path[] = {"model", "init", "mask"};
    for (int k = 0; k < 3; k++) {
        cJSON_DeleteItemFromObjectCaseSensitive(ja, by_path[k]);
        cJSON_DeleteItemFromObjectCaseSensitive(jb, by_path[k]);
    }
    int same = ja && jb && cJSON_GetObjectItemCaseSensitive(ja, "model_fingerprint") && cJSON_Compare(ja, jb, 1);
    cJSON_Delete(ja);
    cJSON_Delete(jb);
    return same;
}

static int load_checkpoint(ft *f, int64_t *step)
{
    qd_checkpoint *ck = NULL;
    int rc = qd_ckpt_open(f->ckpt, &ck);
    if (rc) return qd_err_wrap(rc, "--resume: ");
    const qd_st_file *sf = qd_ckpt_file(ck, 0);
    cJSON *md = sf->metadata_json ? cJSON_Parse(sf->metadata_json) : NULL;
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(md, "step"),
                *cf = cJSON_GetObjectItemCaseSensitive(md, "config");
    if (!cJSON_IsString(st) || !cJSON_IsString(cf)) {
        rc = qd_err_set(QD_EFORMAT, "%s: not a fine-tuning checkpoint", f->ckpt);
        goto out;
    }
    if (!same_settings(cf->valuestring, f->cfg_json)) {
        rc = qd_err_set(QD_EMISMATCH,
                        "%s: the checkpoint was made with other settings:\n  checkpoint: %s\n  now:        %s", f->ckpt,
                        cf->valuestring, f->cfg_json);
        goto out;
    }
    *step = strtoll(st->valuestring, NULL, 10);
    for (int i = 0; i < f->n->np + 2 && !rc; i++) {
        const char *name = i < f->n->np ? f->n->p[i].name : i == f->n->np ? "optimizer.adam.m" : "optimizer.adam.v";
        float *dst = i < f->n->np ? f->n->w + f->n->p[i].off : i == f->n->np ? f->mom : f->vel;
        int64_t cnt = i < f->n->np ? f->n->p[i].numel : f->ntrain;
        int ti = qd_ckpt_find(ck, name);
        if (ti < 0 || (int64_t)qd_ckpt_tensor(ck, ti)->numel != cnt) {
            rc = qd_err_set(QD_EFORMAT, "%s: tensor '%s' missing or of the wrong size", f->ckpt, name);
            break;
        }
        if (cnt == 0) continue;
        const float *src;
        int owned = 0;
        if ((rc = qd_ckpt_read_f32(ck, ti, &src, &owned))) break;
        memcpy(dst, src, (size_t)cnt * sizeof *dst);
        if (owned) free((void *)src);
    }
    const cJSON *sb = cJSON_GetObjectItemCaseSensitive(md, "select_best");
    if (!rc && f->best && cJSON_IsString(sb)) {
        char *e = NULL;
        f->best_epoch = (int)strtol(sb->valuestring, &e, 10);
        f->best_score = strtod(e, NULL);
        int ti = qd_ckpt_find(ck, "select.best");
        const float *src;
        int owned = 0;
        if (f->best_score >= 0 && (ti < 0 || (int64_t)qd_ckpt_tensor(ck, ti)->numel != f->n->n))
            rc = qd_err_set(QD_EFORMAT, "%s: tensor 'select.best' missing or of the wrong size", f->ckpt);
        else if (f->best_score >= 0 && !(rc = qd_ckpt_read_f32(ck, ti, &src, &owned))) {
            memcpy(f->best, src, (size_t)f->n->n * sizeof *f->best);
            if (owned) free((void *)src);
        }
    }
out:
    cJSON_Delete(md);
    qd_ckpt_close(ck);
    return rc;
}

/* ---- one step ------------------------------------------------------------------------------- */

static void ensure_cap(ft *f, int n)
{
    int L = f->embed ? f->n->c.hidden : f->n->c.num_labels;
    if (n <= f->cap) return;
    free(f->logits);
    free(f->teacher);
    free(f->dlogits);
    f->logits = qd_xmalloc((size_t)n * L * sizeof(float));
    f->teacher = qd_xmalloc((size_t)n * L * sizeof(float));
    f->dlogits = qd_xmalloc((size_t)n * L * sizeof(float));
    f->cap = n;
}

static int get_batch(ft *f, qd_tdata *d, const int *idx, int n, qd_batch *b, int32_t **labels)
{
    int rc = qd_tdata_batch(d, idx, n, b, labels);
    if (!rc && f->n->c.arch == QD_ARCH_VIT) b->T = qd_model_tokens(f->m, 0);
    return rc;
}

/* The FP32 model's embedding of batch b (sentence-transformers pooling) into f->teacher. */
static int teacher_embedding(ft *f, const qd_batch *b)
{
    const qd_model_config *mc = qd_model_cfg(f->m);
    const int64_t per = (int64_t)b->B * b->T * mc->hidden;
    if ((mc->layers + 1) * per > f->hcap) {
        free(f->hidden);
        f->hcap = (mc->layers + 1) * per;
        f->hidden = qd_xmalloc((size_t)f->hcap * sizeof *f->hidden);
    }
    int rc = qd_model_forward(f->m, b, NULL, NULL, NULL, f->hidden);
    if (!rc) rc = qd_model_embedding(f->m, b, f->hidden + mc->layers * per, f->teacher);
    return rc;
}

static double cosine(const float *a, const float *b, int n)
{
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) ab += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0;
}

/* After a backward pass: the trainable gradients into the packed slot; stats[0, 2]. */
static int pack_grad(ft *f, float *slot, double loss, int cnt, double *stats)
{
    qd_tnet *n = f->n;
    if (f->fq) qd_fq_map_grad(f->fq, n);
    for (int i = 0; i < f->nmask; i++) /* pruned weights get no gradient */
        for (int64_t e = 0; e < f->mask[i].numel; e++)
            if (!f->mask[i].keep[e]) n->g[f->mask[i].off + e] = 0;
    int64_t k = 0;
    for (int i = 0; i < n->np; i++) {
        const qd_tparam *p = &n->p[i];
        if (!p->trainable) continue;
        memcpy(slot + k, n->g + p->off, (size_t)p->numel * sizeof *slot);
        k += p->numel;
    }
    stats[0] = loss;
    stats[2] = cnt;
    return QD_OK;
}

/* Gradient of one grain into the packed slot; stats: loss sum, correct (embed: the sum of the
 * cosines to the teacher), items. */
static int grain_grad(ft *f, const int *idx, int cnt, double scale, float *slot, double *stats)
{
    const qd_ft_config *c = f->cfg;
    qd_tnet *n = f->n;
    const int L = n->c.num_labels;
    qd_batch b;
    int32_t *labels;
    int rc = get_batch(f, f->train, idx, cnt, &b, &labels);
    if (rc) return rc;
    ensure_cap(f, cnt);
    for (int i = 0; i < cnt && !f->embed; i++)
        if (labels[i] >= L)
            return qd_err_set(QD_EINVAL, "%s: label %d but the head has %d classes (--head N)", c->data, labels[i], L);
    qd_tg_net_zero_grad(n);
    if (f->fq) qd_fq_zero_grad(f->fq);
    if (f->embed) {
        double loss = 0;
        if ((rc = teacher_embedding(f, &b)) || (rc = qd_tg_forward(n, &b, NULL, f->logits))) return rc;
        memset(f->dlogits, 0, (size_t)cnt * n->c.hidden * sizeof(float));
        loss = qd_tg_loss_mse(f->logits, f->teacher, cnt, n->c.hidden, scale, f->dlogits);
        if ((rc = qd_tg_backward(n, &b, NULL, f->dlogits))) return rc;
        stats[1] = 0;
        for (int i = 0; i < cnt; i++)
            stats[1] +=
                cosine(f->logits + (int64_t)i * n->c.hidden, f->teacher + (int64_t)i * n->c.hidden, n->c.hidden);
        return pack_grad(f, slot, loss, cnt, stats);
    }
    if ((rc = qd_tg_forward(n, &b, f->logits, NULL))) return rc;
    memset(f->dlogits, 0, (size_t)cnt * L * sizeof(float));
    int correct = 0;
    double wl = c->distill > 0 ? 1.0 - c->distill : 1.0;
    double loss = 0;
    if (wl > 0)
        loss += qd_tg_loss_ce(f->logits, cnt, L, labels, scale * wl, f->dlogits, &correct);
    else
        qd_tg_loss_ce(f->logits, cnt, L, labels, 0.0, NULL, &correct);
    if (c->distill > 0) {
        if ((rc = qd_model_forward(f->m, &b, NULL, NULL, f->teacher, NULL))) return rc;
        loss += qd_tg_loss_kl(f->logits, f->teacher, cnt, L, c->temperature, scale * c->distill, f->dlogits);
    }
    if ((rc = qd_tg_backward(n, &b, f->dlogits, NULL))) return rc;
    stats[1] = correct;
    return pack_grad(f, slot, loss, cnt, stats);
}

/* Top-1 (embed: mean cosine to the FP32 embeddings) on the items of d (NULL: -1), data parallel;
 * every item's score (1/0 correct, or its cosine) gathered in item order, so the mean is the same
 * for any rank count; items (may be NULL): those N scores. */
static int evaluate(ft *f, qd_tdata *d, double *acc, double *items)
{
    *acc = -1;
    if (!d) return QD_OK;
    const int N = qd_tdata_count(d), L = f->n->c.num_labels;
    int r0 = (int)((int64_t)N * f->rank / f->size), r1 = (int)((int64_t)N * (f->rank + 1) / f->size);
    double *mine = qd_xcalloc((size_t)(r1 - r0) + 1, sizeof(double));
    int rc = QD_OK, EB = f->cfg->eval_batch > 0 ? f->cfg->eval_batch : 64;
    int *idx = qd_xmalloc((size_t)EB * sizeof *idx);
    ensure_cap(f, EB);
    for (int s = r0; s < r1 && !rc; s += EB) {
        int k = QD_MIN(EB, r1 - s);
        for (int i = 0; i < k; i++) idx[i] = s + i;
        qd_batch b;
        int32_t *labels;
        if ((rc = get_batch(f, d, idx, k, &b, &labels))) break;
        if (f->embed) {
            const int H = f->n->c.hidden;
            if ((rc = teacher_embedding(f, &b)) || (rc = qd_tg_forward(f->n, &b, NULL, f->logits))) break;
            for (int i = 0; i < k; i++)
                mine[s - r0 + i] = cosine(f->logits + (int64_t)i * H, f->teacher + (int64_t)i * H, H);
            continue;
        }
        if ((rc = qd_tg_forward(f->n, &b, f->logits, NULL))) break;
        for (int i = 0; i < k; i++) {
            int am = 0;
            for (int j = 1; j < L; j++)
                if (f->logits[(int64_t)i * L + j] > f->logits[(int64_t)i * L + am]) am = j;
            mine[s - r0 + i] = am == labels[i];
        }
    }
    free(idx);
    if ((rc = qd_coll_agree_msg(f->comm, rc, NULL, 0, NULL))) {
        free(mine);
        return rc;
    }
    double *all = items ? items : qd_xmalloc((size_t)N * sizeof *all + 1), sum = 0;
    qd_coll_grain_stats(f->comm, N, 1, mine, all);
    for (int i = 0; i < N; i++) sum += all[i];
    if (!items) free(all);
    free(mine);
    *acc = N ? sum / (double)N : -1;
    return QD_OK;
}

static void fmt_time(double s, char *buf, size_t n)
{
    if (s < 0 || !isfinite(s)) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else
        snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
}

static void log_epoch(ft *f, int epoch, int64_t step, double loss, double tacc, double eacc, double sacc, double secs)
{
    if (f->rank != 0) return;
    if (!f->cfg->quiet) {
        if (eacc >= 0 && f->embed)
            printf("epoch %d: eval cosine to the FP32 embeddings %.4f", epoch, eacc);
        else if (eacc >= 0)
            printf("epoch %d: eval top-1 %.2f %%", epoch, 100 * eacc);
        else
            printf("epoch %d:", epoch);
        if (sacc >= 0)
            printf(f->embed ? "  held-out cosine %.4f" : "  held-out top-1 %.2f %%", f->embed ? sacc : 100 * sacc);
        if (epoch > 0 && f->embed)
            printf("  train loss %.6f  train cosine %.4f", loss, tacc);
        else if (epoch > 0)
            printf("  train loss %.4f  train acc %.2f %%", loss, 100 * tacc);
        printf("  (%.1f s)\n", secs);
        fflush(stdout);
    }
    if (f->log) {
        const char *k = f->embed ? "cosine" : "acc";
        fprintf(f->log, "{\"epoch\":%d,\"step\":%lld,\"train_loss\":%.6f,\"train_%s\":%.6f,\"eval_%s\":%.6f", epoch,
                (long long)step, loss, k, tacc, k, eacc);
        if (f->sel) fprintf(f->log, ",\"select_%s\":%.6f", k, sacc);
        fprintf(f->log, ",\"seconds\":%.3f}\n", secs);
        fflush(f->log);
    }
}

/* --select: is the epoch whose held-out scores are x better than the best so far (b)? Only when
 * the mean of the paired differences is more than two of its standard errors above 0: a
 * difference of a few items between two models that agree on almost every item is noise, and
 * then the earlier one (in the end the start) is kept. */
static int select_better(const double *x, const double *b, int N)
{
    if (N < 2) return 0;
    double m = 0, v = 0;
    for (int i = 0; i < N; i++) m += x[i] - b[i];
    m /= N;
    for (int i = 0; i < N; i++) v += (x[i] - b[i] - m) * (x[i] - b[i] - m);
    v /= (N - 1);
    return m > 0 && m > 2.0 * sqrt(v / N);
}

/* The evaluation at the start (epoch 0) and the end of every epoch; with --select, keeps the
 * parameters of the best epoch on the held-out items. */
static int epoch_eval(ft *f, int epoch, int64_t step, double loss, double tacc, double secs)
{
    double acc, sacc;
    int rc = evaluate(f, f->eval, &acc, NULL);
    if (!rc) rc = evaluate(f, f->sel, &sacc, f->sel_items);
    if (rc) return rc;
    if (f->sel && (f->best_score < 0 || select_better(f->sel_items, f->best_items, qd_tdata_count(f->sel)))) {
        memcpy(f->best, f->n->w, (size_t)f->n->n * sizeof *f->best);
        memcpy(f->best_items, f->sel_items, (size_t)qd_tdata_count(f->sel) * sizeof *f->best_items);
        f->best_score = sacc;
        f->best_epoch = epoch;
    }
    log_epoch(f, epoch, step, loss, tacc, acc, sacc, secs);
    return QD_OK;
}

/* --resume with --select: the held-out scores of the checkpoint's best parameters, evaluated
 * again (the values an uninterrupted run holds). */
static int select_restore(ft *f)
{
    if (!f->best || f->best_score < 0) return QD_OK;
    float *cur = qd_xmalloc((size_t)f->n->n * sizeof *cur);
    memcpy(cur, f->n->w, (size_t)f->n->n * sizeof *cur);
    memcpy(f->n->w, f->best, (size_t)f->n->n * sizeof *cur);
    if (f->fq) qd_fq_prepare(f->fq, f->n);
    double sacc;
    int rc = evaluate(f, f->sel, &sacc, f->best_items);
    memcpy(f->n->w, cur, (size_t)f->n->n * sizeof *cur);
    if (f->fq) qd_fq_prepare(f->fq, f->n);
    free(cur);
    return rc;
}

/* --mask: the pruned patterns of the file's records, the pruned weights set to 0. */
static int load_masks(ft *f, const char *h5)
{
    qd_tnet *n = f->n;
    f->mask = qd_xcalloc((size_t)n->np, sizeof *f->mask);
    for (int i = 0; i < n->np; i++) {
        const qd_tparam *p = &n->p[i];
        if (p->role != QD_TP_LIN_W) continue;
        const char *cands[2] = {p->name, p->name + strlen(n->prefix)};
        qd_coll_qtensor q;
        int rc = QD_ENOTFOUND;
        for (int k = 0; k < 2 && rc == QD_ENOTFOUND; k++) rc = qd_coll_qtensor_read(h5, cands[k], &q);
        if (rc == QD_ENOTFOUND) continue;
        if (rc) return rc;
        if (q.mask && q.out * q.in != p->numel) {
            qd_coll_qtensor_free(&q);
            return qd_err_set(QD_EMISMATCH, "%s: tensor '%s' has %lld values in the file, %lld in the model", h5,
                              p->name, (long long)(q.out * q.in), (long long)p->numel);
        }
        if (q.mask) {
            f->mask[f->nmask].off = p->off;
            f->mask[f->nmask].numel = p->numel;
            f->mask[f->nmask++].keep = q.mask;
            q.mask = NULL;
            for (int64_t e = 0; e < p->numel; e++)
                if (!f->mask[f->nmask - 1].keep[e]) n->w[p->off + e] = 0;
        }
        qd_coll_qtensor_free(&q);
    }
    if (f->nmask == 0) return qd_err_set(QD_ENOTFOUND, "%s: --mask: no pruned encoder Linear in the file", h5);
    return QD_OK;
}

static int out_is_h5(const char *p)
{
    size_t n = strlen(p);
    return n > 3 && !strcmp(p + n - 3, ".h5");
}

static int setup(ft *f)
{
    const qd_ft_config *c = f->cfg;
    int rc;
    if ((rc = qd_model_load(c->model, &f->m))) return rc;
    if ((rc = qd_tnet_load(f->m, c->head, c->seed, &f->n))) return rc;
    f->embed = f->n->c.num_labels <= 0;
    if (f->embed && c->distill >= 0)
        return qd_err_set(QD_EINVAL,
                          "%s: the model has no classification head: give --head N, or --distill embedding to "
                          "train towards the FP32 model's embeddings",
                          c->model);
    if (f->embed && qd_model_cfg(f->m)->embedding_dim != f->n->c.hidden)
        return qd_err_set(QD_EUNSUPPORTED, "%s: embeddings of %d values from a hidden size of %d (a projection)",
                          c->model, qd_model_cfg(f->m)->embedding_dim, f->n->c.hidden);
    if (!f->embed && c->distill < 0)
        return qd_err_set(QD_EINVAL, "--distill embedding is for models without a classification head");
    if (c->distill > 0 && c->head > 0)
        return qd_err_set(QD_EINVAL, "--distill needs the model's own head as the teacher (not --head)");
    if (c->qinit) {
        if ((rc = qd_fq_attach(f->n, c->qinit, c->fq_mode, &f->fq))) return rc;
        qd_fq_init(f->fq, f->n);
        int na = 0;
        if (c->act_lsq && (rc = qd_fq_attach_act(f->fq, f->n, &na))) return rc;
        if (c->act_lsq && na == 0)
            return qd_err_set(QD_ENOTFOUND, "%s: --act-lsq: no encoder Linear input in the activation record",
                              c->qinit);
        for (int i = 0; i < f->n->np; i++)
            if (f->n->p[i].role == QD_TP_EXTRA) f->n->p[i].lr_mult = 10.0; /* log steps: relative moves */
    } else if ((rc = qd_tnet_freeze(f->n, c->freeze)))
        return rc;
    f->ntrain = qd_tnet_trainable(f->n);
    if (f->ntrain == 0) return qd_err_set(QD_EINVAL, "nothing to train (--freeze %s)", c->freeze);
    if (c->mask_h5 && (rc = load_masks(f, c->mask_h5))) return rc;
    if ((rc = qd_tdata_open(f->m, c->data, c->data_first, c->data_count, c->seqlen, &f->train))) return rc;
    if (c->select_data) {
        if ((rc = qd_tdata_open(f->m, c->select_data, c->select_first, c->select_count, c->seqlen, &f->sel))) return rc;
        f->best = qd_xmalloc((size_t)f->n->n * sizeof *f->best);
        f->best_items = qd_xmalloc((size_t)qd_tdata_count(f->sel) * sizeof *f->best_items + 1);
        f->sel_items = qd_xmalloc((size_t)qd_tdata_count(f->sel) * sizeof *f->sel_items + 1);
        f->best_score = -1;
    }
    if (c->eval_data && (rc = qd_tdata_open(f->m, c->eval_data, c->eval_first, c->eval_count, c->seqlen, &f->eval)))
        return rc;
    if (!f->embed && qd_tdata_classes(f->train) > f->n->c.num_labels)
        return qd_err_set(QD_EINVAL, "%s: %d classes, the head has %d (--head N)", c->data, qd_tdata_classes(f->train),
                          f->n->c.num_labels);
    f->gp = qd_xcalloc((size_t)f->ntrain, sizeof *f->gp);
    f->mom = qd_xcalloc((size_t)f->ntrain, sizeof *f->mom);
    f->vel = qd_xcalloc((size_t)f->ntrain, sizeof *f->vel);
    if ((rc = qd_coll_treesum_create(f->comm, f->ntrain, &f->ts))) return rc;
    f->order = qd_xmalloc((size_t)qd_tdata_count(f->train) * sizeof *f->order);
    if (out_is_h5(c->out))
        snprintf(f->ckpt, sizeof f->ckpt, "%s.ckpt.safetensors", c->out);
    else {
        if (mkdir(c->out, 0777) && errno != EEXIST)
            return qd_err_set(QD_EIO, "%s: cannot create: %s", c->out, strerror(errno));
        snprintf(f->ckpt, sizeof f->ckpt, "%s/checkpoint.safetensors", c->out);
    }
    char fp[17];
    fingerprint(f, fp);
    f->cfg_json = config_json(c, fp);
    return QD_OK;
}

static int finish_output(ft *f, double seconds)
{
    const qd_ft_config *c = f->cfg;
    int rc = QD_OK;
    if (f->best && f->best_score >= 0) { /* --select: the best epoch's parameters (every rank) */
        memcpy(f->n->w, f->best, (size_t)f->n->n * sizeof *f->best);
        if (f->fq) qd_fq_prepare(f->fq, f->n);
        if (f->rank == 0 && !c->quiet) {
            printf(f->embed ? "finetune: writing epoch %d (held-out cosine %.4f)\n"
                            : "finetune: writing epoch %d (held-out top-1 %.2f %%)\n",
                   f->best_epoch, f->embed ? f->best_score : 100 * f->best_score);
            fflush(stdout);
        }
    }
    if (f->rank == 0) {
        if (f->fq) {
            char *how = NULL;
            cJSON *j = cJSON_Parse(f->cfg_json);
            if (f->best && f->best_score >= 0) cJSON_AddNumberToObject(j, "selected_epoch", f->best_epoch);
            how = cJSON_PrintUnformatted(j);
            cJSON_Delete(j);
            rc = qd_fq_write(f->fq, f->n, f->m, c->out, how, f->size, seconds);
            free(how);
        } else
            rc = qd_tnet_save_hf(f->n, qd_model_dir(f->m), c->out);
        if (!rc) remove(f->ckpt);
    }
    return qd_coll_agree_msg(f->comm, rc, NULL, 0, NULL);
}

static int run(ft *f)
{
    const qd_ft_config *c = f->cfg;
    int rc = setup(f);
    if ((rc = qd_coll_agree_msg(f->comm, rc, NULL, 0, NULL))) return rc;
    const int N = qd_tdata_count(f->train), B = c->batch > 0 ? c->batch : 32;
    const int grain = c->grain > 0 ? c->grain : (B + 7) / 8;
    const int64_t spe = (N + B - 1) / B;
    int64_t total = spe * (c->epochs > 0 ? c->epochs : 1);
    if (c->max_steps > 0 && c->max_steps < total) total = c->max_steps;
    qd_adamw opt = c->opt;
    opt.total_steps = total;
    int64_t step = 0;
    if (c->resume) {
        rc = load_checkpoint(f, &step);
        if (!rc) rc = select_restore(f);
        if ((rc = qd_coll_agree_msg(f->comm, rc, NULL, 0, NULL))) return rc;
    }
    if (f->rank == 0 && !c->quiet) {
        printf("finetune: %s, %d training items, batch %d in grains of %d, %lld steps (%lld per epoch), %lld of %lld "
               "values train%s, %d rank%s\n",
               c->model, N, B, grain, (long long)total, (long long)spe, (long long)f->ntrain, (long long)f->n->n,
               f->fq ? (c->fq_mode == QD_FQ_QAT ? " (QAT: latent weights + LSQ steps)" : " (scale-only)") : "", f->size,
               f->size == 1 ? "" : "s");
        if (step > 0) printf("resuming at step %lld from %s\n", (long long)step, f->ckpt);
        fflush(stdout);
    }
    if (c->log_json && f->rank == 0) f->log = fopen(c->log_json, step > 0 ? "a" : "w");
    if (f->fq) qd_fq_prepare(f->fq, f->n);
    double t0 = now(), tep = t0;
    if (step == 0 && (rc = epoch_eval(f, 0, 0, 0, 0, 0))) return rc;
    const int every = c->progress_every > 0 ? c->progress_every : (int)QD_MAX(1, spe / 10);
    double ep_loss = 0, ep_correct = 0, ep_items = 0, win_t = now();
    int64_t step0 = step;
    const char *sa = getenv("QD_FAULT_SIGNAL_AFTER");
    const int64_t sig_after = sa ? strtoll(sa, NULL, 10) : 0;
    int *gidx = qd_xmalloc((size_t)B * sizeof *gidx);
    double *mine = qd_xmalloc((size_t)(B + 8) * 3 * sizeof *mine), *all = qd_xmalloc((size_t)(B + 8) * 3 * sizeof *all);
    while (step < total) {
        const int epoch = (int)(step / spe), pos = (int)(step % spe);
        if (pos == 0 || step == step0) epoch_order(N, c->seed, epoch, f->order);
        const int b0 = pos * B, nb = QD_MIN(B, N - b0);
        const int G = (nb + grain - 1) / grain;
        int g0, g1;
        qd_coll_treesum_begin(f->ts, G, &g0, &g1);
        rc = QD_OK;
        for (int g = g0; g < g1; g++) {
            int i0 = g * grain, cnt = QD_MIN(grain, nb - i0);
            for (int i = 0; i < cnt; i++) gidx[i] = f->order[b0 + i0 + i];
            float *slot = qd_coll_treesum_slot(f->ts);
            if (!rc) rc = grain_grad(f, gidx, cnt, 1.0 / nb, slot, mine + 3 * (g - g0));
            qd_coll_treesum_push(f->ts);
        }
        if ((rc = qd_coll_agree_msg(f->comm, rc, NULL, 0, NULL))) {
            qd_coll_treesum_finish(f->ts, f->gp); /* keep the ranks in step */
            break;
        }
        qd_coll_treesum_finish(f->ts, f->gp);
        qd_coll_grain_stats(f->comm, G, 3, mine, all);
        double sl = 0, sc = 0, si = 0;
        for (int g = 0; g < G; g++) sl += all[3 * g], sc += all[3 * g + 1], si += all[3 * g + 2];
        double gnorm = qd_adamw_step(&opt, f->n, f->gp, f->mom, f->vel, step);
        if (f->fq) qd_fq_prepare(f->fq, f->n);
        step++;
        ep_loss += sl * nb, ep_correct += sc, ep_items += si;
        if (f->rank == 0 && !c->quiet && (step % every == 0 || step == total)) {
            double el = now() - t0, rate = el / (double)(step - step0);
            char eta[32];
            fmt_time(rate * (double)(total - step), eta, sizeof eta);
            printf(f->embed
                       ? "epoch %d step %lld/%lld  loss %.4g  cosine %.4f  lr %.2e  |g| %.3g  %.2f s/step  ETA %s\n"
                       : "epoch %d step %lld/%lld  loss %.4f  acc %.1f %%  lr %.2e  |g| %.3g  %.2f s/step  ETA %s\n",
                   epoch + 1, (long long)step, (long long)total, ep_items > 0 ? ep_loss / ep_items : 0,
                   ep_items > 0 ? (f->embed ? 1.0 : 100.0) * ep_correct / ep_items : 0, qd_adamw_lr(&opt, step - 1),
                   gnorm, (now() - win_t) / (double)QD_MIN(every, step - step0), eta);
            fflush(stdout);
            win_t = now();
        }
        if (sig_after > 0 && step == sig_after && f->rank == 0) raise(SIGTERM); /* test hook: preemption */
        int stop = qd_coll_any(f->comm, g_stop);
        int epoch_end = step % spe == 0 || step == total;
        if (epoch_end) {
            if ((rc = epoch_eval(f, (int)((step + spe - 1) / spe), step, ep_items > 0 ? ep_loss / ep_items : 0,
                                 ep_items > 0 ? ep_correct / ep_items : 0, now() - tep)))
                break;
            ep_loss = ep_correct = ep_items = 0;
            tep = now();
        }
        if (step < total && (epoch_end || stop || (c->save_every > 0 && step % c->save_every == 0)) &&
            (rc = save_checkpoint(f, step)))
            break;
        if (stop && step < total) {
            if (f->rank == 0)
                fprintf(stderr, "finetune: interrupted after step %lld; checkpoint %s; rerun with --resume\n",
                        (long long)step, f->ckpt);
            rc = QD_EINTR;
            break;
        }
    }
    free(gidx);
    free(mine);
    free(all);
    if (!rc) rc = finish_output(f, now() - t0);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss = qd_coll_max_f64(f->comm, (double)ru.ru_maxrss / 1024.0);
    if (!rc && f->rank == 0 && !c->quiet) {
        printf("finetune: %lld steps in %.1f s (%.3f s/step), peak RSS %.0f MiB (largest rank); wrote %s\n",
               (long long)(step - step0), now() - t0, (now() - t0) / (double)QD_MAX(1, step - step0), rss, c->out);
        fflush(stdout);
    }
    return rc;
}

int qd_ft_run(const qd_ft_config *c, MPI_Comm comm)
{
    ft f;
    memset(&f, 0, sizeof f);
    f.cfg = c;
    f.comm = comm;
    f.rank = qd_coll_rank(comm);
    f.size = qd_coll_size(comm);
    g_stop = 0;
    int rc = run(&f);
    if (f.log) fclose(f.log);
    qd_coll_treesum_free(f.ts);
    qd_tdata_free(f.train);
    qd_tdata_free(f.eval);
    qd_tdata_free(f.sel);
    free(f.best);
    free(f.best_items);
    free(f.sel_items);
    for (int i = 0; i < f.nmask; i++) free(f.mask[i].keep);
    free(f.mask);
    qd_fq_free(f.fq);
    qd_tg_net_free(f.n);
    qd_model_free(f.m);
    free(f.gp);
    free(f.mom);
    free(f.vel);
    free(f.order);
    free(f.logits);
    free(f.teacher);
    free(f.dlogits);
    free(f.hidden);
    free(f.cfg_json);
    return rc;
}
