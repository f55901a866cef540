/* runtime/intprep.c — the integer-only model from a checkpoint and its model file (intprep.h).
 * Everything here runs once at load and may use floating point: it turns real scales into the
 * integer multipliers, biases and tables the forward pass uses. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "collective/h5model.h"
#include "model/model.h"
#include "quant/intparams.h"
#include "quant/quant.h"
#include "runtime/intprep.h"

typedef struct {
    const qd_model *m;
    const char *path;
    qd_h5m *f;     /* the model file, validated */
    qd_actrec rec; /* /activations */
} prep;

/* ---- activation formats ------------------------------------------------------------------- */

/* int8 scale and zero point of a recorded tensor */
static int act8(prep *p, const char *name, float *s, int32_t *z)
{
    int i = qd_actrec_find(&p->rec, name);
    if (i < 0) return qd_err_set(QD_ENOTFOUND, "%s: /activations has no tensor '%s'", p->path, name);
    *s = p->rec.scale[i];
    *z = p->rec.zero_point[i];
    return QD_OK;
}

/* int32 residual scale of a recorded tensor: its observed range over 2^16 */
static int res32(prep *p, const char *name, float *S)
{
    int i = qd_actrec_find(&p->rec, name);
    if (i < 0) return qd_err_set(QD_ENOTFOUND, "%s: /activations has no tensor '%s'", p->path, name);
    double A = fmax(fabs(p->rec.min[i]), fabs(p->rec.max[i]));
    *S = (float)(A > 0 ? A / 65536.0 : 1.0 / 65536.0);
    return QD_OK;
}

static void lname(char *out, size_t cap, int k, int point)
{
    snprintf(out, cap, "layer.%d.%s", k, qd_actq_point_name(point));
}

/* ---- Linears -------------------------------------------------------------------------------- */

/* symmetric int8 per output channel, round to nearest, for weights the file keeps in float */
static void rtn8(const float *W, int N, int K, int8_t *w, float *s)
{
    for (int n = 0; n < N; n++) {
        float mx = 0;
        for (int k = 0; k < K; k++) mx = fmaxf(mx, fabsf(W[(int64_t)n * K + k]));
        s[n] = mx > 0 ? mx / 127.0f : 1.0f;
        for (int k = 0; k < K; k++) {
            float q = nearbyintf(W[(int64_t)n * K + k] / s[n]);
            w[(int64_t)n * K + k] = (int8_t)(q > 127 ? 127 : q < -127 ? -127 : q);
        }
    }
}

/* The int8 codes (q - zero) and per-channel scales of linear li from the file, rows [N] at w. */
static int file_linear(prep *p, int li, int8_t *w, float *s)
{
    const qd_linear *L = qd_model_linear(p->m, li);
    const int64_t N = L->out, K = L->in;
    char name[200];
    snprintf(name, sizeof name, "%s.weight", L->name);
    const int ri = qd_h5m_find(p->f, name);
    if (ri < 0)
        return qd_err_set(QD_ENOTFOUND, "%s: tensor '%s' of the model is not in the file (another model?)", p->path,
                          name);
    const qd_h5m_record *r = qd_h5m_tensor(p->f, ri);
    if (qd_h5m_numel(r) != N * K || (r->kind == QD_H5M_QUANTIZED && (qd_h5m_rows(r) != N || qd_h5m_cols(r) != K)))
        return qd_err_set(QD_EFORMAT, "%s: tensor '%s' holds %lld values, not [%lld, %lld]", p->path, name,
                          (long long)qd_h5m_numel(r), (long long)N, (long long)K);
    qd_h5m_values v;
    int rc = qd_h5m_read(p->f, ri, &v);
    if (rc) return rc;
    if (r->kind != QD_H5M_QUANTIZED) {
        if (r->kind == QD_H5M_FLOAT)
            rtn8(v.data, (int)N, (int)K, w, s);
        else
            rc = qd_err_set(QD_EFORMAT, "%s: tensor '%s' is stored raw, not as float or quantized", p->path, name);
        qd_h5m_values_free(&v);
        return rc;
    }
    const int bits = r->bits, sym = r->sym;
    const float *sc = v.scales;
    const int32_t *zr = v.zeros; /* symmetric records: 2^(bits - 1) */
    if (r->ngroups != 1)
        rc = qd_err_set(QD_EUNSUPPORTED,
                        "%s: tensor '%s': groups of %lld columns; integer-only inference needs one scale per output "
                        "channel (quantize with --granularity channel)",
                        p->path, name, (long long)qd_h5m_group_cols(r));
    else if (bits == 8 && !sym)
        rc = qd_err_set(QD_EUNSUPPORTED,
                        "%s: tensor '%s': asymmetric 8-bit codes do not fit int8 after the zero point (use --sym, or "
                        "7 bits or fewer)",
                        p->path, name);
    uint8_t *codes = rc ? NULL : qd_xmalloc((size_t)(N * K));
    if (!rc) qd_unpack_matrix(v.qweight, N, K, bits, codes);
    for (int64_t n = 0; !rc && n < N; n++) {
        const int32_t z = zr[n];
        if (!(sc[n] >= 0 && sc[n] < 3.4e38f)) {
            rc = qd_err_set(QD_ENONFINITE, "%s: tensor '%s': scale of row %lld is not finite", p->path, name,
                            (long long)n);
            break;
        }
        s[n] = sc[n] > 0 ? sc[n] : 1.0f;
        for (int64_t k = 0; k < K; k++) {
            /* act-order files store columns in their natural order; g_idx only names groups */
            const int q = (int)codes[n * K + k] - z;
            if (q < -128 || q > 127) {
                rc = qd_err_set(QD_EUNSUPPORTED, "%s: tensor '%s': code %d - zero %d does not fit int8", p->path, name,
                                codes[n * K + k], z);
                break;
            }
            w[n * K + k] = (int8_t)(sc[n] > 0 ? q : 0);
        }
    }
    free(codes);
    qd_h5m_values_free(&v);
    return rc;
}

/* Fills L (N x K int8 at w with scales sw) for an int8 input (s_x, z_x) and float bias b (may be
 * NULL); outM[n] (may be NULL: no multipliers) is the real factor to the output format divided by
 * s_x s_w[n]. */
static int finish_linear(prep *p, qd_ilinear *L, int N, int K, int8_t *w, const float *sw, const float *b, double s_x,
                         int32_t z_x, double out_unit, const char *what)
{
    L->N = N;
    L->K = K;
    L->w = w;
    L->bias = qd_xmalloc((size_t)N * sizeof(int32_t));
    L->M0 = qd_xmalloc((size_t)N * sizeof(int32_t));
    L->sh = qd_xmalloc((size_t)N * sizeof(int32_t));
    L->real = qd_xmalloc((size_t)N * sizeof(float));
    for (int n = 0; n < N; n++) {
        const double r = s_x * sw[n];
        int64_t wsum = 0;
        for (int k = 0; k < K; k++) wsum += w[(int64_t)n * K + k];
        const double bb = (b ? nearbyint(b[n] / r) : 0.0) - (double)z_x * (double)wsum;
        if (!(fabs(bb) < 1073741824.0))
            return qd_err_set(
                QD_ENUMERIC,
                "%s: %s: the bias of output %d is %g accumulator units (input scale %g, weight scale %g): "
                "beyond int32",
                p->path, what, n, bb, s_x, sw[n]);
        L->bias[n] = (int32_t)bb;
        L->real[n] = (float)r;
        if (out_unit > 0 && qd_iparams_mult(r / out_unit, &L->M0[n], &L->sh[n]))
            return qd_err_set(QD_ENUMERIC, "%s: %s: multiplier of output %d is not finite", p->path, what, n);
    }
    return QD_OK;
}

/* The static outlier channels of L's input (recorded tensor `name`): the producer writes them at
 * s_x · 2^e; their weight columns and the bias's zero-point term for them. */
static int apply_split(prep *p, qd_ilinear *L, const char *name)
{
    const int i = qd_actrec_find(&p->rec, name);
    if (i < 0) return qd_err_set(QD_ENOTFOUND, "%s: /activations has no tensor '%s'", p->path, name);
    const int n = p->rec.out_off[i + 1] - p->rec.out_off[i];
    if (n <= 0) return QD_OK;
    if (n > QD_IOUT_MAX)
        return qd_err_set(QD_EFORMAT, "%s: /activations: '%s' has %d outlier channels (at most %d)", p->path, name, n,
                          QD_IOUT_MAX);
    const int32_t *ch = p->rec.out_ch + p->rec.out_off[i];
    for (int j = 0; j < n; j++)
        if (ch[j] < 0 || ch[j] >= L->K || (j > 0 && ch[j] <= ch[j - 1]))
            return qd_err_set(QD_EFORMAT, "%s: /activations: '%s' outlier channel %d is not in [0, %d) in order",
                              p->path, name, ch[j], L->K);
    L->n_out = n;
    L->oe = p->rec.out_shift[i];
    L->ozp = p->rec.out_zp[i];
    L->och = qd_xmalloc((size_t)n * sizeof(int32_t));
    memcpy(L->och, ch, (size_t)n * sizeof(int32_t));
    L->wo = qd_xmalloc((size_t)L->N * n);
    for (int r = 0; r < L->N; r++) {
        int64_t sum = 0;
        for (int j = 0; j < n; j++) {
            const int8_t v = L->w[(int64_t)r * L->K + ch[j]];
            L->wo[(int64_t)j * L->N + r] = v;
            sum += v;
        }
        const double bb = (double)L->bias[r] - (double)L->ozp * ldexp((double)sum, L->oe);
        if (!(fabs(bb) < 1073741824.0))
            return qd_err_set(QD_ENUMERIC, "%s: '%s': the bias of output %d leaves int32 with the outlier channels",
                              p->path, name, r);
        L->bias[r] = (int32_t)bb;
    }
    return QD_OK;
}

static void ln_build(qd_ilnorm *l, const float *g, const float *b, int N, double eps, double s_in, double s_out,
                     int32_t zp)
{
    l->g = qd_xmalloc((size_t)N * sizeof(int32_t));
    l->beta = qd_xmalloc((size_t)N * sizeof(int64_t));
    l->gamma = qd_xmalloc((size_t)N * sizeof(float));
    l->betaf = qd_xmalloc((size_t)N * sizeof(float));
    memcpy(l->gamma, g, (size_t)N * sizeof(float));
    memcpy(l->betaf, b, (size_t)N * sizeof(float));
    qd_iln q;
    qd_iln_params(g, b, N, eps, s_in, s_out, zp, l->g, l->beta, &q);
    l->gsh = q.gsh;
    l->zp = zp;
    l->eps = q.eps;
    l->s_in = (float)s_in;
    l->s_out = (float)s_out;
    l->epsf = (float)eps;
}

static int32_t *table(const float *t, int64_t n, double S)
{
    int32_t *o = qd_xmalloc((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
    for (int64_t i = 0; i < n; i++) {
        double v = nearbyint(t[i] / S);
        o[i] = (int32_t)(v > QD_IRES_LIM ? QD_IRES_LIM : v < -QD_IRES_LIM ? -QD_IRES_LIM : v);
    }
    return o;
}

/* ---- blocks ------------------------------------------------------------------------------- */

static int build_block(prep *p, qd_imodel *im, int k, float s_in, int32_t z_in, float S_h)
{
    const qd_model_config *c = qd_model_cfg(p->m);
    qd_iblock *b = &im->blk[k];
    const int H = c->hidden, A = c->heads * c->head_size, I = c->intermediate, bert = c->arch == QD_ARCH_BERT;
    const int l0 = k * QD_LIN_PER_BLOCK;
    char n1[256], n2[64];
    float s_q = 1, s_k = 1, s_v = 1, s_ctx = 1, s_mlp = 1, s_act = 1, S_r1 = 1, S_r2 = 1;
    int32_t z_q = 0, z_k = 0, z_v = 0, z_ctx = 0, z_mlp = 0, z_act = 0;
    int rc = QD_OK;
#define ACT8(pt, s, z)                     \
    do {                                   \
        lname(n1, sizeof n1, k, pt);       \
        if (!rc) rc = act8(p, n1, &s, &z); \
    } while (0)
    ACT8(QD_TAP_Q, s_q, z_q);
    ACT8(QD_TAP_K, s_k, z_k);
    ACT8(QD_TAP_V, s_v, z_v);
    ACT8(QD_TAP_CTX, s_ctx, z_ctx);
    ACT8(QD_TAP_MLP_IN, s_mlp, z_mlp);
    ACT8(QD_TAP_ACT, s_act, z_act);
    lname(n1, sizeof n1, k, QD_TAP_RES1);
    lname(n2, sizeof n2, k, QD_TAP_RES2);
    if (!rc) rc = res32(p, n1, &S_r1);
    if (!rc) rc = res32(p, n2, &S_r2);
    if (rc) return rc;
    /* query, key, value as one product */
    int8_t *w = qd_xmalloc((size_t)3 * A * H);
    float *sw = qd_xmalloc((size_t)3 * A * sizeof(float)), *bias = qd_xcalloc((size_t)3 * A, sizeof(float));
    const float outs[3] = {s_q, s_k, s_v};
    for (int j = 0; j < 3 && !rc; j++) {
        const qd_linear *L = qd_model_linear(p->m, l0 + QD_LIN_Q + j);
        rc = file_linear(p, l0 + QD_LIN_Q + j, w + (int64_t)j * A * H, sw + j * A);
        if (L->b) memcpy(bias + j * A, L->b, (size_t)A * sizeof(float));
    }
    if (!rc) {
        snprintf(n1, sizeof n1, "layer %d query/key/value", k);
        rc = finish_linear(p, &b->qkv, 3 * A, H, w, sw, bias, s_in, z_in, 0, n1);
        /* each third to its own int8 output */
        for (int j = 0; j < 3 && !rc; j++)
            for (int n = j * A; n < (j + 1) * A; n++)
                qd_iparams_mult(b->qkv.real[n] / outs[j], &b->qkv.M0[n], &b->qkv.sh[n]);
    } else
        free(w);
    free(sw);
    free(bias);
    if (rc) return rc;
    b->z_in = z_in;
    b->z_q = z_q;
    b->z_k = z_k;
    b->z_v = z_v;
    b->z_ctx = z_ctx;
    b->z_mlp = z_mlp;
    b->z_act = z_act;
    b->s_q = s_q;
    b->s_k = s_k;
    b->s_v = s_v;
    b->s_act = s_act;
    b->s_score = (float)((double)s_q * s_k / sqrt((double)c->head_size));
    qd_isoftmax_params((double)s_q * s_k / sqrt((double)c->head_size), &b->sm);
    qd_iparams_mult((double)s_v / 256.0 / s_ctx, &b->ctx_M0, &b->ctx_sh);
    /* the three other Linears */
    struct {
        int kind;
        qd_ilinear *L;
        double s_x;
        int32_t z_x;
        double out_unit; /* real value of one unit of the output format */
    } lin[3] = {{QD_LIN_O, &b->o, s_ctx, z_ctx, S_r1},
                {QD_LIN_INTER, &b->inter, s_mlp, z_mlp, c->act == QD_ACT_RELU ? s_act : 1.0 / 1024.0},
                {QD_LIN_OUT, &b->out, s_act, z_act, S_r2}};
    for (int i = 0; i < 3 && !rc; i++) {
        const qd_linear *L = qd_model_linear(p->m, l0 + lin[i].kind);
        int8_t *wl = qd_xmalloc((size_t)L->out * L->in);
        float *sl = qd_xmalloc((size_t)L->out * sizeof(float));
        rc = file_linear(p, l0 + lin[i].kind, wl, sl);
        if (!rc) {
            snprintf(n1, sizeof n1, "layer %d %s", k, L->name);
            rc = finish_linear(p, lin[i].L, L->out, L->in, wl, sl, L->b, lin[i].s_x, lin[i].z_x, lin[i].out_unit, n1);
        } else
            free(wl);
        free(sl);
    }
    if (rc) return rc;
    qd_igelu_params(s_act, z_act, &b->gelu);
    /* residual inputs: BERT adds the LayerNorm outputs' fine values (scale s / 256) */
    const double r1_in = bert ? s_in / 256.0 : S_h, r2_in = bert ? s_mlp / 256.0 : S_r1;
    qd_iparams_mult(r1_in / S_r1, &b->r1_M0, &b->r1_sh);
    qd_iparams_mult(r2_in / S_r2, &b->r2_M0, &b->r2_sh);
    const float *g1, *b1, *g2, *b2;
    qd_model_block_norms(p->m, k, &g1, &b1, &g2, &b2);
    if (!rc) {
        lname(n1, sizeof n1, k, QD_TAP_QKV_IN);
        rc = apply_split(p, &b->qkv, n1);
    }
    if (!rc) {
        lname(n1, sizeof n1, k, QD_TAP_MLP_IN);
        rc = apply_split(p, &b->inter, n1);
    }
    if (!rc) {
        lname(n1, sizeof n1, k, QD_TAP_ACT);
        rc = apply_split(p, &b->out, n1);
    }
    if (rc) return rc;
    if (bert) {
        /* output.LayerNorm writes the next block's int8 input (the last block's only feeds the
         * fine values of the mean pooling) */
        float s_o = 1;
        int32_t z_o = 0;
        if (k + 1 < c->layers) {
            lname(n1, sizeof n1, k + 1, QD_TAP_QKV_IN);
            rc = act8(p, n1, &s_o, &z_o);
        } else
            ACT8(QD_TAP_OUT, s_o, z_o);
        if (rc) return rc;
        im->s_out = s_o / 256.0f;
        ln_build(&b->ln1, g1, b1, H, c->ln_eps, S_r1, s_mlp, z_mlp);
        ln_build(&b->ln2, g2, b2, H, c->ln_eps, S_r2, s_o, z_o);
    } else {
        ln_build(&b->ln1, g1, b1, H, c->ln_eps, S_h, s_in, z_in);
        ln_build(&b->ln2, g2, b2, H, c->ln_eps, S_r1, s_mlp, z_mlp);
    }
    (void)I;
#undef ACT8
    return QD_OK;
}

/* ---- the model ---------------------------------------------------------------------------- */

static int build(prep *p, qd_imodel *im)
{
    const qd_model_config *c = qd_model_cfg(p->m);
    qd_model_tensors t;
    qd_model_tensors_get(p->m, &t);
    qd_imodel_cfg *ic = &im->cfg;
    const int H = c->hidden;
    if (p->rec.bits != 8)
        return qd_err_set(QD_EUNSUPPORTED, "%s: activations recorded with %d bits; integer-only inference runs int8",
                          p->path, p->rec.bits);
    if (c->act == QD_ACT_SILU)
        return qd_err_set(QD_EUNSUPPORTED, "%s: integer-only inference has no integer SiLU (GELU and ReLU only)",
                          qd_model_dir(p->m));
    if (c->act != QD_ACT_GELU && c->act != QD_ACT_RELU)
        return qd_err_set(QD_EUNSUPPORTED, "%s: integer-only inference has an integer erf GELU and ReLU only",
                          qd_model_dir(p->m));
    if (c->arch == QD_ARCH_VIT && c->n_prefix != 1)
        return qd_err_set(QD_EUNSUPPORTED, "%s: integer-only inference of ViTs with a distillation token",
                          qd_model_dir(p->m));
    /* the integer graph is BERT's and ViT's: the other architectures' extras have no integer
     * stage yet */
    const char *extra = c->relpos != QD_RELPOS_NONE   ? "relative position biases"
                        : c->layer_scale              ? "layer scales"
                        : c->linear_sets != c->layers ? "blocks that share weights"
                        : c->norm != (c->arch == QD_ARCH_BERT ? QD_NORM_POST : QD_NORM_PRE) ? "this LayerNorm placement"
                        : c->arch == QD_ARCH_BERT && c->embed_size != H                     ? "projected embeddings"
                        : c->arch == QD_ARCH_BERT && c->pos != QD_POS_LEARNED      ? "positions counted after padding"
                        : c->arch == QD_ARCH_VIT && (t.emb_ln_g || !t.pos_has_cls) ? "this embedding layout"
                        : c->arch == QD_ARCH_VIT && c->num_labels > 0 && !t.head_cls_norm ? "this classifier head"
                                                                                          : NULL;
    if (extra)
        return qd_err_set(QD_EUNSUPPORTED, "%s: integer-only inference runs BERT and ViT; %s (%s) has %s",
                          qd_model_dir(p->m), c->model_type, c->architecture, extra);
    *ic = (qd_imodel_cfg){.arch = c->arch == QD_ARCH_BERT ? QD_IARCH_BERT : QD_IARCH_VIT,
                          .act = c->act == QD_ACT_RELU ? QD_IACT_RELU : QD_IACT_GELU,
                          .hidden = H,
                          .layers = c->layers,
                          .heads = c->heads,
                          .head_size = c->head_size,
                          .inter = c->intermediate,
                          .n_prefix = c->n_prefix,
                          .channels = c->channels,
                          .image_h = c->image_h,
                          .image_w = c->image_w,
                          .patch_h = c->patch_h,
                          .patch_w = c->patch_w,
                          .vocab = c->vocab_size,
                          .max_pos = c->max_position,
                          .type_vocab = t.type_emb ? c->type_vocab : 0,
                          .num_labels = c->arch == QD_ARCH_VIT ? c->num_labels : 0};
    im->blk = qd_xcalloc((size_t)c->layers, sizeof *im->blk);
    float S_e = 1, s_in = 1;
    int32_t z_in = 0;
    int rc = res32(p, "embeddings", &S_e);
    if (rc) return rc;
    if (c->arch == QD_ARCH_BERT) {
        im->word = table(t.word_emb, (int64_t)c->vocab_size * H, S_e);
        im->pos = table(t.pos_emb, (int64_t)c->max_position * H, S_e);
        if (t.type_emb) im->type = table(t.type_emb, (int64_t)c->type_vocab * H, S_e);
        if ((rc = act8(p, "layer.0.qkv_in", &s_in, &z_in))) return rc;
        ln_build(&im->emb_ln, t.emb_ln_g, t.emb_ln_b, H, c->ln_eps, S_e, s_in, z_in);
    } else {
        if ((rc = act8(p, "input", &im->s_in, &im->z_in))) return rc;
        const int np = (c->image_h / c->patch_h) * (c->image_w / c->patch_w);
        const int pk = c->channels * c->patch_h * c->patch_w;
        int8_t *w = qd_xmalloc((size_t)H * pk);
        float *sw = qd_xmalloc((size_t)H * sizeof(float));
        rtn8(t.patch_W, H, pk, w, sw);
        rc = finish_linear(p, &im->patch, H, pk, w, sw, t.patch_b, im->s_in, im->z_in, S_e, "patch embedding");
        free(sw);
        if (rc) return rc;
        im->cls = qd_xmalloc((size_t)H * sizeof(int32_t));
        for (int i = 0; i < H; i++) {
            double v = nearbyint(((double)t.cls_tok[i] + t.pos_emb[i]) / S_e);
            im->cls[i] = (int32_t)(v > QD_IRES_LIM ? QD_IRES_LIM : v < -QD_IRES_LIM ? -QD_IRES_LIM : v);
        }
        im->pos_patch = table(t.pos_emb + (int64_t)c->n_prefix * H, (int64_t)np * H, S_e);
    }
    float S_h = S_e;
    for (int k = 0; k < c->layers && !rc; k++) {
        char n[64];
        lname(n, sizeof n, k, QD_TAP_QKV_IN);
        if ((rc = act8(p, n, &s_in, &z_in))) break;
        rc = build_block(p, im, k, s_in, z_in, S_h);
        lname(n, sizeof n, k, QD_TAP_RES2);
        if (!rc && c->arch == QD_ARCH_VIT) rc = res32(p, n, &S_h);
    }
    if (rc || c->arch == QD_ARCH_BERT) return rc;
    float s_f = 1;
    int32_t z_f = 0;
    if ((rc = act8(p, "final_norm", &s_f, &z_f))) return rc;
    ln_build(&im->final_ln, t.final_ln_g, t.final_ln_b, H, c->ln_eps, S_h, s_f, z_f);
    if (c->num_labels > 0) {
        int8_t *w = qd_xmalloc((size_t)c->num_labels * H);
        float *sw = qd_xmalloc((size_t)c->num_labels * sizeof(float));
        rtn8(t.cls_W, c->num_labels, H, w, sw);
        rc = finish_linear(p, &im->cls_head, c->num_labels, H, w, sw, t.cls_b, s_f, z_f, 0, "classifier");
        free(sw);
    }
    return rc;
}

int qd_imodel_build(const qd_model *m, const char *path, int float_ops, qd_imodel **out)
{
    *out = NULL;
    prep p = {.m = m, .path = path};
    const qd_h5m_open_opts o = {.arch_known = qd_model_type_known};
    int rc = qd_h5m_open(path, &o, &p.f);
    if (rc) return rc;
    rc = qd_h5m_read_activations(p.f, &p.rec);
    qd_imodel *im = qd_xcalloc(1, sizeof *im);
    if (!rc) rc = build(&p, im);
    qd_h5m_close(p.f);
    qd_actrec_free(&p.rec);
    im->float_ops = float_ops;
    if (!rc) rc = qd_imodel_pack(im);
    if (rc) {
        qd_imodel_free(im);
        return rc;
    }
    *out = im;
    return QD_OK;
}
