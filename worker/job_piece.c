/* worker/job_piece.c — the write phase of one piece (see job_piece.h). */
#include "worker/job_piece.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/sparse_unit.h"

/* rows [r0, r1) of a piece */
void qd_job_piece_rows(const qd_job_item *it, const qd_plan_piece *p, int64_t *r0, int64_t *r1)
{
    if (!it->j.splittable || (p->part0 == 0 && p->part1 >= it->j.nblk)) {
        *r0 = 0;
        *r1 = it->j.rows;
        return;
    }
    *r0 = (int64_t)p->part0 * it->j.blk_rows;
    *r1 = QD_MIN((int64_t)p->part1 * it->j.blk_rows, it->j.rows);
}

/* rows [r0, r0 + n) of a float tensor as F32: zero-copy from the mapping when the source is
 * aligned F32, else converted into *buf (the caller frees) */
static int input_rows(qd_checkpoint *ck, int ti, int64_t r0, int64_t n, int64_t cols, const float **x, float **buf)
{
    const qd_tensor_info *t = qd_ckpt_tensor(ck, ti);
    *buf = NULL;
    if (t->dtype == QD_DT_F32) {
        const void *raw;
        int rc = qd_ckpt_raw(ck, ti, &raw);
        if (rc) return rc;
        if ((uintptr_t)raw % _Alignof(float) == 0) {
            *x = (const float *)raw + r0 * cols;
            return QD_OK;
        }
    }
    *buf = malloc((size_t)(n * cols > 0 ? n * cols : 1) * sizeof(float));
    if (!*buf)
        return qd_err_set(QD_ENOMEM, "tensor '%s': out of memory for %lld values", t->name, (long long)(n * cols));
    int rc = qd_ckpt_read_rows_f32(ck, ti, r0, n, *buf);
    *x = *buf;
    return rc;
}

/* Rows [r0, r0 + n) of a pruned tensor's mask dataset, from an unpacked mask or packed rows. */
static int write_mask_rows(qd_h5m_writer *w, qd_job_item *it, int64_t r0, int64_t n, const uint8_t *mask,
                           const uint8_t *packed)
{
    if (!qd_sparsity_active(&it->j.sp)) return QD_OK;
    uint8_t *p = (uint8_t *)packed;
    if (!packed) {
        p = malloc((size_t)(n * QD_MASK_ROW_BYTES(it->j.cols)) + 1);
        if (!p) return qd_err_set(QD_ENOMEM, "out of memory for mask rows");
        qd_mask_pack(mask, n, it->j.cols, p);
    }
    qd_h5m_write_rows(w, it->rec, QD_H5M_MASK, r0, n, p);
    if (!packed) free(p);
    return QD_OK;
}

/* Where rows [r0, r0 + n) of a calibrated result start in the rows this rank holds. */
static int64_t held_row(const qd_calib_result *cq, int64_t r0, int64_t n)
{
    QD_ASSERT(r0 >= cq->row0 && r0 + n <= cq->row1); /* the job kept every row its pieces write */
    return r0 - cq->row0;
}

/* A float tensor's rows, checked finite; or, pruned and kept in float, the calibrated phase's. */
static int float_rows(qd_h5m_writer *w, qd_job_item *it, const char *name, const float *x, int64_t r0, int64_t n)
{
    const int64_t C = it->j.cols;
    if (it->cq && it->cq->float_kept) {
        const int64_t o = held_row(it->cq, r0, n);
        qd_h5m_write_rows(w, it->rec, QD_H5M_DATA, r0, n, it->cq->fweight + o * C);
        return write_mask_rows(w, it, r0, n, it->cq->mask + o * C, NULL);
    }
    if (!qd_all_finite(x, n * C)) {
        for (int64_t i = 0; i < n * C; i++)
            if (!isfinite(x[i]))
                return qd_err_set(QD_ENONFINITE, "tensor '%s': %s at flat index %lld", name,
                                  isnan(x[i]) ? "NaN" : "Inf", (long long)(r0 * C + i));
    }
    qd_h5m_write_rows(w, it->rec, QD_H5M_DATA, r0, n, x);
    return QD_OK;
}

/* Packs rows [0, n) of codes (their scales and zeros in sc, z [n][ng]; columns in groups by
 * g_idx, or c / G) into packed, and adds the error of the dequantized rows against x to the
 * sums of their blocks (rows r0 + r of the tensor). */
static void pack_and_measure(const qd_job_item *it, const float *x, int64_t r0, int64_t n, const uint8_t *codes,
                             const float *sc, const int32_t *z, const int32_t *g_idx, uint8_t *packed,
                             qd_piece_rec *rec)
{
    const qd_qscheme *s = &it->j.scheme;
    const int64_t C = it->j.cols, rb = qd_packed_row_bytes(C, s->bits), ng = qd_rtn_ngroups(s, C);
    const int64_t gs = qd_scheme_group_cols(s, C);
    for (int64_t r = 0; r < n; r++) {
        const uint8_t *q = codes + r * C;
        qd_pack_row(q, C, s->bits, packed + r * rb);
        qd_errsum *b = &rec->blk[(r0 + r) / it->j.blk_rows];
        const float *w = x + r * C;
        for (int64_t c = 0; c < C; c++) {
            int64_t g = g_idx ? g_idx[c] : c / gs;
            double d = (double)w[c] - qd_dequantize1(q[c], sc[r * ng + g], z[r * ng + g]);
            b->err2 += d * d;
            b->w2 += (double)w[c] * w[c];
            if (fabs(d) > b->max_abs) b->max_abs = fabs(d);
        }
    }
}

/* Rows of a tensor whose method needs no calibration: pruned first when the job prunes
 * (magnitude per row, the mask written), then the method's fused path, or its unit and the
 * packing. */
static int method_rows(const qd_job_config *cfg, qd_h5m_writer *w, qd_job_item *it, const char *what, const float *x,
                       int64_t r0, int64_t n, uint8_t *packed, float *sc, int32_t *z, qd_piece_rec *rec)
{
    const int64_t C = it->j.cols;
    const qd_method_def *def = qd_job_method(&it->j);
    qd_method_opts o;
    qd_job_method_opts(cfg, &it->j, &o);
    int rc = QD_OK;
    float *work = NULL; /* the rows the method may overwrite (pruned or copied) */
    if (qd_sparsity_active(&it->j.sp) || !def->quantize_packed) {
        work = malloc((size_t)(n * C > 0 ? n * C : 1) * sizeof(float));
        if (!work)
            return qd_err_set(QD_ENOMEM, "%s: out of memory for rows [%lld, %lld)", what, (long long)r0,
                              (long long)(r0 + n));
        memcpy(work, x, (size_t)(n * C) * sizeof(float));
    }
    if (qd_sparsity_active(&it->j.sp)) { /* magnitude per row, then the method on what is kept */
        uint8_t *pm = malloc((size_t)(n * QD_MASK_ROW_BYTES(C)));
        if (!pm)
            rc = qd_err_set(QD_ENOMEM, "%s: out of memory for its pruned rows", what);
        else if ((rc = qd_sparse_rtn_rows(&it->j.sp, x, n, C, work, pm)))
            qd_err_wrap(rc, "%s: ", what);
        else
            rc = write_mask_rows(w, it, r0, n, NULL, pm);
        free(pm);
    }
    const float *xq = work ? work : x;
    if (!rc && def->quantize_packed)
        rc =
            def->quantize_packed(&o, xq, n, C, packed, sc, z, it->j.blk_rows, rec->blk + r0 / it->j.blk_rows, what, r0);
    else if (!rc) {
        uint8_t *codes = malloc((size_t)(n * C > 0 ? n * C : 1));
        float *orig = malloc((size_t)(n * C > 0 ? n * C : 1) * sizeof(float));
        const qd_layer_stats s = {.cols = C};
        qd_unit_out out = {.codes = codes, .scales = sc, .zeros = z};
        if (!codes || !orig)
            rc = qd_err_set(QD_ENOMEM, "%s: out of memory for its codes", what);
        else {
            memcpy(orig, xq, (size_t)(n * C) * sizeof(float));
            if ((rc = def->quantize(&o, &s, NULL, work, n, &out)))
                qd_err_wrap(rc, "%s rows [%lld, %lld)", what, (long long)r0, (long long)(r0 + n));
            else
                pack_and_measure(it, orig, r0, n, codes, sc, z, NULL, packed, rec);
        }
        free(codes);
        free(orig);
    }
    free(work);
    return rc;
}

int qd_job_piece(const qd_job_config *cfg, qd_checkpoint *ck, qd_h5m_writer *w, qd_job_item *it, const qd_plan_piece *p,
                 qd_piece_rec *rec)
{
    const qd_tensor_info *t = qd_ckpt_tensor(ck, it->ti);
    const double t0 = qd_now();
    int rc = QD_OK;
    if (it->j.kind == QD_JOB_RAW) {
        const void *raw;
        if ((rc = qd_ckpt_raw(ck, it->ti, &raw))) return rc;
        qd_h5m_write_rows(w, it->rec, QD_H5M_RAW, 0, (int64_t)t->nbytes, raw);
        qd_ckpt_forget(ck, it->ti);
        rec->seconds = qd_now() - t0;
        return QD_OK;
    }
    int64_t r0, r1;
    qd_job_piece_rows(it, p, &r0, &r1);
    const int64_t n = r1 - r0, C = it->j.cols;
    if (t->numel == 0 || n == 0) return QD_OK;
    const float *x = NULL;
    float *buf = NULL;
    if ((rc = input_rows(ck, it->ti, r0, n, C, &x, &buf))) {
        free(buf);
        return rc;
    }
    if (it->j.kind == QD_JOB_FLOAT) {
        rc = float_rows(w, it, t->name, x, r0, n);
        free(buf);
        qd_ckpt_forget(ck, it->ti);
        rec->seconds = qd_now() - t0;
        return rc;
    }
    const qd_qscheme *s = &it->j.scheme;
    const int64_t rb = qd_packed_row_bytes(C, s->bits), ng = qd_rtn_ngroups(s, C);
    uint8_t *packed = malloc((size_t)(n * rb));
    float *sc = malloc((size_t)(n * ng) * sizeof(float));
    int32_t *z = malloc((size_t)(n * ng) * sizeof(int32_t));
    if (!packed || !sc || !z)
        rc = qd_err_set(QD_ENOMEM, "tensor '%s': out of memory for rows [%lld, %lld)", t->name, (long long)r0,
                        (long long)r1);
    if (!rc && it->cq) { /* codes from the calibrated phase */
        const qd_calib_result *cq = it->cq;
        const int64_t o = held_row(cq, r0, n);
        memcpy(sc, cq->scales + o * ng, (size_t)(n * ng) * sizeof(float));
        memcpy(z, cq->zeros + o * ng, (size_t)(n * ng) * sizeof(int32_t));
        pack_and_measure(it, x, r0, n, cq->codes + o * C, sc, z, cq->g_idx, packed, rec);
        if (cq->g_idx && r0 == 0) qd_h5m_write_rows(w, it->rec, QD_H5M_G_IDX, 0, C, cq->g_idx);
        if (cq->mask) rc = write_mask_rows(w, it, r0, n, cq->mask + o * C, NULL);
    } else if (!rc) {
        char what[QD_PATTERN_MAX + 16];
        snprintf(what, sizeof what, "tensor '%s'", t->name);
        rc = method_rows(cfg, w, it, what, x, r0, n, packed, sc, z, rec);
    }
    if (!rc) {
        qd_h5m_write_rows(w, it->rec, QD_H5M_QWEIGHT, r0, n, packed);
        qd_h5m_write_rows(w, it->rec, QD_H5M_SCALES, r0, n, sc);
        if (!s->sym) qd_h5m_write_rows(w, it->rec, QD_H5M_ZEROS, r0, n, z);
    }
    free(packed);
    free(sc);
    free(z);
    free(buf);
    qd_ckpt_forget(ck, it->ti); /* written: its pages need not stay (a rank's memory stays one piece) */
    rec->seconds = qd_now() - t0;
    return rc;
}

void qd_job_item_metrics(qd_job_item *it, const qd_tensor_info *t)
{
    double e2 = 0, w2 = 0, mx = 0;
    for (int b = 0; b < it->j.nblk; b++) {
        e2 += it->blk[b].err2;
        w2 += it->blk[b].w2;
        if (it->blk[b].max_abs > mx) mx = it->blk[b].max_abs;
    }
    it->m[0] = w2 > 0 ? sqrt(e2 / w2) : 0;
    it->m[1] = t->numel ? e2 / (double)t->numel : 0;
    it->m[2] = mx;
    it->m[3] = e2 > 0 ? 10.0 * log10(w2 / e2) : 999.0;
}
