/* shard/plan.h — who does what: assigns work items (tensors, or row ranges of them) to ranks
 * from a cost model. Three policies (`--shard`):
 *   tensor: longest processing time first (LPT) — items by descending cost, each to the
 *           least-loaded rank (ties: lowest item index, lowest rank);
 *   layer:  the encoder blocks split into contiguous ranges of about equal cost, one range per
 *           rank; items outside blocks by LPT on top;
 *   rows:   items that may be split (item.parts > 1: row ranges are independent, e.g. per-channel
 *           or per-group RTN, float copies) are cut into pieces of about total/(8*ranks) cost,
 *           on boundaries of their `parts` blocks; then LPT over all pieces.
 * Everything is deterministic: the same table and rank count give the same plan on every rank.
 * The planner works on a table of costs, so it is tested without files (tests/job/test_plan.c). */
#ifndef QD_PLAN_H
#define QD_PLAN_H

#include <stdint.h>

typedef enum { QD_SHARD_TENSOR = 0, QD_SHARD_LAYER = 1, QD_SHARD_ROWS = 2 } qd_shard_mode;

const char *qd_shard_mode_name(qd_shard_mode m); /* "tensor", "layer", "rows" */

typedef struct {
    double cost; /* estimated work (multiply-add equivalents) */
    double mem;  /* bytes a rank holds while working on the whole item */
    int block;   /* encoder block or -1 */
    int parts;   /* row blocks it may be split at (0 or 1: never split) */
} qd_plan_item;

typedef struct {
    int item;         /* index into the item table */
    int part0, part1; /* its row blocks [part0, part1) of max(item.parts, 1) */
    int owner;        /* rank */
    double cost, mem;
} qd_plan_piece;

typedef struct {
    int ranks;
    int npieces;
    qd_plan_piece *pieces; /* sorted by (item, part0) */
    double *load;          /* [ranks] summed cost */
    double *peak_mem;      /* [ranks] largest piece held at once */
    double balance;        /* max/mean load, 1.0 = perfect */
} qd_plan;

/* Makes the plan (allocates; free with qd_plan_free). 0, or -1 for bad arguments. */
int qd_plan_make(const qd_plan_item *items, int n, int ranks, qd_shard_mode mode, qd_plan *out);
void qd_plan_free(qd_plan *p);

/* Whole items only (tensor and layer policies; rows is treated as tensor): owner[i] = rank of
 * item i. 0, or -1 for bad arguments. */
int qd_plan_assign(const qd_plan_item *items, int n, int ranks, qd_shard_mode mode, int *owner);

/* Work of one [rows, cols] weight by the shape of a method's algorithm (each method's entry in
 * worker/method.h picks its formula and arguments): rounding ~ rows*cols; GPTQ ~ rows*cols^2 +
 * cols^3; AdaRound ~ iters*rows*cols*batch (batch: the calibration rows one step's products run
 * over); float tensors (copied) ~ numel. */
double qd_plan_cost_rtn(int64_t rows, int64_t cols);
double qd_plan_cost_gptq(int64_t rows, int64_t cols);
double qd_plan_cost_adaround(int64_t rows, int64_t cols, int iters, int batch);
double qd_plan_cost_copy(int64_t numel);

/* max/mean of the per-rank loads of a whole-item assignment (1.0 = perfect balance). */
double qd_plan_balance(const qd_plan_item *items, int n, int ranks, const int *owner, double *load_out);

#endif
