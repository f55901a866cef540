/* The planner (plan.h). */
#include "shard/plan.h"

#include <stdlib.h>
#include <string.h>

#include "common/qd_common.h"

const char *qd_shard_mode_name(qd_shard_mode m)
{
    return m == QD_SHARD_LAYER ? "layer" : m == QD_SHARD_ROWS ? "rows" : "tensor";
}

double qd_plan_cost_rtn(int64_t rows, int64_t cols) { return (double)rows * (double)cols; }
double qd_plan_cost_gptq(int64_t rows, int64_t cols)
{
    return (double)rows * (double)cols * (double)cols + (double)cols * (double)cols * (double)cols;
}
double qd_plan_cost_adaround(int64_t rows, int64_t cols, int iters, int batch)
{
    return (double)iters * (double)rows * (double)cols * (double)batch;
}
/* Copying a float tensor (read, check, write 4 bytes per value) takes about as long per value as
 * fused 8-bit RTN (measured on a BERT-base-shaped checkpoint: ~1.5 ns per value for both; both
 * are bound by memory traffic, not arithmetic). */
double qd_plan_cost_copy(int64_t numel) { return (double)numel; }

/* LPT over pieces idx[0..m): heaviest first (ties: lower index), each to the least-loaded rank
 * (ties: lower rank). */
static const qd_plan_piece *g_pc;
static int cmp_cost_desc(const void *a, const void *b)
{
    int i = *(const int *)a, j = *(const int *)b;
    if (g_pc[i].cost != g_pc[j].cost) return g_pc[i].cost > g_pc[j].cost ? -1 : 1;
    return i < j ? -1 : i > j;
}

static void lpt(qd_plan_piece *pc, const int *idx, int m, int ranks, double *load)
{
    int *order = qd_xmalloc((size_t)(m ? m : 1) * sizeof(int));
    memcpy(order, idx, (size_t)m * sizeof(int));
    g_pc = pc;
    qsort(order, (size_t)m, sizeof(int), cmp_cost_desc);
    for (int k = 0; k < m; k++) {
        int best = 0;
        for (int r = 1; r < ranks; r++)
            if (load[r] < load[best]) best = r;
        pc[order[k]].owner = best;
        load[best] += pc[order[k]].cost;
    }
    free(order);
}

/* how many pieces an item is cut into */
static int n_pieces(const qd_plan_item *it, qd_shard_mode mode, double target)
{
    int parts = it->parts > 1 ? it->parts : 1;
    if (mode != QD_SHARD_ROWS || parts == 1 || target <= 0 || it->cost <= target) return 1;
    double want = it->cost / target;
    return want >= parts ? parts : (int)want + (want > (int)want);
}

int qd_plan_make(const qd_plan_item *items, int n, int ranks, qd_shard_mode mode, qd_plan *out)
{
    memset(out, 0, sizeof *out);
    if (ranks < 1 || n < 0 || (n > 0 && !items)) return -1;
    double total = 0;
    for (int i = 0; i < n; i++) total += items[i].cost;
    /* the pieces: whole items, or (rows) items cut at their part boundaries */
    double target = total / (8.0 * ranks);
    int np = 0;
    for (int i = 0; i < n; i++) np += n_pieces(&items[i], mode, target);
    qd_plan_piece *pc = qd_xcalloc((size_t)(np ? np : 1), sizeof *pc);
    np = 0;
    for (int i = 0; i < n; i++) {
        int k = n_pieces(&items[i], mode, target), parts = items[i].parts > 1 ? items[i].parts : 1;
        for (int j = 0; j < k; j++) {
            qd_plan_piece *p = &pc[np++];
            p->item = i;
            p->part0 = (int)((int64_t)j * parts / k);
            p->part1 = (int)((int64_t)(j + 1) * parts / k);
            double frac = (double)(p->part1 - p->part0) / parts;
            p->cost = items[i].cost * frac;
            p->mem = items[i].mem * frac;
        }
    }
    double *load = qd_xcalloc((size_t)ranks, sizeof(double));
    int *idx = qd_xmalloc((size_t)(np ? np : 1) * sizeof(int)), m = 0;
    if (mode == QD_SHARD_LAYER) {
        int nblocks = 0;
        for (int i = 0; i < n; i++)
            if (items[i].block + 1 > nblocks) nblocks = items[i].block + 1;
        size_t nbz = nblocks > 0 ? (size_t)nblocks : 1;
        double *bc = qd_xcalloc(nbz, sizeof(double)), btot = 0;
        for (int i = 0; i < n; i++)
            if (items[i].block >= 0) bc[items[i].block] += items[i].cost;
        for (int b = 0; b < nblocks; b++) btot += bc[b];
        /* contiguous ranges: block b goes to the rank whose share of the cumulative cost holds
         * its midpoint */
        int *brank = qd_xmalloc(nbz * sizeof(int));
        double cum = 0;
        for (int b = 0; b < nblocks; b++) {
            double mid = cum + bc[b] / 2;
            int r = btot > 0 ? (int)(mid / btot * ranks) : 0;
            brank[b] = r >= ranks ? ranks - 1 : r;
            cum += bc[b];
        }
        for (int q = 0; q < np; q++) {
            int b = items[pc[q].item].block;
            if (b >= 0) {
                pc[q].owner = brank[b];
                load[brank[b]] += pc[q].cost;
            } else
                idx[m++] = q;
        }
        free(bc);
        free(brank);
    } else
        for (int q = 0; q < np; q++) idx[m++] = q;
    lpt(pc, idx, m, ranks, load);
    free(idx);
    out->ranks = ranks;
    out->npieces = np;
    out->pieces = pc;
    out->load = load;
    out->peak_mem = qd_xcalloc((size_t)ranks, sizeof(double));
    double mx = 0;
    for (int q = 0; q < np; q++)
        if (pc[q].mem > out->peak_mem[pc[q].owner]) out->peak_mem[pc[q].owner] = pc[q].mem;
    for (int r = 0; r < ranks; r++)
        if (load[r] > mx) mx = load[r];
    out->balance = total > 0 ? mx / (total / ranks) : 1.0;
    return 0;
}

void qd_plan_free(qd_plan *p)
{
    free(p->pieces);
    free(p->load);
    free(p->peak_mem);
    memset(p, 0, sizeof *p);
}

int qd_plan_assign(const qd_plan_item *items, int n, int ranks, qd_shard_mode mode, int *owner)
{
    qd_plan p;
    if (qd_plan_make(items, n, ranks, mode == QD_SHARD_ROWS ? QD_SHARD_TENSOR : mode, &p)) return -1;
    for (int q = 0; q < p.npieces; q++) owner[p.pieces[q].item] = p.pieces[q].owner;
    qd_plan_free(&p);
    return 0;
}

double qd_plan_balance(const qd_plan_item *items, int n, int ranks, const int *owner, double *load_out)
{
    double *load = load_out ? load_out : qd_xcalloc((size_t)ranks, sizeof(double));
    if (load_out) memset(load, 0, (size_t)ranks * sizeof(double));
    double tot = 0, mx = 0;
    for (int i = 0; i < n; i++) load[owner[i]] += items[i].cost;
    for (int r = 0; r < ranks; r++) {
        tot += load[r];
        if (load[r] > mx) mx = load[r];
    }
    if (!load_out) free(load);
    return tot > 0 ? mx / (tot / ranks) : 1.0;
}
