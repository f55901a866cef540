/* The planner on synthetic tensor tables: a BERT-base-shaped checkpoint over 8 ranks balances
 * to max/mean <= 1.10 by tensor; layer sharding keeps each block on one rank in contiguous
 * ranges; every item is assigned; the assignment is deterministic. */
#include <string.h>

#include "qd_test.h"
#include "shard/plan.h"

int main(void) {
    /* 12 blocks x {q, k, v, o: 768x768; intermediate 3072x768; output 768x3072} + embeddings etc. */
    qd_plan_item it[12 * 6 + 5];
    int n = 0;
    for (int b = 0; b < 12; b++) {
        for (int k = 0; k < 4; k++) it[n++] = (qd_plan_item){qd_plan_cost_rtn(768, 768), 0, b};
        it[n++] = (qd_plan_item){qd_plan_cost_rtn(3072, 768), 0, b};
        it[n++] = (qd_plan_item){qd_plan_cost_rtn(768, 3072), 0, b};
    }
    it[n++] = (qd_plan_item){qd_plan_cost_copy(30522 * 768), 0, -1};
    it[n++] = (qd_plan_item){qd_plan_cost_copy(512 * 768), 0, -1};
    it[n++] = (qd_plan_item){qd_plan_cost_copy(768), 0, -1};
    it[n++] = (qd_plan_item){qd_plan_cost_copy(768 * 768), 0, -1};
    it[n++] = (qd_plan_item){qd_plan_cost_copy(768), 0, -1};
    int owner[12 * 6 + 5], owner2[12 * 6 + 5];
    for (int ranks = 1; ranks <= 8; ranks *= 2) {
        CHECK_EQ(qd_plan_assign(it, n, ranks, QD_SHARD_TENSOR, owner), 0);
        double bal = qd_plan_balance(it, n, ranks, owner, NULL);
        printf("tensor sharding, %d ranks: balance max/mean %.4f\n", ranks, bal);
        CHECK_DBL_LE(bal, 1.10);
        for (int i = 0; i < n; i++) CHECK(owner[i] >= 0 && owner[i] < ranks);
        CHECK_EQ(qd_plan_assign(it, n, ranks, QD_SHARD_TENSOR, owner2), 0);
        CHECK(memcmp(owner, owner2, sizeof owner) == 0);

        CHECK_EQ(qd_plan_assign(it, n, ranks, QD_SHARD_LAYER, owner), 0);
        int prev = 0;
        for (int b = 0; b < 12; b++) {
            int r = owner[b * 6];
            for (int k = 1; k < 6; k++) CHECK_EQ(owner[b * 6 + k], r);
            CHECK(r >= prev); /* contiguous ranges in block order */
            prev = r;
        }
        printf("layer sharding, %d ranks: balance max/mean %.4f\n", ranks, qd_plan_balance(it, n, ranks, owner, NULL));
    }
    CHECK_EQ(qd_plan_assign(it, n, 0, QD_SHARD_TENSOR, owner), -1);
    QD_TEST_MAIN_END();
}
