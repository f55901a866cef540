/* Distributed calibration on the real ViT and 16 MNIST images, run on 1, 2 and 4 ranks:
 *   - data parallel: every group's absmax, integer sums and row count equal, bit for bit, the
 *     1-rank result (computed on each rank with MPI_COMM_SELF);
 *   - pipeline: each rank holds exactly the groups of its blocks, equal bit for bit to the same;
 *   - a non-finite sample (seen by the last rank in data parallel, by rank 0 in the pipeline)
 *     makes every rank return QD_ENONFINITE, with the message, and nobody hangs. */
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "collective/collective.h"
#include "model/calib.h"
#include "model/calib_data.h"
#include "model/model.h"
#include "qd_test.h"
#include "shard/safetensors.h"
#include "worker/calib_run.h"

static qd_calib *run(MPI_Comm comm, const qd_model *m, qd_calib_data *d, qd_calib_mode mode, int mb, int *rc)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    uint8_t sel[256];
    qd_calib_rank_groups(m, NULL, mode, rank, size, sel);
    qd_calib *c = NULL;
    if (qd_calib_new(m, sel, &c)) {
        *rc = -1;
        return NULL;
    }
    qd_calib_opts o = {.mode = mode, .microbatch = mb, .quiet = 1};
    *rc = qd_calib_run(comm, m, d, &o, c);
    return c;
}

static int same_group(qd_calib_group *a, qd_calib_group *b)
{
    return a->in == b->in && a->rows == b->rows && !memcmp(a->absmax, b->absmax, (size_t)a->in * 4) &&
           !memcmp(a->acc, b->acc, (size_t)qd_calib_acc_len(a->in) * 8);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    qd_coll_install_abort_hook();
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    qd_model *m = NULL;
    if (qd_model_load(QD_TEST_MODELS_DIR "/vit-mnist-tiny", &m)) {
        fprintf(stderr, "%s\n", qd_errmsg());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    qd_checkpoint *ref = NULL;
    if (qd_ckpt_open(QD_TEST_MODELS_DIR "/reference/vit-forward-reference.safetensors", &ref))
        MPI_Abort(MPI_COMM_WORLD, 1);
    const void *p;
    qd_ckpt_raw(ref, qd_ckpt_find(ref, "pixel_values"), &p);
    qd_calib_data *d;
    CHECK_EQ(qd_calib_data_from_pixels(m, p, 16, &d), 0);

    int rc1, rc2, rc3;
    qd_calib *one = run(MPI_COMM_SELF, m, d, QD_CALIB_DATA_PARALLEL, 3, &rc1);
    qd_calib *dp = run(MPI_COMM_WORLD, m, d, QD_CALIB_DATA_PARALLEL, 3, &rc2);
    qd_calib *pp = run(MPI_COMM_WORLD, m, d, QD_CALIB_PIPELINE, 3, &rc3);
    CHECK_EQ(rc1, 0);
    CHECK_EQ(rc2, 0);
    CHECK_EQ(rc3, 0);
    int ng = qd_model_num_groups(m), owned = 0;
    for (int g = 0; g < ng; g++) {
        CHECK_MSG(same_group(qd_calib_find(one, g), qd_calib_find(dp, g)), "data parallel, group %d differs", g);
        qd_calib_group *pg = qd_calib_find(pp, g);
        int k0, k1, layer = qd_model_linear(m, qd_model_group_first(m, g))->layer;
        qd_calib_pipeline_blocks(qd_model_cfg(m)->layers, rank, size, &k0, &k1);
        CHECK_EQ(pg != NULL, layer >= k0 && layer < k1);
        if (pg) {
            owned++;
            CHECK_MSG(same_group(qd_calib_find(one, g), pg), "pipeline, group %d differs on rank %d", g, rank);
        }
    }
    int total = 0;
    MPI_Allreduce(&owned, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    CHECK_EQ(total, ng);
    /* a micro-batch size that does not divide the samples, and one larger than all of them */
    qd_calib_free(dp);
    dp = run(MPI_COMM_WORLD, m, d, QD_CALIB_PIPELINE, 5, &rc2);
    CHECK_EQ(rc2, 0);
    for (int g = 0; g < ng; g++)
        if (qd_calib_find(dp, g)) CHECK(same_group(qd_calib_find(one, g), qd_calib_find(dp, g)));
    qd_calib_free(dp);
    dp = run(MPI_COMM_WORLD, m, d, QD_CALIB_DATA_PARALLEL, 32, &rc2);
    CHECK_EQ(rc2, 0);
    for (int g = 0; g < ng; g++) CHECK(same_group(qd_calib_find(one, g), qd_calib_find(dp, g)));

    /* a NaN pixel in the last image: every rank gets the error */
    float *bad = malloc(16 * 784 * sizeof(float));
    memcpy(bad, p, 16 * 784 * sizeof(float));
    bad[15 * 784 + 300] = NAN;
    qd_calib_data *dn;
    qd_calib_data_from_pixels(m, bad, 16, &dn);
    qd_calib *e1 = run(MPI_COMM_WORLD, m, dn, QD_CALIB_DATA_PARALLEL, 4, &rc1);
    CHECK_EQ(rc1, QD_ENONFINITE);
    CHECK(strstr(qd_errmsg(), "non-finite") != NULL);
    qd_calib *e2 = run(MPI_COMM_WORLD, m, dn, QD_CALIB_PIPELINE, 4, &rc2);
    CHECK_EQ(rc2, QD_ENONFINITE);
    if (rank == 0) printf("error seen by every rank: %s\n", qd_errmsg());

    qd_calib_free(one);
    qd_calib_free(dp);
    qd_calib_free(pp);
    qd_calib_free(e1);
    qd_calib_free(e2);
    qd_calib_data_free(d);
    qd_calib_data_free(dn);
    free(bad);
    qd_ckpt_close(ref);
    qd_model_free(m);
    int fails = qd_test_failures_, all = 0;
    MPI_Allreduce(&fails, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) printf("%d ranks: %d checks per rank, %d failures in all\n", size, qd_test_checks_, all);
    MPI_Finalize();
    return all ? 1 : 0;
}
