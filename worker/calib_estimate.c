/* worker/calib_estimate.c — the memory of the calibrated phase per rank (see calib_job.h):
 * what `qdist plan` prints before a job and what a job prints beside its measured peak. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "model/calib.h"
#include "model/calib_data.h"
#include "worker/calib_job.h"
#include "worker/calib_run.h"

/* Blocks whose results the estimate adds up separately (a model with more puts the rest in none). */
#define QD_CALIB_EST_MAX_LAYERS 512

/* Bytes of one tensor's calibrated result: the codes, and a scale and zero per row group. */
static double result_bytes(const qd_job_tensor *j)
{
    const double ng =
        j->scheme.gran == QD_GRAN_GROUP ? (double)((j->cols + j->scheme.group_size - 1) / j->scheme.group_size) : 1.0;
    return (double)j->rows * j->cols + (double)j->rows * 8.0 * ng;
}

/* Bytes of a block Linear's weight in hand: F32, plus the file pages its units read. */
static double linear_bytes(const qd_tensor_info *t)
{
    return (double)t->numel * 4 + (t->dtype != QD_DT_F32 ? (double)t->nbytes : 0);
}

/* Packed integer sums and absmax of a group with `in` inputs (model/calib.h). */
static double sums_bytes(double in) { return 8.0 * (double)qd_calib_acc_len((int64_t)in) + 8.0 * in; }

/* The statistics' shared buffers: one chunk of grid values and one panel of products. */
static double sums_scratch(double max_in)
{
    return (double)QD_CALIB_CHUNK * max_in * 8 + fmin(QD_CALIB_PANEL, max_in) * max_in * 8;
}

/* A method's working set for one tensor of `in` inputs and `out` rows: GPTQ's H and the prepared
 * inverse factor, factorized in place (2 in^2 floats), and a unit's rows and errors; AdaRound's
 * mini-batch form: E X^T over all rows, the drawn batch, the row indices and about a dozen
 * [U][in] arrays. */
static double method_work(const qd_job_config *cfg, const qd_job_tensor *j, double in, int64_t rows)
{
    if (qd_job_needs(cfg, j) == QD_NEEDS_ROWS) {
        const double nb = fmin((double)cfg->ada_batch, (double)rows);
        return (double)QD_CALIB_UNIT_ROWS * rows * 4 + nb * in * 4 + rows * 8.0 + 12.0 * QD_CALIB_UNIT_ROWS * in * 4;
    }
    return in * in * 4 * 2 + (double)QD_CALIB_UNIT_ROWS * in * 4 * 5;
}

/* Data mode: the most block k adds to what a rank always holds, over its three moments:
 * calibrating (the block's Linears, every group's local sums, the kept rows), quantizing (the
 * Linears released by then; this rank's groups: their reduced sums, then one H at a time beside
 * the previous group's prepared state, then the factorization; the block's whole results) and
 * gathering (the results and the dequantized block; the Linears again where one stays float). */
static double data_block(const qd_job_config *cfg, qd_checkpoint *ck, const qd_job_tensor *jt, const qd_model *m,
                         const int *lin_tensor, int64_t rows, int ranks, int rank, int k, double part[5])
{
    qd_calib_plan p;
    qd_calib_plan_block(cfg, m, jt, lin_tensor, ranks, k, &p);
    double lin = 0, res = 0, dq = 0, sums = 0, kept = 0, max_in = 0;
    int reload = 0; /* a float Linear in the block: its weights come back for the forward */
    for (int li = 0; li < qd_model_num_linears(m); li++) {
        const qd_linear *L = qd_model_linear(m, li);
        char name[200];
        snprintf(name, sizeof name, "%s.weight", L->name);
        const int ti = qd_ckpt_find(ck, name);
        if (L->layer == k && ti >= 0) lin += linear_bytes(qd_ckpt_tensor(ck, ti));
        if (L->layer == k && lin_tensor[li] < 0) reload = 1;
    }
    for (int b = 0; b < p.nbt; b++) {
        const qd_linear *L = qd_model_linear(m, p.bt[b]);
        res += result_bytes(&jt[lin_tensor[p.bt[b]]]);
        dq += (double)L->in * L->out * 4;
    }
    double quant = 0, held = 0, prev_prep = 0;
    int recv[QD_CALIB_PLAN_MAX];
    for (int i = 0; i < p.ng; i++) {
        const double in = qd_model_linear(m, qd_model_group_first(m, p.grp[i]))->in;
        sums += sums_bytes(in);
        max_in = fmax(max_in, in);
        int rows_group = 0;
        for (int b = 0; b < p.nbt; b++)
            rows_group |= p.tg[b] == i && qd_job_needs(cfg, &jt[lin_tensor[p.bt[b]]]) == QD_NEEDS_ROWS;
        if (rows_group) kept += (double)rows * in * 4;
        /* a solo range's other ranks hold neither its sums nor its H: only the factor received */
        recv[i] = rank != p.lo[i] && qd_calib_plan_solo(cfg, jt, lin_tensor, &p, i);
        if (qd_calib_plan_has(&p, i, rank) && !recv[i]) held += sums_bytes(in);
    }
    for (int i = 0; i < p.ng; i++) { /* this rank's groups in order */
        if (!qd_calib_plan_has(&p, i, rank)) continue;
        const double in = qd_model_linear(m, qd_model_group_first(m, p.grp[i]))->in;
        if (recv[i]) {
            quant = fmax(quant, held + prev_prep + in * in * 4 + (double)QD_CALIB_UNIT_ROWS * in * 4 * 5);
            prev_prep = in * in * 4;
            continue;
        }
        double work = 0;
        for (int b = 0; b < p.nbt; b++)
            if (p.tg[b] == i) work = fmax(work, method_work(cfg, &jt[lin_tensor[p.bt[b]]], in, rows));
        quant = fmax(quant, fmax(held + in * in * 4 + prev_prep, held - sums_bytes(in) + work));
        held -= sums_bytes(in);
        prev_prep = in * in * 4;
    }
    part[0] = lin + sums + sums_scratch(max_in);
    part[1] = quant;
    part[2] = res;
    part[3] = dq;
    part[4] = kept;
    /* the block's F32 weights go once its statistics are complete */
    return kept + fmax(part[0], fmax(res + quant, res + dq + (reload ? lin : 0)));
}

void qd_calib_estimate_rank(const qd_job_config *cfg, qd_checkpoint *ck, const qd_job_tensor *jt, const qd_model *m,
                            int N, int T, int64_t rows, int ranks, int rank, double *bytes, char *breakdown, size_t cap)
{
    const qd_model_config *c = qd_model_cfg(m);
    const double H = c->hidden, A = (double)c->heads * c->head_size, Im = c->intermediate;
    const int mb = cfg->microbatch, nmb = (N + mb - 1) / mb, mine = (nmb + ranks - 1) / ranks;
    const int nl = qd_model_num_linears(m);
    /* Resident weights: everything outside the blocks' Linears and the word table for the whole
     * phase (converted to F32, or the mapped pages of F32 files); the Linears of the blocks in hand only (one
     * block in data mode, this rank's blocks in pipeline mode), as F32 plus the file pages the
     * quantized units read. Results: a block's whole while it is in hand, then they go to the
     * file and are freed (pipeline mode: the rank's own blocks' until all are done, and the block
     * being gathered). */
    double weights = 0, results = 0, block_res[QD_CALIB_EST_MAX_LAYERS] = {0};
    uint8_t *in_block = qd_xcalloc((size_t)qd_ckpt_num_tensors(ck) + 1, 1);
    int *lin_tensor = qd_xmalloc((size_t)(nl ? nl : 1) * sizeof *lin_tensor);
    for (int li = 0; li < nl; li++) {
        char name[200];
        snprintf(name, sizeof name, "%s.weight", qd_model_linear(m, li)->name);
        int ti = qd_ckpt_find(ck, name);
        if (ti >= 0) in_block[ti] = 1;
        lin_tensor[li] = ti >= 0 && qd_job_needs(cfg, &jt[ti]) != QD_NEEDS_NOTHING ? ti : -1;
    }
    qd_model_tensors tw; /* the word table is read row by row as samples are embedded */
    qd_model_get_tensors(m, &tw);
    const int word = tw.word_emb_name[0] ? qd_ckpt_find(ck, tw.word_emb_name) : -1;
    if (word >= 0) in_block[word] = 1;
    for (int i = 0; i < qd_ckpt_num_tensors(ck); i++) {
        const qd_tensor_info *t = qd_ckpt_tensor(ck, i);
        if (!in_block[i]) weights += t->float_like && t->dtype != QD_DT_F32 ? (double)t->numel * 4 : (double)t->nbytes;
    }
    for (int li = 0; li < nl; li++) {
        const int k = qd_model_linear(m, li)->layer;
        if (lin_tensor[li] >= 0 && k >= 0 && k < QD_CALIB_EST_MAX_LAYERS)
            block_res[k] += result_bytes(&jt[lin_tensor[li]]);
    }
    for (int k = 0; k < QD_CALIB_EST_MAX_LAYERS; k++) results = fmax(results, block_res[k]);
    free(in_block);
    const double fwd = (double)mb * T * (4 * A + 2 * H + Im) * 4 + (double)T * T * 4;
    /* the process itself: MPI, HDF5 and OpenBLAS buffers, code (measured here: about 35 MB) */
    const double runtime = 40e6;
    if (cfg->calib_mode != QD_CALIB_FP) {
        const double acts = ((double)mine + 1) * mb * T * H * 4 + fwd;
        double block = 0, part[5], worst[5] = {0};
        for (int k = 0; k < c->layers; k++) {
            const double b = data_block(cfg, ck, jt, m, lin_tensor, rows, ranks, rank, k, part);
            if (b > block) {
                block = b;
                for (int i = 0; i < 5; i++) worst[i] = part[i];
            }
        }
        free(lin_tensor);
        *bytes = runtime + weights + acts + block; /* results: in the block's figure */
        char rows_kept[96] = "";
        if (worst[4] > 0) snprintf(rows_kept, sizeof rows_kept, "; AdaRound calibration rows %.1f", worst[4] * 1e-6);
        snprintf(breakdown, cap,
                 "runtime %.0f, weights %.1f, activations %.1f, block in hand %.1f (largest of "
                 "the Linears and local sums %.1f; results %.1f + its groups' sums, H and method work %.1f; results + "
                 "dequantized "
                 "block %.1f%s) MB",
                 runtime * 1e-6, weights * 1e-6, acts * 1e-6, block * 1e-6, worst[0] * 1e-6, worst[2] * 1e-6,
                 worst[1] * 1e-6, worst[3] * 1e-6, rows_kept);
        return;
    }
    /* pipeline mode: this rank's blocks' statistics at once, then their tensors all at once */
    int k0 = 0, k1 = c->layers;
    qd_calib_pipeline_blocks(c->layers, rank, ranks, &k0, &k1);
    const double acts = 2.0 * mb * T * H * 4 + fwd;
    double stats = 0, work = 0, kept = 0, lin = 0, res_full = 0, max_in = 0;
    for (int li = 0; li < nl; li++) {
        const qd_linear *L = qd_model_linear(m, li);
        char name[200];
        snprintf(name, sizeof name, "%s.weight", L->name);
        const int ti = qd_ckpt_find(ck, name);
        if (ti < 0 || L->layer < k0 || L->layer >= k1) continue;
        lin += linear_bytes(qd_ckpt_tensor(ck, ti));
        if (lin_tensor[li] < 0) continue;
        res_full += result_bytes(&jt[ti]);
        const int first = qd_model_group_first(m, L->input_group) == li;
        const double in = L->in;
        if (first) stats += sums_bytes(in);
        if (first && qd_job_needs(cfg, &jt[ti]) == QD_NEEDS_ROWS) kept += (double)rows * in * 4;
        max_in = fmax(max_in, in);
        work = fmax(work, method_work(cfg, &jt[ti], in, rows));
    }
    free(lin_tensor);
    stats += sums_scratch(max_in);
    *bytes = runtime + weights + lin + acts + stats + work + results + res_full + kept;
    char extra[96] = "";
    if (kept > 0) snprintf(extra, sizeof extra, ", AdaRound calibration rows %.1f", kept * 1e-6);
    snprintf(breakdown, cap,
             "runtime %.0f, weights in hand %.1f, activations %.1f, statistics %.1f, GPTQ work %.1f, results %.1f%s MB",
             runtime * 1e-6, (weights + lin) * 1e-6, acts * 1e-6, stats * 1e-6, work * 1e-6,
             (results + res_full) * 1e-6, extra);
}

int qd_calib_job_estimate(const qd_job_config *cfg, qd_checkpoint *ck, const qd_job_tensor *jt, int ranks,
                          double *worst, char *breakdown, size_t cap)
{
    qd_model *m = NULL;
    int rc = qd_model_load_flags(cfg->model, QD_MODEL_STREAM_LINEARS | QD_MODEL_STREAM_EMBEDDINGS, &m);
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
