#include "shard/plan.h"

#include <stdlib.h>
#include <string.h>

double qd_plan_cost_rtn(int64_t rows, int64_t cols) { return (double)rows * (double)cols; }
double qd_plan_cost_gptq(int64_t rows, int64_t cols) {
    return (double)rows * (double)cols * (double)cols + (double)cols * (double)cols * (double)cols;
}
double qd_plan_cost_adaround(int64_t rows, int64_t cols, int iters, int batch) {
    return (double)iters * (double)rows * (double)cols * (double)batch;
}
double qd_plan_cost_copy(int64_t numel) { return (double)numel / 8.0; }

static const qd_plan_item *g_items;
static int cmp_cost_desc(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    if (g_items[i].cost != g_items[j].cost) return g_items[i].cost > g_items[j].cost ? -1 : 1;
    return i - j;
}

static void lpt(const qd_plan_item *items, const int *idx, int n, int ranks, double *load, int *owner) {
    int *order = malloc((size_t)(n ? n : 1) * sizeof(int));
    memcpy(order, idx, (size_t)n * sizeof(int));
    g_items = items;
    qsort(order, (size_t)n, sizeof(int), cmp_cost_desc);
    for (int k = 0; k < n; k++) {
        int best = 0;
        for (int r = 1; r < ranks; r++)
            if (load[r] < load[best]) best = r;
        owner[order[k]] = best;
        load[best] += items[order[k]].cost;
    }
    free(order);
}

int qd_plan_assign(const qd_plan_item *items, int n, int ranks, qd_shard_mode mode, int *owner) {
    if (ranks < 1 || n < 0) return -1;
    double *load = calloc((size_t)ranks, sizeof(double));
    int *idx = malloc((size_t)(n ? n : 1) * sizeof(int)), m = 0;
    if (mode == QD_SHARD_LAYER) {
        int nblocks = 0;
        for (int i = 0; i < n; i++)
            if (items[i].block + 1 > nblocks) nblocks = items[i].block + 1;
        size_t nbz = nblocks > 0 ? (size_t)nblocks : 1;
        double *bc = calloc(nbz, sizeof(double)), total = 0;
        for (int i = 0; i < n; i++)
            if (items[i].block >= 0) bc[items[i].block] += items[i].cost;
        for (int b = 0; b < nblocks; b++) total += bc[b];
        /* contiguous ranges: block b goes to the rank whose share of the cumulative cost holds
         * its midpoint */
        int *brank = malloc(nbz * sizeof(int));
        double cum = 0;
        for (int b = 0; b < nblocks; b++) {
            double mid = cum + bc[b] / 2;
            int r = total > 0 ? (int)(mid / total * ranks) : 0;
            brank[b] = r >= ranks ? ranks - 1 : r;
            cum += bc[b];
        }
        for (int i = 0; i < n; i++) {
            if (items[i].block >= 0) {
                owner[i] = brank[items[i].block];
                load[owner[i]] += items[i].cost;
            } else
                idx[m++] = i;
        }
        free(bc);
        free(brank);
    } else
        for (int i = 0; i < n; i++) idx[m++] = i;
    lpt(items, idx, m, ranks, load, owner);
    free(idx);
    free(load);
    return 0;
}

double qd_plan_balance(const qd_plan_item *items, int n, int ranks, const int *owner, double *load_out) {
    double *load = load_out ? load_out : calloc((size_t)ranks, sizeof(double));
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
