/* The time model (shard/cost.h): phase records made from known coefficients are fitted back to
 * them; the phases by hand for one job; the block span (LPT); records and models through JSON. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/qd_common.h"
#include "qd_test.h"
#include "shard/cost.h"

/* coefficients of the order of this machine's (s per byte, per unit, ...) */
static const qd_cost_model truth = {{2e-9, 3e-11, 1.5, 4e-10, 2e-3, 5e-11, 3e-9, 1e-9, 0.8, 6e-9}};

static qd_cost_job job(int model, int ranks, int nodes)
{
    const double s = 1 + model; /* three model sizes */
    qd_cost_job j = {.ranks = ranks, .nodes = nodes, .cores = 2};
    j.bytes_in = 2.6e8 * s;
    j.fwd_work = 1.4e12 * s * (model == 1 ? 1.7 : 1);
    j.reduce_bytes = 1.3e9 * s * (model == 2 ? 0.6 : 1);
    j.reductions = 16 * s;
    j.quant_total = 8e11 * s;
    j.quant_span = j.quant_total / (ranks < 4 ? ranks : 4) * (model == 2 ? 1.2 : 1);
    j.qparams = 1e8 * s;
    j.out_bytes = 1.9e8 * s * (model == 1 ? 1.5 : 1);
    return j;
}

static void check_fit_recovers_truth(void)
{
    qd_cost_job jobs[24];
    double meas[24][QD_COST_NPHASES], rms[QD_COST_NPHASES];
    int n = 0;
    const int ranks[] = {1, 2, 4, 8};
    for (int m = 0; m < 3; m++)
        for (int r = 0; r < 4; r++)
            for (int nodes = 1; nodes <= 2 && nodes <= ranks[r]; nodes++) {
                jobs[n] = job(m, ranks[r], nodes);
                qd_cost_predict(&truth, &jobs[n], NULL, meas[n]);
                n++;
            }
    qd_cost_model fit;
    CHECK_EQ(qd_cost_fit(jobs, (const double(*)[QD_COST_NPHASES])meas, n, &fit, rms), 0);
    for (int k = 0; k < QD_COST_NCOEF; k++)
        CHECK_MSG(fabs(fit.c[k] - truth.c[k]) <= 1e-6 * truth.c[k], "%s: fitted %g, truth %g", qd_cost_coef_names[k],
                  fit.c[k], truth.c[k]);
    for (int p = 0; p < QD_COST_NPHASES; p++) CHECK_DBL_LE(rms[p], 1e-6);

    /* noise of ±2 % on every measurement: the coefficients within 15 % */
    unsigned seed = 7;
    for (int r = 0; r < n; r++)
        for (int p = 0; p < QD_COST_NPHASES; p++) {
            seed = seed * 1103515245u + 12345u;
            meas[r][p] *= 1 + 0.04 * ((double)(seed >> 8 & 0xffff) / 65535.0 - 0.5);
        }
    CHECK_EQ(qd_cost_fit(jobs, (const double(*)[QD_COST_NPHASES])meas, n, &fit, rms), 0);
    for (int k = 0; k < QD_COST_NCOEF; k++)
        if (k != 2 && k != 8) /* the constants absorb more of the noise */
            CHECK_MSG(fabs(fit.c[k] - truth.c[k]) <= 0.15 * truth.c[k], "%s with noise: fitted %g, truth %g",
                      qd_cost_coef_names[k], fit.c[k], truth.c[k]);
}

/* A term that would come out negative is dropped: write times that fall with the file's size
 * fit a constant alone, never a negative throughput. */
static void check_no_negative_cost(void)
{
    qd_cost_job jobs[3];
    double meas[3][QD_COST_NPHASES] = {{0}};
    for (int r = 0; r < 3; r++) {
        jobs[r] = job(r, 2, 1);
        meas[r][QD_COST_WRITE] = 3.0 - r * 0.5;
    }
    qd_cost_model fit;
    CHECK_EQ(qd_cost_fit(jobs, (const double(*)[QD_COST_NPHASES])meas, 3, &fit, NULL), 0);
    for (int k = 0; k < QD_COST_NCOEF; k++) CHECK_DBL_LE(0, fit.c[k]);
    CHECK_NEAR(fit.c[8], 2.5, 1e-9); /* the mean */
    CHECK_NEAR(fit.c[9], 0, 0);
    CHECK_NE(qd_cost_fit(jobs, (const double(*)[QD_COST_NPHASES])meas, 0, &fit, NULL), 0);
}

/* One job's phases by hand: 8 ranks on 2 nodes of 2 cores (4 cores in all: two ranks a core). */
static void check_phases_by_hand(void)
{
    qd_cost_job j = job(0, 8, 2);
    double t[QD_COST_NPHASES];
    const double wall = qd_cost_predict(&truth, &j, NULL, t);
    CHECK_NEAR(t[QD_COST_READ], 2e-9 * 2.6e8 * 2, 1e-12);
    CHECK_NEAR(t[QD_COST_FORWARD], 3e-11 * 1.4e12 / 4 + 1.5 * 8, 1e-9); /* 16 reductions: 8 blocks */
    CHECK_NEAR(t[QD_COST_REDUCE], 4e-10 * 1.3e9 * 2 * 7 / 8 + 2e-3 * 16 * 3, 1e-9);
    CHECK_NEAR(t[QD_COST_QUANTIZE], 5e-11 * fmax(8e11 / 4, 8e11 / 4), 1e-9);
    CHECK_NEAR(t[QD_COST_GATHER], 3e-9 * 1e8 * 2 + 1e-9 * 1e8 * 7 / 8, 1e-9);
    CHECK_NEAR(t[QD_COST_WRITE], 0.8 + 6e-9 * 1.9e8, 1e-9);
    double sum = 0;
    for (int p = 0; p < QD_COST_NPHASES; p++) sum += t[p];
    CHECK_NEAR(wall, sum, 1e-9);
    /* a slower network between the nodes, a file system of 100 MB/s */
    qd_cost_env env = {.net_gbps = 1, .net_latency_us = 50, .fs_mbps = 100};
    qd_cost_predict(&truth, &j, &env, t);
    CHECK_NEAR(t[QD_COST_REDUCE], 1e-9 * 1.3e9 * 2 * 7 / 8 + 2e-3 * 16 * 3, 1e-9); /* latency: fitted is larger */
    CHECK_NEAR(t[QD_COST_GATHER], 3e-9 * 1e8 * 2 + 1e-9 * 1e8 * 7 / 8, 1e-9);
    CHECK_NEAR(t[QD_COST_WRITE], 0.8 + 1.9e8 / 1e8, 1e-9);
    CHECK_NEAR(t[QD_COST_READ], 2 * 2.6e8 / 1e8, 1e-9); /* each node reads it once at 100 MB/s */
    /* one node: the network does not apply */
    j = job(0, 8, 1);
    qd_cost_predict(&truth, &j, &env, t);
    CHECK_NEAR(t[QD_COST_REDUCE], 4e-10 * 1.3e9 * 2 * 7 / 8 + 2e-3 * 16 * 3, 1e-9);
}

static void check_span(void)
{
    /* a BERT block: q, k, v on one input (group 0), o, intermediate (group 2), output */
    const double fixed[] = {1, 1, 1, 1, 1, 4}, share[] = {1, 1, 1, 1, 4, 4};
    const int group[] = {0, 0, 0, 1, 2, 3};
    double work = -1;
    /* per group: fixed once + shares: q/k/v 1 + 3, o 1 + 1, intermediate 1 + 4, output 4 + 4 */
    CHECK_NEAR(qd_cost_block_span(fixed, share, group, 6, 1, NULL), 19, 0);
    CHECK_NEAR(qd_cost_block_span(fixed, share, group, 6, 2, NULL), 10, 0); /* 8+2 | 5+4 */
    CHECK_NEAR(qd_cost_block_span(fixed, share, group, 6, 4, &work), 8, 0); /* 8 | 5 | 4 | 2 */
    CHECK_NEAR(work, 19, 0);
    /* fewer groups than ranks: the 4 extra ranks go to the output (3) and the intermediate (1),
     * each factorized once on one rank: 4 + 4/4 | 1 + 4/2 | 1 + 3 | 1 + 1 */
    CHECK_NEAR(qd_cost_block_span(fixed, share, group, 6, 8, &work), 5, 1e-12);
    CHECK_NEAR(work, 19, 1e-12);
    const double f0[] = {0, 0, 0, 0, 0, 0}, d[] = {5, 3, 3, 2, 2, 1};
    const int g[] = {0, 1, 2, 3, 4, 5};
    CHECK_NEAR(qd_cost_block_span(f0, d, g, 6, 3, NULL), 6, 0); /* 5+1 | 3+2 | 3+2 */
    CHECK_NEAR(qd_cost_block_span(f0, d, g, 0, 3, NULL), 0, 0);
}

static void check_json(void)
{
    char path[] = "/tmp/qd_test_cost_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    FILE *f = fdopen(fd, "w");
    double meas[2][QD_COST_NPHASES];
    qd_cost_job in[2] = {job(0, 2, 1), job(2, 8, 2)};
    for (int r = 0; r < 2; r++) {
        qd_cost_predict(&truth, &in[r], NULL, meas[r]);
        char *s = qd_cost_record_json(&in[r], meas[r], 100 + r);
        fprintf(f, "%s\n\n", s);
        free(s);
    }
    fclose(f);
    qd_cost_job *jobs = NULL;
    double(*m)[QD_COST_NPHASES] = NULL, *wall = NULL;
    int n = 0;
    CHECK_EQ(qd_cost_records_read(path, &jobs, &m, &wall, &n), 0);
    CHECK_EQ(n, 2);
    for (int r = 0; r < n && r < 2; r++) {
        CHECK_EQ(jobs[r].ranks, in[r].ranks);
        CHECK_EQ(jobs[r].nodes, in[r].nodes);
        CHECK_NEAR(jobs[r].quant_span, in[r].quant_span, 1e-3);
        CHECK_NEAR(jobs[r].reduce_bytes, in[r].reduce_bytes, 1e-3);
        CHECK_NEAR(m[r][QD_COST_GATHER], meas[r][QD_COST_GATHER], 1e-12);
        CHECK_NEAR(wall[r], 100 + r, 0);
    }
    free(jobs);
    free(m);
    free(wall);
    /* a bad line is named */
    f = fopen(path, "a");
    fprintf(f, "{\"ranks\": 2}\n");
    fclose(f);
    jobs = NULL, m = NULL, wall = NULL, n = 0;
    CHECK_NE(qd_cost_records_read(path, &jobs, &m, &wall, &n), 0);
    CHECK_CONTAINS(qd_errmsg(), ":5: record:");
    free(jobs);
    free(m);
    free(wall);

    qd_cost_model back;
    CHECK_EQ(qd_cost_model_write(path, &truth, 3, NULL), 0);
    CHECK_EQ(qd_cost_model_read(path, &back), 0);
    for (int k = 0; k < QD_COST_NCOEF; k++) CHECK_NEAR(back.c[k], truth.c[k], 1e-6 * truth.c[k]);
    f = fopen(path, "w");
    fprintf(f, "{\"coefficients\": {\"read_s_per_byte\": 1}}\n");
    fclose(f);
    CHECK_NE(qd_cost_model_read(path, &back), 0);
    CHECK_CONTAINS(qd_errmsg(), "coefficients.forward_s_per_unit");
    unlink(path);
    qd_cost_model_default(&back);
    double t[QD_COST_NPHASES];
    qd_cost_job j = job(0, 2, 1);
    CHECK_DBL_LT(0, qd_cost_predict(&back, &j, NULL, t)); /* the default predicts something */
}

int main(void)
{
    check_fit_recovers_truth();
    check_no_negative_cost();
    check_phases_by_hand();
    check_span();
    check_json();
    QD_TEST_MAIN_END();
}
