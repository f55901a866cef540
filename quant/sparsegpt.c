/* SparseGPT, alone and joint with quantization (see sparsegpt.h). */
#include "quant/sparsegpt.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void qd_sparsegpt_default_opts(qd_sparsegpt_opts *o)
{
    memset(o, 0, sizeof *o);
    o->scope = QD_PRUNE_LAYER;
    o->damp = 0.01f;
    o->block_size = 128;
    o->bits = 4;
    o->group_size = -1;
    o->clip = QD_CLIP_MINMAX;
}

static void gptq_opts_of(const qd_sparsegpt_opts *o, qd_gptq_opts *g)
{
    qd_gptq_default_opts(g);
    g->bits = o->quantize ? o->bits : 4; /* the factor does not depend on bits */
    g->sym = o->sym;
    g->group_size = o->group_size;
    g->damp = o->damp;
    g->block_size = o->block_size;
    g->clip = o->clip;
}

int qd_sparsegpt_prepare(const float *H, int64_t cols, const qd_sparsegpt_opts *o, qd_gptq_prep **out)
{
    qd_gptq_opts g;
    gptq_opts_of(o, &g);
    return qd_gptq_prepare(H, cols, &g, out);
}

/* One row's sweep over a column block: w [cnt] (the row's block, updated in place by the earlier
 * columns), the block's part of the factor U (row i of the block at U + i * C), mask [cnt]
 * (unstructured: given; N:M: chosen here), optional quantization by (s, z) of each column. Writes
 * the result into out [cnt] (and codes), the scaled errors into e [cnt], returns the row's error. */
typedef struct {
    const float *U; /* Hinv + i1 * C + i1 */
    int64_t C, cnt;
    int n, m;  /* N:M, or n == 0 */
    int given; /* mask fixed by the caller */
    int quantize, maxq;
    float *s;   /* [cnt] scale of each column's group for this row */
    int32_t *z; /* [cnt] zero */
    /* groups found in the sweep (gs > 0): a group inside the block gets its scale and zero when
     * the sweep reaches its first column, from the row's weights as updated so far, kept ones
     * only; they go to srow / zrow [group] and to s / z */
    int64_t gs, i1;
    int bits, sym;
    const qd_clip_opts *clip;
    float *srow, *gtmp;
    int32_t *zrow;
} sweep_args;

static double sweep_row(const sweep_args *a, float *w, uint8_t *mask, float *out, uint8_t *codes, float *e)
{
    double err = 0;
    for (int64_t i = 0; i < a->cnt; i++) {
        const float *urow = a->U + i * a->C;
        const float d = urow[i];
        if (a->n > 0 && !a->given && i % a->m == 0) {
            float sc[64];
            for (int j = 0; j < a->m; j++) {
                float dj = a->U[(i + j) * a->C + i + j];
                sc[j] = w[i + j] * w[i + j] / (dj * dj);
            }
            qd_sparsity nm = {0, a->n, a->m};
            qd_prune_select(sc, 1, a->m, &nm, QD_PRUNE_ROW, mask + i);
        }
        if (a->gs > 0 && (a->i1 + i) % a->gs == 0 && i + a->gs <= a->cnt) {
            const int64_t g = (a->i1 + i) / a->gs;
            for (int64_t t = 0; t < a->gs; t++) a->gtmp[t] = mask[i + t] ? w[i + t] : 0.0f;
            qd_find_params_rows(a->gtmp, 1, a->gs, a->gs, a->bits, a->sym, a->clip, a->srow + g, a->zrow + g, 1);
            for (int64_t t = 0; t < a->gs; t++) {
                a->s[i + t] = a->srow[g];
                a->z[i + t] = a->zrow[g];
            }
        }
        float q = mask[i] ? w[i] : 0.0f;
        if (a->quantize) {
            int qi = qd_quantize1(q, a->s[i], a->z[i], a->maxq);
            codes[i] = (uint8_t)qi;
            q = qd_dequantize1(qi, a->s[i], a->z[i]);
        }
        out[i] = q;
        const float diff = w[i] - q;
        err += (double)diff * diff / ((double)d * d) / 2.0;
        const float ei = diff / d;
        e[i] = ei;
        for (int64_t j = i + 1; j < a->cnt; j++) w[j] -= ei * urow[j];
    }
    return err;
}

int qd_sparsegpt_prune_prepared(const qd_gptq_prep *p, const qd_sparsegpt_opts *o, float *W, int64_t R, int64_t C,
                                uint8_t *mask, uint8_t *codes, float *scales, int32_t *zeros, qd_sparsegpt_stats *st)
{
    double t0 = qd_now();
    int rc = qd_check_finite(W, R, C, "weight");
    if (rc) return rc;
    const qd_sparsity *sp = &o->sp;
    if ((rc = qd_sparsity_check_cols(sp, C, "sparsegpt"))) return rc;
    if (o->quantize && (rc = qd_qscheme_check_groups(o->bits, o->group_size, "sparsegpt"))) return rc;
    int64_t bs = o->block_size > 0 ? o->block_size : 128;
    if (sp->n > 0) bs = (bs + sp->m - 1) / sp->m * sp->m;
    const float *U = qd_gptq_prep_hinv(p);
    qd_sparsegpt_stats s = {0};
    const uint8_t *dead = qd_gptq_prep_dead(p, &s.dead_columns, &s.damp_used, &s.damp_raises);
    const int grouped = o->quantize && o->group_size > 0 && o->group_size < C;
    const int64_t gs = grouped ? o->group_size : C, ng = grouped ? (C + gs - 1) / gs : 1;
    const int maxq = qd_maxq(o->quantize ? o->bits : 8);

    if (o->quantize && !grouped) qd_find_params_rows(W, R, C, C, o->bits, o->sym, &o->clip, scales, zeros, 1);
    for (int64_t j = 0; j < C; j++)
        if (dead[j])
            for (int64_t r = 0; r < R; r++) W[r * C + j] = 0.0f;

    float *blk = qd_xmalloc((size_t)(R * bs) * sizeof(float)); /* block copy, then scores */
    float *E = qd_xmalloc((size_t)(R * bs) * sizeof(float));   /* scaled errors [R][cnt] */
    uint8_t *bmask = qd_xmalloc((size_t)(R * bs));
    float *cs = qd_xmalloc((size_t)bs * sizeof(float));
    int32_t *cz = qd_xmalloc((size_t)bs * sizeof(int32_t));
    float *out = qd_xmalloc((size_t)bs * sizeof(float));
    uint8_t *cc = qd_xmalloc((size_t)bs);
    const int lazy = grouped && (sp->n == 0 || o->mask_given); /* ranges found in the sweep */
    float *gtmp = qd_xmalloc((size_t)(lazy ? gs : 1) * sizeof(float));
    for (int64_t i1 = 0; i1 < C; i1 += bs) {
        const int64_t i2 = QD_MIN(i1 + bs, C), cnt = i2 - i1;
        if (o->mask_given) {
            for (int64_t r = 0; r < R; r++) memcpy(bmask + r * cnt, mask + r * C + i1, (size_t)cnt);
        } else if (sp->n == 0) {
            for (int64_t r = 0; r < R; r++)
                for (int64_t i = 0; i < cnt; i++) {
                    float w = W[r * C + i1 + i], d = U[(i1 + i) * C + i1 + i];
                    blk[r * cnt + i] = w * w / (d * d);
                }
            if (sp->sparsity > 0) {
                if ((rc = qd_prune_select(blk, R, cnt, sp, o->scope, bmask))) break;
            } else
                memset(bmask, 1, (size_t)(R * cnt));
        }
        /* groups beginning in this block: scale and zero from the block-start weights, except where
         * the mask is known here (unstructured or given) and the group lies inside the block: there
         * the sweep finds them when it reaches the group, from the weights as updated by the
         * columns before it and from the kept ones only. Pruning moves much more error into the
         * later columns than quantization does, so block-start ranges no longer fit the weights
         * they quantize; and the pruned weights end as 0 (always on the grid), so a range that
         * spans them only coarsens the grid of the kept ones (magnitude + RTN prunes first). */
        if (grouped)
            for (int64_t k = i1; k < i2; k++) {
                if (k % gs) continue;
                const int64_t n = QD_MIN(gs, C - k);
                if (!(lazy && k + n <= i2))
                    qd_find_params_rows(W + k, R, n, C, o->bits, o->sym, &o->clip, scales + k / gs, zeros + k / gs, ng);
            }
        sweep_args a = {.U = U + i1 * C + i1,
                        .C = C,
                        .cnt = cnt,
                        .n = sp->n,
                        .m = sp->m,
                        .quantize = o->quantize,
                        .maxq = maxq,
                        .s = cs,
                        .z = cz,
                        .gs = lazy ? gs : 0,
                        .i1 = i1,
                        .bits = o->bits,
                        .sym = o->sym,
                        .clip = &o->clip,
                        .gtmp = gtmp};
        for (int64_t r = 0; r < R; r++) {
            float *w = blk + r * cnt;
            memcpy(w, W + r * C + i1, (size_t)cnt * sizeof(float));
            if (o->quantize)
                for (int64_t i = 0; i < cnt; i++) {
                    int64_t g = grouped ? (i1 + i) / gs : 0;
                    cs[i] = scales[r * ng + g];
                    cz[i] = zeros[r * ng + g];
                }
            a.srow = lazy ? scales + r * ng : NULL;
            a.zrow = lazy ? zeros + r * ng : NULL;
            s.error += sweep_row(&a, w, bmask + r * cnt, out, cc, E + r * cnt);
            memcpy(W + r * C + i1, out, (size_t)cnt * sizeof(float));
            memcpy(mask + r * C + i1, bmask + r * cnt, (size_t)cnt);
            if (o->quantize) memcpy(codes + r * C + i1, cc, (size_t)cnt);
        }
        if (i2 < C)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)(C - i2), (int)cnt, -1.0f, E, (int)cnt,
                        U + i1 * C + i2, (int)C, 1.0f, W + i2, (int)C);
    }
    free(blk);
    free(E);
    free(bmask);
    free(cs);
    free(cz);
    free(out);
    free(cc);
    free(gtmp);
    if (rc) return rc;
    s.kept = qd_mask_count(mask, R * C);
    s.seconds = qd_now() - t0;
    if (st) *st = s;
    return QD_OK;
}

int qd_sparsegpt_prune(float *W, int64_t R, int64_t C, const float *H, const qd_sparsegpt_opts *o, uint8_t *mask,
                       uint8_t *codes, float *scales, int32_t *zeros, qd_sparsegpt_stats *st)
{
    double t0 = qd_now();
    int rc = qd_check_finite(W, R, C, "weight");
    if (rc) return rc;
    qd_gptq_prep *p = NULL;
    if ((rc = qd_sparsegpt_prepare(H, C, o, &p))) return rc;
    rc = qd_sparsegpt_prune_prepared(p, o, W, R, C, mask, codes, scales, zeros, st);
    qd_gptq_prep_free(p);
    if (st && !rc) st->seconds = qd_now() - t0;
    return rc;
}
