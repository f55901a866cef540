/* Error agreement across ranks: every rank takes the branch of the lowest failing rank and gets
 * its message. Runs with 1, 2 and 4 ranks. */
#include "collective/collective.h"
#include "qd_test.h"

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    qd_coll_install_abort_hook();
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);

    int fr = 99;
    CHECK_EQ(qd_coll_agree(MPI_COMM_WORLD, QD_OK, &fr), QD_OK);
    CHECK_EQ(fr, -1);

    /* the last rank fails with a detailed message */
    int st = QD_OK;
    if (rank == size - 1) st = qd_err_set(QD_ENONFINITE, "tensor 'w' has NaN at [3,4] (rank %d)", rank);
    char msg[256] = "";
    int got = qd_coll_agree_msg(MPI_COMM_WORLD, st, msg, sizeof msg, &fr);
    CHECK_EQ(got, QD_ENONFINITE);
    CHECK_EQ(fr, size - 1);
    char want[128];
    snprintf(want, sizeof want, "tensor 'w' has NaN at [3,4] (rank %d)", size - 1);
    CHECK_STREQ(msg, want);
    CHECK_STREQ(qd_errmsg(), want);

    /* two ranks fail: the lowest one wins everywhere */
    st = QD_OK;
    if (rank >= size / 2) st = (rank == size / 2) ? QD_EIO : QD_EFORMAT;
    got = qd_coll_agree(MPI_COMM_WORLD, st, &fr);
    CHECK_EQ(got, QD_EIO);
    CHECK_EQ(fr, size / 2);

    int local = qd_test_failures_, total = 0;
    MPI_Allreduce(&local, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Finalize();
    if (rank == 0) printf("test_agree on %d ranks: %d failures\n", size, total);
    return total ? 1 : 0;
}
