/* The planner on synthetic tensor tables (no files): the encoder weights of a BERT-base-shaped
 * checkpoint over 8 ranks balance to max/mean <= 1.10 by tensor, the whole checkpoint (with its
 * 23M-value embedding table) to <= 1.05 by rows; layer sharding keeps each block on one rank in
 * contiguous ranges; row sharding cuts large items at their block boundaries into pieces that
 * cover every item exactly once and balances a table that whole tensors cannot (one huge
 * tensor); every plan is deterministic; the cost model orders the methods as it should, and
 * AdaRound's cost follows the job's steps and batch. */
#include <string.h>

#include "qd_test.h"
#include "shard/plan.h"
#include "worker/method.h"

/* the job's settings the methods' costs depend on, and a method's cost with them (the method table
 * of worker/method.h) */
typedef struct {
    int ada_iters, ada_batch;
} qd_plan_cost_opts;
#define QD_PLAN_ADA_ITERS_DEFAULT 10000

static double qd_plan_cost(qd_method m, int64_t rows, int64_t cols, const qd_plan_cost_opts *c)
{
    qd_method_opts o;
    qd_method_default_opts(&o);
    if (c) {
        o.ada.iters = c->ada_iters;
        o.ada_batch = c->ada_batch;
    }
    return qd_method_cost(m, rows, cols, &o);
}

#define NB (12 * 6 + 5)

static int bert(qd_plan_item *it, qd_method m, int with_embeddings)
{
    /* 12 blocks x {q, k, v, o: 768x768; intermediate 3072x768; output 768x3072} + embeddings etc. */
    int n = 0;
    for (int b = 0; b < 12; b++) {
        for (int k = 0; k < 4; k++) it[n++] = (qd_plan_item){qd_plan_cost(m, 768, 768, NULL), 768.0 * 768 * 5, b, 16};
        it[n++] = (qd_plan_item){qd_plan_cost(m, 3072, 768, NULL), 3072.0 * 768 * 5, b, 16};
        it[n++] = (qd_plan_item){qd_plan_cost(m, 768, 3072, NULL), 3072.0 * 768 * 5, b, 16};
    }
    if (!with_embeddings) return n;
    it[n++] = (qd_plan_item){qd_plan_cost_copy(30522 * 768), 30522.0 * 768 * 4, -1, 16};
    it[n++] = (qd_plan_item){qd_plan_cost_copy(512 * 768), 512.0 * 768 * 4, -1, 16};
    it[n++] = (qd_plan_item){qd_plan_cost_copy(768), 768 * 4, -1, 1};
    it[n++] = (qd_plan_item){qd_plan_cost_copy(768 * 768), 768.0 * 768 * 4, -1, 16};
    it[n++] = (qd_plan_item){qd_plan_cost_copy(768), 768 * 4, -1, 1};
    return n;
}

/* every item covered exactly once by its pieces, in order, with costs adding up */
static void check_cover(const qd_plan_item *it, int n, const qd_plan *p)
{
    int q = 0;
    for (int i = 0; i < n; i++) {
        int parts = it[i].parts > 1 ? it[i].parts : 1, next = 0;
        double c = 0;
        while (q < p->npieces && p->pieces[q].item == i) {
            CHECK_EQ(p->pieces[q].part0, next);
            CHECK_GT(p->pieces[q].part1, p->pieces[q].part0);
            CHECK(p->pieces[q].owner >= 0 && p->pieces[q].owner < p->ranks);
            next = p->pieces[q].part1;
            c += p->pieces[q].cost;
            q++;
        }
        CHECK_EQ(next, parts);
        CHECK_NEAR(c, it[i].cost, 1e-9 * it[i].cost);
    }
    CHECK_EQ(q, p->npieces);
}

static int same_plan(const qd_plan *a, const qd_plan *b)
{
    if (a->npieces != b->npieces) return 0;
    for (int q = 0; q < a->npieces; q++)
        if (a->pieces[q].item != b->pieces[q].item || a->pieces[q].part0 != b->pieces[q].part0 ||
            a->pieces[q].owner != b->pieces[q].owner)
            return 0;
    return 1;
}

int main(void)
{
    qd_plan_item it[NB];
    int owner[NB], owner2[NB];
    /* the 72 Linear weights of the encoder blocks alone, by tensor */
    int n = bert(it, QD_METHOD_RTN, 0);
    CHECK_EQ(n, 72);
    for (int ranks = 1; ranks <= 8; ranks++) {
        CHECK_EQ(qd_plan_assign(it, n, ranks, QD_SHARD_TENSOR, owner), 0);
        double bal = qd_plan_balance(it, n, ranks, owner, NULL);
        if (ranks == 8 || ranks == 4 || ranks == 2)
            printf("encoder weights by tensor, %d ranks: balance max/mean %.4f\n", ranks, bal);
        if (ranks != 7) CHECK_DBL_LE(bal, 1.10); /* 7 does not divide 72 equal-ish tensors well */
    }
    /* the whole checkpoint: the word embeddings (copied as float, 23M values) are more than an
     * eighth of the work, so only row ranges balance 8 ranks */
    n = bert(it, QD_METHOD_RTN, 1);
    CHECK_EQ(n, NB);
    for (int ranks = 1; ranks <= 8; ranks++) {
        CHECK_EQ(qd_plan_assign(it, n, ranks, QD_SHARD_TENSOR, owner), 0);
        double bal = qd_plan_balance(it, n, ranks, owner, NULL);
        if (ranks == 8 || ranks == 4 || ranks == 2)
            printf("whole checkpoint by tensor, %d ranks: balance max/mean %.4f\n", ranks, bal);
        if (ranks <= 4) CHECK_DBL_LE(bal, 1.10);
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
        if (ranks == 8 || ranks == 4)
            printf("layer sharding, %d ranks: balance max/mean %.4f\n", ranks,
                   qd_plan_balance(it, n, ranks, owner, NULL));

        qd_plan p, p2;
        CHECK_EQ(qd_plan_make(it, n, ranks, QD_SHARD_ROWS, &p), 0);
        check_cover(it, n, &p);
        CHECK_DBL_LE(p.balance, 1.05);
        CHECK_EQ(qd_plan_make(it, n, ranks, QD_SHARD_ROWS, &p2), 0);
        CHECK(same_plan(&p, &p2));
        if (ranks == 8 || ranks == 2)
            printf("whole checkpoint by rows, %d ranks: %d pieces, balance max/mean %.4f\n", ranks, p.npieces,
                   p.balance);
        /* the peak memory of a rank is its largest piece, never more than the largest item */
        for (int r = 0; r < ranks; r++) CHECK_DBL_LE(p.peak_mem[r], 30522.0 * 768 * 4);
        qd_plan_free(&p2);
        qd_plan_free(&p);
        /* whole-item policies through qd_plan_make: one piece per item */
        CHECK_EQ(qd_plan_make(it, n, ranks, QD_SHARD_TENSOR, &p), 0);
        CHECK_EQ(p.npieces, n);
        check_cover(it, n, &p);
        qd_plan_free(&p);
    }

    /* one huge tensor: whole tensors cannot balance 4 ranks, row ranges can */
    qd_plan_item big[3] = {{1000, 0, -1, 16}, {10, 0, -1, 16}, {10, 0, -1, 1}};
    qd_plan p;
    CHECK_EQ(qd_plan_make(big, 3, 4, QD_SHARD_TENSOR, &p), 0);
    CHECK_DBL_LE(3.5, p.balance);
    qd_plan_free(&p);
    CHECK_EQ(qd_plan_make(big, 3, 4, QD_SHARD_ROWS, &p), 0);
    check_cover(big, 3, &p);
    CHECK_DBL_LE(p.balance, 1.10);
    printf("one huge tensor over 4 ranks: rows balance %.3f with %d pieces\n", p.balance, p.npieces);
    qd_plan_free(&p);

    /* the cost model: gptq dominates rtn by about cols; with GPTQ costs the twelve 768x3072
     * tensors dominate and whole tensors cannot balance 8 ranks, row ranges can */
    CHECK_DBL_LE(700.0 * qd_plan_cost_rtn(3072, 768), qd_plan_cost_gptq(3072, 768));
    CHECK_DBL_LE(qd_plan_cost_gptq(768, 768), qd_plan_cost(QD_METHOD_ADAROUND, 768, 768, NULL));
    /* AdaRound follows the job's steps and batch: the Hessian form costs a product with H per
     * step (batch = cols), the mini-batch form two products with the batch; linear in both */
    {
        const qd_plan_cost_opts h1 = {1000, 0}, h2 = {2000, 0}, b1 = {1000, 256}, b2 = {1000, 512}, b3 = {3000, 256};
        CHECK_NEAR(qd_plan_cost(QD_METHOD_ADAROUND, 3072, 768, &h1), 1000.0 * 3072 * 768 * 768, 1.0);
        CHECK_NEAR(qd_plan_cost(QD_METHOD_ADAROUND, 3072, 768, &b1), 1000.0 * 3072 * 768 * 2 * 256, 1.0);
        CHECK_NEAR(qd_plan_cost(QD_METHOD_ADAROUND, 768, 3072, &h2),
                   2.0 * qd_plan_cost(QD_METHOD_ADAROUND, 768, 3072, &h1), 1.0);
        CHECK_NEAR(qd_plan_cost(QD_METHOD_ADAROUND, 768, 768, &b2),
                   2.0 * qd_plan_cost(QD_METHOD_ADAROUND, 768, 768, &b1), 1.0);
        CHECK_NEAR(qd_plan_cost(QD_METHOD_ADAROUND, 768, 768, &b3),
                   3.0 * qd_plan_cost(QD_METHOD_ADAROUND, 768, 768, &b1), 1.0);
        /* 768 columns: a batch of 384 rows costs as much as the Hessian */
        const qd_plan_cost_opts b4 = {1000, 384};
        CHECK_NEAR(qd_plan_cost(QD_METHOD_ADAROUND, 768, 768, &b4), qd_plan_cost(QD_METHOD_ADAROUND, 768, 768, &h1),
                   1.0);
        /* the defaults: QD_PLAN_ADA_ITERS_DEFAULT steps, Hessian form */
        const qd_plan_cost_opts dflt = {QD_PLAN_ADA_ITERS_DEFAULT, 0};
        CHECK_NEAR(qd_plan_cost(QD_METHOD_ADAROUND, 768, 768, NULL), qd_plan_cost(QD_METHOD_ADAROUND, 768, 768, &dflt),
                   1.0);
        /* the other methods do not depend on them */
        CHECK_NEAR(qd_plan_cost(QD_METHOD_GPTQ, 768, 3072, &b3), qd_plan_cost_gptq(768, 3072), 0.0);
        CHECK_NEAR(qd_plan_cost(QD_METHOD_RTN, 768, 3072, &b3), qd_plan_cost_rtn(768, 3072), 0.0);
        /* the Hessian form weighs a wide input by its columns, the mini-batch form does not */
        printf("adaround cost 768x3072 vs 3072x768: Hessian form %.2f, batch 256 %.2f\n",
               qd_plan_cost(QD_METHOD_ADAROUND, 768, 3072, &h1) / qd_plan_cost(QD_METHOD_ADAROUND, 3072, 768, &h1),
               qd_plan_cost(QD_METHOD_ADAROUND, 768, 3072, &b1) / qd_plan_cost(QD_METHOD_ADAROUND, 3072, 768, &b1));
    }
    n = bert(it, QD_METHOD_GPTQ, 1);
    CHECK_EQ(qd_plan_assign(it, n, 8, QD_SHARD_TENSOR, owner), 0);
    double gt = qd_plan_balance(it, n, 8, owner, NULL);
    CHECK_EQ(qd_plan_make(it, n, 8, QD_SHARD_ROWS, &p), 0);
    printf("gptq cost model, 8 ranks: balance %.4f by tensor, %.4f by rows\n", gt, p.balance);
    CHECK_DBL_LE(p.balance, 1.10);
    qd_plan_free(&p);

    qd_method m;
    CHECK_EQ(qd_method_from_name("gptq", &m), 0);
    CHECK_EQ(m, QD_METHOD_GPTQ);
    CHECK_EQ(qd_method_from_name("awq", &m), -1);
    CHECK_STREQ(qd_method_name(QD_METHOD_ADAROUND), "adaround");
    CHECK_EQ(qd_plan_assign(it, n, 0, QD_SHARD_TENSOR, owner), -1);
    CHECK_EQ(qd_plan_make(it, n, 0, QD_SHARD_ROWS, &p), -1);
    QD_TEST_MAIN_END();
}
