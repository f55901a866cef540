/* Calibration statistics on the real ViT and 16 MNIST images: absmax equals a direct max; H
 * matches a plain double accumulation of the same inputs to 1e-6 of its largest entry; and the
 * integer sums are identical bit for bit whatever the micro-batch split and order, and when two
 * halves are accumulated apart and added (what the MPI SUM reduction does). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/calib.h"
#include "model/model.h"
#include "qd_test.h"
#include "shard/safetensors.h"

#define NIMG 16
static const float *g_pix;

/* direct statistics, for comparison */
typedef struct {
    int group;
    int in;
    double *H;
    float *absmax;
    int64_t rows;
} direct;
static int direct_hook(void *user, const qd_model *m, int li, const float *X, int64_t rows, const uint8_t *valid)
{
    direct *d = user;
    (void)valid;
    if (qd_model_linear(m, li)->input_group != d->group) return 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *x = X + r * d->in;
        for (int i = 0; i < d->in; i++) {
            if (fabsf(x[i]) > d->absmax[i]) d->absmax[i] = fabsf(x[i]);
            for (int j = 0; j < d->in; j++) d->H[(int64_t)i * d->in + j] += (double)x[i] * x[j];
        }
    }
    d->rows += rows;
    return 0;
}

static int run(const qd_model *m, qd_calib *c, const int *order, int mb)
{
    int T = qd_model_tokens(m, 0);
    qd_model_hooks hk = qd_calib_hooks(c);
    float *pix = malloc((size_t)mb * 784 * sizeof(float));
    for (int s = 0; s < NIMG; s += mb) {
        int n = NIMG - s < mb ? NIMG - s : mb;
        for (int i = 0; i < n; i++) memcpy(pix + i * 784, g_pix + order[s + i] * 784, 784 * sizeof(float));
        qd_batch b = {.B = n, .T = T, .pixels = pix};
        int rc = qd_model_forward(m, &b, &hk, NULL, NULL, NULL);
        if (rc) {
            fprintf(stderr, "forward: %s\n", qd_errmsg());
            free(pix);
            return rc;
        }
    }
    free(pix);
    return 0;
}

static qd_calib *calibrate(const qd_model *m, const int *order, int mb, int n_first)
{
    qd_calib *c;
    if (qd_calib_new(m, NULL, &c)) return NULL;
    if (run(m, c, order, mb)) return NULL;
    (void)n_first;
    qd_calib_begin_accumulate(c);
    if (run(m, c, order, mb)) return NULL;
    return c;
}

int main(void)
{
    qd_model *m = NULL;
    if (qd_model_load(QD_TEST_MODELS_DIR "/vit-mnist-tiny", &m)) {
        fprintf(stderr, "%s\n", qd_errmsg());
        return 1;
    }
    qd_checkpoint *ref = NULL;
    if (qd_ckpt_open(QD_TEST_MODELS_DIR "/reference/vit-forward-reference.safetensors", &ref)) return 1;
    const void *p;
    qd_ckpt_raw(ref, qd_ckpt_find(ref, "pixel_values"), &p);
    g_pix = p;
    int T = qd_model_tokens(m, 0);

    int fwd[NIMG], rev[NIMG];
    for (int i = 0; i < NIMG; i++) {
        fwd[i] = i;
        rev[i] = NIMG - 1 - i;
    }
    qd_calib *a = calibrate(m, fwd, 16, 0);
    qd_calib *b = calibrate(m, rev, 1, 0);
    qd_calib *c = calibrate(m, fwd, 5, 0);
    CHECK(a && b && c);
    if (!a || !b || !c) return 1;
    CHECK_EQ(qd_calib_num_groups(a), 24);

    /* halves accumulated apart, then summed (the MPI reduction): absmax by MAX first */
    qd_calib *h1, *h2;
    qd_calib_new(m, NULL, &h1);
    qd_calib_new(m, NULL, &h2);
    run(m, h1, fwd, 3); /* absmax pass over all (each half would be merged by MAX; same result) */
    run(m, h2, fwd, 8);
    qd_calib_begin_accumulate(h1);
    qd_calib_begin_accumulate(h2);
    int first[8], second[8];
    for (int i = 0; i < 8; i++) {
        first[i] = i;
        second[i] = 8 + i;
    }
    {
        /* feed halves: reuse run() with a shifted order table of 8 items */
        int T2 = T;
        qd_model_hooks k1 = qd_calib_hooks(h1), k2 = qd_calib_hooks(h2);
        float *pix = malloc(8 * 784 * sizeof(float));
        for (int i = 0; i < 8; i++) memcpy(pix + i * 784, g_pix + first[i] * 784, 784 * sizeof(float));
        qd_batch bb = {.B = 8, .T = T2, .pixels = pix};
        CHECK_EQ(qd_model_forward(m, &bb, &k1, NULL, NULL, NULL), 0);
        for (int i = 0; i < 8; i++) memcpy(pix + i * 784, g_pix + second[i] * 784, 784 * sizeof(float));
        CHECK_EQ(qd_model_forward(m, &bb, &k2, NULL, NULL, NULL), 0);
        free(pix);
    }
    for (int gi = 0; gi < 24; gi++) {
        qd_calib_group *ga = qd_calib_group_at(a, gi), *gb = qd_calib_group_at(b, gi), *gc = qd_calib_group_at(c, gi);
        qd_calib_group *g1 = qd_calib_group_at(h1, gi), *g2 = qd_calib_group_at(h2, gi);
        size_t nn = (size_t)qd_calib_acc_len(ga->in);
        CHECK(memcmp(ga->absmax, gb->absmax, ga->in * sizeof(float)) == 0);
        CHECK(memcmp(ga->acc, gb->acc, nn * 8) == 0);
        CHECK(memcmp(ga->acc, gc->acc, nn * 8) == 0);
        CHECK_EQ(ga->rows, (int64_t)NIMG * T);
        for (size_t k = 0; k < nn; k++) g1->acc[k] += g2->acc[k];
        g1->rows += g2->rows;
        CHECK(memcmp(ga->acc, g1->acc, nn * 8) == 0);
    }

    /* against plain double accumulation, for a few groups (q/k/v input of block 0, fc2 input of block 5) */
    int groups[] = {0, 1, 2, 23};
    for (size_t t = 0; t < QD_ARRAY_LEN(groups); t++) {
        qd_calib_group *g = qd_calib_find(a, groups[t]);
        direct d = {.group = groups[t], .in = g->in};
        d.H = calloc((size_t)g->in * g->in, sizeof(double));
        d.absmax = calloc((size_t)g->in, sizeof(float));
        qd_model_hooks hk = {.user = &d, .linear_input = direct_hook};
        qd_batch bb = {.B = NIMG, .T = T, .pixels = g_pix};
        CHECK_EQ(qd_model_forward(m, &bb, &hk, NULL, NULL, NULL), 0);
        double *H = malloc((size_t)g->in * g->in * sizeof(double));
        CHECK_EQ(qd_calib_hessian(g, H), 0);
        double mx = 0, err = 0;
        for (int64_t k = 0; k < (int64_t)g->in * g->in; k++) {
            double ref_v = 2.0 / d.rows * d.H[k];
            if (fabs(ref_v) > mx) mx = fabs(ref_v);
            if (fabs(H[k] - ref_v) > err) err = fabs(H[k] - ref_v);
        }
        printf("group %2d (%s, in %d): max|H| %.4g, max|H - direct| %.3g (%.2g relative)\n", groups[t],
               qd_model_linear(m, g->first_linear)->name, g->in, mx, err, err / mx);
        CHECK_DBL_LE(err, 1e-6 * mx);
        CHECK(memcmp(d.absmax, g->absmax, g->in * sizeof(float)) == 0);
        free(H);
        free(d.H);
        free(d.absmax);
    }
    /* no token seen: an error, not a division by zero */
    qd_calib *e;
    qd_calib_new(m, NULL, &e);
    qd_calib_begin_accumulate(e);
    double h1x1[1];
    qd_calib_group *eg = qd_calib_group_at(e, 0);
    CHECK_EQ(eg->rows, 0);
    if (eg->in == 1)
        CHECK_EQ(qd_calib_hessian(eg, h1x1), QD_EINVAL);
    else {
        double *H = malloc((size_t)eg->in * eg->in * sizeof(double));
        CHECK_EQ(qd_calib_hessian(eg, H), QD_EINVAL);
        free(H);
    }
    printf("statistics: %.1f KiB\n", qd_calib_bytes(a) / 1024.0);
    qd_calib_free(a);
    qd_calib_free(b);
    qd_calib_free(c);
    qd_calib_free(h1);
    qd_calib_free(h2);
    qd_calib_free(e);
    qd_ckpt_close(ref);
    qd_model_free(m);
    printf("%d checks, %d failures\n", qd_test_checks_, qd_test_failures_);
    return qd_test_failures_;
}
