/* worker/calib_estimate.c — the memory of the calibrated phase per rank (see calib_job.h):
 * what `qdist plan` prints before a job and what a job prints beside its measured peak. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "model/calib.h"
#include "model/calib_data.h"
#include "worker/calib_job.h"
#include "worker/calib_run.h"

/* Bytes of one tensor's calibrated result: the codes, and a scale and zero per row group. */
static double result_bytes(const qd_job_tensor *j)
{
    const double ng =
        j->scheme.gran == QD_GRAN_GROUP ? (double)((j->cols + j->scheme.group_size - 1) / j->scheme.group_size) : 1.0;
    return (double)j->rows * j->cols + (double)j->rows * 8.0 * ng;
}

void qd_calib_estimate_rank(const qd_job_config *cfg, qd_checkpoint *ck, const qd_job_tensor *jt, const qd_model *m,
                            int N, int T, int64_t rows, int ranks, int rank, double *bytes, char *breakdown, size_t cap)
{
    const qd_model_config *c = qd_model_cfg(m);
    const double H = c->hidden, A = (double)c->heads * c->head_size, Im = c->intermediate;
    const int mb = cfg->microbatch, nmb = (N + mb - 1) / mb, mine = (nmb + ranks - 1) / ranks;
    /* Resident weights: everything outside the blocks' Linears for the whole phase (converted
     * to F32, or the mapped pages of F32 files); the Linears of the blocks in hand only (one
     * block in sequential mode, this rank's blocks in fp mode), as F32 plus the file pages the
     * quantized units read. Results: a block's whole while it is in hand, then the rows this
     * rank writes (about 1/ranks of them). */
    double weights = 0, results = 0;
    uint8_t *in_block = qd_xcalloc((size_t)qd_ckpt_num_tensors(ck) + 1, 1);
    for (int li = 0; li < qd_model_num_linears(m); li++) {
        char name[200];
        snprintf(name, sizeof name, "%s.weight", qd_model_linear(m, li)->name);
        int ti = qd_ckpt_find(ck, name);
        if (ti >= 0) in_block[ti] = 1;
    }
    for (int i = 0; i < qd_ckpt_num_tensors(ck); i++) {
        const qd_tensor_info *t = qd_ckpt_tensor(ck, i);
        if (!in_block[i]) weights += t->float_like && t->dtype != QD_DT_F32 ? (double)t->numel * 4 : (double)t->nbytes;
        if (qd_job_needs(cfg, &jt[i]) != QD_NEEDS_NOTHING) results += result_bytes(&jt[i]);
    }
    free(in_block);
    results /= ranks;
    const double fwd = (double)mb * T * (4 * A + 2 * H + Im) * 4 + (double)T * T * 4;
    double acts, stats = 0, work = 0, dq = 0;
    int k0 = 0, k1 = c->layers;
    if (cfg->calib_mode == QD_CALIB_FP) qd_calib_pipeline_blocks(c->layers, rank, ranks, &k0, &k1);
    acts = cfg->calib_mode == QD_CALIB_FP ? 2.0 * mb * T * H * 4 + fwd : ((double)mine + 1) * mb * T * H * 4 + fwd;
    double max_in = 0, block_stats = 0, block_dq = 0, kept = 0, block_kept = 0; /* kept: AdaRound's rows */
    double lin = 0, block_lin = 0, res_full = 0, block_res = 0; /* Linears in hand, whole results in hand */
    int cur = -1, kept_group = -1;
    for (int li = 0; li < qd_model_num_linears(m); li++) {
        const qd_linear *L = qd_model_linear(m, li);
        char name[200];
        snprintf(name, sizeof name, "%s.weight", L->name);
        int ti = qd_ckpt_find(ck, name);
        if (ti < 0) continue;
        if (L->layer != cur) { /* a new block */
            if (cfg->calib_mode != QD_CALIB_FP) {
                stats = fmax(stats, block_stats);
                dq = fmax(dq, block_dq);
                kept = fmax(kept, block_kept);
                lin = fmax(lin, block_lin);
                res_full = fmax(res_full, block_res);
            }
            block_stats = block_dq = block_kept = block_lin = block_res = 0;
            cur = L->layer;
        }
        const qd_tensor_info *t = qd_ckpt_tensor(ck, ti);
        const double f32 = (double)t->numel * 4 + (t->dtype != QD_DT_F32 ? (double)t->nbytes : 0);
        if (cfg->calib_mode != QD_CALIB_FP)
            block_lin += f32;
        else if (L->layer >= k0 && L->layer < k1)
            lin += f32;
        if (qd_job_needs(cfg, &jt[ti]) == QD_NEEDS_NOTHING) continue;
        if (cfg->calib_mode != QD_CALIB_FP)
            block_res += result_bytes(&jt[ti]);
        else if (L->layer >= k0 && L->layer < k1)
            res_full += result_bytes(&jt[ti]);
        int first = qd_model_group_first(m, L->input_group) == li;
        double in = L->in;
        if (cfg->calib_mode == QD_CALIB_FP) {
            if (L->layer >= k0 && L->layer < k1 && first) stats += in * in * 8 + in * 8;
        } else if (first)
            block_stats += in * in * 8 + in * 8;
        block_dq += (double)L->in * L->out * 4;
        max_in = fmax(max_in, in);
        /* H, the prepared inverse and its factorization's scratch, and a unit's rows and errors */
        work = fmax(work, in * in * 4 * 3 + (double)QD_CALIB_UNIT_ROWS * in * 4 * 5);
        if (qd_job_needs(cfg, &jt[ti]) == QD_NEEDS_ROWS) {
            /* the group's rows X [rows][in], once per group: the block in hand (data mode) or this
             * rank's blocks (pipeline mode); a unit's working set: E X^T over all rows [U][rows], the drawn
             * batch [batch][in], the row indices, and about a dozen [U][in] arrays */
            const int kept_here = cfg->calib_mode == QD_CALIB_FP ? L->layer >= k0 && L->layer < k1 : 1;
            if (kept_group != L->input_group && kept_here) { /* a group's linears are consecutive */
                kept_group = L->input_group;
                if (cfg->calib_mode == QD_CALIB_FP)
                    kept += (double)rows * in * 4;
                else
                    block_kept += (double)rows * in * 4;
            }
            const double nb = fmin((double)cfg->ada_batch, (double)rows);
            work = fmax(work, (double)QD_CALIB_UNIT_ROWS * rows * 4 + nb * in * 4 + rows * 8.0 +
                                  12.0 * QD_CALIB_UNIT_ROWS * in * 4);
        }
    }
    if (cfg->calib_mode != QD_CALIB_FP) {
        stats = fmax(stats, block_stats);
        dq = fmax(dq, block_dq);
        kept = fmax(kept, block_kept);
        lin = fmax(lin, block_lin);
        res_full = fmax(res_full, block_res);
    }
    weights += lin;
    results += res_full;
    stats += fmin(QD_CALIB_PANEL, max_in) * max_in * 8 + (double)QD_CALIB_CHUNK * max_in * 8;
    /* the process itself: MPI, HDF5 and OpenBLAS buffers, code (measured here: about 35 MB) */
    const double runtime = 40e6;
    *bytes = runtime + weights + acts + stats + work + results + dq + kept;
    char extra[96] = "";
    if (kept > 0) snprintf(extra, sizeof extra, ", AdaRound calibration rows %.1f", kept * 1e-6);
    snprintf(breakdown, cap,
             "runtime %.0f, weights in hand %.1f, activations %.1f, statistics %.1f, GPTQ work %.1f, results %.1f, "
             "dequantized block %.1f%s MB",
             runtime * 1e-6, weights * 1e-6, acts * 1e-6, stats * 1e-6, work * 1e-6, results * 1e-6, dq * 1e-6, extra);
}

int qd_calib_job_estimate(const qd_job_config *cfg, qd_checkpoint *ck, const qd_job_tensor *jt, int ranks,
                          double *worst, char *breakdown, size_t cap)
{
    qd_model *m = NULL;
    int rc = qd_model_load_flags(cfg->model, QD_MODEL_STREAM_LINEARS, &m);
    if (rc) return rc;
    int N = cfg->nsamples, T = qd_model_cfg(m)->arch == QD_ARCH_VIT ? qd_model_tokens(m, 0) : cfg->seqlen;
    int64_t rows = (int64_t)N * T;
    qd_calib_data *d = NULL;
    if (cfg->calib &&
        qd_calib_data_open(m, cfg->calib, cfg->nsamples, cfg->seqlen, (uint64_t)cfg->calib_seed, &d) == QD_OK) {
        N = qd_calib_data_count(d);
        T = qd_calib_data_tokens(d);
        rows = qd_calib_data_real_tokens(d);
    }
    qd_calib_data_free(d);
    *worst = 0;
    for (int r = 0; r < ranks; r++) {
        double b = 0;
        char bd[512];
        qd_calib_estimate_rank(cfg, ck, jt, m, N, T, rows, ranks, r, &b, bd, sizeof bd);
        if (b > *worst) {
            *worst = b;
            snprintf(breakdown, cap, "%s", bd);
        }
    }
    qd_model_free(m);
    return QD_OK;
}
