/* runtime/intmodel.c — the integer-only forward pass (see intmodel.h). Every stage between the
 * input quantization and the output dequantization is a kernel of kernels/intops.h, except the
 * stages a caller switched to float on purpose (QD_IFLOAT_*), which are traced as float. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/qd_common.h"
#include "kernels/ref/fixedpoint.h"
#include "runtime/intmodel.h"

typedef struct {
    qd_itrace_fn fn;
    void *user;
} tracer;

static void tr(const tracer *t, const char *op, int layer, const char *in, const char *out, int64_t rows, int64_t cols)
{
    if (t->fn) t->fn(t->user, op, layer, in, out, rows, cols);
}

/* ---- workspace ------------------------------------------------------------------------------ */

enum { CHUNK = 64 }; /* rows per GEMM call: their accumulators stay in L2 for the epilogue */

typedef struct {
    int32_t *h, *r, *xf, *acc, *S, *pv;
    int8_t *x8, *qkv, *ctx, *i8, *patch, *xo, *xo2;
    uint8_t *P, *keep;
    float *fl; /* float stages only */
} work;

static size_t al64(size_t n) { return (n + 63) & ~(size_t)63; }

static int work_get(qd_imodel *im, int B, int T, work *w)
{
    const qd_imodel_cfg *c = &im->cfg;
    const int64_t rows = (int64_t)B * T, H = c->hidden, A = (int64_t)c->heads * c->head_size, I = c->inter;
    int64_t wide = 3 * A > I ? 3 * A : I;
    if (H > wide) wide = H;
    const int64_t pk = (int64_t)c->channels * c->patch_h * c->patch_w;
    const int64_t np = c->arch == QD_IARCH_VIT ? (int64_t)(c->image_h / c->patch_h) * (c->image_w / c->patch_w) : 0;
    size_t sz[16] = {al64((size_t)(rows * QD_IOUT_MAX)),
                     al64((size_t)(rows * QD_IOUT_MAX)),
                     al64((size_t)(rows * H) * 4),
                     al64((size_t)(rows * H) * 4),
                     al64((size_t)(rows * H) * 4),
                     al64((size_t)((T > CHUNK ? T : CHUNK) * wide) * 4),
                     al64((size_t)((int64_t)T * T) * 4),
                     al64((size_t)((int64_t)T * c->head_size) * 4),
                     al64((size_t)(rows * H)),
                     al64((size_t)(rows * 3 * A)),
                     al64((size_t)(rows * A)),
                     al64((size_t)(rows * I)),
                     al64((size_t)((int64_t)B * np * pk)),
                     al64((size_t)((int64_t)T * T)),
                     al64((size_t)T),
                     al64((size_t)(rows * wide) * 4)};
    size_t total = 0;
    for (int i = 0; i < 16; i++) total += sz[i];
    if ((int64_t)total > im->ws_bytes) {
        free(im->ws);
        im->ws = NULL;
        im->ws_bytes = 0;
        if (posix_memalign(&im->ws, 64, total)) {
            im->ws = NULL;
            return qd_err_set(QD_ENOMEM, "integer-only forward: out of memory for a batch of %d x %d tokens", B, T);
        }
        im->ws_bytes = (int64_t)total;
    }
    char *p = im->ws;
    void **dst[16] = {(void **)&w->xo,    (void **)&w->xo2, (void **)&w->h,    (void **)&w->r,
                      (void **)&w->xf,    (void **)&w->acc, (void **)&w->S,    (void **)&w->pv,
                      (void **)&w->x8,    (void **)&w->qkv, (void **)&w->ctx,  (void **)&w->i8,
                      (void **)&w->patch, (void **)&w->P,   (void **)&w->keep, (void **)&w->fl};
    for (int i = 0; i < 16; i++) {
        *dst[i] = p;
        p += sz[i];
    }
    return QD_OK;
}

/* ---- stages, integer or (on request) float -------------------------------------------------- */

/* the split of the int8 input of L (its outlier channels into w->xo), or NULL */
static const qd_isplit *split_for(const qd_ilinear *L, int8_t *xo, qd_isplit *sp)
{
    if (!L || L->n_out <= 0) return NULL;
    *sp = (qd_isplit){.n = L->n_out, .ch = L->och, .e = L->oe, .zp = L->ozp, .out = xo, .ld = L->n_out};
    return sp;
}

/* quantize float values of the split channels (float stages): main code = zero point, outlier code */
static void split_float(const qd_isplit *sp, const float *y, int64_t rows, int N, double s, int32_t z, int8_t *out)
{
    for (int64_t r = 0; sp && r < rows; r++)
        for (int j = 0; j < sp->n; j++) {
            const int c = sp->ch[j];
            double q = nearbyint(y[r * N + c] / ldexp(s, sp->e)) + sp->zp;
            sp->out[r * sp->ld + j] = (int8_t)(q > 127 ? 127 : q < -128 ? -128 : q);
            out[r * N + c] = (int8_t)z;
        }
}

static inline int8_t quant8(double v, double s, int32_t z)
{
    double q = nearbyint(v / s) + z;
    return (int8_t)(q > 127 ? 127 : q < -128 ? -128 : q);
}

/* QD_INTMODEL_DUMP=FILE appends tensors of the BERT forward to FILE, to find where another
 * engine's graph of the same model leaves this one: per record int32 tag, layer, rows, cols, then
 * rows*cols floats, (v - zp) * scale. Tags: 0 LayerNorm input (int32 residual), 1 its fine output
 * (int32 at s_out/256), 2 q|k|v int8 codes, 3 attention context int8 codes, 4 the LayerNorm's int8
 * codes, 5 the activation's int8 codes (outlier channels at the zero point). */
static void dump(int tag, int layer, int64_t rows, int N, const int32_t *i32, const int8_t *i8, double scale)
{
    const char *path = getenv("QD_INTMODEL_DUMP");
    FILE *f = path ? fopen(path, "ab") : NULL;
    if (!f) return;
    const int32_t hdr[4] = {tag, layer, (int32_t)rows, N};
    fwrite(hdr, sizeof hdr, 1, f);
    for (int64_t i = 0; i < rows * N; i++) {
        const float v = (float)((i32 ? i32[i] : i8[i]) * scale);
        fwrite(&v, sizeof v, 1, f);
    }
    fclose(f);
}

static void layernorm(const qd_imodel *im, const qd_ilnorm *ln, const int32_t *x, int64_t rows, int N, int8_t *out,
                      int32_t *fine, const qd_isplit *sp, int layer, const char *name, const tracer *t, float *fl)
{
    if (!(im->float_ops & QD_IFLOAT_LAYERNORM)) {
        qd_iln p = {.g = ln->g, .beta = ln->beta, .gsh = ln->gsh, .zp = ln->zp, .eps = ln->eps};
        im->ops->layernorm(x, rows, N, N, &p, out, N, fine, N, sp);
        tr(t, name, layer, "i32", fine ? "i8 + i32" : "i8", rows, N);
        if (fine) {
            dump(0, layer, rows, N, x, NULL, ln->s_in);
            dump(1, layer, rows, N, fine, NULL, ln->s_out / 256.0);
            dump(4, layer, rows, N, NULL, out, 1.0);
        }
        return;
    }
    tr(t, "dequantize", layer, "i32", "f32", rows, N);
    for (int64_t r = 0; r < rows; r++) {
        const int32_t *xr = x + r * N;
        double s = 0, v = 0;
        for (int i = 0; i < N; i++) s += (double)xr[i] * ln->s_in;
        const double mean = s / N;
        for (int i = 0; i < N; i++) {
            const double d = (double)xr[i] * ln->s_in - mean;
            v += d * d;
        }
        const double inv = 1.0 / sqrt(v / N + ln->epsf);
        for (int i = 0; i < N; i++)
            fl[r * N + i] = (float)(((double)xr[i] * ln->s_in - mean) * inv * ln->gamma[i] + ln->betaf[i]);
    }
    tr(t, name, layer, "f32", "f32", rows, N);
    for (int64_t i = 0; i < rows * N; i++) {
        out[i] = quant8(fl[i], ln->s_out, ln->zp);
        if (fine) {
            double q = nearbyint(fl[i] / ln->s_out * 256.0);
            fine[i] = (int32_t)(q > INT32_MAX ? INT32_MAX : q < INT32_MIN ? INT32_MIN : q);
        }
    }
    split_float(sp, fl, rows, N, ln->s_out, ln->zp, out);
    tr(t, "quantize", layer, "f32", fine ? "i8 + i32" : "i8", rows, N);
}

static double gelu_erf(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }

/* the activation of accumulator rows (no tracing: called per chunk; trace_activation records it) */
static void activation(const qd_imodel *im, const qd_iblock *k, const int32_t *acc, int64_t rows, int8_t *out,
                       const qd_isplit *sp, float *fl)
{
    const qd_ilinear *L = &k->inter;
    const int N = L->N;
    if (im->cfg.act == QD_IACT_RELU) {
        im->ops->requant_s8(acc, rows, N, N, L->bias, L->M0, L->sh, 1, k->z_act, k->z_act, out, N, sp);
        return;
    }
    if (!(im->float_ops & QD_IFLOAT_GELU)) {
        im->ops->gelu_s8(acc, rows, N, N, L->bias, L->M0, L->sh, &k->gelu, out, N, sp);
        return;
    }
    for (int64_t r = 0; r < rows; r++)
        for (int n = 0; n < N; n++) fl[r * N + n] = (float)(((double)acc[r * N + n] + L->bias[n]) * L->real[n]);
    for (int64_t i = 0; i < rows * N; i++) fl[i] = (float)gelu_erf(fl[i]);
    for (int64_t i = 0; i < rows * N; i++) out[i] = quant8(fl[i], k->s_act, k->z_act);
    split_float(sp, fl, rows, N, k->s_act, k->z_act, out);
}

static void trace_activation(const qd_imodel *im, int layer, int64_t rows, int64_t N, const tracer *t)
{
    if (im->cfg.act == QD_IACT_RELU)
        tr(t, "relu", layer, "i32", "i8", rows, N);
    else if (!(im->float_ops & QD_IFLOAT_GELU))
        tr(t, "gelu", layer, "i32", "i8", rows, N);
    else {
        tr(t, "dequantize", layer, "i32", "f32", rows, N);
        tr(t, "gelu", layer, "f32", "f32", rows, N);
        tr(t, "quantize", layer, "f32", "i8", rows, N);
    }
}

static void softmax_row(const qd_imodel *im, const qd_iblock *k, const int32_t *s, int n, const uint8_t *keep,
                        uint8_t *P)
{
    if (!(im->float_ops & QD_IFLOAT_SOFTMAX)) {
        im->ops->softmax_u8(s, n, keep, &k->sm, P);
        return;
    }
    int any = 0;
    for (int j = 0; keep && j < n; j++) any |= keep[j] != 0;
    if (!any) keep = NULL;
    double mx = -INFINITY, sum = 0;
    for (int j = 0; j < n; j++)
        if ((!keep || keep[j]) && s[j] * (double)k->s_score > mx) mx = s[j] * (double)k->s_score;
    for (int j = 0; j < n; j++) sum += !keep || keep[j] ? exp(s[j] * (double)k->s_score - mx) : 0.0;
    for (int j = 0; j < n; j++) {
        double p = !keep || keep[j] ? exp(s[j] * (double)k->s_score - mx) / sum : 0.0;
        double q = nearbyint(p * 256.0);
        P[j] = (uint8_t)(q > 255 ? 255 : q);
    }
}

/* ---- the block ---------------------------------------------------------------------------- */

/* A Linear in chunks of rows, each chunk's accumulators handed to an epilogue while they are in
 * the cache: the int8 GEMM (plus the outlier channels' product) into acc [nr][N], then
 * epi(ctx, acc, r0, nr) for rows [r0, r0 + nr). */

typedef void (*epilogue_fn)(const void *ctx, const int32_t *acc, int64_t r0, int64_t nr);

static void linear(const qd_intops_table *ops, const qd_ilinear *L, const int8_t *A, const int8_t *xo, int64_t rows,
                   int32_t *acc, epilogue_fn epi, const void *ctx, int layer, const char *name, const tracer *t)
{
    for (int64_t r0 = 0; r0 < rows; r0 += CHUNK) {
        const int64_t nr = rows - r0 < CHUNK ? rows - r0 : CHUNK;
        ops->igemm_s32(A + r0 * L->K, L->K, nr, L->packed, acc, L->N);
        if (L->n_out > 0) ops->outlier_add(xo + r0 * L->n_out, L->n_out, nr, L->wo, L->N, L->n_out, L->oe, acc, L->N);
        epi(ctx, acc, r0, nr);
    }
    if (!name) return;
    tr(t, name, layer, "i8 x i8", "i32", rows, L->N);
    if (L->n_out > 0) tr(t, "outlier_add", layer, "i8 x i8 + i32", "i32", rows, L->N);
}

/* epilogues */
typedef struct {
    const qd_intops_table *ops;
    const qd_ilinear *L;
    const int32_t *res; /* residual [rows][N] */
    int32_t rM0, rsh;
    int32_t *out; /* [rows][N] */
} add_ctx;

static void epi_add(const void *v, const int32_t *acc, int64_t r0, int64_t nr)
{
    const add_ctx *c = v;
    const int64_t N = c->L->N;
    c->ops->rescale_add(acc, nr, N, N, c->L->bias, c->L->M0, c->L->sh, c->res ? c->res + r0 * N : NULL, N, c->rM0,
                        c->rsh, QD_IRES_LIM, c->out + r0 * N, N);
}

typedef struct {
    const qd_intops_table *ops;
    const qd_iblock *k;
    int A;
    int8_t *qkv; /* [rows][3A] */
} qkv_ctx;

static void epi_qkv(const void *v, const int32_t *acc, int64_t r0, int64_t nr)
{
    const qkv_ctx *c = v;
    const qd_ilinear *L = &c->k->qkv;
    const int A = c->A;
    const int32_t zs[3] = {c->k->z_q, c->k->z_k, c->k->z_v};
    for (int j = 0; j < 3; j++)
        c->ops->requant_s8(acc + j * A, nr, A, 3 * A, L->bias + j * A, L->M0 + j * A, L->sh + j * A, 1, zs[j], -128,
                           c->qkv + r0 * 3 * A + j * A, 3 * A, NULL);
}

typedef struct {
    const qd_imodel *im;
    const qd_iblock *k;
    int8_t *out; /* [rows][I] */
    const qd_isplit *sp;
    float *fl;
} act_ctx;

static void epi_act(const void *v, const int32_t *acc, int64_t r0, int64_t nr)
{
    const act_ctx *c = v;
    const int64_t N = c->k->inter.N;
    qd_isplit sp;
    if (c->sp) {
        sp = *c->sp;
        sp.out += r0 * sp.ld;
    }
    activation(c->im, c->k, acc, nr, c->out + r0 * N, c->sp ? &sp : NULL, c->fl);
}

static void attention(const qd_imodel *im, const qd_iblock *k, const qd_ibatch *b, work *w, int layer, const tracer *t)
{
    const qd_imodel_cfg *c = &im->cfg;
    const qd_intops_table *ops = im->ops;
    const int T = b->T, d = c->head_size, A = c->heads * d;
    const int64_t rows = (int64_t)b->B * T;
    const qkv_ctx qc = {ops, k, A, w->qkv};
    linear(ops, &k->qkv, w->x8, w->xo, rows, w->acc, epi_qkv, &qc, layer, "qkv.gemm", t);
    tr(t, "qkv.requantize", layer, "i32", "i8", rows, 3 * A);
    dump(2, layer, rows, 3 * A, NULL, w->qkv, 1.0);
    for (int bi = 0; bi < b->B; bi++) {
        const uint8_t *keep = NULL;
        if (b->mask) {
            for (int j = 0; j < T; j++) w->keep[j] = b->mask[(int64_t)bi * T + j] != 0;
            keep = w->keep;
        }
        for (int h = 0; h < c->heads; h++) {
            const int8_t *Q = w->qkv + (int64_t)bi * T * 3 * A + (int64_t)h * d;
            ops->qk_s32(Q, 3 * A, k->z_q, Q + A, 3 * A, k->z_k, T, T, d, w->S, T);
            for (int i = 0; i < T; i++) softmax_row(im, k, w->S + (int64_t)i * T, T, keep, w->P + (int64_t)i * T);
            ops->pv_s32(w->P, T, Q + 2 * A, 3 * A, k->z_v, T, T, d, w->pv, d);
            ops->requant_s8(w->pv, T, d, d, NULL, &k->ctx_M0, &k->ctx_sh, 0, k->z_ctx, -128,
                            w->ctx + (int64_t)bi * T * A + (int64_t)h * d, A, NULL);
        }
    }
    const int64_t st = (int64_t)b->B * c->heads * T;
    dump(3, layer, rows, A, NULL, w->ctx, 1.0);
    tr(t, "attention.scores", layer, "i8 x i8", "i32", st, T);
    if (im->float_ops & QD_IFLOAT_SOFTMAX) {
        tr(t, "dequantize", layer, "i32", "f32", st, T);
        tr(t, "attention.softmax", layer, "f32", "f32", st, T);
        tr(t, "quantize", layer, "f32", "u8", st, T);
    } else
        tr(t, "attention.softmax", layer, "i32", "u8", st, T);
    tr(t, "attention.context", layer, "u8 x i8", "i32", rows, A);
    tr(t, "attention.requantize", layer, "i32", "i8", rows, A);
}

static int block(qd_imodel *im, int layer, const qd_ibatch *b, work *w, const tracer *t)
{
    const qd_imodel_cfg *c = &im->cfg;
    const qd_iblock *k = &im->blk[layer];
    const int64_t rows = (int64_t)b->B * b->T;
    const int H = c->hidden;
    const int bert = c->arch == QD_IARCH_BERT;
    qd_isplit sp;
    /* BERT (post-LN): x8/xf (and xo) hold the block input; ViT (pre-LN): h holds the residual stream */
    if (!bert)
        layernorm(im, &k->ln1, w->h, rows, H, w->x8, NULL, split_for(&k->qkv, w->xo, &sp), layer, "layernorm", t,
                  w->fl);
    attention(im, k, b, w, layer, t);
    const add_ctx a1 = {im->ops, &k->o, bert ? w->xf : w->h, k->r1_M0, k->r1_sh, w->r};
    linear(im->ops, &k->o, w->ctx, NULL, rows, w->acc, epi_add, &a1, layer, "attention.output.gemm", t);
    tr(t, "residual_add", layer, "i32 + i32", "i32", rows, H);
    layernorm(im, bert ? &k->ln1 : &k->ln2, w->r, rows, H, w->x8, bert ? w->xf : NULL, split_for(&k->inter, w->xo, &sp),
              layer, "layernorm", t, w->fl);
    const act_ctx ac = {im, k, w->i8, split_for(&k->out, w->xo2, &sp), w->fl};
    linear(im->ops, &k->inter, w->x8, w->xo, rows, w->acc, epi_act, &ac, layer, "intermediate.gemm", t);
    trace_activation(im, layer, rows, k->inter.N, t);
    dump(5, layer, rows, k->inter.N, NULL, w->i8, 1.0);
    /* the MLP's output added to the residual: BERT's LayerNorm output (fine), ViT's stream */
    const add_ctx a2 = {im->ops, &k->out, bert ? w->xf : w->r, k->r2_M0, k->r2_sh, bert ? w->r : w->h};
    linear(im->ops, &k->out, w->i8, w->xo2, rows, w->acc, epi_add, &a2, layer, "output.gemm", t);
    tr(t, "residual_add", layer, "i32 + i32", "i32", rows, H);
    if (bert) {
        /* the next block's input, with its outlier channels */
        const qd_ilinear *next = layer + 1 < c->layers ? &im->blk[layer + 1].qkv : NULL;
        layernorm(im, &k->ln2, w->r, rows, H, w->x8, w->xf, split_for(next, w->xo, &sp), layer, "layernorm", t, w->fl);
    }
    return QD_OK;
}

/* ---- embeddings and heads ----------------------------------------------------------------- */

static int embed_bert(qd_imodel *im, const qd_ibatch *b, work *w, const tracer *t)
{
    const qd_imodel_cfg *c = &im->cfg;
    const int H = c->hidden, T = b->T;
    if (T > c->max_pos)
        return qd_err_set(QD_ESHAPE, "integer-only forward: sequence length %d exceeds %d positions", T, c->max_pos);
    for (int bi = 0; bi < b->B; bi++)
        for (int ti = 0; ti < T; ti++) {
            const int64_t r = (int64_t)bi * T + ti;
            const int32_t id = b->ids[r], tt = b->type_ids ? b->type_ids[r] : 0;
            if (id < 0 || id >= c->vocab)
                return qd_err_set(QD_EINVAL, "integer-only forward: token id %d outside the vocabulary (%d)", id,
                                  c->vocab);
            if (tt < 0 || tt >= (c->type_vocab > 0 ? c->type_vocab : 1))
                return qd_err_set(QD_EINVAL, "integer-only forward: token type %d outside %d types", tt, c->type_vocab);
            const int32_t *we = im->word + (int64_t)id * H, *pe = im->pos + (int64_t)ti * H;
            const int32_t *te = im->type ? im->type + (int64_t)tt * H : NULL;
            int32_t *o = w->h + r * H;
            for (int i = 0; i < H; i++) {
                int64_t v = (int64_t)we[i] + pe[i] + (te ? te[i] : 0);
                o[i] = (int32_t)(v > QD_IRES_LIM ? QD_IRES_LIM : v < -QD_IRES_LIM ? -QD_IRES_LIM : v);
            }
        }
    tr(t, "embedding_lookup", -1, "i32 ids", "i32", (int64_t)b->B * T, H);
    qd_isplit sp;
    layernorm(im, &im->emb_ln, w->h, (int64_t)b->B * T, H, w->x8, w->xf, split_for(&im->blk[0].qkv, w->xo, &sp), -1,
              "layernorm", t, w->fl);
    return QD_OK;
}

static int vit_shape(const qd_imodel *im, int T)
{
    const qd_imodel_cfg *c = &im->cfg;
    const int np = (c->image_h / c->patch_h) * (c->image_w / c->patch_w);
    if (T != c->n_prefix + np)
        return qd_err_set(QD_ESHAPE, "integer-only forward: a ViT batch has %d tokens per image, not %d",
                          c->n_prefix + np, T);
    return QD_OK;
}

void qd_imodel_quantize_input(const qd_imodel *im, int B, const float *pixels, int8_t *patches)
{
    const qd_imodel_cfg *c = &im->cfg;
    const int C = c->channels, gh = c->image_h / c->patch_h, gw = c->image_w / c->patch_w, np = gh * gw;
    const int pk = C * c->patch_h * c->patch_w;
    const double inv = 1.0 / im->s_in;
    for (int bi = 0; bi < B; bi++) {
        const float *img = pixels + (int64_t)bi * C * c->image_h * c->image_w;
        for (int py = 0; py < gh; py++)
            for (int px = 0; px < gw; px++) {
                int8_t *row = patches + ((int64_t)bi * np + (int64_t)py * gw + px) * pk;
                for (int ch = 0; ch < C; ch++)
                    for (int i = 0; i < c->patch_h; i++)
                        for (int j = 0; j < c->patch_w; j++) {
                            const float v = img[((int64_t)ch * c->image_h + py * c->patch_h + i) * c->image_w +
                                                px * c->patch_w + j];
                            double q = nearbyint(v * inv) + im->z_in;
                            row[((int64_t)ch * c->patch_h + i) * c->patch_w + j] = (int8_t)(q > 127    ? 127
                                                                                            : q < -128 ? -128
                                                                                                       : q);
                        }
            }
    }
}

typedef struct {
    const qd_imodel *im;
    int32_t *h; /* the item's [T][H] rows */
} patch_ctx;

static void epi_patch(const void *v, const int32_t *acc, int64_t r0, int64_t nr)
{
    const patch_ctx *c = v;
    const qd_imodel *im = c->im;
    const int64_t H = im->cfg.hidden, off = (int64_t)im->cfg.n_prefix + r0;
    /* the position table is already at the embedding scale: identity multiplier (2^30, 1) */
    im->ops->rescale_add(acc, nr, H, H, im->patch.bias, im->patch.M0, im->patch.sh, im->pos_patch + r0 * H, H, 1 << 30,
                         1, QD_IRES_LIM, c->h + off * H, H);
}

static void embed_vit(qd_imodel *im, const qd_ibatch *b, const int8_t *patches, work *w, const tracer *t)
{
    const qd_imodel_cfg *c = &im->cfg;
    const int H = c->hidden, T = b->T, np = T - c->n_prefix;
    const int64_t pk = (int64_t)c->channels * c->patch_h * c->patch_w;
    for (int bi = 0; bi < b->B; bi++) {
        int32_t *o = w->h + (int64_t)bi * T * H;
        memcpy(o, im->cls, (size_t)c->n_prefix * H * sizeof(int32_t));
        const patch_ctx pc = {im, o};
        linear(im->ops, &im->patch, patches + (int64_t)bi * np * pk, NULL, np, w->acc, epi_patch, &pc, -1, NULL, t);
    }
    tr(t, "patch_embedding.gemm", -1, "i8 x i8", "i32", (int64_t)b->B * np, H);
    tr(t, "add_position", -1, "i32 + i32", "i32", (int64_t)b->B * T, H);
}

typedef struct {
    const qd_ilinear *L;
    int32_t *out;
} bias_ctx;

static void epi_bias(const void *v, const int32_t *acc, int64_t r0, int64_t nr)
{
    const bias_ctx *c = v;
    const int64_t N = c->L->N;
    for (int64_t r = 0; r < nr; r++)
        for (int64_t n = 0; n < N; n++) c->out[(r0 + r) * N + n] = qd_fx_sat32((int64_t)acc[r * N + n] + c->L->bias[n]);
}

int qd_imodel_run(qd_imodel *im, const qd_ibatch *b, const int8_t *patches, int32_t *out, int32_t *cls,
                  qd_itrace_fn trace, void *trace_user)
{
    const qd_imodel_cfg *c = &im->cfg;
    if (b->B <= 0 || b->T <= 0) return qd_err_set(QD_EINVAL, "integer-only forward: empty batch");
    if (c->arch == QD_IARCH_VIT && !patches) return qd_err_set(QD_EINVAL, "integer-only forward: no input patches");
    if (c->arch == QD_IARCH_BERT && !b->ids) return qd_err_set(QD_EINVAL, "integer-only forward: no token ids");
    int rc = c->arch == QD_IARCH_VIT ? vit_shape(im, b->T) : QD_OK;
    tracer t = {trace, trace_user};
    work w;
    if (!rc) rc = work_get(im, b->B, b->T, &w);
    if (rc) return rc;
    if (c->arch == QD_IARCH_BERT)
        rc = embed_bert(im, b, &w, &t);
    else
        embed_vit(im, b, patches, &w, &t);
    for (int k = 0; k < c->layers && !rc; k++) rc = block(im, k, b, &w, &t);
    if (rc) return rc;
    const int H = c->hidden, T = b->T;
    if (c->arch == QD_IARCH_VIT) {
        /* the classifier reads the CLS row: final LayerNorm on it alone */
        for (int bi = 0; bi < b->B; bi++)
            memcpy(w.r + (int64_t)bi * H, w.h + (int64_t)bi * T * H, (size_t)H * sizeof(int32_t));
        layernorm(im, &im->final_ln, w.r, b->B, H, w.x8, NULL, NULL, -1, "final_layernorm", &t, w.fl);
        const qd_ilinear *L = &im->cls_head;
        if (L->N > 0 && out) {
            const bias_ctx bc = {L, out};
            linear(im->ops, L, w.x8, NULL, b->B, w.acc, epi_bias, &bc, -1, "classifier.gemm", &t);
            tr(&t, "classifier.bias", -1, "i32 + i32", "i32", b->B, L->N);
        }
        return QD_OK;
    }
    /* BERT: mean pooling over the real tokens of the last fine output, in integers */
    for (int bi = 0; out && bi < b->B; bi++) {
        int64_t n = 0;
        for (int ti = 0; ti < T; ti++) n += !b->mask || b->mask[(int64_t)bi * T + ti];
        if (n == 0) n = 1;
        for (int i = 0; i < H; i++) {
            int64_t s = 0;
            for (int ti = 0; ti < T; ti++)
                if (!b->mask || b->mask[(int64_t)bi * T + ti]) s += w.xf[((int64_t)bi * T + ti) * H + i];
            /* floor((2s + n) / 2n): the mean rounded half up */
            int64_t num = 2 * s + n, q = num / (2 * n);
            if (num % (2 * n) != 0 && num < 0) q--;
            out[(int64_t)bi * H + i] = (int32_t)q;
        }
    }
    if (out) tr(&t, "mean_pool", -1, "i32", "i32", b->B, H);
    for (int bi = 0; cls && bi < b->B; bi++) memcpy(cls + (int64_t)bi * H, w.xf + (int64_t)bi * T * H, (size_t)H * 4);
    return QD_OK;
}

void qd_imodel_dequantize(const qd_imodel *im, int B, const int32_t *out, float *y)
{
    if (im->cfg.arch == QD_IARCH_VIT) {
        const qd_ilinear *L = &im->cls_head;
        for (int bi = 0; bi < B; bi++)
            for (int n = 0; n < L->N; n++)
                y[(int64_t)bi * L->N + n] = (float)(out[(int64_t)bi * L->N + n] * (double)L->real[n]);
        return;
    }
    for (int64_t i = 0; i < (int64_t)B * im->cfg.hidden; i++) y[i] = (float)(out[i] * (double)im->s_out);
}

int qd_imodel_forward(qd_imodel *im, const qd_ibatch *b, float *logits, float *pooled, float *cls, qd_itrace_fn trace,
                      void *trace_user)
{
    const qd_imodel_cfg *c = &im->cfg;
    if (b->B <= 0 || b->T <= 0) return qd_err_set(QD_EINVAL, "integer-only forward: empty batch");
    tracer t = {trace, trace_user};
    const int vit = c->arch == QD_IARCH_VIT, H = c->hidden, L = im->cls_head.N;
    int8_t *patches = NULL;
    int rc = QD_OK;
    if (vit) {
        if (!b->pixels) return qd_err_set(QD_EINVAL, "integer-only forward: no pixels");
        if ((rc = vit_shape(im, b->T))) return rc;
        const int64_t np = b->T - c->n_prefix, pk = (int64_t)c->channels * c->patch_h * c->patch_w;
        patches = malloc((size_t)(b->B * np * pk));
        if (!patches) return qd_err_set(QD_ENOMEM, "integer-only forward: out of memory");
        /* the input quantization: the one float step before the integer graph */
        qd_imodel_quantize_input(im, b->B, b->pixels, patches);
        tr(&t, "quantize_input", -1, "f32", "i8", (int64_t)b->B * np, pk);
    }
    const int64_t width = vit ? (L > 0 ? L : 1) : H;
    int32_t *o = malloc((size_t)(b->B * width) * sizeof(int32_t));
    int32_t *oc = cls ? malloc((size_t)b->B * H * sizeof(int32_t)) : NULL;
    if (!o || (cls && !oc)) rc = qd_err_set(QD_ENOMEM, "integer-only forward: out of memory");
    if (!rc) rc = qd_imodel_run(im, b, patches, o, oc, trace, trace_user);
    if (!rc) {
        float *dst = vit ? logits : pooled;
        if (dst && (!vit || L > 0)) qd_imodel_dequantize(im, b->B, o, dst);
        for (int64_t i = 0; cls && i < (int64_t)b->B * H; i++) cls[i] = (float)(oc[i] * (double)im->s_out);
        tr(&t, "dequantize_output", -1, "i32", "f32", b->B, vit ? L : H);
    }
    free(patches);
    free(o);
    free(oc);
    return rc;
}

/* ---- packing and freeing ------------------------------------------------------------------ */

static int pack1(const qd_intops_table *ops, qd_ilinear *L, const char *what, int layer)
{
    if (!L->w) return QD_OK;
    L->packed = ops->igemm_pack(L->w, L->N, L->K, L->K);
    if (!L->packed)
        return qd_err_set(QD_ENOMEM, "integer-only model: cannot pack %s of layer %d (%d x %d)", what, layer, L->N,
                          L->K);
    return QD_OK;
}

static void unpack1(const qd_intops_table *ops, qd_ilinear *L)
{
    if (L->packed) ops->igemm_free(L->packed);
    L->packed = NULL;
}

static void unpack_all(qd_imodel *im)
{
    if (!im->ops) return;
    for (int k = 0; im->blk && k < im->cfg.layers; k++) {
        unpack1(im->ops, &im->blk[k].qkv);
        unpack1(im->ops, &im->blk[k].o);
        unpack1(im->ops, &im->blk[k].inter);
        unpack1(im->ops, &im->blk[k].out);
    }
    unpack1(im->ops, &im->patch);
    unpack1(im->ops, &im->cls_head);
}

int qd_imodel_pack_ops(qd_imodel *im, const qd_intops_table *ops)
{
    unpack_all(im);
    im->ops = ops;
    int rc = QD_OK;
    for (int k = 0; k < im->cfg.layers && !rc; k++) {
        qd_iblock *b = &im->blk[k];
        if (!rc) rc = pack1(ops, &b->qkv, "query/key/value", k);
        if (!rc) rc = pack1(ops, &b->o, "attention.output", k);
        if (!rc) rc = pack1(ops, &b->inter, "intermediate", k);
        if (!rc) rc = pack1(ops, &b->out, "output", k);
    }
    if (!rc) rc = pack1(ops, &im->patch, "patch embedding", -1);
    if (!rc) rc = pack1(ops, &im->cls_head, "classifier", -1);
    return rc;
}

int qd_imodel_pack(qd_imodel *im) { return qd_imodel_pack_ops(im, qd_intops()); }

static void lin_free(qd_ilinear *L)
{
    free(L->w);
    free(L->bias);
    free(L->M0);
    free(L->sh);
    free(L->real);
    free(L->och);
    free(L->wo);
    memset(L, 0, sizeof *L);
}

static void ln_free(qd_ilnorm *l)
{
    free(l->g);
    free(l->beta);
    free(l->gamma);
    free(l->betaf);
    memset(l, 0, sizeof *l);
}

void qd_imodel_free(qd_imodel *im)
{
    if (!im) return;
    unpack_all(im);
    for (int k = 0; im->blk && k < im->cfg.layers; k++) {
        qd_iblock *b = &im->blk[k];
        lin_free(&b->qkv);
        lin_free(&b->o);
        lin_free(&b->inter);
        lin_free(&b->out);
        ln_free(&b->ln1);
        ln_free(&b->ln2);
    }
    free(im->blk);
    free(im->word);
    free(im->pos);
    free(im->type);
    ln_free(&im->emb_ln);
    lin_free(&im->patch);
    free(im->cls);
    free(im->pos_patch);
    ln_free(&im->final_ln);
    lin_free(&im->cls_head);
    free(im->ws);
    free(im);
}
