/* A job given as JSON (service submissions): bridge to the quantization job runner. */
#include <stdio.h>

#include "common/qd_common.h"
#include "coordinator/job_hooks.h"

int qd_job_config_check_json(const cJSON *job, char *msg, size_t msgcap) {
    (void)job;
    (void)msg;
    (void)msgcap;
    return 0;
}

int qd_job_run_json(const cJSON *job, MPI_Comm comm, const qd_job_hooks *hooks) {
    (void)job;
    (void)comm;
    (void)hooks;
    return qd_err_set(QD_EUNSUPPORTED, "the quantization job runner is not linked in");
}
