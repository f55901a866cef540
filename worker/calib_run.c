/* worker/calib_run.c — calibration statistics over MPI ranks (see calib_run.h). */
#include <stdlib.h>
#include <string.h>

#include "collective/collective.h"
#include "worker/calib_run.h"

void qd_calib_pipeline_blocks(int layers, int rank, int size, int *k0, int *k1)
{
    *k0 = (int)((int64_t)rank * layers / size);
    *k1 = (int)((int64_t)(rank + 1) * layers / size);
}

void qd_calib_rank_groups(const qd_model *m, const uint8_t *sel_in, qd_calib_mode mode, int rank, int size,
                          uint8_t *sel_out)
{
    int ng = qd_model_num_groups(m), k0 = 0, k1 = qd_model_cfg(m)->layers;
    if (mode == QD_CALIB_PIPELINE) qd_calib_pipeline_blocks(qd_model_cfg(m)->layers, rank, size, &k0, &k1);
    for (int g = 0; g < ng; g++) {
        int layer = qd_model_linear(m, qd_model_group_first(m, g))->layer;
        sel_out[g] = (!sel_in || sel_in[g]) && layer >= k0 && layer < k1;
    }
}

static void progress(const qd_calib_opts *o, int rank, const char *what, int done, int total, double t0)
{
    if (o->quiet || rank != 0) return;
    qd_log(QD_LOG_INFO, "calibration %s: %d/%d micro-batches, %.1f s", what, done, total, qd_now() - t0);
}

/* The statistics' hook, then the caller's tap (accumulation pass only). */
typedef struct {
    qd_model_hooks stats;
    const qd_model_hooks *tap;
} chain;

static int chain_input(void *user, const qd_model *m, int li, const float *X, int64_t rows, const uint8_t *valid)
{
    chain *c = user;
    int rc = c->stats.linear_input(c->stats.user, m, li, X, rows, valid);
    return rc ? rc : c->tap->linear_input(c->tap->user, m, li, X, rows, valid);
}

static qd_model_hooks pass_hooks(qd_calib *stats, const qd_calib_opts *o, chain *c)
{
    c->stats = qd_calib_hooks(stats);
    c->tap = o->tap;
    if (!o->tap || !o->tap->linear_input || qd_calib_get_phase(stats) != QD_CALIB_ACCUMULATE) return c->stats;
    return (qd_model_hooks){.user = c, .linear_input = chain_input};
}

/* ---- data parallel ------------------------------------------------------------------------ */

static int dp_pass(MPI_Comm comm, const qd_model *m, qd_calib_data *data, const qd_calib_opts *o, qd_calib *stats,
                   const char *what)
{
    const int rank = qd_coll_rank(comm), size = qd_coll_size(comm);
    const int N = qd_calib_data_count(data), mb = o->microbatch, T = qd_calib_data_tokens(data);
    const int nmb = (N + mb - 1) / mb;
    /* micro-batch i on rank i % size: text samples are sorted by length, so contiguous ranges would
     * load rank 0 with all the long ones */
    int done = 0;
    const qd_model_config *c = qd_model_cfg(m);
    chain ch;
    qd_model_hooks hk = pass_hooks(stats, o, &ch);
    float *h = malloc((size_t)mb * (size_t)T * (size_t)c->hidden * sizeof(float));
    int rc = h ? QD_OK : qd_err_set(QD_ENOMEM, "calibration: out of memory for a micro-batch");
    double t0 = qd_now();
    for (int i = rank; i < nmb && !rc; i += size) {
        qd_batch b;
        int first = i * mb, n = QD_MIN(mb, N - first);
        if ((rc = qd_calib_data_batch(data, first, n, &b))) break;
        if ((rc = qd_model_embed(m, &b, h))) break;
        for (int k = 0; k < c->layers && !rc; k++) rc = qd_model_block(m, k, &b, h, &hk);
        done++;
        if (!rc && rank == 0 && (done % 16 == 0 || i + size >= nmb))
            progress(o, rank, what, QD_MIN(done * size, nmb), nmb, t0);
    }
    free(h);
    return qd_coll_agree_status(comm, rc);
}

void qd_calib_allreduce(MPI_Comm comm, qd_calib *stats)
{
    const int accumulate = qd_calib_get_phase(stats) == QD_CALIB_ACCUMULATE;
    for (int i = 0; i < qd_calib_num_groups(stats); i++) {
        qd_calib_group *g = qd_calib_group_at(stats, i);
        if (!accumulate) {
            qd_coll_max_floats(comm, g->absmax, g->in);
            continue;
        }
        qd_coll_sum_i64(comm, g->acc, qd_calib_acc_len(g->in));
        qd_coll_sum_i64(comm, &g->rows, 1);
    }
}

static int dp_run(MPI_Comm comm, const qd_model *m, qd_calib_data *data, const qd_calib_opts *o, qd_calib *stats)
{
    int rc = dp_pass(comm, m, data, o, stats, "pass 1/2 (absmax)");
    if (rc) return rc;
    qd_calib_allreduce(comm, stats);
    qd_calib_begin_accumulate(stats);
    if ((rc = dp_pass(comm, m, data, o, stats, "pass 2/2 (statistics)"))) return rc;
    qd_calib_allreduce(comm, stats);
    return QD_OK;
}

/* ---- pipeline ----------------------------------------------------------------------------- */

static int pp_pass(MPI_Comm comm, const qd_model *m, qd_calib_data *data, const qd_calib_opts *o, qd_calib *stats,
                   const char *what)
{
    const int rank = qd_coll_rank(comm), size = qd_coll_size(comm);
    const int N = qd_calib_data_count(data), mb = o->microbatch, T = qd_calib_data_tokens(data);
    const int nmb = (N + mb - 1) / mb;
    const qd_model_config *c = qd_model_cfg(m);
    int k0, k1;
    qd_calib_pipeline_blocks(c->layers, rank, size, &k0, &k1);
    qd_coll_pipe *pipe = qd_coll_pipe_open(comm, (int64_t)mb * T * c->hidden, nmb);
    chain ch;
    qd_model_hooks hk = pass_hooks(stats, o, &ch);
    int rc = QD_OK;
    double t0 = qd_now();
    for (int i = 0; i < nmb; i++) {
        const int first = i * mb, n = QD_MIN(mb, N - first);
        qd_batch b = {.B = n, .T = T};
        /* blocks need only the shape (and BERT's mask): later stages skip decoding images */
        int brc = rank > 0 && c->arch == QD_ARCH_VIT ? QD_OK : qd_calib_data_batch(data, first, n, &b);
        if (brc) b.T = T;
        if (brc && !rc) rc = brc;
        int poisoned = 0;
        float *h = qd_coll_pipe_take(pipe, i, &poisoned);
        if (rank == 0 && !rc) rc = qd_model_embed(m, &b, h);
        /* after an error here or upstream, keep the stream moving (marked) so no rank waits forever */
        for (int k = k0; k < k1 && !rc && !poisoned; k++) rc = qd_model_block(m, k, &b, h, &hk);
        qd_coll_pipe_pass(pipe, i, (int64_t)n * b.T * c->hidden, rc || poisoned);
        if (rank == 0 && ((i + 1) % 16 == 0 || i + 1 == nmb)) progress(o, rank, what, i + 1, nmb, t0);
    }
    qd_coll_pipe_close(pipe);
    return qd_coll_agree_status(comm, rc);
}

int qd_calib_run(MPI_Comm comm, const qd_model *m, qd_calib_data *data, const qd_calib_opts *opts, qd_calib *stats)
{
    qd_calib_opts o = *opts;
    if (o.microbatch <= 0) o.microbatch = 8;
    if (qd_calib_data_count(data) <= 0)
        return qd_coll_agree_status(comm, qd_err_set(QD_EINVAL, "calibration: no samples"));
    if (o.mode == QD_CALIB_DATA_PARALLEL) return dp_run(comm, m, data, &o, stats);
    int rc = pp_pass(comm, m, data, &o, stats, "pass 1/2 (absmax)");
    if (rc) return rc;
    qd_calib_begin_accumulate(stats);
    return pp_pass(comm, m, data, &o, stats, "pass 2/2 (statistics)");
}
