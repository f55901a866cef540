/* worker/act_calib.c — static activation calibration (see act_calib.h). */
#include "worker/act_calib.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "collective/collective.h"
#include "worker/calib_job.h"

enum { M_POINTS = 4, FINAL_NORM = 3 };
/* Beyond the tapped tensors, for integer graphs that lower LayerNorm to int8 builtins (export/):
 * the mean and the centred values (x - mean) of each LayerNorm's input rows, ViT's tokens before
 * the positions and its logits. Entries after the taps: the model-level LayerNorm (BERT's
 * embeddings.norm, ViT's final_norm) mean and diff, then per block ln1 mean, diff, ln2 mean, diff,
 * then tokens and logits. */
enum { X_LN_MODEL = 0, X_LN_BLOCKS = 2, X_PER_BLOCK = 4 };

typedef struct {
    int layers, n;
    int vit, T;       /* ViT; tokens per item */
    const float *pos; /* ViT position embeddings [T, hidden] (prefix first) */
    qd_actq_stats *st;
    int hist; /* second pass: fill histograms */
    /* per-channel ranges of the Linear inputs that may have outlier channels, and after pass 1
     * the outlier mask of each (NULL elsewhere) */
    float **chmin, **chmax;
    int *chn;
    uint8_t **omask;
} sink;

/* the Linear inputs whose producers can split outlier channels off (runtime/intmodel.h) */
static int per_channel_point(int layer, int point)
{
    return layer >= 0 && (point == QD_TAP_QKV_IN || point == QD_TAP_MLP_IN || point == QD_TAP_ACT);
}

static int idx(const sink *s, int layer, int point)
{
    return layer < 0 ? point : M_POINTS + layer * QD_TAP_PER_BLOCK + point;
}

static int xidx(const sink *s, int e) { return M_POINTS + s->layers * QD_TAP_PER_BLOCK + e; }

static void see(qd_actq_stats *st, const float *x, int hist)
{
    const float v = *x;
    if (v != v) return; /* NaN: not a range */
    if (!hist) {
        if (v < st->min) st->min = v;
        if (v > st->max) st->max = v;
        return;
    }
    const float A = fmaxf(fabsf(st->min), fabsf(st->max));
    st->count++;
    if (st->hist && A > 0) st->hist[qd_actq_bin(v, A)]++;
}

/* a LayerNorm input's row means and centred values into entries e (mean) and e + 1 (diff) */
static void ln_stats(sink *s, int e, const float *x, int64_t rows, int64_t cols, const uint8_t *valid)
{
    qd_actq_stats *mst = &s->st[xidx(s, e)], *dst = &s->st[xidx(s, e + 1)];
    for (int64_t r = 0; r < rows; r++) {
        if (valid && !valid[r]) continue;
        const float *xr = x + r * cols;
        double sum = 0;
        for (int64_t c = 0; c < cols; c++) sum += xr[c];
        const float mean = (float)(sum / (double)cols);
        see(mst, &mean, s->hist);
        for (int64_t c = 0; c < cols; c++) {
            const float d = xr[c] - mean;
            see(dst, &d, s->hist);
        }
    }
}

/* the extra entries a tap feeds: LayerNorm inputs, ViT's tokens (embeddings less positions) */
static void extra(sink *s, int layer, int point, const float *x, int64_t rows, int64_t cols, const uint8_t *valid)
{
    const int blk = X_LN_BLOCKS + X_PER_BLOCK * (layer < 0 ? 0 : layer);
    if (layer < 0 && point == QD_TAP_M_EMBED) {
        ln_stats(s, s->vit ? X_LN_BLOCKS : X_LN_MODEL, x, rows, cols, valid);
        if (!s->vit || !s->pos) return;
        qd_actq_stats *st = &s->st[xidx(s, X_LN_BLOCKS + X_PER_BLOCK * s->layers)];
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) {
                const float t = x[r * cols + c] - s->pos[(r % s->T) * cols + c];
                see(st, &t, s->hist);
            }
    } else if (layer >= 0 && point == QD_TAP_RES1) {
        ln_stats(s, blk + (s->vit ? 2 : 0), x, rows, cols, valid);
    } else if (layer >= 0 && point == QD_TAP_RES2 && !s->vit) {
        ln_stats(s, blk + 2, x, rows, cols, valid);
    } else if (layer >= 0 && point == QD_TAP_OUT && s->vit && layer + 1 < s->layers) {
        ln_stats(s, blk + X_PER_BLOCK, x, rows, cols, valid);
    }
}

static int on_tap(void *user, const qd_model *m, int layer, int point, const float *x, int64_t rows, int64_t cols,
                  const uint8_t *valid)
{
    sink *s = user;
    const int i = idx(s, layer, point);
    qd_actq_stats *st = &s->st[i];
    const int square = layer >= 0 && (point == QD_TAP_SCORES || point == QD_TAP_PROBS);
    if (per_channel_point(layer, point) && !s->chmin[i]) {
        s->chn[i] = (int)cols;
        s->chmin[i] = qd_xmalloc((size_t)cols * sizeof(float));
        s->chmax[i] = qd_xmalloc((size_t)cols * sizeof(float));
        for (int64_t c = 0; c < cols; c++) {
            s->chmin[i][c] = INFINITY;
            s->chmax[i][c] = -INFINITY;
        }
    }
    const uint8_t *om = s->omask ? s->omask[i] : NULL;
    for (int64_t r = 0; r < rows; r++) {
        if (valid && !valid[r]) continue;
        const float *xr = x + r * cols;
        for (int64_t c = 0; c < cols; c++) {
            if (square && valid && !valid[c]) continue;
            if (!s->hist && s->chmin[i] && xr[c] == xr[c]) {
                if (xr[c] < s->chmin[i][c]) s->chmin[i][c] = xr[c];
                if (xr[c] > s->chmax[i][c]) s->chmax[i][c] = xr[c];
            }
            if (om && om[c]) continue; /* outlier channels have their own range */
            see(st, &xr[c], s->hist);
        }
    }
    extra(s, layer, point, x, rows, cols, valid);
    return QD_OK;
}

static int agree(MPI_Comm comm, int rc)
{
    char msg[1024];
    return qd_coll_agree_msg(comm, rc, msg, sizeof msg, NULL);
}

static int pass(MPI_Comm comm, const qd_model *m, qd_calib_data *data, int mb, sink *s)
{
    const int rank = qd_coll_rank(comm), size = qd_coll_size(comm);
    const qd_model_config *c = qd_model_cfg(m);
    const int N = qd_calib_data_count(data), T = qd_calib_data_tokens(data), nmb = (N + mb - 1) / mb;
    qd_model_hooks hk = {.user = s, .tap = on_tap};
    float *h = malloc((size_t)mb * (size_t)T * (size_t)c->hidden * sizeof(float));
    float *pooled = malloc((size_t)mb * (size_t)c->hidden * sizeof(float));
    float *logits = malloc((size_t)mb * (size_t)(c->num_labels > 0 ? c->num_labels : 1) * sizeof(float));
    int rc = h && pooled && logits ? QD_OK
                                   : qd_err_set(QD_ENOMEM, "activation calibration: out of memory for a micro-batch");
    for (int i = rank; i < nmb && !rc; i += size) {
        qd_batch b;
        const int first = i * mb, n = QD_MIN(mb, N - first);
        if ((rc = qd_calib_data_batch(data, first, n, &b))) break;
        if ((rc = qd_model_embed_hooks(m, &b, h, &hk))) break;
        for (int k = 0; k < c->layers && !rc; k++) rc = qd_model_block(m, k, &b, h, &hk);
        /* ViT: the final LayerNorm of the CLS token feeds the classifier */
        if (rc || c->arch != QD_ARCH_VIT) continue;
        for (int j = 0; j < n; j++) ln_stats(s, X_LN_MODEL, h + (size_t)j * s->T * c->hidden, 1, c->hidden, NULL);
        if ((rc = qd_model_head(m, &b, h, pooled, c->num_labels > 0 ? logits : NULL))) break;
        rc = on_tap(s, m, -1, FINAL_NORM, pooled, n, c->hidden, NULL);
        qd_actq_stats *lst = &s->st[xidx(s, X_LN_BLOCKS + X_PER_BLOCK * s->layers + 1)];
        for (int64_t j = 0; j < (int64_t)n * c->num_labels; j++) see(lst, &logits[j], s->hist);
    }
    free(logits);
    free(h);
    free(pooled);
    return agree(comm, rc);
}

static void point_name(const sink *s, int i, char *out, size_t cap)
{
    static const char *mnames[M_POINTS] = {"input", "embeddings", "embeddings.norm", "final_norm"};
    static const char *part[2] = {"mean", "diff"};
    const int e = i - xidx(s, 0);
    if (i < M_POINTS)
        snprintf(out, cap, "%s", mnames[i]);
    else if (e < 0)
        snprintf(out, cap, "layer.%d.%s", (i - M_POINTS) / QD_TAP_PER_BLOCK,
                 qd_actq_point_name((i - M_POINTS) % QD_TAP_PER_BLOCK));
    else if (e < X_LN_BLOCKS)
        snprintf(out, cap, "%s.%s", s->vit ? "final_norm" : "embeddings.norm", part[e]);
    else if (e < X_LN_BLOCKS + X_PER_BLOCK * s->layers)
        snprintf(out, cap, "layer.%d.ln%d.%s", (e - X_LN_BLOCKS) / X_PER_BLOCK, 1 + (e - X_LN_BLOCKS) % X_PER_BLOCK / 2,
                 part[(e - X_LN_BLOCKS) % 2]);
    else
        snprintf(out, cap, "%s", e == X_LN_BLOCKS + X_PER_BLOCK * s->layers ? "tokens" : "logits");
}

/* Minimum and maximum of n values over the ranks, in place (one element-wise max of -min and
 * max): exact, so the same on every rank for any rank count. */
static void minmax_reduce(MPI_Comm comm, float *mn, float *mx, int n)
{
    float *v = qd_xmalloc((size_t)(n > 0 ? n : 1) * 2 * sizeof(float));
    for (int i = 0; i < n; i++) {
        v[i] = -mn[i];
        v[n + i] = mx[i];
    }
    qd_coll_max_floats(comm, v, 2 * (int64_t)n);
    for (int i = 0; i < n; i++) {
        mn[i] = -v[i];
        mx[i] = v[n + i];
    }
    free(v);
}

static void stats_minmax(MPI_Comm comm, qd_actq_stats *st, int n)
{
    float *v = qd_xmalloc((size_t)(n > 0 ? n : 1) * 2 * sizeof(float));
    for (int i = 0; i < n; i++) {
        v[i] = st[i].min;
        v[n + i] = st[i].max;
    }
    minmax_reduce(comm, v, v + n, n);
    for (int i = 0; i < n; i++) {
        st[i].min = v[i];
        st[i].max = v[n + i];
    }
    free(v);
}

/* counts and histograms: exact integer sums */
static void stats_sum(MPI_Comm comm, qd_actq_stats *st, int n)
{
    for (int i = 0; i < n; i++) {
        qd_coll_sum_i64(comm, &st[i].count, 1);
        if (st[i].hist) qd_coll_sum_i64(comm, st[i].hist, QD_ACTQ_BINS);
    }
}

int qd_act_calibrate(MPI_Comm comm, const qd_model *m, qd_calib_data *data, const qd_act_calib_opts *o, qd_actrec *out)
{
    memset(out, 0, sizeof *out);
    const int rank = qd_coll_rank(comm);
    const int mb = o->microbatch > 0 ? o->microbatch : 8;
    const qd_model_config *cfg = qd_model_cfg(m);
    sink s = {.layers = cfg->layers, .vit = cfg->arch == QD_ARCH_VIT, .T = qd_model_tokens(m, 0)};
    s.n = xidx(&s, X_LN_BLOCKS + X_PER_BLOCK * s.layers + 2);
    if (s.vit) {
        qd_model_tensors tw;
        qd_model_get_tensors(m, &tw);
        s.pos = tw.vis_pos_has_prefix ? tw.vis_pos : NULL;
    }
    s.st = qd_xcalloc((size_t)s.n, sizeof *s.st);
    s.chmin = qd_xcalloc((size_t)s.n, sizeof *s.chmin);
    s.chmax = qd_xcalloc((size_t)s.n, sizeof *s.chmax);
    s.chn = qd_xcalloc((size_t)s.n, sizeof *s.chn);
    int32_t *och = qd_xcalloc((size_t)s.n * QD_ACT_OUTLIERS_MAX, sizeof(int32_t));
    int *on = qd_xcalloc((size_t)s.n, sizeof(int));
    for (int i = 0; i < s.n; i++) {
        s.st[i].min = INFINITY;
        s.st[i].max = -INFINITY;
    }
    double t0 = qd_now();
    int rc = qd_calib_data_count(data) > 0 ? QD_OK : qd_err_set(QD_EINVAL, "activation calibration: no samples");
    rc = agree(comm, rc);
    if (!rc) rc = pass(comm, m, data, mb, &s);
    if (!rc) {
        /* per-channel ranges (every rank saw the same tensors, so the same widths), then the
         * outlier channels and the ranges of the rest */
        for (int i = 0; i < s.n; i++) {
            int w = s.chn[i];
            qd_coll_allreduce_ints(comm, &w, 1, QD_COLL_MAX);
            if (w <= 0) continue;
            if (!s.chmin[i]) { /* a rank that ran no micro-batch */
                s.chn[i] = w;
                s.chmin[i] = qd_xmalloc((size_t)w * sizeof(float));
                s.chmax[i] = qd_xmalloc((size_t)w * sizeof(float));
                for (int c = 0; c < w; c++) {
                    s.chmin[i][c] = INFINITY;
                    s.chmax[i][c] = -INFINITY;
                }
            }
            minmax_reduce(comm, s.chmin[i], s.chmax[i], w);
            on[i] = qd_actq_outliers(s.chmin[i], s.chmax[i], w, o->outliers, QD_ACT_OUTLIERS_MAX,
                                     och + (size_t)i * QD_ACT_OUTLIERS_MAX);
        }
        stats_minmax(comm, s.st, s.n);
        s.omask = qd_xcalloc((size_t)s.n, sizeof *s.omask);
        for (int i = 0; i < s.n; i++) {
            if (!on[i]) continue;
            s.omask[i] = qd_xcalloc((size_t)s.chn[i], 1);
            for (int j = 0; j < on[i]; j++) s.omask[i][och[(size_t)i * QD_ACT_OUTLIERS_MAX + j]] = 1;
            float mn = INFINITY, mx = -INFINITY;
            for (int c = 0; c < s.chn[i]; c++)
                if (!s.omask[i][c]) {
                    mn = fminf(mn, s.chmin[i][c]);
                    mx = fmaxf(mx, s.chmax[i][c]);
                }
            s.st[i].min = mn; /* the main group's range */
            s.st[i].max = mx;
        }
        /* the second pass counts values (and fills histograms for the methods that read them) */
        for (int i = 0; i < s.n; i++)
            if (o->method != QD_ACTQ_MINMAX && s.st[i].min <= s.st[i].max)
                s.st[i].hist = qd_xcalloc(QD_ACTQ_BINS, sizeof(int64_t));
        s.hist = 1;
        rc = pass(comm, m, data, mb, &s);
    }
    if (!rc) {
        stats_sum(comm, s.st, s.n);
        int k = 0, tot = 0;
        for (int i = 0; i < s.n; i++) {
            k += s.st[i].count > 0;
            tot += s.st[i].count > 0 ? on[i] : 0;
        }
        qd_actrec_alloc(out, k);
        out->bits = o->bits;
        out->method = o->method;
        out->percentile = o->percentile;
        out->outlier_threshold = o->outliers;
        free(out->out_ch);
        out->out_ch = qd_xcalloc((size_t)(tot > 0 ? tot : 1), sizeof(int32_t));
        k = 0;
        for (int i = 0; i < s.n && !rc; i++) {
            const qd_actq_stats *st = &s.st[i];
            if (st->count <= 0) continue;
            double lo, hi;
            if (qd_actq_range(st, o->method, o->percentile, o->bits, &lo, &hi))
                rc = qd_err_set(QD_ECONFIG, "activation calibration: range method '%s' with percentile %g",
                                qd_actq_method_name(o->method), o->percentile);
            point_name(&s, i, out->name[k], sizeof out->name[k]);
            out->min[k] = st->min;
            out->max[k] = st->max;
            out->lo[k] = (float)lo;
            out->hi[k] = (float)hi;
            out->count[k] = st->count;
            qd_actq_params(lo, hi, o->bits, &out->scale[k], &out->zero_point[k]);
            out->out_off[k + 1] = out->out_off[k];
            if (on[i]) {
                float omn = 0, omx = 0;
                for (int j = 0; j < on[i]; j++) {
                    const int c = och[(size_t)i * QD_ACT_OUTLIERS_MAX + j];
                    out->out_ch[out->out_off[k + 1]++] = c;
                    omn = fminf(omn, s.chmin[i][c]);
                    omx = fmaxf(omx, s.chmax[i][c]);
                }
                out->out_lo[k] = omn;
                out->out_hi[k] = omx;
                qd_actq_outlier_params(omn, omx, out->scale[k], o->bits, &out->out_shift[k], &out->out_zp[k]);
            }
            k++;
        }
        if (rc) qd_actrec_free(out);
    }
    for (int i = 0; i < s.n; i++) {
        free(s.st[i].hist);
        free(s.chmin[i]);
        free(s.chmax[i]);
        if (s.omask) free(s.omask[i]);
    }
    free(s.st);
    free(s.chmin);
    free(s.chmax);
    free(s.chn);
    free(s.omask);
    free(och);
    int nout = 0;
    for (int i = 0; i < s.n; i++) nout += on[i] > 0;
    free(on);
    if (!rc && rank == 0 && !o->quiet)
        printf("static activations: %d tensors calibrated (%s, %d bits; %d with outlier channels, %d channels) in "
               "%.1f s\n",
               out->n, qd_actq_method_name(o->method), o->bits, nout, out->out_off[out->n], qd_now() - t0);
    return rc;
}

int qd_act_job_run(const qd_job_config *cfg, MPI_Comm comm, qd_actrec *out)
{
    memset(out, 0, sizeof *out);
    qd_model *m = NULL;
    qd_calib_data *data = NULL;
    int rc = qd_model_load(cfg->model, &m);
    if (!rc) rc = qd_calib_data_open(m, cfg->calib, cfg->nsamples, cfg->seqlen, (uint64_t)cfg->calib_seed, &data);
    rc = agree(comm, rc);
    if (!rc) {
        qd_act_calib_opts o = {.method = (qd_actq_method)cfg->act_calib,
                               .percentile = cfg->act_percentile,
                               .bits = cfg->act_bits,
                               .microbatch = cfg->microbatch,
                               .outliers = cfg->act_outliers,
                               .quiet = cfg->quiet};
        rc = qd_act_calibrate(comm, m, data, &o, out);
    }
    if (!rc) {
        cJSON *j = cJSON_CreateObject();
        qd_calib_json_data(j, cfg, data);
        cJSON_AddStringToObject(j, "model", "fp32");
        out->calibration = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
    }
    qd_calib_data_free(data);
    qd_model_free(m);
    return rc;
}
