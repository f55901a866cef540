/* Integer-only ViT on AArch64 (cross-built, run under qemu-user): the flat model and the test
 * vectors written by tests/intonly/test_intonly_vit on x86-64; usage
 *   test_intonly_arm vit.qdim vit.qdiv [N [N_OTHER]]
 * runs the integer graph on the first N images (default all) with the kernels the CPU selects
 * (NEON with SDOT, or plain NEON), then N_OTHER (default 20) with the other NEON table and the
 * scalar reference, and requires the int32 outputs to equal x86-64's bit for bit (so the
 * predictions are the same); prints the top-1 of the labels. Under qemu-user a few images a second
 * run, so the test suite runs a few hundred (x86-64 runs all 10,000). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/qd_common.h"
#include "intonly/ivec.h"
#include "qd_test.h"
#include "runtime/intmodel.h"

static int run(qd_imodel *im, const qd_ivec *v, int n, int32_t *out)
{
    const int B = 50, T = v->np + im->cfg.n_prefix;
    for (int s = 0; s < n; s += B) {
        const int k = n - s < B ? n - s : B;
        qd_ibatch b = {.B = k, .T = T};
        if (qd_imodel_run(im, &b, v->patches + (size_t)s * v->np * v->pk, out + (size_t)s * v->L, NULL, NULL, NULL)) {
            fprintf(stderr, "%s\n", qd_errmsg());
            return -1;
        }
    }
    return 0;
}

static int argmax_real(const qd_imodel *im, const int32_t *o, int L)
{
    int best = 0;
    for (int j = 1; j < L; j++)
        if (o[j] * (double)im->cls_head.real[j] > o[best] * (double)im->cls_head.real[best]) best = j;
    return best;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: test_intonly_arm MODEL.qdim VECTORS.qdiv [N]\n");
        return 2;
    }
    qd_imodel *im = NULL;
    qd_ivec v;
    if (qd_imodel_load(argv[1], &im)) {
        fprintf(stderr, "%s\n", qd_errmsg());
        return 1;
    }
    if (qd_ivec_read(argv[2], &v)) {
        fprintf(stderr, "%s: cannot read the test vectors\n", argv[2]);
        return 1;
    }
    int n = argc > 3 ? atoi(argv[3]) : v.n;
    if (n <= 0 || n > v.n) n = v.n;
    CHECK_EQ(v.L, im->cfg.num_labels);
    int32_t *out = malloc((size_t)n * v.L * sizeof(int32_t));
    double t0 = qd_now();
    CHECK_EQ(run(im, &v, n, out), 0);
    const double dt = qd_now() - t0;
    int same = 0, correct = 0, correct86 = 0;
    for (int i = 0; i < n; i++) {
        same += !memcmp(out + (size_t)i * v.L, v.out + (size_t)i * v.L, (size_t)v.L * sizeof(int32_t));
        const int p = argmax_real(im, out + (size_t)i * v.L, v.L), p86 = argmax_real(im, v.out + (size_t)i * v.L, v.L);
        correct += p == v.labels[i];
        correct86 += p86 == v.labels[i];
    }
    printf("AArch64 %s: %d/%d images with the same int32 outputs as x86-64; top-1 %d/%d = %.2f %% (x86-64: %.2f %%), "
           "%.0f images/s under emulation\n",
           im->ops->isa, same, n, correct, n, 100.0 * correct / n, 100.0 * correct86 / n, n / dt);
    CHECK_EQ(same, n);
    CHECK_EQ(correct, correct86);
    /* the other tables on a subset: plain NEON, NEON with SDOT (where the CPU has it), the reference */
    const char *others[3] = {"neon", "neon-dot", "ref"};
    int ns = argc > 4 ? atoi(argv[4]) : 20;
    if (ns <= 0 || ns > n) ns = n;
    for (int k = 0; k < 3; k++) {
        const qd_intops_table *t = qd_intops_table_for(others[k]);
        if (!t) continue;
        CHECK_EQ(qd_imodel_pack_ops(im, t), 0);
        CHECK_EQ(run(im, &v, ns, out), 0);
        const int ok = !memcmp(out, v.out, (size_t)ns * v.L * sizeof(int32_t));
        printf("  %s: %s on %d images\n", t->isa, ok ? "same outputs" : "DIFFERENT outputs", ns);
        CHECK(ok);
    }
    free(out);
    qd_ivec_free(&v);
    qd_imodel_free(im);
    QD_TEST_MAIN_END();
}
