/* train/fakequant.c — fake quantization of the encoder Linears for QAT and scale-only
 * fine-tuning (train.h).
 *
 * A quantized weight is W' = s (q - z) with q = clamp(rint(W / s) + z, 0, 2^b - 1) per group
 * (qd_quantize1: the file's own rounding). QAT keeps latent float weights W and learns them and
 * the steps s: straight-through for W inside the clipping range (zero outside), LSQ for s
 * (dW'/ds = q - z - W / s inside, q - z at the clipped ends; the gradient scaled by
 * 1 / sqrt(N_group 2^(b-1)), as the LSQ paper). Scale-only keeps the codes q fixed and learns s
 * (dW'/ds = q - z). Steps are trained as log s: Adam then moves them by relative amounts, the
 * same for a step of 1e-3 as of 1e-1. Zero points stay the file's integers.
 *
 * Pruned records (the file's mask): a pruned weight stays exactly 0 (the zero point's code) in
 * the forward pass, gets no gradient, and is written pruned again, so recovery training keeps the
 * sparsity pattern. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collective/coll_train_h5.h"
#include "quant/quant.h"
#include "train/train.h"

typedef struct {
    int li;
    char name[200];      /* tensor name in the file */
    qd_coll_qtensor q;   /* the file's record (codes updated by qd_fq_write) */
    int64_t lstep;       /* offset of log s [out, ng] in the net */
    float *weff, *gweff; /* [out, in] */
    float *sv;           /* [out, ng] the steps of the last qd_fq_prepare */
    double gscale;       /* LSQ gradient scale */
} fq_lin;

struct qd_fq {
    qd_fq_mode mode;
    char src[4096];
    fq_lin *l;
    int n;
    /* learned activation steps (qd_fq_attach_act): the file's record, and per block and point
     * (QD_TG_AQ_*) the record's entry, -1 where that input is not trained */
    qd_actrec act;
    int has_act;
    int *aqi;
};

static const char *const aq_names[QD_TG_AQ_PER_BLOCK] = {"qkv_in", "ctx", "mlp_in", "act"};

int qd_fq_count(const qd_fq *f) { return f->n; }

void qd_fq_free(qd_fq *f)
{
    if (!f) return;
    for (int i = 0; i < f->n; i++) {
        qd_coll_qtensor_free(&f->l[i].q);
        free(f->l[i].weff);
        free(f->l[i].gweff);
        free(f->l[i].sv);
    }
    free(f->l);
    if (f->has_act) qd_actrec_free(&f->act);
    free(f->aqi);
    free(f);
}

int qd_fq_attach_act(qd_fq *f, qd_tnet *n, int *trained)
{
    *trained = 0;
    int rc = qd_coll_actrec_read(f->src, &f->act);
    if (rc == QD_ENOTFOUND)
        return qd_err_set(QD_ENOTFOUND, "%s: no static activation record to train (quantize with --activations static)",
                          f->src);
    if (rc) return rc;
    f->has_act = 1;
    if (f->act.bits != 8)
        return qd_err_set(QD_EUNSUPPORTED, "%s: activations recorded with %d bits; learned steps are int8", f->src,
                          f->act.bits);
    qd_tg_net_aq_enable(n);
    const int NB = n->c.layers * QD_TG_AQ_PER_BLOCK;
    f->aqi = qd_xmalloc((size_t)NB * sizeof *f->aqi);
    const int64_t feat[QD_TG_AQ_PER_BLOCK] = {n->c.hidden, (int64_t)n->c.heads * n->c.head_size, n->c.hidden,
                                              n->c.intermediate};
    for (int k = 0; k < n->c.layers; k++)
        for (int pt = 0; pt < QD_TG_AQ_PER_BLOCK; pt++) {
            const int i = k * QD_TG_AQ_PER_BLOCK + pt;
            char name[64];
            snprintf(name, sizeof name, "layer.%d.%s", k, aq_names[pt]);
            int e = qd_actrec_find(&f->act, name);
            /* inputs with outlier channels keep their two-scale format (not trained here) */
            if (e >= 0 && f->act.out_off && f->act.out_off[e + 1] > f->act.out_off[e]) e = -1;
            f->aqi[i] = e;
            if (e < 0) continue;
            char pname[96];
            snprintf(pname, sizeof pname, "activations.%s_log_step", name);
            int64_t shape[1] = {1};
            int pi = qd_tg_net_add(n, pname, QD_TP_EXTRA, k, -1, 1, shape, 1, 0);
            n->aq[i] = n->p[pi].off;
            n->aqz[i] = f->act.zero_point[e];
            n->aqg[i] = 1.0 / sqrt((double)feat[pt] * 127.0); /* LSQ: 1 / sqrt(features * Qp) */
            n->w[n->aq[i]] = (float)log(fmax((double)f->act.scale[e], 1e-30));
            (*trained)++;
        }
    return QD_OK;
}

static int64_t group_of(const qd_coll_qtensor *q, int64_t c) { return q->g_idx ? q->g_idx[c] : c / q->G; }

int qd_fq_attach(qd_tnet *n, const char *h5path, qd_fq_mode mode, qd_fq **out)
{
    *out = NULL;
    qd_fq *f = qd_xcalloc(1, sizeof *f);
    f->mode = mode;
    snprintf(f->src, sizeof f->src, "%s", h5path);
    const int NL = n->c.layers * QD_LIN_PER_BLOCK;
    f->l = qd_xcalloc((size_t)NL, sizeof *f->l);
    int rc = QD_OK;
    for (int li = 0; li < NL && !rc; li++) {
        const qd_tparam *wp = NULL;
        for (int i = 0; i < n->np; i++)
            if (n->p[i].role == QD_TP_LIN_W && n->p[i].lin == li) wp = &n->p[i];
        QD_ASSERT(wp);
        fq_lin *L = &f->l[f->n];
        /* the file names tensors as the source checkpoint: try the canonical name, then without
         * the prefix (BertModel checkpoints) */
        const char *cands[2] = {wp->name, wp->name + strlen(n->prefix)};
        rc = QD_ENOTFOUND;
        for (int k = 0; k < 2 && rc == QD_ENOTFOUND; k++) {
            rc = qd_coll_qtensor_read(h5path, cands[k], &L->q);
            if (!rc) snprintf(L->name, sizeof L->name, "%s", cands[k]);
        }
        if (rc == QD_ENOTFOUND) {
            rc = QD_OK; /* kept in float: trains (or not) as any float tensor */
            continue;
        }
        if (rc) break;
        if (L->q.out != wp->shape[0] || L->q.in != wp->shape[1]) {
            rc = qd_err_set(QD_EMISMATCH, "%s: tensor '%s' is [%lld, %lld] in the file, [%lld, %lld] in the model",
                            h5path, L->name, (long long)L->q.out, (long long)L->q.in, (long long)wp->shape[0],
                            (long long)wp->shape[1]);
            break;
        }
        L->li = li;
        char pname[240];
        snprintf(pname, sizeof pname, "%s_log_step", wp->name);
        int64_t shape[2] = {L->q.out, L->q.ng};
        int pi = qd_tg_net_add(n, pname, QD_TP_EXTRA, wp->layer, li, 2, shape, 1, 0);
        L->lstep = n->p[pi].off;
        int64_t numel = L->q.out * L->q.in;
        L->weff = qd_xmalloc((size_t)numel * sizeof *L->weff);
        L->gweff = qd_xcalloc((size_t)numel, sizeof *L->gweff);
        L->sv = qd_xmalloc((size_t)(L->q.out * L->q.ng) * sizeof *L->sv);
        L->gscale = 1.0 / sqrt((double)(L->q.in / L->q.ng) * (double)(1 << (L->q.bits - 1)));
        n->weff[li] = L->weff;
        n->gweff[li] = L->gweff;
        f->n++;
    }
    if (!rc && f->n == 0)
        rc = qd_err_set(QD_ENOTFOUND, "%s: no encoder Linear of the model is quantized in the file", h5path);
    if (rc) {
        for (int li = 0; li < NL; li++) n->weff[li] = NULL, n->gweff[li] = NULL;
        qd_fq_free(f);
        return rc;
    }
    /* what trains: QAT the latent weights and steps, scale-only the steps */
    for (int i = 0; i < n->np; i++) {
        qd_tparam *p = &n->p[i];
        p->trainable = p->role == QD_TP_EXTRA || (mode == QD_FQ_QAT && p->role == QD_TP_LIN_W && n->weff[p->lin]);
    }
    *out = f;
    return QD_OK;
}

void qd_fq_init(qd_fq *f, qd_tnet *n)
{
    for (int i = 0; i < f->n; i++) {
        fq_lin *L = &f->l[i];
        const qd_coll_qtensor *q = &L->q;
        float *W = n->w + n->lw[L->li], *ls = n->w + L->lstep;
        for (int64_t k = 0; k < q->out * q->ng; k++) ls[k] = (float)log(fmax((double)q->scales[k], 1e-30));
        for (int64_t r = 0; r < q->out; r++)
            for (int64_t c = 0; c < q->in; c++) {
                int64_t g = r * q->ng + group_of(q, c);
                W[r * q->in + c] = qd_dequantize1(q->codes[r * q->in + c], q->scales[g], q->zeros[g]);
            }
    }
}

/* the step of group k: exp of the parameter, except at the start where it is the file's value
 * exactly (exp(log s) may differ from s in the last bit) */
static float step_of(const fq_lin *L, const float *ls, int64_t k)
{
    float s = (float)exp((double)ls[k]);
    float s0 = L->q.scales[k];
    return (float)log(fmax((double)s0, 1e-30)) == ls[k] ? s0 : s;
}

void qd_fq_prepare(qd_fq *f, qd_tnet *n)
{
    for (int i = 0; i < f->n; i++) {
        fq_lin *L = &f->l[i];
        const qd_coll_qtensor *q = &L->q;
        const float *W = n->w + n->lw[L->li], *ls = n->w + L->lstep;
        const int maxq = qd_maxq(q->bits);
        for (int64_t k = 0; k < q->out * q->ng; k++) L->sv[k] = step_of(L, ls, k);
        for (int64_t r = 0; r < q->out; r++)
            for (int64_t c = 0; c < q->in; c++) {
                int64_t g = r * q->ng + group_of(q, c), e = r * q->in + c;
                float s = L->sv[g];
                int code = f->mode == QD_FQ_QAT && (!q->mask || q->mask[e]) ? qd_quantize1(W[e], s, q->zeros[g], maxq)
                                                                            : q->codes[e];
                L->weff[e] = qd_dequantize1(code, s, q->zeros[g]);
            }
    }
}

void qd_fq_zero_grad(qd_fq *f)
{
    for (int i = 0; i < f->n; i++)
        memset(f->l[i].gweff, 0, (size_t)(f->l[i].q.out * f->l[i].q.in) * sizeof *f->l[i].gweff);
}

void qd_fq_map_grad(qd_fq *f, qd_tnet *n)
{
    for (int i = 0; i < f->n; i++) {
        fq_lin *L = &f->l[i];
        const qd_coll_qtensor *q = &L->q;
        const float *W = n->w + n->lw[L->li];
        float *gW = n->g + n->lw[L->li], *gl = n->g + L->lstep;
        const int maxq = qd_maxq(q->bits);
        double *gs = qd_xcalloc((size_t)q->ng, sizeof *gs);
        for (int64_t r = 0; r < q->out; r++) {
            memset(gs, 0, (size_t)q->ng * sizeof *gs);
            for (int64_t c = 0; c < q->in; c++) {
                int64_t gg = group_of(q, c), g = r * q->ng + gg, e = r * q->in + c;
                float s = L->sv[g];
                double d = L->gweff[e];
                if (q->mask && !q->mask[e]) continue; /* pruned: stays 0 */
                if (f->mode == QD_FQ_QAT) {
                    double u = (double)W[e] / s;
                    double v = rint(u) + q->zeros[g];
                    if (v >= 0 && v <= maxq) {
                        gW[e] += (float)d;
                        gs[gg] += d * (v - q->zeros[g] - u);
                    } else
                        gs[gg] += d * ((v < 0 ? 0 : maxq) - q->zeros[g]);
                } else
                    gs[gg] += d * (q->codes[e] - q->zeros[g]);
            }
            /* d/d(log s) = s d/ds */
            for (int64_t k = 0; k < q->ng; k++) {
                int64_t g = r * q->ng + k;
                gl[g] += (float)(gs[k] * L->gscale * L->sv[g]);
            }
        }
        free(gs);
    }
}

int qd_fq_write(qd_fq *f, const qd_tnet *n, const qd_model *m, const char *out_h5, const char *how_json, int ranks,
                double seconds)
{
    for (int i = 0; f->has_act && i < n->c.layers * QD_TG_AQ_PER_BLOCK; i++) {
        const int e = f->aqi[i];
        if (e < 0) continue;
        /* the learned step (the record's value exactly while it has not moved), its range */
        const float ls = n->w[n->aq[i]], s0 = f->act.scale[e];
        const float s = (float)log(fmax((double)s0, 1e-30)) == ls ? s0 : (float)exp((double)ls);
        f->act.scale[e] = s;
        f->act.lo[e] = s * (float)(-128 - f->act.zero_point[e]);
        f->act.hi[e] = s * (float)(127 - f->act.zero_point[e]);
    }
    const char **names = qd_xcalloc((size_t)f->n, sizeof *names);
    qd_coll_qtensor *qs = qd_xcalloc((size_t)f->n, sizeof *qs);
    double(*met)[4] = qd_xcalloc((size_t)f->n, sizeof *met);
    for (int i = 0; i < f->n; i++) {
        fq_lin *L = &f->l[i];
        qd_coll_qtensor *q = &L->q;
        const float *W = n->w + n->lw[L->li], *ls = n->w + L->lstep;
        const int maxq = qd_maxq(q->bits);
        float *ns = qd_xmalloc((size_t)(q->out * q->ng) * sizeof *ns);
        for (int64_t k = 0; k < q->out * q->ng; k++) ns[k] = step_of(L, ls, k);
        float *deq = qd_xmalloc((size_t)(q->out * q->in) * sizeof *deq);
        for (int64_t r = 0; r < q->out; r++)
            for (int64_t c = 0; c < q->in; c++) {
                int64_t g = r * q->ng + group_of(q, c), e = r * q->in + c;
                if (f->mode == QD_FQ_QAT && (!q->mask || q->mask[e]))
                    q->codes[e] = (uint8_t)qd_quantize1(W[e], ns[g], q->zeros[g], maxq);
                deq[e] = qd_dequantize1(q->codes[e], ns[g], q->zeros[g]);
            }
        memcpy(q->scales, ns, (size_t)(q->out * q->ng) * sizeof *ns);
        free(ns);
        /* metrics against the FP32 source weights, as the quantizer records them */
        const float *W0 = qd_model_linear(m, L->li)->W;
        qd_qerror e = qd_quant_error(W0, deq, q->out * q->in);
        met[i][0] = e.rel_fro;
        met[i][1] = e.mse;
        met[i][2] = e.max_abs;
        met[i][3] = isfinite(e.sqnr_db) ? e.sqnr_db : 999.0;
        free(deq);
        names[i] = L->name;
        qs[i] = *q;
    }
    int rc = qd_coll_qfile_rewrite(f->src, out_h5, names, qs, (const double(*)[4])met, f->n,
                                   f->mode == QD_FQ_QAT ? "lsq" : "scale-only", how_json, f->has_act ? &f->act : NULL,
                                   ranks, seconds);
    free(names);
    free(qs);
    free(met);
    return rc;
}
