/* qd_test_calib.h — calibration statistics of every Linear input of a real checkpoint, for the
 * per-layer tests of GPTQ and AdaRound (tests/gptq/test_gptq_layers.c,
 * tests/adaround/test_adaround_real.c): loads the model, runs the two calibration passes
 * (absmax, then exact accumulation) over `nsamples` samples of `data` in micro-batches of 16 on
 * one process, and hands back the model and the statistics; qd_calib_hessian_f32 then gives
 * each group's H = 2/N X^T X. Needs the qd_model library. */
#ifndef QD_TEST_CALIB_H
#define QD_TEST_CALIB_H

#include <stdio.h>

#include "model/calib.h"
#include "model/calib_data.h"
#include "model/model.h"

/* 0 with *m and *c set (free with qd_calib_free, qd_model_free), or 1 after printing why. text:
 * seqlen tokens at most; images: seqlen is ignored. *nreal (may be NULL): real tokens seen. */
static inline int qd_test_calib_collect(const char *dir, const char *data, int nsamples, int seqlen, qd_model **m,
                                        qd_calib **c, int *nreal)
{
    qd_calib_data *d = NULL;
    *m = NULL;
    *c = NULL;
    if (qd_model_load(dir, m) || qd_calib_data_open(*m, data, nsamples, seqlen, 0, &d) || qd_calib_new(*m, NULL, c)) {
        fprintf(stderr, "%s: %s\n", dir, qd_errmsg());
        goto fail;
    }
    qd_model_hooks hk = qd_calib_hooks(*c);
    for (int pass = 0; pass < 2; pass++) {
        for (int first = 0; first < qd_calib_data_count(d); first += 16) {
            qd_batch b;
            int n = QD_MIN(16, qd_calib_data_count(d) - first);
            if (qd_calib_data_batch(d, first, n, &b) || qd_model_forward(*m, &b, &hk, NULL, NULL, NULL)) {
                fprintf(stderr, "%s: calibration on %s: %s\n", dir, data, qd_errmsg());
                goto fail;
            }
        }
        if (pass == 0) qd_calib_begin_accumulate(*c);
    }
    if (nreal) *nreal = qd_calib_data_real_tokens(d);
    qd_calib_data_free(d);
    return 0;
fail:
    qd_calib_data_free(d);
    qd_calib_free(*c);
    qd_model_free(*m);
    *c = NULL;
    *m = NULL;
    return 1;
}

#endif
