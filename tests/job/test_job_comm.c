/* qd_job_run on sub-communicators: the world is split in two halves that run different jobs at
 * the same time on the real ViT checkpoint. Half 0 runs a clean job; half 1 runs the same job with
 * an injected fault on its last rank. Half 0 must succeed and write the same tensors as a job on
 * MPI_COMM_SELF (compared dataset by dataset and metric by metric); half 1 must fail on every one
 * of its ranks with the failing rank's message, without disturbing half 0. */
#include <hdf5.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "collective/collective.h"
#include "qd_test.h"
#include "worker/job.h"

/* bytes of dataset `name` under group g (malloc'd), *n its size */
static unsigned char *read_all(hid_t g, const char *name, size_t *n)
{
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    if (d < 0) return NULL;
    hid_t t = H5Dget_type(d), s = H5Dget_space(d);
    *n = (size_t)H5Sget_simple_extent_npoints(s) * H5Tget_size(t);
    unsigned char *b = malloc(*n ? *n : 1);
    H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, b);
    H5Tclose(t);
    H5Sclose(s);
    H5Dclose(d);
    return b;
}

typedef struct {
    hid_t other;
    int compared, differ;
} cmp_ctx;

static herr_t cmp_tensor(hid_t g, const char *name, const H5L_info_t *info, void *op)
{
    (void)info;
    cmp_ctx *c = op;
    hid_t a = H5Gopen2(g, name, H5P_DEFAULT), b = H5Gopen2(c->other, name, H5P_DEFAULT);
    if (a < 0 || b < 0) {
        c->differ++;
        return 0;
    }
    static const char *sets[] = {"qweight", "scales", "zeros", "data", "raw"};
    for (size_t k = 0; k < sizeof sets / sizeof *sets; k++) {
        size_t na = 0, nb = 0;
        unsigned char *x = H5Lexists(a, sets[k], H5P_DEFAULT) > 0 ? read_all(a, sets[k], &na) : NULL;
        unsigned char *y = H5Lexists(b, sets[k], H5P_DEFAULT) > 0 ? read_all(b, sets[k], &nb) : NULL;
        if (!x != !y || na != nb || (x && memcmp(x, y, na))) c->differ++;
        free(x);
        free(y);
    }
    if (H5Aexists(a, "metrics") > 0) {
        double ma[4], mb[4] = {0};
        hid_t at = H5Aopen(a, "metrics", H5P_DEFAULT), bt = H5Aopen(b, "metrics", H5P_DEFAULT);
        H5Aread(at, H5T_NATIVE_DOUBLE, ma);
        if (bt >= 0) H5Aread(bt, H5T_NATIVE_DOUBLE, mb);
        if (bt < 0 || memcmp(ma, mb, sizeof ma)) c->differ++;
        H5Aclose(at);
        if (bt >= 0) H5Aclose(bt);
    }
    c->compared++;
    H5Gclose(a);
    H5Gclose(b);
    return 0;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    qd_coll_install_abort_hook();
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    char dir[256] = "";
    if (rank == 0) {
        snprintf(dir, sizeof dir, "/tmp/qd-comm-XXXXXX");
        if (!mkdtemp(dir)) dir[0] = 0;
    }
    MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, MPI_COMM_WORLD);
    char model[1024];
    snprintf(model, sizeof model, "%s/vit-mnist-tiny", qd_test_models_dir());

    /* the reference: one rank alone */
    char ref[512];
    snprintf(ref, sizeof ref, "%s/ref.h5", dir);
    qd_job_config c;
    qd_job_config_default(&c);
    c.model = model;
    c.quiet = 1;
    c.scheme = (qd_qscheme){4, 0, QD_GRAN_GROUP, 32, 0};
    if (rank == 0) {
        c.out = ref;
        CHECK_EQ(qd_job_run(&c, MPI_COMM_SELF, NULL), QD_OK);
    }
    MPI_Barrier(MPI_COMM_WORLD);

    /* two halves (with 1 rank: one half of 1 rank that runs both jobs in turn) */
    int color = size > 1 ? rank % 2 : 0;
    MPI_Comm half;
    MPI_Comm_split(MPI_COMM_WORLD, color, rank, &half);
    MPI_Comm_set_errhandler(half, MPI_ERRORS_RETURN);
    int hrank, hsize;
    MPI_Comm_rank(half, &hrank);
    MPI_Comm_size(half, &hsize);
    char out[512];
    for (int job = 0; job < 2; job++) {
        if (size > 1 && job != color) continue;
        snprintf(out, sizeof out, "%s/half%d.h5", dir, job);
        c.out = out;
        c.shard = job ? QD_SHARD_TENSOR : QD_SHARD_ROWS;
        char fr[16];
        snprintf(fr, sizeof fr, "%d", hsize - 1);
        if (job == 1) {
            setenv("QD_FAULT_RANK", fr, 1);
            setenv("QD_FAULT_AFTER", "1", 1);
        }
        int st = qd_job_run(&c, half, NULL);
        unsetenv("QD_FAULT_RANK");
        unsetenv("QD_FAULT_AFTER");
        if (job == 0) {
            CHECK_EQ(st, QD_OK);
            CHECK(access(out, F_OK) == 0);
        } else {
            /* every rank of the failing half gets the failing rank's message */
            CHECK_EQ(st, QD_EIO);
            char want[64];
            snprintf(want, sizeof want, "rank %d: tensor '", hsize - 1);
            CHECK_CONTAINS(qd_errmsg(), want);
            CHECK_CONTAINS(qd_errmsg(), "injected fault");
            CHECK(access(out, F_OK) != 0);
        }
    }
    MPI_Comm_free(&half);
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
        snprintf(out, sizeof out, "%s/half0.h5", dir);
        hid_t fa = H5Fopen(ref, H5F_ACC_RDONLY, H5P_DEFAULT), fb = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
        CHECK(fa >= 0 && fb >= 0);
        if (fa >= 0 && fb >= 0) {
            hid_t ta = H5Gopen2(fa, "tensors", H5P_DEFAULT);
            cmp_ctx cc = {H5Gopen2(fb, "tensors", H5P_DEFAULT), 0, 0};
            H5Literate(ta, H5_INDEX_NAME, H5_ITER_INC, NULL, cmp_tensor, &cc);
            printf("%d tensors compared between MPI_COMM_SELF and a %d-rank half: %d differ\n", cc.compared,
                   size > 1 ? (size + 1) / 2 : 1, cc.differ);
            CHECK_EQ(cc.compared, 86);
            CHECK_EQ(cc.differ, 0);
            H5Gclose(ta);
            H5Gclose(cc.other);
        }
        if (fa >= 0) H5Fclose(fa);
        if (fb >= 0) H5Fclose(fb);
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) printf("could not remove %s\n", dir);
    }
    int fails = qd_test_failures_, all = 0;
    MPI_Allreduce(&fails, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Finalize();
    if (rank == 0) {
        qd_test_failures_ = all;
        QD_TEST_MAIN_END();
    }
    return all ? 1 : 0;
}
