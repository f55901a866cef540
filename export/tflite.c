/* export/tflite.c — a qdist ViT as an integer-only LiteRT (TensorFlow Lite) model: every
 * activation int8 (the residual stream int16) with a static per-tensor scale and zero point,
 * weights int8 per output channel (symmetric), biases int32 — what integer-only accelerators and
 * CPU kernels run.
 *
 * The graph (batch 1; pixel_values float [1, C, H, W] in, logits float out):
 *   QUANTIZE -> TRANSPOSE (NHWC) -> CONV_2D (patches) -> RESHAPE -> CONCATENATION ([CLS]) ->
 *   QUANTIZE to int16 -> ADD (positions, int16); per block: LayerNorm -> FULLY_CONNECTED q (1/sqrt(d)
 *   folded into its scales), k, v -> RESHAPE/TRANSPOSE to heads -> BATCH_MATMUL (Q K^T) -> SOFTMAX
 *   -> BATCH_MATMUL (P V) -> TRANSPOSE/RESHAPE -> FULLY_CONNECTED (16x8) -> ADD (int16);
 *   LayerNorm -> FULLY_CONNECTED (+ fused ReLU) -> FULLY_CONNECTED (16x8) -> ADD (int16); then
 *   SLICE ([CLS]) -> LayerNorm -> FULLY_CONNECTED (int16 logits) -> DEQUANTIZE.
 *   The residual stream is int16 (symmetric), since qdist keeps it in int32 (at range / 2^16)
 *   where int8 would be 256 times coarser. The Linears that write it (attention output,
 *   MLP output) and the classifier run LiteRT's 16x8 FULLY_CONNECTED (their int8 input widened
 *   exactly, int64 bias, int16 output) so that no int8 rounding stands where qdist keeps the int32
 *   accumulator. LayerNorm has no int8 builtin: MEAN, SUB (int16), QUANTIZE to int8,
 *   L2_NORMALIZATION, DEPTHWISE_CONV_2D 1x1 (sqrt(N)·gamma, bias beta) — see layer_norm().
 * Activation scales: the file's static ones (/activations, which records the LayerNorm inputs'
 * means and centred values, the tokens and the logits for this graph), or ranges (min, max) per
 * tensor name from --activation-ranges FILE.json (tests/export/vit_ranges.py computes them).
 * Quantized Linears must be symmetric with one scale per output channel (any width <= 8:
 * code - 2^(bits-1) is an int8 value); the tensors qdist keeps in float that the integer graph
 * needs as int8 (patch projection, classifier, [CLS], positions) are quantized here: weights
 * symmetric per output channel over [-127, 127], constants per tensor.
 * The flatbuffer is written by export/flatbuf.h following TensorFlow Lite's schema (version 3). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/qd_common.h"
#include "export/desc.h"
#include "export/export.h"
#include "export/flatbuf.h"
#include "export/outfile.h"
#include "export/source.h"

/* schema.fbs: TensorType, BuiltinOperator, BuiltinOptions, ActivationFunctionType */
enum { TT_FLOAT32 = 0, TT_INT32 = 2, TT_INT64 = 4, TT_INT16 = 7, TT_INT8 = 9 };
enum {
    OP_ADD = 0,
    OP_CONCATENATION = 2,
    OP_CONV_2D = 3,
    OP_DEPTHWISE_CONV_2D = 4,
    OP_DEQUANTIZE = 6,
    OP_L2_NORMALIZATION = 11,
    OP_FULLY_CONNECTED = 9,
    OP_MUL = 18,
    OP_RESHAPE = 22,
    OP_SOFTMAX = 25,
    OP_TRANSPOSE = 39,
    OP_MEAN = 40,
    OP_SUB = 41,
    OP_SLICE = 65,
    OP_RSQRT = 76,
    OP_QUANTIZE = 114,
    OP_BATCH_MATMUL = 126,
};
enum {
    BO_NONE = 0,
    BO_CONV2D = 1,
    BO_DEPTHWISE = 2,
    BO_FC = 8,
    BO_SOFTMAX = 9,
    BO_CONCAT = 10,
    BO_ADD = 11,
    BO_L2NORM = 12,
    BO_RESHAPE = 17,
    BO_MUL = 21,
    BO_TRANSPOSE = 26,
    BO_REDUCER = 27,
    BO_SUB = 28,
    BO_BATCH_MATMUL = 101,
};
enum { ACT_NONE = 0, ACT_RELU = 1 };

#define MAXD 6

typedef struct {
    char *name;
    int type, ndim;
    int32_t shape[MAXD];
    int buffer; /* 0: none (activations) */
    int nq;     /* quantization: nq scales / zero points along qdim */
    float *scales;
    int64_t *zps;
    int qdim;
} ttensor;

typedef struct {
    int code, nin, nout;
    int in[4], out[1];
    int opt;    /* BO_* */
    int act;    /* fused activation */
    int i1, i2; /* axis / keep_dims / adj_y / stride_w, stride_h */
    float f1;   /* softmax beta */
    int32_t shape[MAXD];
    int nshape;
} top;

typedef struct {
    const void *data;
    size_t bytes;
} tbuf;

typedef struct {
    qd_xs *s;
    const qd_xdesc *d;
    const char *path;
    cJSON *ranges; /* --activation-ranges, or NULL: the file's /activations (rec) */
    const char *ranges_path;
    const qd_actrec *rec;
    ttensor *t;
    int nt, ct;
    top *op;
    int nop, cop;
    tbuf *b;
    int nb, cb;
    void **owned;
    int nown, cown;
    int rc;
    qd_export_summary *sum;
} tg;

static void *own(tg *g, void *p)
{
    if (g->nown == g->cown) {
        g->cown = g->cown ? 2 * g->cown : 256;
        g->owned = realloc(g->owned, (size_t)g->cown * sizeof *g->owned);
        QD_ASSERT(g->owned);
    }
    g->owned[g->nown++] = p;
    return p;
}

static int buffer(tg *g, const void *data, size_t bytes)
{
    if (g->nb == g->cb) {
        g->cb = g->cb ? 2 * g->cb : 256;
        g->b = realloc(g->b, (size_t)g->cb * sizeof *g->b);
        QD_ASSERT(g->b);
    }
    g->b[g->nb] = (tbuf){data, bytes};
    return g->nb++;
}

static int tensor(tg *g, const char *name, int type, int ndim, const int32_t *shape)
{
    if (g->nt == g->ct) {
        g->ct = g->ct ? 2 * g->ct : 256;
        g->t = realloc(g->t, (size_t)g->ct * sizeof *g->t);
        QD_ASSERT(g->t);
    }
    ttensor *t = &g->t[g->nt];
    memset(t, 0, sizeof *t);
    t->name = own(g, qd_xstrdup(name));
    t->type = type;
    t->ndim = ndim;
    memcpy(t->shape, shape, sizeof(int32_t) * (size_t)ndim);
    return g->nt++;
}

static void quant(tg *g, int ti, int n, const float *scales, const int64_t *zps, int qdim)
{
    ttensor *t = &g->t[ti];
    t->nq = n;
    t->scales = own(g, qd_xmalloc(sizeof(float) * (size_t)n));
    t->zps = own(g, qd_xmalloc(sizeof(int64_t) * (size_t)n));
    memcpy(t->scales, scales, sizeof(float) * (size_t)n);
    memcpy(t->zps, zps, sizeof(int64_t) * (size_t)n);
    t->qdim = qdim;
}

/* asymmetric int8 parameters of a range (widened to hold 0) */
static void range_params(float lo, float hi, float *scale, int64_t *zp)
{
    lo = lo < 0 ? lo : 0;
    hi = hi > 0 ? hi : 0;
    float s = (hi - lo) / 255.0f;
    if (!(s > 0)) s = 1e-8f;
    double z = -128.0 - (double)lo / s;
    z = nearbyint(z);
    *scale = s;
    *zp = z < -128 ? -128 : z > 127 ? 127 : (int64_t)z;
}

/* [lo, hi] of activation `rname` from --activation-ranges (left as they are, and the error
 * recorded, when the file has no such range) */
static void json_range(tg *g, const char *rname, float *lo, float *hi)
{
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(g->ranges, rname);
    if (!cJSON_IsArray(r) || cJSON_GetArraySize(r) != 2) {
        if (!g->rc)
            g->rc = qd_err_set(QD_ENOTFOUND, "%s: no range [min, max] for activation '%s'", g->ranges_path, rname);
        return;
    }
    *lo = (float)cJSON_GetArrayItem(r, 0)->valuedouble;
    *hi = (float)cJSON_GetArrayItem(r, 1)->valuedouble;
}

/* the index of `rname` in the file's /activations record, or -1 with the error recorded */
static int rec_find(tg *g, const char *rname)
{
    int i = qd_xs_act_find(g->rec, rname);
    if (i < 0 && !g->rc)
        g->rc = qd_err_set(QD_ENOTFOUND,
                           "%s: /activations has no tensor '%s' (files calibrated before it was recorded: "
                           "quantize again with --activations static, or give --activation-ranges)",
                           g->path, rname);
    return i;
}

/* The int8 parameters of activation `rname` with its values multiplied by `fold` (> 0): from the
 * [min, max] of --activation-ranges, or the file's /activations, whose scale and zero point are
 * taken as they are so that the graph's int8 tensors hold qdist's integer-only codes (a tensor
 * with static outlier channels gets one range over all its channels: LiteRT has no split). */
static void act_params(tg *g, const char *rname, float fold, float *s, int64_t *z)
{
    float lo = 0, hi = 1;
    if (g->ranges) {
        json_range(g, rname, &lo, &hi);
        range_params(lo * fold, hi * fold, s, z);
        return;
    }
    const qd_actrec *a = g->rec;
    int i = rec_find(g, rname);
    if (i < 0) {
        range_params(lo, hi, s, z);
        return;
    }
    if (a->out_off && a->out_off[i + 1] > a->out_off[i]) {
        range_params(fminf(a->lo[i], a->out_lo[i]) * fold, fmaxf(a->hi[i], a->out_hi[i]) * fold, s, z);
        return;
    }
    *s = a->scale[i] * fold;
    *z = a->zero_point[i];
}

/* an int8 activation tensor quantized from the range recorded under `rname` */
static int act_fold(tg *g, const char *rname, int ndim, const int32_t *shape, float fold)
{
    int ti = tensor(g, rname, TT_INT8, ndim, shape);
    float s;
    int64_t z;
    act_params(g, rname, fold, &s, &z);
    quant(g, ti, 1, &s, &z, 0);
    return ti;
}

static int act(tg *g, const char *rname, int ndim, const int32_t *shape)
{
    return act_fold(g, rname, ndim, shape, 1.0f);
}

/* an int16 activation of the residual stream (symmetric, zero point 0 as LiteRT's int16 kernels
 * require) over the largest magnitude of its range: qdist keeps this stream in int32 at
 * max(|min|, |max|) / 2^16, which int8 would coarsen 256-fold */
static int act16(tg *g, const char *rname, int ndim, const int32_t *shape)
{
    int ti = tensor(g, rname, TT_INT16, ndim, shape);
    float lo = 0, hi = 1;
    if (g->ranges) {
        json_range(g, rname, &lo, &hi);
    } else {
        int i = rec_find(g, rname);
        if (i >= 0) {
            lo = g->rec->min[i];
            hi = g->rec->max[i];
        }
    }
    float a = fmaxf(fabsf(lo), fabsf(hi));
    float sc = a > 0 ? a / 32767.0f : 1e-8f;
    int64_t z = 0;
    quant(g, ti, 1, &sc, &z, 0);
    return ti;
}

/* an activation with given parameters (softmax output) */
static int act_fixed(tg *g, const char *name, int ndim, const int32_t *shape, float scale, int64_t zp)
{
    int ti = tensor(g, name, TT_INT8, ndim, shape);
    quant(g, ti, 1, &scale, &zp, 0);
    return ti;
}

/* a non-quantized activation keeping another's parameters (reshape/transpose outputs) */
static int act_like(tg *g, const char *name, int ndim, const int32_t *shape, int like)
{
    int ti = tensor(g, name, g->t[like].type, ndim, shape);
    quant(g, ti, 1, g->t[like].scales, g->t[like].zps, 0);
    return ti;
}

static int const_i32(tg *g, const char *name, int n, const int32_t *v)
{
    int32_t *c = own(g, qd_xmalloc(sizeof(int32_t) * (size_t)(n ? n : 1)));
    memcpy(c, v, sizeof(int32_t) * (size_t)n);
    int32_t shape[1] = {n};
    int ti = tensor(g, name, TT_INT32, 1, shape);
    g->t[ti].buffer = buffer(g, c, sizeof(int32_t) * (size_t)n);
    return ti;
}

/* a float constant as int8 with the (scale, zero point) of tensor `like`, or (like < 0) from its
 * own range */
static int const_i8_as(tg *g, const char *name, int ndim, const int32_t *shape, const float *v, int64_t n, int like)
{
    float s;
    int64_t z;
    if (like >= 0) {
        s = g->t[like].scales[0];
        z = g->t[like].zps[0];
    } else {
        float lo = 0, hi = 0;
        for (int64_t i = 0; i < n; i++) {
            lo = v[i] < lo ? v[i] : lo;
            hi = v[i] > hi ? v[i] : hi;
        }
        range_params(lo, hi, &s, &z);
    }
    int8_t *q = own(g, qd_xmalloc((size_t)n));
    for (int64_t i = 0; i < n; i++) {
        double r = nearbyint((double)v[i] / s) + (double)z;
        q[i] = (int8_t)(r < -128 ? -128 : r > 127 ? 127 : r);
    }
    int ti = tensor(g, name, TT_INT8, ndim, shape);
    quant(g, ti, 1, &s, &z, 0);
    g->t[ti].buffer = buffer(g, q, (size_t)n);
    return ti;
}

/* a float constant as int16, symmetric over its largest magnitude */
static int const_i16(tg *g, const char *name, int ndim, const int32_t *shape, const float *v, int64_t n)
{
    float a = 0;
    for (int64_t i = 0; i < n; i++) a = fabsf(v[i]) > a ? fabsf(v[i]) : a;
    float s = a > 0 ? a / 32767.0f : 1.0f;
    int64_t z = 0;
    int16_t *q = own(g, qd_xmalloc(sizeof(int16_t) * (size_t)n));
    for (int64_t i = 0; i < n; i++) q[i] = (int16_t)nearbyintf(v[i] / s);
    int ti = tensor(g, name, TT_INT16, ndim, shape);
    quant(g, ti, 1, &s, &z, 0);
    g->t[ti].buffer = buffer(g, q, sizeof(int16_t) * (size_t)n);
    return ti;
}

static top *op(tg *g, int code, int nin, const int *in, int out)
{
    if (g->nop == g->cop) {
        g->cop = g->cop ? 2 * g->cop : 256;
        g->op = realloc(g->op, (size_t)g->cop * sizeof *g->op);
        QD_ASSERT(g->op);
    }
    top *o = &g->op[g->nop++];
    memset(o, 0, sizeof *o);
    o->code = code;
    o->nin = nin;
    memcpy(o->in, in, sizeof(int) * (size_t)nin);
    o->nout = 1;
    o->out[0] = out;
    return o;
}

static float tscale(const tg *g, int ti) { return g->t[ti].scales[0]; }

/* ---- weights ------------------------------------------------------------------------------------ */

/* float weights [rows][k] as int8, symmetric per row over [-127, 127] */
static void quantize_rows(const float *w, int64_t rows, int64_t k, int8_t *q, float *scales)
{
    for (int64_t r = 0; r < rows; r++) {
        float m = 0;
        for (int64_t c = 0; c < k; c++) m = fabsf(w[r * k + c]) > m ? fabsf(w[r * k + c]) : m;
        float s = m > 0 ? m / 127.0f : 1.0f;
        scales[r] = s;
        for (int64_t c = 0; c < k; c++) q[r * k + c] = (int8_t)nearbyintf(w[r * k + c] / s);
    }
}

/* the int8 weights [out, in] and per-channel scales of a Linear: qdist's codes when the file
 * quantized it symmetrically per channel, else the float weights quantized here */
static int linear_weights(tg *g, const qd_xd_linear *L, int8_t **wq, float **sc)
{
    int i = qd_xs_find(g->s, L->w);
    if (i < 0) return qd_err_set(QD_ENOTFOUND, "%s: tensor '%s' is missing", g->path, L->w);
    const qd_xs_tensor *t = qd_xs_tensor_at(g->s, i);
    const int64_t R = L->out, C = L->in;
    *wq = own(g, qd_xmalloc((size_t)(R * C)));
    *sc = own(g, qd_xmalloc(sizeof(float) * (size_t)R));
    if (t->unknown[0])
        return qd_err_set(QD_EUNSUPPORTED, "%s: tensor '%s' holds %s, which the LiteRT export cannot carry", g->path,
                          t->name, t->unknown);
    if (t->codebook)
        return qd_err_set(QD_EUNSUPPORTED,
                          "%s: tensor '%s': K-means codebook weights cannot be expressed in LiteRT's integer-only "
                          "FULLY_CONNECTED, whose int8 weights lie on one uniform grid per output channel",
                          g->path, t->name);
    if (t->kind == QD_XS_QUANT) {
        if (!t->sym || t->ngroups != 1)
            return qd_err_set(QD_EUNSUPPORTED,
                              "%s: tensor '%s': %s %d-bit%s weights cannot be expressed in LiteRT's int8 "
                              "FULLY_CONNECTED, which takes one symmetric scale per output channel",
                              g->path, t->name, t->sym ? "symmetric" : "asymmetric", t->bits,
                              t->ngroups > 1 ? " group-wise" : "");
        qd_xs_quant q;
        int rc = qd_xs_read_quant(g->s, i, &q);
        if (rc) return rc;
        const int off = 1 << (t->bits - 1);
        for (int64_t k = 0; k < R * C; k++) (*wq)[k] = (int8_t)((int)q.codes[k] - off);
        memcpy(*sc, q.scales, sizeof(float) * (size_t)R);
        qd_xs_quant_free(&q);
        g->sum->linears_integer++;
        return QD_OK;
    }
    float *w;
    int rc = qd_xs_read_float(g->s, i, &w);
    if (rc) return rc;
    quantize_rows(w, R, C, *wq, *sc);
    free(w);
    g->sum->linears_float++;
    return QD_OK;
}

static int read_f(tg *g, const char *name, float **out)
{
    int i = qd_xs_find(g->s, name);
    if (i < 0) return qd_err_set(QD_ENOTFOUND, "%s: tensor '%s' is missing", g->path, name);
    int rc = qd_xs_read_float(g->s, i, out);
    if (!rc) own(g, *out);
    return rc;
}

/* int32 bias [n] at scale s_in * s_w[c] */
static int bias_tensor(tg *g, const char *name, const float *b, int n, float s_in, const float *sw, int wide)
{
    int32_t *q = own(g, qd_xmalloc(sizeof(int32_t) * (size_t)n));
    float *s = qd_xmalloc(sizeof(float) * (size_t)n);
    int64_t *z = qd_xcalloc((size_t)n, sizeof(int64_t));
    for (int c = 0; c < n; c++) {
        s[c] = s_in * sw[c];
        double v = b ? nearbyint((double)b[c] / s[c]) : 0;
        q[c] = (int32_t)(v > INT32_MAX ? INT32_MAX : v < -INT32_MAX ? -INT32_MAX : v);
    }
    int32_t shape[1] = {n};
    int ti = tensor(g, name, wide ? TT_INT64 : TT_INT32, 1, shape);
    if (wide) { /* int64 (16x8 kernels) */
        int64_t *q64 = own(g, qd_xmalloc(sizeof(int64_t) * (size_t)n));
        for (int c = 0; c < n; c++) q64[c] = q[c];
        g->t[ti].buffer = buffer(g, q64, sizeof(int64_t) * (size_t)n);
    } else
        g->t[ti].buffer = buffer(g, q, sizeof(int32_t) * (size_t)n);
    quant(g, ti, n, s, z, 0);
    free(s);
    free(z);
    return ti;
}

/* FULLY_CONNECTED on x [.., in] -> activation `rname` [.., out]; `fold` multiplies the Linear
 * (its weight scales and bias) — the attention's 1/sqrt(d) */
static int fully_connected(tg *g, int x, const qd_xd_linear *L, const char *rname, float fold, int fused, int out16)
{
    int8_t *wq = NULL;
    float *sc = NULL;
    if (!g->rc) g->rc = linear_weights(g, L, &wq, &sc);
    if (g->rc) return x;
    const int R = L->out, C = L->in;
    for (int r = 0; r < R; r++) sc[r] *= fold;
    float *b = NULL;
    if (L->b[0] && !g->rc) g->rc = read_f(g, L->b, &b);
    if (b)
        for (int r = 0; r < R; r++) b[r] *= fold;
    int32_t ws[2] = {R, C};
    char nm[300];
    snprintf(nm, sizeof nm, "%s", L->w);
    int w = tensor(g, nm, TT_INT8, 2, ws);
    g->t[w].buffer = buffer(g, wq, (size_t)R * (size_t)C);
    int64_t *z = qd_xcalloc((size_t)R, sizeof(int64_t));
    quant(g, w, R, sc, z, 0);
    free(z);
    const ttensor *xt = &g->t[x];
    int32_t os[MAXD];
    memcpy(os, xt->shape, sizeof os);
    os[xt->ndim - 1] = R;
    if (out16) {
        /* 16x8: the int8 input widened exactly (int16 at scale s / 128 holds 128 (q - z)), int64
         * bias, int16 output on the residual stream's scale: no int8 rounding of the output, as
         * qdist adds the int32 accumulator to its residual */
        snprintf(nm, sizeof nm, "%s.int16", g->t[x].name);
        float s16 = tscale(g, x) / 128.0f;
        int64_t z0 = 0;
        int x16 = tensor(g, nm, TT_INT16, xt->ndim, xt->shape);
        quant(g, x16, 1, &s16, &z0, 0);
        op(g, OP_QUANTIZE, 1, (int[]){x}, x16);
        snprintf(nm, sizeof nm, "%s.int64", L->b[0] ? L->b : L->w);
        int bt = bias_tensor(g, nm, b, R, s16, sc, 1);
        int y = act16(g, rname, g->t[x16].ndim, os);
        top *o = op(g, OP_FULLY_CONNECTED, 3, (int[]){x16, w, bt}, y);
        o->opt = BO_FC;
        o->act = fused;
        o->i1 = 1;
        return y;
    }
    snprintf(nm, sizeof nm, "%s.int32", L->b[0] ? L->b : L->w);
    int bt = bias_tensor(g, nm, b, R, tscale(g, x), sc, 0);
    int y = act_fold(g, rname, xt->ndim, os, fold);
    top *o = op(g, OP_FULLY_CONNECTED, 3, (int[]){x, w, bt}, y);
    o->opt = BO_FC;
    o->act = fused;
    o->i1 = 1; /* keep_num_dims */
    return y;
}

/* ---- small ops ---------------------------------------------------------------------------------- */

/* the int16 sum of two int16 residual terms */
static int add16(tg *g, int a, int b, const char *rname)
{
    const ttensor *ta = &g->t[a];
    int y = act16(g, rname, ta->ndim, ta->shape);
    op(g, OP_ADD, 2, (int[]){a, b}, y)->opt = BO_ADD;
    return y;
}

static int mean_last(tg *g, int x, const char *rname)
{
    const ttensor *t = &g->t[x];
    int32_t s[MAXD];
    memcpy(s, t->shape, sizeof s);
    s[t->ndim - 1] = 1;
    char nm[320];
    snprintf(nm, sizeof nm, "%s.axis", rname);
    int ax = const_i32(g, nm, 1, (int32_t[]){t->ndim - 1});
    int y = t->type == TT_INT16 ? act16(g, rname, t->ndim, s) : act(g, rname, t->ndim, s);
    top *o = op(g, OP_MEAN, 2, (int[]){x, ax}, y);
    o->opt = BO_REDUCER;
    o->i1 = 1; /* keep_dims */
    return y;
}

static int reshape(tg *g, int x, int ndim, const int32_t *shape, const char *name)
{
    char nm[300];
    snprintf(nm, sizeof nm, "%s.shape", name);
    int sh = const_i32(g, nm, ndim, shape);
    int y = act_like(g, name, ndim, shape, x);
    top *o = op(g, OP_RESHAPE, 2, (int[]){x, sh}, y);
    o->opt = BO_RESHAPE;
    o->nshape = ndim;
    memcpy(o->shape, shape, sizeof(int32_t) * (size_t)ndim);
    return y;
}

static int transpose(tg *g, int x, const int32_t *perm, const char *name)
{
    const ttensor *t = &g->t[x];
    int32_t s[MAXD];
    for (int k = 0; k < t->ndim; k++) s[k] = t->shape[perm[k]];
    char nm[300];
    snprintf(nm, sizeof nm, "%s.perm", name);
    int p = const_i32(g, nm, t->ndim, perm);
    int y = act_like(g, name, t->ndim, s, x);
    op(g, OP_TRANSPOSE, 2, (int[]){x, p}, y)->opt = BO_TRANSPOSE;
    return y;
}

/* LayerNorm over the last axis in int8 builtins, its output the activation `oname`:
 *   mean = MEAN(x);  diff = SUB(x, mean);  u = L2_NORMALIZATION(diff)  (diff / ‖diff‖, int8 at 1/128)
 *   y = DEPTHWISE_CONV_2D(u; √N·γ per channel, bias β)                (LN = √N · u · γ + β)
 * LayerNorm is diff / √(‖diff‖² / N + ε): the L2 form drops ε, which is below the variance's
 * rounding for any row whose variance is not ~ε. γ is carried exactly (one int8 value ±127 per
 * channel at its own scale) and β as an int32 bias; ranges are needed for the mean and the centred
 * values only (prefix p: "p.mean", "p.diff"). */
static int layer_norm(tg *g, int x, const char *wname, const char *bname, const char *p, const char *oname)
{
    char n[300];
    const int H = g->d->cfg.hidden;
    float *gm = NULL, *bt = NULL;
    if (!g->rc) g->rc = read_f(g, wname, &gm);
    if (!g->rc) g->rc = read_f(g, bname, &bt);
    if (g->rc) return x;
    snprintf(n, sizeof n, "%s.mean", p);
    int mean = mean_last(g, x, n);
    snprintf(n, sizeof n, "%s.diff", p);
    int diff = act16(g, n, g->t[x].ndim, g->t[x].shape); /* x is on the int16 residual stream */
    op(g, OP_SUB, 2, (int[]){x, mean}, diff)->opt = BO_SUB;
    const ttensor *xt = &g->t[x];
    const int ndim = xt->ndim;
    int32_t shape[MAXD];
    memcpy(shape, xt->shape, sizeof shape);
    const int T = ndim == 3 ? shape[1] : 1;
    /* L2_NORMALIZATION takes int8 only: the centred values at the int8 parameters of their range */
    float s8;
    int64_t z8;
    act_params(g, n, 1.0f, &s8, &z8);
    snprintf(n, sizeof n, "%s.diff.int8", p);
    int d8 = tensor(g, n, TT_INT8, ndim, shape);
    quant(g, d8, 1, &s8, &z8, 0);
    op(g, OP_QUANTIZE, 1, (int[]){diff}, d8);
    snprintf(n, sizeof n, "%s.unit", p);
    int u = act_fixed(g, n, ndim, shape, 1.0f / 128.0f, 0);
    op(g, OP_L2_NORMALIZATION, 1, (int[]){d8}, u)->opt = BO_L2NORM;
    snprintf(n, sizeof n, "%s.unit.nhwc", p);
    int u4 = reshape(g, u, 4, (int32_t[]){1, 1, T, H}, n);
    /* depthwise filter [1, 1, 1, H]: √N·γ_c as ±127 (0 for γ_c = 0) at scale |√N·γ_c| / 127 */
    int8_t *wq = own(g, qd_xmalloc((size_t)H));
    float *ws = own(g, qd_xmalloc(sizeof(float) * (size_t)H));
    const float rn = sqrtf((float)H);
    for (int c = 0; c < H; c++) {
        const float w = rn * gm[c];
        ws[c] = w != 0 ? fabsf(w) / 127.0f : 1.0f;
        wq[c] = (int8_t)(w > 0 ? 127 : w < 0 ? -127 : 0);
    }
    int wt = tensor(g, wname, TT_INT8, 4, (int32_t[]){1, 1, 1, H});
    g->t[wt].buffer = buffer(g, wq, (size_t)H);
    int64_t *z = qd_xcalloc((size_t)H, sizeof(int64_t));
    quant(g, wt, H, ws, z, 3);
    free(z);
    snprintf(n, sizeof n, "%s.int32", bname);
    int bq = bias_tensor(g, n, bt, H, tscale(g, u4), ws, 0);
    char o4[300];
    snprintf(o4, sizeof o4, "%s.nhwc", oname);
    int32_t s4[4] = {1, 1, T, H};
    int y4 = act(g, oname, 4, s4);
    g->t[y4].name = own(g, qd_xstrdup(o4));
    top *o = op(g, OP_DEPTHWISE_CONV_2D, 3, (int[]){u4, wt, bq}, y4);
    o->opt = BO_DEPTHWISE;
    o->i1 = 1;
    o->i2 = 1;
    int y = reshape(g, y4, ndim, shape, oname);
    return y;
}

/* ---- the ViT ------------------------------------------------------------------------------------ */

static int vit(tg *g, int *in, int *out)
{
    const qd_xdesc *d = g->d;
    const qd_model_config *c = &d->cfg;
    const int H = c->hidden, heads = c->heads, hd = c->head_size, A = heads * hd;
    const int gh = c->image_h / c->patch_h, gw = c->image_w / c->patch_w, np = gh * gw, T = np + 1;
    if (c->act != QD_ACT_RELU)
        return qd_err_set(QD_EUNSUPPORTED, "%s: the LiteRT export supports ReLU MLPs for now (this model: %s)", g->path,
                          "GELU/SiLU");
    char n[300];
    /* input: float NCHW, quantized, to NHWC */
    int32_t ps[4] = {1, c->channels, c->image_h, c->image_w};
    *in = tensor(g, "pixel_values", TT_FLOAT32, 4, ps);
    int32_t qs[4] = {1, c->channels, c->image_h, c->image_w};
    int x = act(g, "input", 4, qs);
    op(g, OP_QUANTIZE, 1, (int[]){*in}, x);
    x = transpose(g, x, (int32_t[]){0, 2, 3, 1}, "input.nhwc");
    /* patches: CONV_2D, weights OHWI */
    float *pw = NULL, *pb = NULL;
    if ((g->rc = read_f(g, d->patch_w, &pw)) || (g->rc = read_f(g, d->patch_b, &pb))) return g->rc;
    const int K = c->channels * c->patch_h * c->patch_w;
    int8_t *wq = own(g, qd_xmalloc((size_t)H * (size_t)K));
    float *sc = own(g, qd_xmalloc(sizeof(float) * (size_t)H));
    float *ohwi = qd_xmalloc(sizeof(float) * (size_t)H * (size_t)K);
    for (int o = 0; o < H; o++)
        for (int ch = 0; ch < c->channels; ch++)
            for (int i = 0; i < c->patch_h; i++)
                for (int j = 0; j < c->patch_w; j++)
                    ohwi[((o * c->patch_h + i) * c->patch_w + j) * c->channels + ch] =
                        pw[((o * c->channels + ch) * c->patch_h + i) * c->patch_w + j];
    quantize_rows(ohwi, H, K, wq, sc);
    free(ohwi);
    int32_t ws[4] = {H, c->patch_h, c->patch_w, c->channels};
    int w = tensor(g, d->patch_w, TT_INT8, 4, ws);
    g->t[w].buffer = buffer(g, wq, (size_t)H * (size_t)K);
    int64_t *z = qd_xcalloc((size_t)H, sizeof(int64_t));
    quant(g, w, H, sc, z, 0);
    free(z);
    snprintf(n, sizeof n, "%s.int32", d->patch_b);
    int bt = bias_tensor(g, n, pb, H, tscale(g, x), sc, 0);
    /* the patches, [CLS] and their concatenation share one scale (XNNPACK's int8 concatenation
     * takes no requantization): the range of "tokens" */
    int32_t cs[4] = {1, gh, gw, H};
    int tok = act(g, "tokens", 3, (int32_t[]){1, T, H});
    int conv = act_like(g, "patches", 4, cs, tok);
    top *o = op(g, OP_CONV_2D, 3, (int[]){x, w, bt}, conv);
    o->opt = BO_CONV2D;
    o->i1 = c->patch_w;
    o->i2 = c->patch_h;
    x = reshape(g, conv, 3, (int32_t[]){1, np, H}, "patches.tokens");
    /* [CLS] and positions */
    float *cls = NULL, *pos = NULL;
    if ((g->rc = read_f(g, d->cls_token, &cls)) || (g->rc = read_f(g, d->pos_emb, &pos))) return g->rc;
    int clst = const_i8_as(g, d->cls_token, 3, (int32_t[]){1, 1, H}, cls, H, tok);
    o = op(g, OP_CONCATENATION, 2, (int[]){clst, x}, tok);
    o->opt = BO_CONCAT;
    o->i1 = 1;
    /* the residual stream in int16: tokens widened, positions an int16 constant */
    int32_t es[3] = {1, T, H};
    int tok16 = act16(g, "tokens", 3, es);
    g->t[tok16].name = own(g, qd_xstrdup("tokens.int16"));
    op(g, OP_QUANTIZE, 1, (int[]){tok}, tok16);
    int post = const_i16(g, d->pos_emb, 3, es, pos, (int64_t)T * H);
    int h = add16(g, tok16, post, "embeddings");
    for (int k = 0; k < c->layers && !g->rc; k++) {
        const qd_xd_block *b = &d->blk[k];
        snprintf(n, sizeof n, "layer.%d.ln1", k);
        char qn[64], kn[64], vn[64];
        snprintf(qn, sizeof qn, "layer.%d.qkv_in", k);
        int n1 = layer_norm(g, h, b->ln1_w, b->ln1_b, n, qn);
        snprintf(qn, sizeof qn, "layer.%d.q", k);
        snprintf(kn, sizeof kn, "layer.%d.k", k);
        snprintf(vn, sizeof vn, "layer.%d.v", k);
        int q = fully_connected(g, n1, &b->lin[QD_LIN_Q], qn, (float)(1.0 / sqrt((double)hd)), ACT_NONE, 0);
        int kk = fully_connected(g, n1, &b->lin[QD_LIN_K], kn, 1.0f, ACT_NONE, 0);
        int v = fully_connected(g, n1, &b->lin[QD_LIN_V], vn, 1.0f, ACT_NONE, 0);
        if (g->rc) break;
        const int32_t hs4[4] = {1, T, heads, hd}, p0213[4] = {0, 2, 1, 3};
        char t1[96], t2[96];
        snprintf(t1, sizeof t1, "%s.heads", qn);
        snprintf(t2, sizeof t2, "%s.bhtd", qn);
        int qh = transpose(g, reshape(g, q, 4, hs4, t1), p0213, t2);
        snprintf(t1, sizeof t1, "%s.heads", kn);
        snprintf(t2, sizeof t2, "%s.bhtd", kn);
        int kh = transpose(g, reshape(g, kk, 4, hs4, t1), p0213, t2);
        snprintf(t1, sizeof t1, "%s.heads", vn);
        snprintf(t2, sizeof t2, "%s.bhtd", vn);
        int vh = transpose(g, reshape(g, v, 4, hs4, t1), p0213, t2);
        snprintf(n, sizeof n, "layer.%d.scores", k);
        int s = act(g, n, 4, (int32_t[]){1, heads, T, T});
        o = op(g, OP_BATCH_MATMUL, 2, (int[]){qh, kh}, s);
        o->opt = BO_BATCH_MATMUL;
        o->i2 = 1; /* adj_y: Q K^T */
        snprintf(n, sizeof n, "layer.%d.probs", k);
        int pr = act_fixed(g, n, 4, (int32_t[]){1, heads, T, T}, 1.0f / 256.0f, -128);
        o = op(g, OP_SOFTMAX, 1, (int[]){s}, pr);
        o->opt = BO_SOFTMAX;
        o->f1 = 1.0f;
        snprintf(n, sizeof n, "layer.%d.ctx", k);
        int ctx = act(g, n, 4, (int32_t[]){1, heads, T, hd});
        o = op(g, OP_BATCH_MATMUL, 2, (int[]){pr, vh}, ctx);
        o->opt = BO_BATCH_MATMUL;
        snprintf(t1, sizeof t1, "layer.%d.ctx.bthd", k);
        snprintf(t2, sizeof t2, "layer.%d.ctx.tokens", k);
        ctx = reshape(g, transpose(g, ctx, p0213, t1), 3, (int32_t[]){1, T, A}, t2);
        snprintf(n, sizeof n, "layer.%d.attn_out", k);
        int ao = fully_connected(g, ctx, &b->lin[QD_LIN_O], n, 1.0f, ACT_NONE, 1);
        snprintf(n, sizeof n, "layer.%d.res1", k);
        int h1 = add16(g, h, ao, n);
        snprintf(n, sizeof n, "layer.%d.ln2", k);
        snprintf(qn, sizeof qn, "layer.%d.mlp_in", k);
        int n2 = layer_norm(g, h1, b->ln2_w, b->ln2_b, n, qn);
        snprintf(n, sizeof n, "layer.%d.act", k);
        int it = fully_connected(g, n2, &b->lin[QD_LIN_INTER], n, 1.0f, ACT_RELU, 0);
        snprintf(n, sizeof n, "layer.%d.mlp_out", k);
        int mo = fully_connected(g, it, &b->lin[QD_LIN_OUT], n, 1.0f, ACT_NONE, 1);
        snprintf(n, sizeof n, "layer.%d.out", k);
        h = add16(g, h1, mo, n);
    }
    if (g->rc) return g->rc;
    /* [CLS] -> final LayerNorm -> classifier -> float logits */
    int b0 = const_i32(g, "cls.begin", 3, (int32_t[]){0, 0, 0}), sz = const_i32(g, "cls.size", 3, (int32_t[]){1, 1, H});
    int clsh = act_like(g, "cls", 3, (int32_t[]){1, 1, H}, h);
    op(g, OP_SLICE, 3, (int[]){h, b0, sz}, clsh);
    int cl2 = reshape(g, clsh, 2, (int32_t[]){1, H}, "cls.flat");
    int fin = layer_norm(g, cl2, d->final_ln_w, d->final_ln_b, "final_norm", "final_norm");
    if (!d->has_classifier)
        return qd_err_set(QD_EUNSUPPORTED, "%s: the LiteRT export needs a classifier head", g->path);
    int lg = fully_connected(g, fin, &d->classifier, "logits", 1.0f, ACT_NONE, 1);
    if (g->rc) return g->rc;
    *out = tensor(g, "logits.float", TT_FLOAT32, 2, (int32_t[]){1, c->num_labels});
    op(g, OP_DEQUANTIZE, 1, (int[]){lg}, *out);
    return QD_OK;
}

/* ---- the flatbuffer ----------------------------------------------------------------------------- */

/* operator versions for int8 kernels with per-channel weights, as TensorFlow's converter writes */
static int op_version(int code)
{
    switch (code) {
    case OP_FULLY_CONNECTED: return 5;
    case OP_CONV_2D:
    case OP_DEPTHWISE_CONV_2D: return 3;
    case OP_L2_NORMALIZATION: return 2;
    case OP_ADD:
    case OP_SUB:
    case OP_MUL:
    case OP_MEAN:
    case OP_SOFTMAX:
    case OP_TRANSPOSE:
    case OP_CONCATENATION:
    case OP_DEQUANTIZE:
    case OP_RSQRT:
    case OP_SLICE: return 2;
    case OP_BATCH_MATMUL: return 2;
    default: return 1;
    }
}

static qd_fbref options(qd_fb *fb, const top *o)
{
    switch (o->opt) {
    case BO_CONV2D:
        qd_fb_table_start(fb, 7);
        qd_fb_add_u8(fb, 0, 1); /* VALID */
        qd_fb_add_i32(fb, 1, o->i1);
        qd_fb_add_i32(fb, 2, o->i2);
        qd_fb_add_u8(fb, 3, (uint8_t)o->act);
        qd_fb_add_i32(fb, 4, 1);
        qd_fb_add_i32(fb, 5, 1);
        return qd_fb_table_end(fb);
    case BO_DEPTHWISE: /* padding, stride_w, stride_h, depth_multiplier, activation, dilations */
        qd_fb_table_start(fb, 7);
        qd_fb_add_u8(fb, 0, 1); /* VALID */
        qd_fb_add_i32(fb, 1, o->i1);
        qd_fb_add_i32(fb, 2, o->i2);
        qd_fb_add_i32(fb, 3, 1);
        qd_fb_add_u8(fb, 4, (uint8_t)o->act);
        qd_fb_add_i32(fb, 5, 1);
        qd_fb_add_i32(fb, 6, 1);
        return qd_fb_table_end(fb);
    case BO_L2NORM:
        qd_fb_table_start(fb, 1);
        qd_fb_add_u8(fb, 0, 0);
        return qd_fb_table_end(fb);
    case BO_FC:
        qd_fb_table_start(fb, 6);
        qd_fb_add_u8(fb, 0, (uint8_t)o->act);
        qd_fb_add_u8(fb, 2, (uint8_t)o->i1);
        return qd_fb_table_end(fb);
    case BO_SOFTMAX:
        qd_fb_table_start(fb, 1);
        qd_fb_add_f32(fb, 0, o->f1);
        return qd_fb_table_end(fb);
    case BO_CONCAT:
        qd_fb_table_start(fb, 2);
        qd_fb_add_i32(fb, 0, o->i1);
        return qd_fb_table_end(fb);
    case BO_ADD:
    case BO_SUB:
    case BO_MUL:
        qd_fb_table_start(fb, 1);
        qd_fb_add_u8(fb, 0, (uint8_t)o->act);
        return qd_fb_table_end(fb);
    case BO_RESHAPE: {
        qd_fbref v = qd_fb_vector(fb, o->shape, (size_t)o->nshape, 4);
        qd_fb_table_start(fb, 1);
        qd_fb_add_ref(fb, 0, v);
        return qd_fb_table_end(fb);
    }
    case BO_REDUCER:
        qd_fb_table_start(fb, 1);
        qd_fb_add_u8(fb, 0, (uint8_t)o->i1);
        return qd_fb_table_end(fb);
    case BO_BATCH_MATMUL:
        qd_fb_table_start(fb, 3);
        qd_fb_add_u8(fb, 0, (uint8_t)o->i1);
        qd_fb_add_u8(fb, 1, (uint8_t)o->i2);
        return qd_fb_table_end(fb);
    case BO_TRANSPOSE: qd_fb_table_start(fb, 0); return qd_fb_table_end(fb);
    default: return 0;
    }
}

static int serialize(tg *g, int in, int out, const char *desc, const uint8_t **data, size_t *size, qd_fb *fb)
{
    /* buffers: [0] is the empty sentinel */
    qd_fbref *bufs = qd_xmalloc(sizeof(qd_fbref) * (size_t)g->nb);
    for (int i = g->nb - 1; i >= 0; i--) {
        qd_fbref v = g->b[i].bytes ? qd_fb_vector_aligned(fb, g->b[i].data, g->b[i].bytes, 1, 16) : 0;
        qd_fb_table_start(fb, 3);
        qd_fb_add_ref(fb, 0, v);
        bufs[i] = qd_fb_table_end(fb);
    }
    qd_fbref *ts = qd_xmalloc(sizeof(qd_fbref) * (size_t)g->nt);
    for (int i = 0; i < g->nt; i++) {
        const ttensor *t = &g->t[i];
        qd_fbref q = 0;
        if (t->nq) {
            qd_fbref sv = qd_fb_vector(fb, t->scales, (size_t)t->nq, 4),
                     zv = qd_fb_vector(fb, t->zps, (size_t)t->nq, 8);
            qd_fb_table_start(fb, 7);
            qd_fb_add_ref(fb, 2, sv);
            qd_fb_add_ref(fb, 3, zv);
            qd_fb_add_i32(fb, 6, t->qdim);
            q = qd_fb_table_end(fb);
        }
        qd_fbref name = qd_fb_string(fb, t->name), shape = qd_fb_vector(fb, t->shape, (size_t)t->ndim, 4);
        qd_fb_table_start(fb, 11);
        qd_fb_add_ref(fb, 0, shape);
        qd_fb_add_u8(fb, 1, (uint8_t)t->type);
        qd_fb_add_u32(fb, 2, (uint32_t)t->buffer);
        qd_fb_add_ref(fb, 3, name);
        qd_fb_add_ref(fb, 4, q);
        ts[i] = qd_fb_table_end(fb);
    }
    /* operator codes, in order of first use */
    int codes[64], nc = 0;
    qd_fbref *ops = qd_xmalloc(sizeof(qd_fbref) * (size_t)(g->nop ? g->nop : 1));
    for (int i = 0; i < g->nop; i++) {
        const top *o = &g->op[i];
        int ci = 0;
        while (ci < nc && codes[ci] != o->code) ci++;
        if (ci == nc) codes[nc++] = o->code;
        qd_fbref opt = options(fb, o);
        qd_fbref iv = qd_fb_vector(fb, o->in, (size_t)o->nin, 4), ov = qd_fb_vector(fb, o->out, (size_t)o->nout, 4);
        qd_fb_table_start(fb, 14);
        qd_fb_add_u32(fb, 0, (uint32_t)ci);
        qd_fb_add_ref(fb, 1, iv);
        qd_fb_add_ref(fb, 2, ov);
        if (o->opt != BO_NONE) {
            qd_fb_add_u8(fb, 3, (uint8_t)o->opt);
            qd_fb_add_ref(fb, 4, opt);
        }
        ops[i] = qd_fb_table_end(fb);
    }
    qd_fbref oc[64];
    for (int i = 0; i < nc; i++) {
        qd_fb_table_start(fb, 4);
        qd_fb_add_u8(fb, 0, (uint8_t)(codes[i] < 127 ? codes[i] : 127)); /* deprecated_builtin_code */
        qd_fb_add_i32(fb, 2, op_version(codes[i]));
        qd_fb_add_i32(fb, 3, codes[i]);
        oc[i] = qd_fb_table_end(fb);
    }
    qd_fbref tv = qd_fb_vector_refs(fb, ts, (size_t)g->nt), opv = qd_fb_vector_refs(fb, ops, (size_t)g->nop);
    qd_fbref inv = qd_fb_vector(fb, &in, 1, 4), outv = qd_fb_vector(fb, &out, 1, 4), sgn = qd_fb_string(fb, "main");
    qd_fb_table_start(fb, 6);
    qd_fb_add_ref(fb, 0, tv);
    qd_fb_add_ref(fb, 1, inv);
    qd_fb_add_ref(fb, 2, outv);
    qd_fb_add_ref(fb, 3, opv);
    qd_fb_add_ref(fb, 4, sgn);
    qd_fbref sg = qd_fb_table_end(fb);
    qd_fbref sgv = qd_fb_vector_refs(fb, &sg, 1), ocv = qd_fb_vector_refs(fb, oc, (size_t)nc);
    qd_fbref bv = qd_fb_vector_refs(fb, bufs, (size_t)g->nb), ds = qd_fb_string(fb, desc);
    qd_fb_table_start(fb, 10);
    qd_fb_add_u32(fb, 0, 3);
    qd_fb_add_ref(fb, 1, ocv);
    qd_fb_add_ref(fb, 2, sgv);
    qd_fb_add_ref(fb, 3, ds);
    qd_fb_add_ref(fb, 4, bv);
    qd_fbref model = qd_fb_table_end(fb);
    free(bufs);
    free(ts);
    free(ops);
    return qd_fb_finish(fb, model, "TFL3", data, size);
}

int qd_export_tflite(const char *model_file, const char *ranges_path, const char *out, qd_export_summary *sum)
{
    memset(sum, 0, sizeof *sum);
    cJSON *ranges = NULL;
    if (ranges_path) {
        FILE *rf = fopen(ranges_path, "rb");
        if (!rf) return qd_err_set(QD_ENOENT, "%s: cannot open the activation ranges", ranges_path);
        fseek(rf, 0, SEEK_END);
        long rl = ftell(rf);
        rewind(rf);
        char *rt = qd_xmalloc((size_t)(rl > 0 ? rl : 0) + 1);
        size_t got = fread(rt, 1, (size_t)(rl > 0 ? rl : 0), rf);
        rt[got] = 0;
        fclose(rf);
        ranges = cJSON_Parse(rt);
        free(rt);
        if (!cJSON_IsObject(ranges)) {
            cJSON_Delete(ranges);
            return qd_err_set(QD_EFORMAT, "%s: not a JSON object of [min, max] ranges", ranges_path);
        }
    }
    qd_xs *s;
    int rc = qd_xs_open(model_file, &s);
    if (rc) {
        cJSON_Delete(ranges);
        return rc;
    }
    qd_xdesc d;
    if ((rc = qd_xdesc_build(s, &d))) {
        qd_xs_close(s);
        cJSON_Delete(ranges);
        return rc;
    }
    tg g = {.s = s, .d = &d, .path = model_file, .ranges = ranges, .ranges_path = ranges_path, .sum = sum};
    buffer(&g, NULL, 0);
    if (!ranges && !(g.rec = qd_xs_activations(s))) {
        rc = qd_errcode();
        qd_xdesc_free(&d);
        qd_xs_close(s);
        return rc ? rc : QD_ENOTFOUND;
    }
    int in = 0, outt = 0;
    if (d.cfg.arch != QD_ARCH_VIT || strcmp(d.cfg.model_type, "vit"))
        rc = qd_err_set(QD_EUNSUPPORTED, "%s: the LiteRT export writes ViT models for now (this model: %s)", model_file,
                        d.cfg.model_type);
    else
        rc = vit(&g, &in, &outt);
    if (!rc) rc = g.rc;
    if (!rc) {
        qd_fb fb;
        qd_fb_init(&fb);
        const uint8_t *data;
        size_t size;
        char desc[256];
        snprintf(desc, sizeof desc, "qdist %s integer-only int8 export of %s", QD_VERSION, d.cfg.model_type);
        rc = serialize(&g, in, outt, desc, &data, &size, &fb);
        qd_xout o;
        if (!rc && !(rc = qd_xout_open(&o, out))) {
            qd_xout_write(&o, data, size);
            rc = qd_xout_commit(&o);
            if (!rc) sum->bytes = (int64_t)size;
        }
        qd_fb_free(&fb);
    }
    for (int i = 0; i < g.nown; i++) free(g.owned[i]);
    free(g.owned);
    free(g.t);
    free(g.op);
    free(g.b);
    cJSON_Delete(ranges);
    qd_xdesc_free(&d);
    qd_xs_close(s);
    return rc;
}
