/* Pruning inside a quantization job (see sparse_unit.h). */
#include "worker/sparse_unit.h"

#include <stdlib.h>
#include <string.h>

int qd_sparse_prune_method(const qd_job_config *c, qd_method m)
{
    if (c->prune >= 0) return c->prune;
    return m == QD_METHOD_RTN ? QD_PRUNE_MAGNITUDE : QD_PRUNE_SPARSEGPT;
}

int qd_sparse_config_validate(const qd_job_config *c)
{
    if (!qd_sparsity_active(&c->sparsity)) {
        if (c->prune_only) return qd_err_set(QD_ECONFIG, "prune-only needs a sparsity (--sparsity 0.5, 2:4, ...)");
        for (int i = 0; i < c->n_overrides; i++)
            if (c->overrides[i].has_sp)
                return qd_err_set(QD_ECONFIG,
                                  "overrides[%d].sparsity: per-tensor sparsity needs a pruning job (--sparsity "
                                  "for the others)",
                                  i);
        return QD_OK;
    }
    int ada = c->method == QD_METHOD_ADAROUND, rtn = c->method == QD_METHOD_RTN;
    for (int i = 0; i < c->n_overrides; i++) {
        ada |= c->overrides[i].method == QD_METHOD_ADAROUND;
        rtn |= c->overrides[i].method == QD_METHOD_RTN && c->method != QD_METHOD_RTN;
    }
    if (ada) return qd_err_set(QD_ECONFIG, "sparsity: pruning works with method rtn or gptq, not adaround");
    if (c->act_order)
        return qd_err_set(QD_ECONFIG, "sparsity: act-order is not available with pruning (N:M groups and the "
                                      "mask follow the original column order)");
    if (c->method == QD_METHOD_RTN && qd_sparse_prune_method(c, c->method) != QD_PRUNE_MAGNITUDE)
        return qd_err_set(QD_ECONFIG,
                          "sparsity: prune method '%s' needs calibration (--method gptq --calib DATA); "
                          "with rtn use --prune magnitude",
                          qd_prune_method_name(c->prune));
    if (c->prune_only && c->method != QD_METHOD_GPTQ)
        return qd_err_set(QD_ECONFIG, "prune-only runs on the calibrated path: --method gptq --calib DATA");
    if (rtn && c->method == QD_METHOD_GPTQ)
        return qd_err_set(QD_ECONFIG, "sparsity: overrides may not mix rtn into a gptq job with pruning");
    return QD_OK;
}

int qd_sparse_unit(const qd_sparsity *sp, int prune, const qd_gptq_opts *o, const qd_gptq_prep *prep, const float *H,
                   int prune_only, float *W, int64_t n, int64_t C, uint8_t *codes, float *scales, int32_t *zeros,
                   uint8_t *mask)
{
    int rc = QD_OK;
    if (prune == QD_PRUNE_MAGNITUDE)
        rc = qd_prune_magnitude(W, n, C, sp, QD_PRUNE_ROW, mask);
    else if (prune == QD_PRUNE_WANDA)
        rc = qd_prune_wanda(W, n, C, H, sp, mask);
    if (rc) return rc;
    if (prune_only && prune != QD_PRUNE_SPARSEGPT) { /* the criterion alone: no weight update */
        qd_prune_apply(W, mask, n * C);
        return QD_OK;
    }
    qd_sparsegpt_opts so;
    qd_sparsegpt_default_opts(&so);
    so.sp = *sp;
    so.scope = QD_PRUNE_ROW; /* row units stay independent */
    so.damp = o->damp;
    so.block_size = o->block_size;
    so.quantize = !prune_only;
    so.bits = o->bits;
    so.sym = o->sym;
    so.group_size = o->group_size;
    so.clip = o->clip;
    so.mask_given = prune != QD_PRUNE_SPARSEGPT;
    return qd_sparsegpt_prune_prepared(prep, &so, W, n, C, mask, prune_only ? NULL : codes, scales, zeros, NULL);
}

int qd_sparse_rtn_rows(const qd_sparsity *sp, const float *x, int64_t n, int64_t C, float *out, uint8_t *packed_mask)
{
    uint8_t *mask = malloc((size_t)(n * C));
    if (!mask) return qd_err_set(QD_ENOMEM, "out of memory for a mask of %lld x %lld", (long long)n, (long long)C);
    int rc = qd_prune_magnitude(x, n, C, sp, QD_PRUNE_ROW, mask);
    if (!rc) {
        memcpy(out, x, (size_t)(n * C) * sizeof(float));
        qd_prune_apply(out, mask, n * C);
        qd_mask_pack(mask, n, C, packed_mask);
    }
    free(mask);
    return rc;
}
