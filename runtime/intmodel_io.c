/* runtime/intmodel_io.c — the prepared integer model as a flat file (intmodel.h):
 *   "QDIM" u32 version (1), then records until the end: u16 name length, name, u8 type
 *   (1 int8, 2 int32, 3 int64, 4 float32), u64 count, count little-endian elements.
 * One visitor lists every field with its name, so the writer and the reader cannot disagree. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/qd_common.h"
#include "runtime/intmodel.h"

enum { T_I8 = 1, T_I32 = 2, T_I64 = 3, T_F32 = 4 };
static const size_t tsize[5] = {0, 1, 4, 8, 4};

typedef struct {
    const char *prefix;
    int (*fn)(void *ctx, const char *name, int type, void *scalar, void **arr, int64_t count);
    void *ctx;
} visitor;

static int v1(const visitor *v, const char *name, int type, void *scalar, void **arr, int64_t count)
{
    char full[96];
    snprintf(full, sizeof full, "%s%s", v->prefix, name);
    return v->fn(v->ctx, full, type, scalar, arr, count);
}

#define S32(v, name, field) v1(v, name, T_I32, &(field), NULL, 1)
#define S64(v, name, field) v1(v, name, T_I64, &(field), NULL, 1)
#define SF(v, name, field)  v1(v, name, T_F32, &(field), NULL, 1)

static int visit_lin(const visitor *v, const char *pre, qd_ilinear *L)
{
    visitor w = *v;
    char full[64];
    snprintf(full, sizeof full, "%s%s.", v->prefix, pre);
    w.prefix = full;
    int rc = S32(&w, "N", L->N);
    if (!rc) rc = S32(&w, "K", L->K);
    const int64_t N = L->N, K = L->K;
    if (!rc) rc = v1(&w, "w", T_I8, NULL, (void **)&L->w, N * K);
    if (!rc) rc = v1(&w, "bias", T_I32, NULL, (void **)&L->bias, N);
    if (!rc) rc = v1(&w, "M0", T_I32, NULL, (void **)&L->M0, N);
    if (!rc) rc = v1(&w, "sh", T_I32, NULL, (void **)&L->sh, N);
    if (!rc) rc = v1(&w, "real", T_F32, NULL, (void **)&L->real, N);
    if (!rc) rc = S32(&w, "n_out", L->n_out);
    if (!rc && (L->n_out < 0 || L->n_out > QD_IOUT_MAX))
        rc = qd_err_set(QD_EFORMAT, "integer model: %s has %d outlier channels", full, L->n_out);
    if (!rc) rc = S32(&w, "oe", L->oe);
    if (!rc) rc = S32(&w, "ozp", L->ozp);
    if (!rc && L->n_out) rc = v1(&w, "och", T_I32, NULL, (void **)&L->och, L->n_out);
    if (!rc && L->n_out) rc = v1(&w, "wo", T_I8, NULL, (void **)&L->wo, N * L->n_out);
    return rc;
}

static int visit_ln(const visitor *v, const char *pre, qd_ilnorm *l, int64_t N)
{
    visitor w = *v;
    char full[64];
    snprintf(full, sizeof full, "%s%s.", v->prefix, pre);
    w.prefix = full;
    int rc = v1(&w, "g", T_I32, NULL, (void **)&l->g, N);
    if (!rc) rc = v1(&w, "beta", T_I64, NULL, (void **)&l->beta, N);
    if (!rc) rc = S32(&w, "gsh", l->gsh);
    if (!rc) rc = S32(&w, "zp", l->zp);
    if (!rc) rc = S64(&w, "eps", l->eps);
    if (!rc) rc = SF(&w, "s_in", l->s_in);
    if (!rc) rc = SF(&w, "s_out", l->s_out);
    if (!rc) rc = v1(&w, "gamma", T_F32, NULL, (void **)&l->gamma, N);
    if (!rc) rc = v1(&w, "betaf", T_F32, NULL, (void **)&l->betaf, N);
    if (!rc) rc = SF(&w, "epsf", l->epsf);
    return rc;
}

/* qd_isoftmax and qd_igelu are structs of int32 */
static int visit_i32s(const visitor *v, const char *name, void *p, size_t bytes)
{
    int32_t *q = p;
    char n[64];
    int rc = QD_OK;
    for (size_t i = 0; i < bytes / 4 && !rc; i++) {
        snprintf(n, sizeof n, "%s.%zu", name, i);
        rc = v1(v, n, T_I32, &q[i], NULL, 1);
    }
    return rc;
}

static int visit_model(qd_imodel *im, visitor *v, int loading)
{
    const char *top = v->prefix;
    int rc = visit_i32s(v, "cfg", &im->cfg, sizeof im->cfg);
    if (rc) return rc;
    const qd_imodel_cfg *c = &im->cfg;
    if (c->layers < 1 || c->layers > 4096 || c->hidden < 1 || c->heads < 1 || c->head_size < 1 || c->inter < 1)
        return qd_err_set(QD_EFORMAT, "integer model: implausible configuration (%d layers, hidden %d)", c->layers,
                          c->hidden);
    if (loading) im->blk = qd_xcalloc((size_t)c->layers, sizeof *im->blk);
    const int64_t H = c->hidden;
    for (int k = 0; k < c->layers && !rc; k++) {
        qd_iblock *b = &im->blk[k];
        char pre[32];
        snprintf(pre, sizeof pre, "%sb%d.", top, k);
        visitor w = *v;
        w.prefix = pre;
        if (!rc) rc = visit_lin(&w, "qkv", &b->qkv);
        if (!rc) rc = visit_lin(&w, "o", &b->o);
        if (!rc) rc = visit_lin(&w, "inter", &b->inter);
        if (!rc) rc = visit_lin(&w, "out", &b->out);
        if (!rc) rc = visit_ln(&w, "ln1", &b->ln1, H);
        if (!rc) rc = visit_ln(&w, "ln2", &b->ln2, H);
        int32_t *zs[7] = {&b->z_in, &b->z_q, &b->z_k, &b->z_v, &b->z_ctx, &b->z_mlp, &b->z_act};
        for (int i = 0; i < 7 && !rc; i++) {
            char n[16];
            snprintf(n, sizeof n, "z%d", i);
            rc = S32(&w, n, *zs[i]);
        }
        if (!rc) rc = visit_i32s(&w, "sm", &b->sm, sizeof b->sm);
        if (!rc) rc = visit_i32s(&w, "gelu", &b->gelu, sizeof b->gelu);
        if (!rc) rc = S32(&w, "ctx_M0", b->ctx_M0);
        if (!rc) rc = S32(&w, "ctx_sh", b->ctx_sh);
        if (!rc) rc = S32(&w, "r1_M0", b->r1_M0);
        if (!rc) rc = S32(&w, "r1_sh", b->r1_sh);
        if (!rc) rc = S32(&w, "r2_M0", b->r2_M0);
        if (!rc) rc = S32(&w, "r2_sh", b->r2_sh);
        if (!rc) rc = SF(&w, "s_q", b->s_q);
        if (!rc) rc = SF(&w, "s_k", b->s_k);
        if (!rc) rc = SF(&w, "s_v", b->s_v);
        if (!rc) rc = SF(&w, "s_act", b->s_act);
        if (!rc) rc = SF(&w, "s_score", b->s_score);
    }
    if (rc) return rc;
    if (c->arch == QD_IARCH_BERT) {
        rc = v1(v, "word", T_I32, NULL, (void **)&im->word, (int64_t)c->vocab * H);
        if (!rc) rc = v1(v, "pos", T_I32, NULL, (void **)&im->pos, (int64_t)c->max_pos * H);
        if (!rc && c->type_vocab > 0) rc = v1(v, "type", T_I32, NULL, (void **)&im->type, (int64_t)c->type_vocab * H);
        if (!rc) rc = visit_ln(v, "emb_ln", &im->emb_ln, H);
        if (!rc) rc = SF(v, "s_out", im->s_out);
    } else {
        const int64_t np = (int64_t)(c->image_h / c->patch_h) * (c->image_w / c->patch_w);
        rc = SF(v, "s_in", im->s_in);
        if (!rc) rc = S32(v, "z_in", im->z_in);
        if (!rc) rc = visit_lin(v, "patch", &im->patch);
        if (!rc) rc = v1(v, "cls", T_I32, NULL, (void **)&im->cls, (int64_t)c->n_prefix * H);
        if (!rc) rc = v1(v, "pos_patch", T_I32, NULL, (void **)&im->pos_patch, np * H);
        if (!rc) rc = visit_ln(v, "final_ln", &im->final_ln, H);
        if (!rc && c->num_labels > 0) rc = visit_lin(v, "cls_head", &im->cls_head);
    }
    return rc;
}

/* ---- writer ------------------------------------------------------------------------------- */

static int put(void *ctx, const char *name, int type, void *scalar, void **arr, int64_t count)
{
    FILE *f = ctx;
    const void *data = scalar ? scalar : *arr;
    if (!data) count = 0;
    uint16_t nl = (uint16_t)strlen(name);
    uint8_t t = (uint8_t)type;
    uint64_t n = (uint64_t)count;
    if (fwrite(&nl, 2, 1, f) != 1 || fwrite(name, 1, nl, f) != nl || fwrite(&t, 1, 1, f) != 1 ||
        fwrite(&n, 8, 1, f) != 1 || (n && fwrite(data, tsize[type], n, f) != n))
        return qd_err_set(QD_EIO, "integer model: write failed at '%s'", name);
    return QD_OK;
}

int qd_imodel_save(const qd_imodel *im, const char *path)
{
    FILE *f = fopen(path, "wb");
    if (!f) return qd_err_set(QD_EIO, "%s: cannot create", path);
    const uint32_t ver = 1;
    int rc = fwrite("QDIM", 1, 4, f) == 4 && fwrite(&ver, 4, 1, f) == 1 ? QD_OK
                                                                        : qd_err_set(QD_EIO, "%s: write failed", path);
    visitor v = {"", put, f};
    if (!rc) rc = visit_model((qd_imodel *)im, &v, 0);
    if (fclose(f) && !rc) rc = qd_err_set(QD_EIO, "%s: write failed", path);
    if (rc) qd_err_wrap(rc, "%s: ", path);
    return rc;
}

/* ---- reader: the file's records in a table, then the visitor takes them by name ------------ */

typedef struct {
    char name[96];
    int type;
    uint64_t count;
    void *data;
} rec;

typedef struct {
    rec *r;
    int n;
    const char *path;
} table;

static int take(void *ctx, const char *name, int type, void *scalar, void **arr, int64_t count)
{
    table *t = ctx;
    for (int i = 0; i < t->n; i++) {
        rec *r = &t->r[i];
        if (strcmp(r->name, name)) continue;
        if (r->type != type || (r->count != (uint64_t)count && !(r->count == 0 && !scalar)))
            return qd_err_set(QD_EFORMAT, "%s: array '%s' has type %d and %llu elements, expected type %d and %lld",
                              t->path, name, r->type, (unsigned long long)r->count, type, (long long)count);
        if (scalar)
            memcpy(scalar, r->data, tsize[type]);
        else {
            *arr = r->data; /* ownership moves to the model */
            r->data = NULL;
        }
        return QD_OK;
    }
    return qd_err_set(QD_EFORMAT, "%s: array '%s' missing", t->path, name);
}

int qd_imodel_load(const char *path, qd_imodel **out)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return qd_err_set(QD_ENOENT, "%s: cannot open", path);
    char magic[4];
    uint32_t ver = 0;
    table t = {NULL, 0, path};
    int cap = 0, rc = QD_OK;
    if (fread(magic, 1, 4, f) != 4 || memcmp(magic, "QDIM", 4) || fread(&ver, 4, 1, f) != 1 || ver != 1)
        rc = qd_err_set(QD_EFORMAT, "%s: not an integer model file (QDIM version 1)", path);
    for (;;) {
        if (rc) break;
        uint16_t nl;
        if (fread(&nl, 2, 1, f) != 1) break; /* end of file */
        rec r = {0};
        uint8_t ty;
        if (nl >= sizeof r.name || fread(r.name, 1, nl, f) != nl || fread(&ty, 1, 1, f) != 1 || ty < 1 || ty > 4 ||
            fread(&r.count, 8, 1, f) != 1 || r.count > ((uint64_t)1 << 34)) {
            rc = qd_err_set(QD_EFORMAT, "%s: malformed record after %d records", path, t.n);
            break;
        }
        r.type = ty;
        if (r.count) {
            r.data = malloc((size_t)r.count * tsize[ty]);
            if (!r.data) {
                rc = qd_err_set(QD_ENOMEM, "%s: out of memory for '%s'", path, r.name);
                break;
            }
            if (fread(r.data, tsize[ty], (size_t)r.count, f) != r.count) {
                free(r.data);
                rc = qd_err_set(QD_EFORMAT, "%s: '%s' is truncated", path, r.name);
                break;
            }
        }
        if (t.n == cap) {
            cap = cap ? 2 * cap : 256;
            rec *nr = realloc(t.r, (size_t)cap * sizeof *t.r);
            if (!nr) {
                free(r.data);
                rc = qd_err_set(QD_ENOMEM, "%s: out of memory", path);
                break;
            }
            t.r = nr;
        }
        t.r[t.n++] = r;
    }
    fclose(f);
    qd_imodel *im = qd_xcalloc(1, sizeof *im);
    if (!rc) {
        visitor v = {"", take, &t};
        rc = visit_model(im, &v, 1);
    }
    for (int i = 0; i < t.n; i++) free(t.r[i].data);
    free(t.r);
    if (!rc) rc = qd_imodel_pack(im);
    if (rc) {
        qd_imodel_free(im);
        return rc;
    }
    *out = im;
    return QD_OK;
}
