/* export/onnx.c — a qdist model file as an ONNX model (see export.h): the forward pass of
 * model/forward.c as a graph, each quantized Linear in the form the options ask for. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/qd_common.h"
#include "export/desc.h"
#include "export/export.h"
#include "export/onnx_build.h"
#include "export/source.h"

typedef struct {
    qd_ob *b;
    qd_xs *s;
    const qd_xdesc *d;
    const qd_onnx_opts *o;
    qd_export_summary *sum;
    const char *path;
    /* the int8 activations of the last input quantized at run time, shared by the Linears that
     * read it (query, key, value) */
    const char *aq_x, *aq_q, *aq_s, *aq_idx, *aq_xo;
    /* QOPERATOR: the file's static activation scales, the record name of the next Linear's input
     * ("layer.3.qkv_in"; NULL: that Linear has none and takes another form), and the last input
     * quantized with them (query, key and value share it) */
    const qd_actrec *act;
    const char *act_in;
    const char *sq_x, *sq_act, *sq_q, *sq_z, *sq_oq, *sq_oz, *sq_ch;
    float sq_s;
    int sq_shift;
} ox;

const char *qd_onnx_ops_name(qd_onnx_ops o)
{
    return o == QD_ONNX_NBITS       ? "nbits"
           : o == QD_ONNX_INTEGER   ? "integer"
           : o == QD_ONNX_QOPERATOR ? "qoperator"
                                    : "qdq";
}

int qd_onnx_ops_parse(const char *s, qd_onnx_ops *o)
{
    if (!strcmp(s, "qdq"))
        *o = QD_ONNX_QDQ;
    else if (!strcmp(s, "nbits"))
        *o = QD_ONNX_NBITS;
    else if (!strcmp(s, "integer"))
        *o = QD_ONNX_INTEGER;
    else if (!strcmp(s, "qoperator"))
        *o = QD_ONNX_QOPERATOR;
    else
        return QD_EINVAL;
    return QD_OK;
}

/* ---- tensors of the file as initializers ---------------------------------------------------- */

static int tensor_index(ox *x, const char *name, int *i)
{
    *i = qd_xs_find(x->s, name);
    if (*i < 0) return qd_err_set(QD_ENOTFOUND, "%s: tensor '%s' is missing from the model file", x->path, name);
    const qd_xs_tensor *t = qd_xs_tensor_at(x->s, *i);
    if (t->unknown[0])
        return qd_err_set(QD_EUNSUPPORTED, "%s: tensor '%s' holds %s, which the ONNX export cannot carry", x->path,
                          name, t->unknown);
    return QD_OK;
}

/* A float tensor of the file (dequantized if the file quantized it) under its own name. */
static int float_init(ox *x, const char *name, const char **out)
{
    int i, rc = tensor_index(x, name, &i);
    if (rc) return rc;
    const qd_xs_tensor *t = qd_xs_tensor_at(x->s, i);
    float *v;
    if ((rc = qd_xs_read_float(x->s, i, &v))) return rc;
    *out = qd_ob_init(x->b, name, QD_OT_FLOAT, t->ndim, t->shape, v, (size_t)qd_xs_numel(t) * sizeof(float), 1);
    return QD_OK;
}

/* QOPERATOR: an embedding table on qdist's int32 residual grid (runtime/intprep.c: the record
 * "embeddings"' observed range over 2^16, saturated at +-(2^24 - 1) units), as float. qdist's
 * integer forward sums the tables exactly on that grid; the float tables' sum leaves it by ~2e-5 of
 * the range, which the LayerNorm after it turns into 0.4 % of its int8 codes one code apart. */
static int grid_init(ox *x, const char *name, const char **out)
{
    int i, rc = tensor_index(x, name, &i);
    if (rc) return rc;
    const int a = qd_xs_act_find(x->act, "embeddings");
    if (a < 0) return qd_err_set(QD_ENOTFOUND, "%s: /activations has no range for 'embeddings'", x->path);
    const double A = fmax(fabs(x->act->min[a]), fabs(x->act->max[a]));
    const double S = (float)(A > 0 ? A / 65536.0 : 1.0 / 65536.0), lim = (1 << 24) - 1;
    const qd_xs_tensor *t = qd_xs_tensor_at(x->s, i);
    float *v;
    if ((rc = qd_xs_read_float(x->s, i, &v))) return rc;
    for (int64_t j = 0; j < qd_xs_numel(t); j++) {
        const double q = nearbyint(v[j] / S);
        v[j] = (float)((q > lim ? lim : q < -lim ? -lim : q) * S);
    }
    *out = qd_ob_init(x->b, name, QD_OT_FLOAT, t->ndim, t->shape, v, (size_t)qd_xs_numel(t) * sizeof(float), 1);
    return QD_OK;
}

/* Two 4-bit values per byte, the first in the low nibble (ONNX's INT4/UINT4 layout). */
static uint8_t *pack4(const uint8_t *v, int64_t n)
{
    uint8_t *p = qd_xcalloc((size_t)((n + 1) / 2), 1);
    for (int64_t i = 0; i < n; i++) p[i / 2] |= (uint8_t)((v[i] & 15) << (4 * (i & 1)));
    return p;
}

/* The codes [in, out] of a weight as an initializer `<tensor>.codes`: 4-bit types packed two per
 * byte when narrow, one byte each otherwise. Takes v (malloc'd). */
static const char *codes_init(qd_ob *b, const char *tensor, int dt, int narrow, const int64_t *wd, uint8_t *v)
{
    char nm[300];
    const int64_t n = wd[0] * wd[1];
    snprintf(nm, sizeof nm, "%s.codes", tensor);
    if (!narrow) return qd_ob_init(b, nm, dt, 2, wd, v, (size_t)n, 1);
    const char *w = qd_ob_init(b, nm, dt, 2, wd, pack4(v, n), (size_t)((n + 1) / 2), 1);
    free(v);
    return w;
}

/* Codes of one value each into a low-first bit stream of `bits` per value (MatMulNBits). */
static void pack_bits(const uint8_t *v, int64_t n, int bits, uint8_t *out)
{
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < bits; k++)
            if ((v[i] >> k) & 1) out[(i * bits + k) / 8] |= (uint8_t)(1u << ((i * bits + k) % 8));
}

/* ---- quantized Linears ---------------------------------------------------------------------- */

/* The weight as DequantizeLinear of its codes, transposed to [in, out] for MatMul: per output
 * channel (axis 1), or in blocks of G inputs (axis 0, opset 21). Symmetric records store
 * code - 2^(bits-1) signed with no zero point; asymmetric ones the codes and their zero points.
 * 4-bit and narrower codes use ONNX's INT4/UINT4 (opset 21), wider ones 8-bit types. */
static int dq_weight(ox *x, const qd_xs_tensor *t, const qd_xs_quant *q, const uint8_t *codes, const char **w)
{
    const int64_t R = t->shape[0], C = t->shape[1], ng = t->ngroups, off = t->sym ? 1 << (t->bits - 1) : 0;
    const int opset = qd_ob_opset(x->b);
    if (ng > 1 && opset < 21)
        return qd_err_set(QD_EUNSUPPORTED,
                          "%s: tensor '%s': groups of %lld inputs need blocked DequantizeLinear, which ONNX has from "
                          "opset 21 (this export: --opset %d)",
                          x->path, t->name, (long long)t->G, opset);
    const int narrow = t->bits <= 4 && opset >= 21;
    const int dt = t->sym ? (narrow ? QD_OT_INT4 : QD_OT_INT8) : (narrow ? QD_OT_UINT4 : QD_OT_UINT8);
    uint8_t *v = qd_xmalloc((size_t)(R * C));
    for (int64_t c = 0; c < C; c++)
        for (int64_t r = 0; r < R; r++) v[c * R + r] = (uint8_t)((int)codes[r * C + c] - (int)off);
    float *sc = qd_xmalloc((size_t)(R * ng) * sizeof *sc);
    uint8_t *zp = t->sym ? NULL : qd_xmalloc((size_t)(R * ng));
    for (int64_t g = 0; g < ng; g++)
        for (int64_t r = 0; r < R; r++) {
            sc[g * R + r] = q->scales[r * ng + g];
            if (zp) zp[g * R + r] = (uint8_t)q->zeros[r * ng + g];
        }
    qd_ob *b = x->b;
    int64_t wd[2] = {C, R}, sd[2] = {ng, R};
    const char *wq = codes_init(b, t->name, dt, narrow, wd, v), *ws, *wz = "";
    char nm[300];
    snprintf(nm, sizeof nm, "%s.scales", t->name);
    ws = qd_ob_init(b, nm, QD_OT_FLOAT, ng > 1 ? 2 : 1, ng > 1 ? sd : sd + 1, sc, (size_t)(R * ng) * sizeof *sc, 1);
    if (zp) {
        snprintf(nm, sizeof nm, "%s.zero_points", t->name);
        if (narrow) {
            wz = qd_ob_init(b, nm, dt, ng > 1 ? 2 : 1, ng > 1 ? sd : sd + 1, pack4(zp, R * ng),
                            (size_t)((R * ng + 1) / 2), 1);
            free(zp);
        } else
            wz = qd_ob_init(b, nm, dt, ng > 1 ? 2 : 1, ng > 1 ? sd : sd + 1, zp, (size_t)(R * ng), 1);
    }
    Onnx__NodeProto *n = qd_ob_node(b, "DequantizeLinear", "", zp ? 3 : 2, (const char *[]){wq, ws, wz}, 1);
    qd_ob_attr_i(b, n, "axis", ng > 1 ? 0 : 1);
    if (ng > 1) qd_ob_attr_i(b, n, "block_size", t->G);
    *w = n->output[0];
    if (ng > 1)
        x->sum->linears_blocked++;
    else
        x->sum->linears_qdq++;
    return QD_OK;
}

/* MatMulNBits' block along the input for this record: a power of two >= 16 that no group
 * straddles (per-channel records: up to 128, their one scale repeated); 0 when there is none. */
static int64_t nbits_block(const qd_xs_tensor *t)
{
    const int64_t C = t->shape[1], G = t->G;
    if (t->bits != 2 && t->bits != 4 && t->bits != 8) return 0;
    if (G == C) {
        int64_t bs = 16;
        while (bs < C && bs < 128) bs *= 2;
        return bs;
    }
    int64_t bs = G & -G; /* largest power of two dividing G */
    return bs >= 16 ? bs : 0;
}

/* y = x W^T as com.microsoft MatMulNBits: B [out, blocks, block*bits/8] with each block's codes
 * low bits first, scales [out, blocks], zero points packed the same way when they differ from
 * the default 2^(bits-1). */
static const char *nbits_linear(ox *x, const char *in, const qd_xs_tensor *t, const qd_xs_quant *q,
                                const uint8_t *codes, int64_t bs)
{
    const int64_t N = t->shape[0], K = t->shape[1], nb = (K + bs - 1) / bs, blob = bs * t->bits / 8, ng = t->ngroups;
    const int bits = t->bits, dflt = 1 << (bits - 1);
    uint8_t *B = qd_xcalloc((size_t)(N * nb * blob), 1), *blkc = qd_xmalloc((size_t)bs);
    float *sc = qd_xmalloc((size_t)(N * nb) * sizeof *sc);
    uint8_t *zc = qd_xmalloc((size_t)(N * nb));
    int any_zero = 0;
    for (int64_t n = 0; n < N; n++)
        for (int64_t kb = 0; kb < nb; kb++) {
            const int64_t g = (kb * bs) / t->G;
            const int32_t z = q->zeros[n * ng + g];
            for (int64_t i = 0; i < bs; i++) {
                const int64_t c = kb * bs + i;
                blkc[i] = c < K ? codes[n * K + c] : (uint8_t)z; /* padding dequantizes to 0 */
            }
            pack_bits(blkc, bs, bits, B + (n * nb + kb) * blob);
            sc[n * nb + kb] = q->scales[n * ng + g];
            zc[n * nb + kb] = (uint8_t)z;
            any_zero |= z != dflt;
        }
    free(blkc);
    qd_ob *b = x->b;
    char nm[300];
    int64_t bd[3] = {N, nb, blob}, sd[2] = {N, nb};
    snprintf(nm, sizeof nm, "%s.codes", t->name);
    const char *Bn = qd_ob_init(b, nm, QD_OT_UINT8, 3, bd, B, (size_t)(N * nb * blob), 1);
    snprintf(nm, sizeof nm, "%s.scales", t->name);
    const char *Sn = qd_ob_init(b, nm, QD_OT_FLOAT, 2, sd, sc, (size_t)(N * nb) * sizeof *sc, 1);
    const char *Zn = "";
    if (any_zero) {
        const int64_t zb = (nb * bits + 7) / 8;
        uint8_t *zp = qd_xcalloc((size_t)(N * zb), 1);
        for (int64_t n = 0; n < N; n++) pack_bits(zc + n * nb, nb, bits, zp + n * zb);
        int64_t zd[2] = {N, zb};
        snprintf(nm, sizeof nm, "%s.zero_points", t->name);
        Zn = qd_ob_init(b, nm, QD_OT_UINT8, 2, zd, zp, (size_t)(N * zb), 1);
    }
    free(zc);
    Onnx__NodeProto *nd =
        qd_ob_node(b, "MatMulNBits", "com.microsoft", any_zero ? 4 : 3, (const char *[]){in, Bn, Sn, Zn}, 1);
    qd_ob_attr_i(b, nd, "K", K);
    qd_ob_attr_i(b, nd, "N", N);
    qd_ob_attr_i(b, nd, "bits", bits);
    qd_ob_attr_i(b, nd, "block_size", bs);
    qd_ob_use_domain(b, "com.microsoft", 1);
    x->sum->linears_nbits++;
    return nd->output[0];
}

/* The input of an 8-bit Linear quantized per token at run time, as qdist's int8 path does it
 * (kernels/ref/gemm.c): s = absmax(row) / 127, q = clamp(rint(x / s), -127, 127); with an outlier
 * threshold, the columns holding a value above it (over the whole batch) are zeroed first and
 * kept aside (aq_idx, aq_xo) for a float product. rank: of x, the last axis is the feature. */
static void quantize_activations(ox *x, const char *in, int rank)
{
    if (x->aq_x && !strcmp(x->aq_x, in)) return;
    qd_ob *b = x->b;
    const char *xa = in;
    x->aq_idx = x->aq_xo = NULL;
    if (x->o->outlier > 0) {
        int64_t axes[8];
        for (int k = 0; k < rank - 1; k++) axes[k] = k;
        const char *colmax = qd_ob_reduce(b, "ReduceMax", qd_ob_op1(b, "Abs", in), rank - 1, axes, 0);
        const char *mask = qd_ob_op2(b, "Greater", colmax, qd_ob_f32(b, x->o->outlier));
        xa = qd_ob_op3(b, "Where", mask, qd_ob_f32(b, 0.0f), in);
        const char *nz = qd_ob_op1(b, "NonZero", mask);
        x->aq_idx = qd_ob_op2(b, "Squeeze", nz, qd_ob_i64s(b, 1, (int64_t[]){0}));
        Onnx__NodeProto *g = qd_ob_node(b, "Gather", "", 2, (const char *[]){in, x->aq_idx}, 1);
        qd_ob_attr_i(b, g, "axis", rank - 1);
        x->aq_xo = g->output[0];
    }
    const char *amax = qd_ob_reduce(b, "ReduceMax", qd_ob_op1(b, "Abs", xa), 1, (int64_t[]){-1}, 1);
    x->aq_s = qd_ob_op2(b, "Div", amax, qd_ob_f32(b, 127.0f));
    /* an all-zero row has s = 0 and codes 0: divide by the smallest normal instead, same codes */
    const char *safe = qd_ob_op2(b, "Max", x->aq_s, qd_ob_f32(b, FLT_MIN));
    const char *r = qd_ob_op1(b, "Round", qd_ob_op2(b, "Div", xa, safe));
    const char *c = qd_ob_op3(b, "Clip", r, qd_ob_f32(b, -127.0f), qd_ob_f32(b, 127.0f));
    Onnx__NodeProto *cast = qd_ob_node(b, "Cast", "", 1, (const char *[]){c}, 1);
    qd_ob_attr_i(b, cast, "to", QD_OT_INT8);
    x->aq_q = cast->output[0];
    x->aq_x = in;
}

/* y = (int32 product of int8 codes) * s_row * scale_col (+ bias added by the caller), the outlier
 * columns' float product added after the bias, in qdist's order. */
static const char *integer_linear(ox *x, const char *in, int rank, const qd_xs_tensor *t, const qd_xs_quant *q,
                                  const char *bias)
{
    const int64_t R = t->shape[0], C = t->shape[1];
    qd_ob *b = x->b;
    int8_t *w = qd_xmalloc((size_t)(R * C));
    for (int64_t c = 0; c < C; c++)
        for (int64_t r = 0; r < R; r++) w[c * R + r] = (int8_t)((int)q->codes[r * C + c] - 128);
    float *sc = qd_xmalloc((size_t)R * sizeof *sc);
    memcpy(sc, q->scales, (size_t)R * sizeof *sc);
    char nm[300];
    int64_t wd[2] = {C, R};
    snprintf(nm, sizeof nm, "%s.codes", t->name);
    const char *wq = qd_ob_init(b, nm, QD_OT_INT8, 2, wd, w, (size_t)(R * C), 1);
    snprintf(nm, sizeof nm, "%s.scales", t->name);
    const char *ws = qd_ob_init(b, nm, QD_OT_FLOAT, 1, &R, sc, (size_t)R * sizeof *sc, 1);
    quantize_activations(x, in, rank);
    const char *acc = qd_ob_op2(b, "MatMulInteger", x->aq_q, wq);
    Onnx__NodeProto *cast = qd_ob_node(b, "Cast", "", 1, (const char *[]){acc}, 1);
    qd_ob_attr_i(b, cast, "to", QD_OT_FLOAT);
    const char *y = qd_ob_op2(b, "Mul", qd_ob_op2(b, "Mul", cast->output[0], x->aq_s), ws);
    if (bias) y = qd_ob_op2(b, "Add", y, bias);
    if (x->aq_idx) {
        Onnx__NodeProto *g = qd_ob_node(b, "Gather", "", 2, (const char *[]){wq, x->aq_idx}, 1);
        qd_ob_attr_i(b, g, "axis", 0);
        Onnx__NodeProto *dq = qd_ob_node(b, "DequantizeLinear", "", 2, (const char *[]){g->output[0], ws}, 1);
        qd_ob_attr_i(b, dq, "axis", 1);
        y = qd_ob_op2(b, "Add", y, qd_ob_op2(b, "MatMul", x->aq_xo, dq->output[0]));
    }
    x->sum->linears_integer++;
    return y;
}

/* A codebook (K-means) weight, transposed to [in, out] for MatMul, as a Gather of its levels:
 * W^T[c, r] = levels[(r * ngroups + g(c)) * K + q[r, c]], the flat index built in the graph from
 * the codes (uint8, or UINT4 at opset 21+ for 4 bits and fewer) and two small offset vectors, so
 * the file holds codes and codebooks only and the weights are the file's levels exactly. The
 * group of column c is g_idx[c] when the record has one, c / G otherwise. */
static const char *codebook_weight(ox *x, const qd_xs_tensor *t, const qd_xs_quant *q)
{
    const int64_t R = t->shape[0], C = t->shape[1], ng = t->ngroups, K = (int64_t)1 << t->bits;
    const int narrow = t->bits <= 4 && qd_ob_opset(x->b) >= 21;
    qd_ob *b = x->b;
    uint8_t *v = qd_xmalloc((size_t)(R * C));
    for (int64_t c = 0; c < C; c++)
        for (int64_t r = 0; r < R; r++) v[c * R + r] = q->codes[r * C + c];
    int64_t *roff = qd_xmalloc((size_t)R * sizeof *roff), *goff = qd_xmalloc((size_t)C * sizeof *goff);
    for (int64_t r = 0; r < R; r++) roff[r] = r * ng * K;
    for (int64_t c = 0; c < C; c++) goff[c] = (q->g_idx ? q->g_idx[c] : c / t->G) * K;
    float *levels = qd_xmalloc((size_t)(R * ng * K) * sizeof *levels);
    memcpy(levels, q->codebook, (size_t)(R * ng * K) * sizeof *levels);
    char nm[300];
    int64_t wd[2] = {C, R}, gd[2] = {C, 1}, nl = R * ng * K;
    const char *wq = codes_init(b, t->name, narrow ? QD_OT_UINT4 : QD_OT_UINT8, narrow, wd, v);
    snprintf(nm, sizeof nm, "%s.codebook", t->name);
    const char *lv = qd_ob_init(b, nm, QD_OT_FLOAT, 1, &nl, levels, (size_t)nl * sizeof *levels, 1);
    snprintf(nm, sizeof nm, "%s.row_offsets", t->name);
    const char *ro = qd_ob_init(b, nm, QD_OT_INT64, 1, &R, roff, (size_t)R * sizeof *roff, 1);
    snprintf(nm, sizeof nm, "%s.group_offsets", t->name);
    const char *go = qd_ob_init(b, nm, QD_OT_INT64, 2, gd, goff, (size_t)C * sizeof *goff, 1);
    Onnx__NodeProto *cast = qd_ob_node(b, "Cast", "", 1, (const char *[]){wq}, 1);
    qd_ob_attr_i(b, cast, "to", QD_OT_INT64);
    const char *idx = qd_ob_op2(b, "Add", qd_ob_op2(b, "Add", cast->output[0], ro), go);
    Onnx__NodeProto *g = qd_ob_node(b, "Gather", "", 2, (const char *[]){lv, idx}, 1);
    qd_ob_attr_i(b, g, "axis", 0);
    x->sum->linears_gather++;
    return g->output[0];
}

/* ---- static activation scales (QOPERATOR) ------------------------------------------------------ */

/* Index of activation record `name`, or an error naming it. */
static int act_index(ox *x, const char *name, int *i)
{
    *i = qd_xs_act_find(x->act, name);
    if (*i < 0) return qd_err_set(QD_ENOTFOUND, "%s: /activations has no static scale for '%s'", x->path, name);
    return QD_OK;
}

static const char *i8_scalar(ox *x, int32_t v)
{
    const int8_t c = (int8_t)v;
    return qd_ob_const(x->b, QD_OT_INT8, 0, NULL, &c, 1);
}

/* x (float, features on the last axis) as int8 at record `act`'s static scale and zero point,
 * QuantizeLinear (round half to even, saturating), as qdist's integer producers write it. A record
 * with outlier channels: those are set to 0 in the main tensor (so that they hold its zero point)
 * and quantized apart at scale * 2^shift with their own zero point (sq_oq, gathered by sq_ch). */
static int static_quantize(ox *x, const char *in, const char *act, int rank, int64_t C)
{
    if (x->sq_x && !strcmp(x->sq_x, in) && !strcmp(x->sq_act, act)) return QD_OK;
    qd_ob *b = x->b;
    const qd_actrec *r = x->act;
    int i, rc = act_index(x, act, &i);
    if (rc) return rc;
    const char *xa = in;
    x->sq_oq = x->sq_ch = NULL;
    const int64_t no = r->out_off ? r->out_off[i + 1] - r->out_off[i] : 0;
    if (no > 0) {
        int64_t *ch = qd_xmalloc((size_t)no * sizeof *ch);
        for (int64_t k = 0; k < no; k++) ch[k] = r->out_ch[r->out_off[i] + k];
        char nm[300];
        snprintf(nm, sizeof nm, "%s.outlier_channels", act);
        x->sq_ch = qd_ob_init(b, nm, QD_OT_INT64, 1, &no, ch, (size_t)no * sizeof *ch, 1);
        Onnx__NodeProto *g = qd_ob_node(b, "Gather", "", 2, (const char *[]){in, x->sq_ch}, 1);
        qd_ob_attr_i(b, g, "axis", rank - 1);
        const float os = ldexpf(r->scale[i], r->out_shift[i]);
        x->sq_oz = i8_scalar(x, r->out_zp[i]);
        x->sq_oq = qd_ob_node(b, "QuantizeLinear", "", 3, (const char *[]){g->output[0], qd_ob_f32(b, os), x->sq_oz}, 1)
                       ->output[0];
        x->sq_shift = r->out_shift[i];
        /* the main tensor: the outlier channels times 0, so that they quantize to its zero point */
        float *keep = qd_xmalloc((size_t)C * sizeof *keep);
        for (int64_t c = 0; c < C; c++) keep[c] = 1.0f;
        for (int64_t k = 0; k < no; k++) {
            if (ch[k] < 0 || ch[k] >= C) {
                free(keep);
                return qd_err_set(QD_EFORMAT, "%s: /activations: outlier channel %lld of '%s' is outside its %lld",
                                  x->path, (long long)ch[k], act, (long long)C);
            }
            keep[ch[k]] = 0.0f;
        }
        snprintf(nm, sizeof nm, "%s.kept_channels", act);
        xa = qd_ob_op2(b, "Mul", in, qd_ob_init(b, nm, QD_OT_FLOAT, 1, &C, keep, (size_t)C * sizeof *keep, 1));
    }
    x->sq_s = r->scale[i];
    x->sq_z = i8_scalar(x, r->zero_point[i]);
    Onnx__NodeProto *q =
        qd_ob_node(b, "QuantizeLinear", "", 3, (const char *[]){xa, qd_ob_f32(b, r->scale[i]), x->sq_z}, 1);
    x->sq_q = q->output[0];
    x->sq_x = in;
    x->sq_act = act;
    return QD_OK;
}

/* y = int32 product of the int8 input (static scale, zero point) and the int8 weight codes,
 * MatMulInteger (the outlier channels' product shifted left by their exponent and added to the
 * accumulator, as qdist does), then * s_x * scale_col + bias in float. Weights: symmetric, one
 * scale per output channel, codes - 2^(bits-1) in int8 (what integer-only inference takes). */
static int static_linear(ox *x, const char *in, int rank, const qd_xs_tensor *t, const qd_xs_quant *q, const char *bias,
                         const char **y)
{
    const int64_t R = t->shape[0], C = t->shape[1], off = (int64_t)1 << (t->bits - 1);
    if (!t->sym || t->ngroups != 1 || t->codebook || q->g_idx)
        return qd_err_set(QD_EUNSUPPORTED,
                          "%s: tensor '%s': --onnx-ops qoperator takes symmetric per-channel weights (int8 codes, one "
                          "scale per output channel, as integer-only inference does); this one is %s %d-bit%s",
                          x->path, t->name,
                          t->codebook ? "a K-means codebook"
                          : t->sym    ? "symmetric"
                                      : "asymmetric",
                          t->bits, t->ngroups > 1 ? " in groups" : "");
    int rc = static_quantize(x, in, x->act_in, rank, C);
    if (rc) return rc;
    qd_ob *b = x->b;
    int8_t *w = qd_xmalloc((size_t)(R * C));
    for (int64_t c = 0; c < C; c++)
        for (int64_t r = 0; r < R; r++) w[c * R + r] = (int8_t)((int64_t)q->codes[r * C + c] - off);
    float *sc = qd_xmalloc((size_t)R * sizeof *sc);
    for (int64_t r = 0; r < R; r++) sc[r] = x->sq_s * q->scales[r];
    char nm[300];
    int64_t wd[2] = {C, R};
    snprintf(nm, sizeof nm, "%s.codes", t->name);
    const char *wq = qd_ob_init(b, nm, QD_OT_INT8, 2, wd, w, (size_t)(R * C), 1);
    snprintf(nm, sizeof nm, "%s.output_scales", t->name);
    const char *ws = qd_ob_init(b, nm, QD_OT_FLOAT, 1, &R, sc, (size_t)R * sizeof *sc, 1);
    const char *acc = qd_ob_node(b, "MatMulInteger", "", 3, (const char *[]){x->sq_q, wq, x->sq_z}, 1)->output[0];
    if (x->sq_oq) {
        Onnx__NodeProto *g = qd_ob_node(b, "Gather", "", 2, (const char *[]){wq, x->sq_ch}, 1);
        qd_ob_attr_i(b, g, "axis", 0);
        const char *ao =
            qd_ob_node(b, "MatMulInteger", "", 3, (const char *[]){x->sq_oq, g->output[0], x->sq_oz}, 1)->output[0];
        const int32_t m = (int32_t)1 << x->sq_shift;
        acc = qd_ob_op2(b, "Add", acc, qd_ob_op2(b, "Mul", ao, qd_ob_const(b, QD_OT_INT32, 0, NULL, &m, sizeof m)));
    }
    Onnx__NodeProto *cast = qd_ob_node(b, "Cast", "", 1, (const char *[]){acc}, 1);
    qd_ob_attr_i(b, cast, "to", QD_OT_FLOAT);
    *y = qd_ob_op2(b, "Mul", cast->output[0], ws);
    if (bias) *y = qd_ob_op2(b, "Add", *y, bias);
    x->sum->linears_integer++;
    return QD_OK;
}

/* QOPERATOR: a float weight [rows][cols] (what the file keeps in float: the ViT classifier and
 * patch projection) quantized as qdist's integer-only inference does at load: symmetric int8 per
 * row, s = absmax / 127, round to nearest. As a record: 8-bit symmetric codes (q + 128). */
static void int8_rows(const float *w, int64_t R, int64_t C, qd_xs_tensor *t, qd_xs_quant *q)
{
    t->bits = 8;
    t->sym = 1;
    t->ngroups = 1;
    t->G = C;
    q->codes = qd_xmalloc((size_t)(R * C));
    q->scales = qd_xmalloc((size_t)R * sizeof *q->scales);
    for (int64_t r = 0; r < R; r++) {
        float mx = 0;
        for (int64_t c = 0; c < C; c++) mx = fmaxf(mx, fabsf(w[r * C + c]));
        const float sc = mx > 0 ? mx / 127.0f : 1.0f;
        q->scales[r] = sc;
        for (int64_t c = 0; c < C; c++) {
            float v = nearbyintf(w[r * C + c] / sc);
            v = v > 127 ? 127 : v < -127 ? -127 : v;
            q->codes[r * C + c] = (uint8_t)((int)v + 128);
        }
    }
}

/* Act-order records whose groups are not in column order: the column permutation that puts
 * them in group order (stable), when every group then spans exactly G consecutive columns. */
static int act_order_perm(ox *x, const qd_xs_tensor *t, const qd_xs_quant *q, int64_t **perm)
{
    const int64_t C = t->shape[1], G = t->G, ng = t->ngroups;
    int64_t *count = qd_xcalloc((size_t)ng + 1, sizeof *count), *p = qd_xmalloc((size_t)C * sizeof *p);
    for (int64_t c = 0; c < C; c++) count[q->g_idx[c] + 1]++;
    for (int64_t g = 0; g < ng; g++) {
        const int64_t want = QD_MIN(G, C - g * G);
        if (count[g + 1] != want) {
            free(count);
            free(p);
            return qd_err_set(QD_EUNSUPPORTED,
                              "%s: tensor '%s': act-order group %lld has %lld columns, not %lld: ONNX's block "
                              "quantization needs groups of equal size",
                              x->path, t->name, (long long)g, (long long)count[g + 1], (long long)want);
        }
        count[g + 1] += count[g];
    }
    for (int64_t c = 0; c < C; c++) p[count[q->g_idx[c]]++] = c;
    free(count);
    *perm = p;
    return QD_OK;
}

/* y [.., out] = x [.., in] W^T + b for one Linear of the description, in the form the options and
 * the record allow. rank: of x. */
static int linear(ox *x, const char *in, int rank, const qd_xd_linear *L, const char **y)
{
    qd_ob *b = x->b;
    int i, rc = tensor_index(x, L->w, &i);
    if (rc) return rc;
    const char *bias = NULL;
    if (L->b[0] && (rc = float_init(x, L->b, &bias))) return rc;
    const qd_xs_tensor *t = qd_xs_tensor_at(x->s, i);
    const int64_t R = L->out, C = L->in;
    if (t->kind != QD_XS_QUANT && x->act_in) { /* QOPERATOR: int8 per row, as qdist quantizes it at load */
        float *w;
        if ((rc = qd_xs_read_float(x->s, i, &w))) return rc;
        qd_xs_tensor t8 = *t;
        qd_xs_quant q8 = {0};
        int8_rows(w, R, C, &t8, &q8);
        free(w);
        rc = static_linear(x, in, rank, &t8, &q8, bias, y);
        qd_xs_quant_free(&q8);
        return rc;
    }
    if (t->kind != QD_XS_QUANT) {
        float *w;
        if ((rc = qd_xs_read_float(x->s, i, &w))) return rc;
        float *wt = qd_xmalloc((size_t)(R * C) * sizeof *wt);
        for (int64_t r = 0; r < R; r++)
            for (int64_t c = 0; c < C; c++) wt[c * R + r] = w[r * C + c];
        free(w);
        char nm[300];
        snprintf(nm, sizeof nm, "%s.transposed", L->w);
        int64_t d[2] = {C, R};
        const char *wn = qd_ob_init(b, nm, QD_OT_FLOAT, 2, d, wt, (size_t)(R * C) * sizeof *wt, 1);
        *y = qd_ob_op2(b, "MatMul", in, wn);
        if (bias) *y = qd_ob_op2(b, "Add", *y, bias);
        x->sum->linears_float++;
        return QD_OK;
    }
    qd_xs_quant q;
    if ((rc = qd_xs_read_quant(x->s, i, &q))) return rc;
    const uint8_t *codes = q.codes;
    uint8_t *permuted = NULL;
    if (x->act_in) { /* QOPERATOR, a Linear whose input has a static scale */
        rc = static_linear(x, in, rank, t, &q, bias, y);
        goto out;
    }
    if (t->codebook) { /* every other --onnx-ops form: the levels are not on a grid the others take */
        *y = qd_ob_op2(b, "MatMul", in, codebook_weight(x, t, &q));
        if (bias) *y = qd_ob_op2(b, "Add", *y, bias);
        goto out;
    }
    if (q.g_idx) {
        int64_t *perm = NULL;
        if ((rc = act_order_perm(x, t, &q, &perm))) goto out;
        permuted = qd_xmalloc((size_t)(R * C));
        for (int64_t r = 0; r < R; r++)
            for (int64_t j = 0; j < C; j++) permuted[r * C + j] = q.codes[r * C + perm[j]];
        codes = permuted;
        char nm[300];
        snprintf(nm, sizeof nm, "%s.act_order", L->w);
        const char *pn = qd_ob_init(b, nm, QD_OT_INT64, 1, &C, perm, (size_t)C * sizeof *perm, 1);
        Onnx__NodeProto *g = qd_ob_node(b, "Gather", "", 2, (const char *[]){in, pn}, 1);
        qd_ob_attr_i(b, g, "axis", rank - 1);
        in = g->output[0];
        x->sum->act_order_gathers++;
    }
    int64_t bs;
    if (x->o->ops == QD_ONNX_INTEGER && t->bits == 8 && t->sym && t->ngroups == 1) {
        *y = integer_linear(x, in, rank, t, &q, bias);
        goto out;
    }
    if (x->o->ops == QD_ONNX_NBITS && (bs = nbits_block(t)) > 0)
        *y = nbits_linear(x, in, t, &q, codes, bs);
    else {
        const char *w = NULL;
        if ((rc = dq_weight(x, t, &q, codes, &w))) goto out;
        *y = qd_ob_op2(b, "MatMul", in, w);
    }
    if (bias) *y = qd_ob_op2(b, "Add", *y, bias);
out:
    free(permuted);
    qd_xs_quant_free(&q);
    return rc;
}

/* ---- the forward pass ----------------------------------------------------------------------- */

static int layer_norm(ox *x, const char *in, const char *w, const char *bn, const char **y)
{
    const char *g, *be;
    int rc;
    if ((rc = float_init(x, w, &g)) || (rc = float_init(x, bn, &be))) return rc;
    Onnx__NodeProto *n = qd_ob_node(x->b, "LayerNormalization", "", 3, (const char *[]){in, g, be}, 1);
    qd_ob_attr_i(x->b, n, "axis", -1);
    qd_ob_attr_f(x->b, n, "epsilon", (float)x->d->cfg.ln_eps);
    *y = n->output[0];
    return QD_OK;
}

static const char *activation(ox *x, const char *in)
{
    qd_ob *b = x->b;
    const int opset = qd_ob_opset(b);
    switch (x->d->cfg.act) {
    case QD_ACT_RELU: return qd_ob_op1(b, "Relu", in);
    case QD_ACT_SILU: return qd_ob_op2(b, "Mul", in, qd_ob_op1(b, "Sigmoid", in));
    case QD_ACT_QUICK_GELU: /* CLIP: x sigmoid(1.702 x) */
        return qd_ob_op2(b, "Mul", in, qd_ob_op1(b, "Sigmoid", qd_ob_op2(b, "Mul", in, qd_ob_f32(b, 1.702f))));
    case QD_ACT_GELU_TANH:
        if (opset >= 20) {
            Onnx__NodeProto *n = qd_ob_node(b, "Gelu", "", 1, (const char *[]){in}, 1);
            qd_ob_attr_s(b, n, "approximate", "tanh");
            return n->output[0];
        } else {
            /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
            const char *x3 = qd_ob_op2(b, "Mul", qd_ob_op2(b, "Mul", in, in), in);
            const char *u = qd_ob_op2(b, "Add", in, qd_ob_op2(b, "Mul", x3, qd_ob_f32(b, 0.044715f)));
            const char *th = qd_ob_op1(b, "Tanh", qd_ob_op2(b, "Mul", u, qd_ob_f32(b, 0.7978845608028654f)));
            const char *h = qd_ob_op2(b, "Mul", in, qd_ob_op2(b, "Add", th, qd_ob_f32(b, 1.0f)));
            return qd_ob_op2(b, "Mul", h, qd_ob_f32(b, 0.5f));
        }
    case QD_ACT_GELU:
    default:
        if (x->act) {
            /* static scales (qoperator): the curve of qdist's integer GELU (I-BERT's i-GELU,
             * kernels/intops.h qd_igelu) on its Q10 input, so that both round the same values:
             * erf(x/√2) ≈ sign(x) (a ((min(|x|, c) - c) / √2)² + 1), a = -0.2888, c = 2562 / 1024 */
            const float c = 2562.0f / 1024.0f;
            const char *q = qd_ob_op2(b, "Div", qd_ob_op1(b, "Round", qd_ob_op2(b, "Mul", in, qd_ob_f32(b, 1024.0f))),
                                      qd_ob_f32(b, 1024.0f));
            const char *u =
                qd_ob_op2(b, "Sub", qd_ob_op2(b, "Min", qd_ob_op1(b, "Abs", q), qd_ob_f32(b, c)), qd_ob_f32(b, c));
            const char *l =
                qd_ob_op2(b, "Add", qd_ob_op2(b, "Mul", qd_ob_op2(b, "Mul", u, u), qd_ob_f32(b, -0.2888f * 0.5f)),
                          qd_ob_f32(b, 1.0f));
            const char *e = qd_ob_op2(b, "Mul", qd_ob_op1(b, "Sign", q), l);
            const char *f = qd_ob_op2(b, "Mul", qd_ob_op2(b, "Add", e, qd_ob_f32(b, 1.0f)), qd_ob_f32(b, 0.5f));
            return qd_ob_op2(b, "Mul", q, f);
        }
        if (opset >= 20) return qd_ob_op1(b, "Gelu", in);
        {
            /* exact GELU: 0.5 x (1 + erf(x / sqrt 2)) */
            const char *e = qd_ob_op1(b, "Erf", qd_ob_op2(b, "Mul", in, qd_ob_f32(b, 0.7071067811865476f)));
            const char *h = qd_ob_op2(b, "Mul", in, qd_ob_op2(b, "Add", e, qd_ob_f32(b, 1.0f)));
            return qd_ob_op2(b, "Mul", h, qd_ob_f32(b, 0.5f));
        }
    }
}

static const char *transpose(ox *x, const char *in, int n, const int64_t *perm)
{
    Onnx__NodeProto *t = qd_ob_node(x->b, "Transpose", "", 1, (const char *[]){in}, 1);
    qd_ob_attr_ints(x->b, t, "perm", n, perm);
    return t->output[0];
}

/* *v (float) as int8 at record `act`'s static scale: *v becomes the int8 tensor, *s and *z its
 * scale and zero point (QOPERATOR: q, k, v, as qdist requantizes the Linears' accumulators). */
static int static_output(ox *x, const char **v, const char *act, float *s, const char **z)
{
    int i, rc = act_index(x, act, &i);
    if (rc) return rc;
    *s = x->act->scale[i];
    *z = i8_scalar(x, x->act->zero_point[i]);
    *v = qd_ob_node(x->b, "QuantizeLinear", "", 3, (const char *[]){*v, qd_ob_f32(x->b, *s), *z}, 1)->output[0];
    return QD_OK;
}

/* float (a - za)(b - zb) * scale: MatMulInteger of two 8-bit tensors (za NULL: no zero point) */
static const char *int_product(ox *x, const char *a, const char *za, const char *bm, const char *zb, float scale)
{
    qd_ob *b = x->b;
    const uint8_t z0 = 0;
    if (!za) za = qd_ob_const(b, QD_OT_UINT8, 0, NULL, &z0, 1);
    const char *acc = qd_ob_node(b, "MatMulInteger", "", 4, (const char *[]){a, bm, za, zb}, 1)->output[0];
    Onnx__NodeProto *cast = qd_ob_node(b, "Cast", "", 1, (const char *[]){acc}, 1);
    qd_ob_attr_i(b, cast, "to", QD_OT_FLOAT);
    return qd_ob_op2(b, "Mul", cast->output[0], qd_ob_f32(b, scale));
}

/* out [B, T, H] = O(softmax(Q K^T * d^-1/2 + mask) V) on h [B, T, H]; mask_bias [B, 1, 1, T] or
 * NULL */
static int attention(ox *x, int k, const char *h, const char *mask_bias, const char **out)
{
    qd_ob *b = x->b;
    const qd_model_config *c = &x->d->cfg;
    const qd_xd_block *blk = &x->d->blk[k];
    const char *q, *kk, *v;
    int rc;
    qd_ob_scope(b, "layer.%d.attention", k);
    x->act_in = x->act ? qd_ob_str(b, "layer.%d.qkv_in", k) : NULL;
    if ((rc = linear(x, h, 3, &blk->lin[QD_LIN_Q], &q)) || (rc = linear(x, h, 3, &blk->lin[QD_LIN_K], &kk)) ||
        (rc = linear(x, h, 3, &blk->lin[QD_LIN_V], &v)))
        return rc;
    const char *heads = qd_ob_i64s(b, 4, (int64_t[]){0, 0, c->heads, c->head_size});
    const int64_t p0213[4] = {0, 2, 1, 3}, p0231[4] = {0, 2, 3, 1};
    float sq = 1, sk = 1, sv = 1;
    const char *zq = NULL, *zk = NULL, *zv = NULL;
    if (x->act) { /* q, k, v as int8 at their static scales */
        if ((rc = static_output(x, &q, qd_ob_str(b, "layer.%d.q", k), &sq, &zq)) ||
            (rc = static_output(x, &kk, qd_ob_str(b, "layer.%d.k", k), &sk, &zk)) ||
            (rc = static_output(x, &v, qd_ob_str(b, "layer.%d.v", k), &sv, &zv)))
            return rc;
    }
    const char *qh = transpose(x, qd_ob_op2(b, "Reshape", q, heads), 4, p0213);
    const char *kh = transpose(x, qd_ob_op2(b, "Reshape", kk, heads), 4, p0231);
    const char *vh = transpose(x, qd_ob_op2(b, "Reshape", v, heads), 4, p0213);
    const float isd = (float)(1.0 / sqrt(c->head_size));
    const char *s = x->act ? int_product(x, qh, zq, kh, zk, sq * sk * isd)
                           : qd_ob_op2(b, "Mul", qd_ob_op2(b, "MatMul", qh, kh), qd_ob_f32(b, isd));
    if (mask_bias) s = qd_ob_op2(b, "Add", s, mask_bias);
    Onnx__NodeProto *sm = qd_ob_node(b, "Softmax", "", 1, (const char *[]){s}, 1);
    qd_ob_attr_i(b, sm, "axis", -1);
    const char *ctx;
    if (x->act) { /* probabilities as u8 at 1/256 (qdist's integer softmax output), times v - zv */
        const uint8_t z0 = 0;
        const char *pq = qd_ob_node(b, "QuantizeLinear", "", 3,
                                    (const char *[]){sm->output[0], qd_ob_f32(b, 1.0f / 256.0f),
                                                     qd_ob_const(b, QD_OT_UINT8, 0, NULL, &z0, 1)},
                                    1)
                             ->output[0];
        ctx = int_product(x, pq, NULL, vh, zv, sv / 256.0f);
    } else
        ctx = qd_ob_op2(b, "MatMul", sm->output[0], vh);
    ctx = transpose(x, ctx, 4, p0213);
    ctx = qd_ob_op2(b, "Reshape", ctx, qd_ob_i64s(b, 3, (int64_t[]){0, 0, (int64_t)c->heads * c->head_size}));
    x->act_in = x->act ? qd_ob_str(b, "layer.%d.ctx", k) : NULL;
    rc = linear(x, ctx, 3, &blk->lin[QD_LIN_O], out);
    x->act_in = NULL;
    return rc;
}

static int mlp(ox *x, int k, const char *h, const char **out)
{
    const qd_xd_block *blk = &x->d->blk[k];
    const char *i;
    qd_ob_scope(x->b, "layer.%d.mlp", k);
    x->act_in = x->act ? qd_ob_str(x->b, "layer.%d.mlp_in", k) : NULL;
    int rc = linear(x, h, 3, &blk->lin[QD_LIN_INTER], &i);
    x->act_in = x->act ? qd_ob_str(x->b, "layer.%d.act", k) : NULL;
    if (!rc) rc = linear(x, activation(x, i), 3, &blk->lin[QD_LIN_OUT], out);
    x->act_in = NULL;
    return rc;
}

static int text_head(ox *x, const char *h);

static const char *first_token(ox *x, const char *h)
{
    Onnx__NodeProto *g = qd_ob_node(x->b, "Gather", "", 2, (const char *[]){h, qd_ob_i64(x->b, 0)}, 1);
    qd_ob_attr_i(x->b, g, "axis", 1);
    return g->output[0];
}

/* MPNet: *bias [B, 1, 1, T] (the padding mask) plus the relative position bias [1, heads, T, T]
 * all blocks share: the table's row of bucket(j - i) (model/forward.c qd_model_rel_bucket) for
 * query i and key j, the buckets precomputed for every length up to max_position and sliced to T */
static int rel_buckets(ox *x, const char **bias)
{
    qd_ob *b = x->b;
    const qd_xdesc *d = x->d;
    const int64_t P = d->cfg.max_position;
    const char *tab;
    int rc = float_init(x, d->rel_bias, &tab);
    if (rc) return rc;
    int32_t *ix = qd_xmalloc((size_t)(P * P) * sizeof *ix);
    for (int64_t i = 0; i < P; i++)
        for (int64_t j = 0; j < P; j++) ix[i * P + j] = qd_model_rel_bucket((int)(j - i));
    const int64_t pd[2] = {P, P};
    const char *all =
        qd_ob_init(b, "relative_attention_bias.buckets", QD_OT_INT32, 2, pd, ix, (size_t)(P * P) * sizeof *ix, 1);
    Onnx__NodeProto *sh = qd_ob_node(b, "Shape", "", 1, (const char *[]){"input_ids"}, 1);
    qd_ob_attr_i(b, sh, "start", 1);
    qd_ob_attr_i(b, sh, "end", 2);
    Onnx__NodeProto *tt = qd_ob_node(b, "Concat", "", 2, (const char *[]){sh->output[0], sh->output[0]}, 1);
    qd_ob_attr_i(b, tt, "axis", 0);
    const char *idx = qd_ob_node(b, "Slice", "", 4,
                                 (const char *[]){all, qd_ob_i64s(b, 2, (int64_t[]){0, 0}), tt->output[0],
                                                  qd_ob_i64s(b, 2, (int64_t[]){0, 1})},
                                 1)
                          ->output[0];
    const char *rel = transpose(x, qd_ob_op2(b, "Gather", tab, idx), 3, (int64_t[]){2, 0, 1}); /* [heads, T, T] */
    rel = qd_ob_op2(b, "Unsqueeze", rel, qd_ob_i64s(b, 1, (int64_t[]){0}));
    *bias = qd_ob_op2(b, "Add", *bias, rel);
    return QD_OK;
}

static int bert(ox *x)
{
    qd_ob *b = x->b;
    const qd_xdesc *d = x->d;
    const qd_model_config *c = &d->cfg;
    const char *dn[3] = {"batch", "sequence", NULL};
    const int64_t dyn[2] = {-1, -1};
    qd_ob_input(b, "input_ids", QD_OT_INT64, 2, dyn, dn);
    qd_ob_input(b, "attention_mask", QD_OT_INT64, 2, dyn, dn);
    if (d->type_emb[0]) qd_ob_input(b, "token_type_ids", QD_OT_INT64, 2, dyn, dn);
    const char *we, *pe, *te = NULL, *h;
    int rc;
    qd_ob_scope(b, "embeddings");
    int (*table)(ox *, const char *, const char **) = x->act ? grid_init : float_init;
    if ((rc = table(x, d->word_emb, &we)) || (rc = table(x, d->pos_emb, &pe)) ||
        (d->type_emb[0] && (rc = table(x, d->type_emb, &te))))
        return rc;
    /* word + position (rows 0 .. T-1) + token type, then LayerNorm */
    const char *pos;
    if (c->pos == QD_POS_AFTER_PAD) {
        /* RoBERTa: pad_id + 1 + index among the non-padding tokens; padding tokens at pad_id */
        Onnx__NodeProto *real = qd_ob_node(
            b, "Cast", "", 1,
            (const char *[]){qd_ob_op1(b, "Not", qd_ob_op2(b, "Equal", "input_ids", qd_ob_i64(b, c->pad_id)))}, 1);
        qd_ob_attr_i(b, real, "to", QD_OT_INT64);
        const char *count = qd_ob_op2(b, "CumSum", real->output[0], qd_ob_i64(b, 1));
        const char *ids = qd_ob_op2(b, "Add", qd_ob_op2(b, "Mul", count, real->output[0]), qd_ob_i64(b, c->pad_id));
        pos = qd_ob_op2(b, "Gather", pe, ids);
    } else {
        Onnx__NodeProto *sh = qd_ob_node(b, "Shape", "", 1, (const char *[]){"input_ids"}, 1);
        qd_ob_attr_i(b, sh, "start", 1);
        qd_ob_attr_i(b, sh, "end", 2);
        const char *zero = qd_ob_i64s(b, 1, (int64_t[]){0});
        pos = qd_ob_node(b, "Slice", "", 4, (const char *[]){pe, zero, sh->output[0], zero}, 1)->output[0];
    }
    const char *e = qd_ob_op2(b, "Add", qd_ob_op2(b, "Gather", we, "input_ids"), pos);
    if (te) e = qd_ob_op2(b, "Add", e, qd_ob_op2(b, "Gather", te, "token_type_ids"));
    if ((rc = layer_norm(x, e, d->emb_ln_w, d->emb_ln_b, &h))) return rc;
    if (d->has_emb_proj && (rc = linear(x, h, 3, &d->emb_proj, &h))) return rc;
    /* padding keys: a large negative bias, so their softmax weight is exactly 0 */
    Onnx__NodeProto *mf = qd_ob_node(b, "Cast", "", 1, (const char *[]){"attention_mask"}, 1);
    qd_ob_attr_i(b, mf, "to", QD_OT_FLOAT);
    const char *m = mf->output[0];
    const char *bias = qd_ob_op2(b, "Mul", qd_ob_op2(b, "Sub", qd_ob_f32(b, 1.0f), m), qd_ob_f32(b, -3.0e38f));
    bias = qd_ob_op2(b, "Unsqueeze", bias, qd_ob_i64s(b, 2, (int64_t[]){1, 2}));
    if (d->rel_bias[0] && (rc = rel_buckets(x, &bias))) return rc;
    for (int k = 0; k < c->layers; k++) {
        const qd_xd_block *blk = &d->blk[k];
        const char *att, *a, *o;
        if ((rc = attention(x, k, h, bias, &att))) return rc;
        qd_ob_scope(b, "layer.%d", k);
        if ((rc = layer_norm(x, qd_ob_op2(b, "Add", att, h), blk->ln1_w, blk->ln1_b, &a))) return rc;
        if ((rc = mlp(x, k, a, &o))) return rc;
        qd_ob_scope(b, "layer.%d", k);
        if ((rc = layer_norm(x, qd_ob_op2(b, "Add", o, a), blk->ln2_w, blk->ln2_b, &h))) return rc;
    }
    qd_ob_scope(b, "head");
    const int64_t H = c->hidden;
    const int64_t ld[3] = {-1, -1, H}, pd[2] = {-1, H};
    qd_ob_output(b, h, "last_hidden_state", QD_OT_FLOAT, 3, ld, dn);
    /* sentence embedding: mean over the real tokens (sentence-transformers' pooling) */
    const char *m3 = qd_ob_op2(b, "Unsqueeze", m, qd_ob_i64s(b, 1, (int64_t[]){2}));
    const char *sum = qd_ob_reduce(b, "ReduceSum", qd_ob_op2(b, "Mul", h, m3), 1, (int64_t[]){1}, 0);
    const char *cnt = qd_ob_reduce(b, "ReduceSum", m3, 1, (int64_t[]){1}, 0);
    cnt = qd_ob_op2(b, "Max", cnt, qd_ob_f32(b, 1e-9f));
    qd_ob_output(b, qd_ob_op2(b, "Div", sum, cnt), "sentence_embedding", QD_OT_FLOAT, 2, pd, dn);
    if (d->has_pooler) {
        const char *p;
        if ((rc = linear(x, first_token(x, h), 2, &d->pooler, &p))) return rc;
        p = qd_ob_op1(b, "Tanh", p);
        qd_ob_output(b, p, "pooler_output", QD_OT_FLOAT, 2, pd, dn);
        if (d->has_classifier) {
            const char *lg;
            if ((rc = linear(x, p, 2, &d->classifier, &lg))) return rc;
            const int64_t gd[2] = {-1, c->num_labels};
            qd_ob_output(b, lg, "logits", QD_OT_FLOAT, 2, gd, dn);
        }
    }
    return d->head ? text_head(x, h) : QD_OK;
}

/* the heads of text models without a pooler (export/desc.h): logits [batch, labels] from the
 * first token, [batch, tokens, labels] from every token, or [batch, tokens] (ELECTRA) */
static int text_head(ox *x, const char *h)
{
    qd_ob *b = x->b;
    const qd_xdesc *d = x->d;
    const int each = d->head != QD_XD_HEAD_FIRST, rank = each ? 3 : 2;
    const char *v = each ? h : first_token(x, h), *y;
    int rc;
    if (d->has_head_pre) {
        if ((rc = linear(x, v, rank, &d->head_pre, &v))) return rc;
        v = d->head_act == QD_XD_ACT_TANH   ? qd_ob_op1(b, "Tanh", v)
            : d->head_act == QD_XD_ACT_RELU ? qd_ob_op1(b, "Relu", v)
                                            : activation(x, v);
    }
    if ((rc = linear(x, v, rank, &d->head_out, &y))) return rc;
    const char *const dn[3] = {"batch", "sequence", NULL};
    if (d->head == QD_XD_HEAD_EACH_SQUEEZE) {
        y = qd_ob_op2(b, "Squeeze", y, qd_ob_i64s(b, 1, (int64_t[]){2}));
        qd_ob_output(b, y, "logits", QD_OT_FLOAT, 2, (int64_t[]){-1, -1}, dn);
    } else if (each)
        qd_ob_output(b, y, "logits", QD_OT_FLOAT, 3, (int64_t[]){-1, -1, d->head_out.out}, dn);
    else
        qd_ob_output(b, y, "logits", QD_OT_FLOAT, 2, (int64_t[]){-1, d->head_out.out},
                     (const char *const[]){"batch", NULL});
    return QD_OK;
}

/* QOPERATOR: the patch projection's weights as qdist's integer graph has them (int8 per output
 * channel, int8_rows), dequantized for the Conv on the int8 pixels. */
static int patch_int8(ox *x, const char **pw)
{
    const qd_xdesc *d = x->d;
    int i, rc = tensor_index(x, d->patch_w, &i);
    if (rc) return rc;
    const qd_xs_tensor *t = qd_xs_tensor_at(x->s, i);
    float *w;
    if ((rc = qd_xs_read_float(x->s, i, &w))) return rc;
    const int64_t R = t->shape[0], C = qd_xs_numel(t) / R;
    qd_xs_tensor t8 = *t;
    qd_xs_quant q8 = {0};
    int8_rows(w, R, C, &t8, &q8);
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++) w[r * C + c] = q8.scales[r] * (float)((int)q8.codes[r * C + c] - 128);
    qd_xs_quant_free(&q8);
    *pw = qd_ob_init(x->b, qd_ob_str(x->b, "%s.int8", d->patch_w), QD_OT_FLOAT, t->ndim, t->shape, w,
                     (size_t)(R * C) * sizeof *w, 1);
    return QD_OK;
}

/* BEiT: the relative position bias [1, heads, T, T] of table `name` [rows, heads]: row
 * ix(i, j) for query i and key j, as model/load.c beit_index lays it out (patch offsets on the
 * grid, three rows for CLS to CLS, CLS to patch and patch to CLS) */
static int rel_table(ox *x, const char *name, int64_t T, const char **out)
{
    qd_ob *b = x->b;
    const qd_model_config *c = &x->d->cfg;
    const int gw = c->image_w / c->patch_w, gh = c->image_h / c->patch_h, nrel = x->d->rel_rows;
    const char *tab;
    int rc = float_init(x, name, &tab);
    if (rc) return rc;
    int32_t *ix = qd_xmalloc((size_t)(T * T) * sizeof *ix);
    for (int64_t i = 0; i < T; i++)
        for (int64_t j = 0; j < T; j++) {
            int32_t v;
            if (i == 0)
                v = j == 0 ? nrel - 1 : nrel - 3;
            else if (j == 0)
                v = nrel - 2;
            else {
                const int yi = (int)(i - 1) / gw, xi = (int)(i - 1) % gw, yj = (int)(j - 1) / gw,
                          xj = (int)(j - 1) % gw;
                v = (yi - yj + gh - 1) * (2 * gw - 1) + (xi - xj + gw - 1);
            }
            ix[i * T + j] = v;
        }
    const int64_t td[2] = {T, T};
    const char *idx =
        qd_ob_init(b, qd_ob_str(b, "%s.index", name), QD_OT_INT32, 2, td, ix, (size_t)(T * T) * sizeof *ix, 1);
    const char *r = transpose(x, qd_ob_op2(b, "Gather", tab, idx), 3, (int64_t[]){2, 0, 1});
    *out = qd_ob_op2(b, "Unsqueeze", r, qd_ob_i64s(b, 1, (int64_t[]){0}));
    return QD_OK;
}

/* tokens [t0, t1) of h [B, T, H] */
static const char *tokens(ox *x, const char *h, int64_t t0, int64_t t1)
{
    qd_ob *b = x->b;
    return qd_ob_node(b, "Slice", "", 4,
                      (const char *[]){h, qd_ob_i64s(b, 1, (int64_t[]){t0}), qd_ob_i64s(b, 1, (int64_t[]){t1}),
                                       qd_ob_i64s(b, 1, (int64_t[]){1})},
                      1)
        ->output[0];
}

/* DINOv2: the position embeddings pos [1, 1 + gh0 gw0, H] at the patch grid of conv [B, H, gh, gw]:
 * the patch rows as a [1, H, gh0, gw0] image resized bicubically to [gh, gw] as transformers
 * (and qdist, model/resample.c) do: torch's cubic (a = -0.75, half-pixel centres), or with
 * registers its antialiased filter (a = -0.5, stretched when shrinking, renormalised inside). The same size is the
 * identity, so one graph serves every input size. */
static const char *resample_positions(ox *x, const char *pos, const char *conv)
{
    qd_ob *b = x->b;
    const qd_model_config *c = &x->d->cfg;
    const int64_t H = c->hidden, gh0 = c->pos_grid_h, gw0 = c->pos_grid_w;
    const char *pp =
        qd_ob_op2(b, "Reshape", tokens(x, pos, 1, INT64_MAX), qd_ob_i64s(b, 4, (int64_t[]){1, gh0, gw0, H}));
    pp = transpose(x, pp, 4, (int64_t[]){0, 3, 1, 2});
    Onnx__NodeProto *sh = qd_ob_node(b, "Shape", "", 1, (const char *[]){conv}, 1);
    qd_ob_attr_i(b, sh, "start", 2);
    qd_ob_attr_i(b, sh, "end", 4);
    Onnx__NodeProto *sz =
        qd_ob_node(b, "Concat", "", 2, (const char *[]){qd_ob_i64s(b, 2, (int64_t[]){1, H}), sh->output[0]}, 1);
    qd_ob_attr_i(b, sz, "axis", 0);
    Onnx__NodeProto *rz = qd_ob_node(b, "Resize", "", 4, (const char *[]){pp, "", "", sz->output[0]}, 1);
    qd_ob_attr_s(b, rz, "mode", "cubic");
    qd_ob_attr_s(b, rz, "coordinate_transformation_mode", "half_pixel");
    qd_ob_attr_f(b, rz, "cubic_coeff_a", x->d->pos_aa ? -0.5f : -0.75f);
    if (x->d->pos_aa) { /* PIL's filter: taps outside the grid dropped, the weights renormalised */
        qd_ob_attr_i(b, rz, "antialias", 1);
        qd_ob_attr_i(b, rz, "exclude_outside", 1);
    }
    const char *r = qd_ob_op2(b, "Reshape", rz->output[0], qd_ob_i64s(b, 3, (int64_t[]){1, H, -1}));
    r = transpose(x, r, 3, (int64_t[]){0, 2, 1});
    Onnx__NodeProto *cat = qd_ob_node(b, "Concat", "", 2, (const char *[]){tokens(x, pos, 0, 1), r}, 1);
    qd_ob_attr_i(b, cat, "axis", 1);
    return cat->output[0];
}

/* *v times the per-channel layer scale `name` (BEiT's lambda) */
static int layer_scale(ox *x, const char *name, const char **v)
{
    const char *g;
    int rc = float_init(x, name, &g);
    if (!rc) *v = qd_ob_op2(x->b, "Mul", *v, g);
    return rc;
}

static int vit(ox *x)
{
    qd_ob *b = x->b;
    const qd_xdesc *d = x->d;
    const qd_model_config *c = &d->cfg;
    const int64_t H = c->hidden, np = (int64_t)(c->image_h / c->patch_h) * (c->image_w / c->patch_w), T = np + 1;
    const char *dn[4] = {"batch", NULL, NULL, NULL};
    const int64_t pix[4] = {-1, c->channels, d->dinov2 ? -1 : c->image_h, d->dinov2 ? -1 : c->image_w};
    if (d->dinov2) { /* any image size: the positions are resampled to its patch grid */
        dn[2] = "height";
        dn[3] = "width";
        if (d->pos_aa && qd_ob_opset(b) < 18)
            return qd_err_set(QD_EUNSUPPORTED,
                              "%s: %s resamples its positions with antialiasing, which ONNX's Resize has from opset 18 "
                              "(this export: --opset %d)",
                              x->path, c->model_type, qd_ob_opset(b));
    }
    qd_ob_input(b, "pixel_values", QD_OT_FLOAT, 4, pix, dn);
    const char *cls, *pos = NULL, *pw, *pb = NULL, *h;
    int rc;
    qd_ob_scope(b, "embeddings");
    if ((rc = float_init(x, d->cls_token, &cls)) || (d->pos_emb[0] && (rc = float_init(x, d->pos_emb, &pos))) ||
        (rc = x->act ? patch_int8(x, &pw) : float_init(x, d->patch_w, &pw)) ||
        (d->patch_b[0] && (rc = float_init(x, d->patch_b, &pb))))
        return rc;
    /* patches: Conv2d with stride = kernel = patch, [B, H, gh, gw] -> [B, np, H] */
    const char *px = "pixel_values";
    if (x->act) { /* the pixels at the input's static scale: the one float step before qdist's integer graph */
        float ps;
        const char *pz;
        if ((rc = static_output(x, &px, "input", &ps, &pz))) return rc;
        px = qd_ob_node(b, "DequantizeLinear", "", 3, (const char *[]){px, qd_ob_f32(b, ps), pz}, 1)->output[0];
    }
    Onnx__NodeProto *cv = qd_ob_node(b, "Conv", "", pb ? 3 : 2, (const char *[]){px, pw, pb}, 1);
    qd_ob_attr_ints(b, cv, "kernel_shape", 2, (int64_t[]){c->patch_h, c->patch_w});
    qd_ob_attr_ints(b, cv, "strides", 2, (int64_t[]){c->patch_h, c->patch_w});
    const char *pt = qd_ob_op2(b, "Reshape", cv->output[0], qd_ob_i64s(b, 3, (int64_t[]){0, H, -1}));
    pt = transpose(x, pt, 3, (int64_t[]){0, 2, 1});
    /* [CLS] repeated over the batch, then the position embeddings */
    Onnx__NodeProto *sh = qd_ob_node(b, "Shape", "", 1, (const char *[]){"pixel_values"}, 1);
    qd_ob_attr_i(b, sh, "start", 0);
    qd_ob_attr_i(b, sh, "end", 1);
    Onnx__NodeProto *cat =
        qd_ob_node(b, "Concat", "", 2, (const char *[]){sh->output[0], qd_ob_i64s(b, 2, (int64_t[]){1, H})}, 1);
    qd_ob_attr_i(b, cat, "axis", 0);
    const char *clsb = qd_ob_op2(b, "Expand", cls, cat->output[0]);
    Onnx__NodeProto *tok = qd_ob_node(b, "Concat", "", 2, (const char *[]){clsb, pt}, 1);
    qd_ob_attr_i(b, tok, "axis", 1);
    h = tok->output[0];
    if (d->dinov2) pos = resample_positions(x, pos, cv->output[0]);
    if (pos) h = qd_ob_op2(b, "Add", h, pos);
    if (d->clip && (rc = layer_norm(x, h, d->pre_ln_w, d->pre_ln_b, &h))) return rc;
    if (d->reg_tokens[0]) { /* DINOv2's registers after CLS, without positions */
        const char *reg;
        if ((rc = float_init(x, d->reg_tokens, &reg))) return rc;
        Onnx__NodeProto *rs = qd_ob_node(
            b, "Concat", "", 2, (const char *[]){sh->output[0], qd_ob_i64s(b, 2, (int64_t[]){c->n_registers, H})}, 1);
        qd_ob_attr_i(b, rs, "axis", 0);
        Onnx__NodeProto *t3 =
            qd_ob_node(b, "Concat", "", 3,
                       (const char *[]){tokens(x, h, 0, 1), qd_ob_op2(b, "Expand", reg, rs->output[0]),
                                        tokens(x, h, 1, INT64_MAX)},
                       1);
        qd_ob_attr_i(b, t3, "axis", 1);
        h = t3->output[0];
    }
    const char *rel = NULL, *rel_of = "";
    for (int k = 0; k < c->layers; k++) {
        const qd_xd_block *blk = &d->blk[k];
        const char *n1, *att, *n2, *o;
        qd_ob_scope(b, "layer.%d", k);
        if (blk->rel_table[0] && strcmp(blk->rel_table, rel_of)) { /* the shared table: once */
            if ((rc = rel_table(x, blk->rel_table, T, &rel))) return rc;
            rel_of = blk->rel_table;
        }
        if ((rc = layer_norm(x, h, blk->ln1_w, blk->ln1_b, &n1))) return rc;
        if ((rc = attention(x, k, n1, blk->rel_table[0] ? rel : NULL, &att))) return rc;
        qd_ob_scope(b, "layer.%d", k);
        if (blk->ls1[0] && (rc = layer_scale(x, blk->ls1, &att))) return rc;
        h = qd_ob_op2(b, "Add", h, att);
        if ((rc = layer_norm(x, h, blk->ln2_w, blk->ln2_b, &n2))) return rc;
        if ((rc = mlp(x, k, n2, &o))) return rc;
        qd_ob_scope(b, "layer.%d", k);
        if (blk->ls2[0] && (rc = layer_scale(x, blk->ls2, &o))) return rc;
        h = qd_ob_op2(b, "Add", h, o);
    }
    qd_ob_scope(b, "head");
    const char *last = h, *pooled;
    const int64_t ld[3] = {-1, d->dinov2 ? -1 : T, H}, pd[2] = {-1, H};
    if (d->mean_pool) { /* BEiT: the patch tokens' mean, normalized; the sequence as it is */
        const char *pt =
            qd_ob_node(b, "Slice", "", 4,
                       (const char *[]){h, qd_ob_i64s(b, 1, (int64_t[]){1}), qd_ob_i64s(b, 1, (int64_t[]){T}),
                                        qd_ob_i64s(b, 1, (int64_t[]){1})},
                       1)
                ->output[0];
        if ((rc = layer_norm(x, qd_ob_reduce(b, "ReduceMean", pt, 1, (int64_t[]){1}, 0), d->pool_ln_w, d->pool_ln_b,
                             &pooled)))
            return rc;
    } else if (d->clip) { /* CLIP: post_layernorm on CLS only; the sequence as it is */
        if ((rc = layer_norm(x, first_token(x, h), d->final_ln_w, d->final_ln_b, &pooled))) return rc;
    } else {
        if ((rc = layer_norm(x, h, d->final_ln_w, d->final_ln_b, &last))) return rc;
        pooled = first_token(x, last);
    }
    const char *cin = pooled;
    if (d->clip && d->has_proj) {
        const char *e;
        if ((rc = linear(x, pooled, 2, &d->proj, &e))) return rc;
        qd_ob_output(b, e, "image_embeds", QD_OT_FLOAT, 2, (int64_t[]){-1, d->proj.out}, dn);
    }
    if (d->clip) /* CLIPForImageClassification: the patch tokens' mean */
        cin = qd_ob_reduce(b, "ReduceMean", tokens(x, h, 1, INT64_MAX), 1, (int64_t[]){1}, 0);
    if (d->cls_mean) { /* DINOv2: [CLS, mean of the patch tokens] */
        const int64_t n_prefix = 1 + (d->reg_tokens[0] ? c->n_registers : 0);
        Onnx__NodeProto *cm =
            qd_ob_node(b, "Concat", "", 2,
                       (const char *[]){pooled, qd_ob_reduce(b, "ReduceMean", tokens(x, last, n_prefix, INT64_MAX), 1,
                                                             (int64_t[]){1}, 0)},
                       1);
        qd_ob_attr_i(b, cm, "axis", 1);
        cin = cm->output[0];
    }
    qd_ob_output(b, last, "last_hidden_state", QD_OT_FLOAT, 3, ld, dn);
    qd_ob_output(b, pooled, "pooler_output", QD_OT_FLOAT, 2, pd, dn);
    if (d->has_classifier) {
        const char *lg;
        x->act_in = x->act ? "final_norm" : NULL;
        rc = linear(x, cin, 2, &d->classifier, &lg);
        x->act_in = NULL;
        if (rc) return rc;
        const int64_t gd[2] = {-1, c->num_labels};
        qd_ob_output(b, lg, "logits", QD_OT_FLOAT, 2, gd, dn);
    }
    return QD_OK;
}

int qd_export_onnx(const char *model_file, const char *out, const qd_onnx_opts *o, qd_export_summary *sum)
{
    memset(sum, 0, sizeof *sum);
    if (o->opset < QD_ONNX_OPSET_MIN || o->opset > QD_ONNX_OPSET_MAX)
        return qd_err_set(QD_EINVAL, "--opset %d: this export writes opsets %d to %d", o->opset, QD_ONNX_OPSET_MIN,
                          QD_ONNX_OPSET_MAX);
    qd_xs *s;
    int rc = qd_xs_open(model_file, &s);
    if (rc) return rc;
    const qd_actrec *act = NULL;
    if (o->ops == QD_ONNX_QOPERATOR && !(act = qd_xs_activations(s))) {
        rc = qd_errcode();
        qd_xs_close(s);
        return rc ? rc : QD_ENOTFOUND;
    }
    qd_xdesc d;
    if ((rc = qd_xdesc_build(s, &d))) {
        qd_xs_close(s);
        return rc;
    }
    if (act && ((d.cfg.arch == QD_ARCH_VIT && strcmp(d.cfg.model_type, "vit")) || !strcmp(d.cfg.model_type, "mpnet"))) {
        rc = qd_err_set(QD_EUNSUPPORTED,
                        "%s: --onnx-ops qoperator writes BERT-family and ViT models; model_type '%s' (relative "
                        "position bias, layer scales) has no integer-only graph yet",
                        model_file, d.cfg.model_type);
        qd_xdesc_free(&d);
        qd_xs_close(s);
        return rc;
    }
    ox x = {.s = s, .d = &d, .o = o, .sum = sum, .path = model_file, .act = act};
    x.b = qd_ob_new(o->opset, d.cfg.model_type);
    rc = d.cfg.arch == QD_ARCH_BERT ? bert(&x) : vit(&x);
    if (!rc) {
        char doc[512];
        snprintf(doc, sizeof doc,
                 "%s exported by qdist %s from %s; quantized Linears as %s (weights as stored: codes, scales, zero "
                 "points, groups)",
                 d.cfg.model_type, QD_VERSION, model_file, qd_onnx_ops_name(o->ops));
        qd_ob_doc(x.b, doc);
        qd_ob_meta(x.b, "qdist_onnx_ops", qd_onnx_ops_name(o->ops));
        qd_ob_meta(x.b, "qdist_model_config", qd_xs_model_config(s));
        qd_ob_meta(x.b, "qdist_quant_config", qd_xs_quant_config(s));
        rc = qd_ob_write(x.b, out, &sum->bytes);
    }
    qd_ob_free(x.b);
    qd_xdesc_free(&d);
    qd_xs_close(s);
    return rc;
}
