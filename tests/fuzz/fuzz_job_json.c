/* libFuzzer target: a job's options as JSON (coordinator/job_config.c), as a service submission
 * carries them (with model, out, overwrite, resume) and as `quantize --config FILE` reads them
 * (without). Either the options are accepted and then validate as a whole, or the error is a
 * message; never a crash, a read out of bounds or a message left empty. */
#include <stdlib.h>
#include <string.h>

#include "common/qd_common.h"
#include "coordinator/job_config.h"
#include "coordinator/job_hooks.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    cJSON *o = cJSON_ParseWithLength((const char *)data, size);
    if (!o) return 0;
    for (int allow_paths = 0; allow_paths < 2; allow_paths++) {
        qd_job_config c;
        qd_job_config_default(&c);
        char msg[512] = "";
        int rc = qd_job_config_from_json(&c, o, allow_paths, msg, sizeof msg);
        if (rc != 0 && rc != -1) abort();
        if (rc && !msg[0]) abort();
        if (!rc) {
            qd_err_clear();
            if (qd_job_config_validate(&c) && !qd_errmsg()[0]) abort();
        }
    }
    char msg[512] = "";
    if (qd_job_config_check_json(o, msg, sizeof msg) && !msg[0]) abort();
    cJSON_Delete(o);
    return 0;
}
