/* shard/plan.h — who does what: assigns work items (tensors) to ranks from a cost model.
 *   by tensor: longest processing time first (LPT) — items by descending cost, each to the
 *              least-loaded rank (ties: lowest item index, lowest rank), deterministic;
 *   by layer:  the encoder blocks split into contiguous ranges of about equal cost, one range per
 *              rank; tensors outside blocks by LPT on top.
 * The planner works on a table of costs, so it can be tested without files. */
#ifndef QD_PLAN_H
#define QD_PLAN_H

#include <stdint.h>

typedef enum { QD_SHARD_TENSOR = 0, QD_SHARD_LAYER = 1 } qd_shard_mode;

typedef struct {
    double cost;      /* estimated work (arbitrary units, e.g. multiply-adds) */
    double mem;       /* bytes a rank holds while working on it */
    int block;        /* encoder block or -1 */
} qd_plan_item;

/* owner[i] = rank of item i. Returns 0, or -1 for bad arguments. */
int qd_plan_assign(const qd_plan_item *items, int n, int ranks, qd_shard_mode mode, int *owner);

/* Cost of one tensor for a method: rtn ~ rows*cols; gptq ~ rows*cols^2 + cols^3;
 * adaround ~ iters*rows*cols*batch; float tensors (copied) ~ numel / 8. */
double qd_plan_cost_rtn(int64_t rows, int64_t cols);
double qd_plan_cost_gptq(int64_t rows, int64_t cols);
double qd_plan_cost_adaround(int64_t rows, int64_t cols, int iters, int batch);
double qd_plan_cost_copy(int64_t numel);

/* max/mean of the per-rank loads (1.0 = perfect balance). */
double qd_plan_balance(const qd_plan_item *items, int n, int ranks, const int *owner, double *load_out);

#endif
