/* worker/smooth.c — SmoothQuant factors for a quantization job (see smooth.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "collective/collective.h"
#include "model/calib_data.h"
#include "model/model.h"
#include "worker/smooth.h"

typedef struct {
    const qd_model *m;
    float **ax; /* [groups][in] activation absmax */
} taps;

/* the input of each group, valid rows only: its per-channel absmax (NaN never raises it) */
static int tap_input(void *user, const qd_model *m, int li, const float *X, int64_t rows, const uint8_t *valid)
{
    taps *t = user;
    const qd_linear *L = qd_model_linear(m, li);
    float *a = t->ax[L->input_group];
    for (int64_t r = 0; r < rows; r++) {
        if (valid && !valid[r]) continue;
        const float *x = X + r * L->in;
        for (int k = 0; k < L->in; k++) {
            const float v = fabsf(x[k]);
            a[k] = v > a[k] ? v : a[k];
        }
    }
    return QD_OK;
}

/* absmax of every group's input over this rank's share of the calibration samples */
static int activation_absmax(const qd_job_config *cfg, MPI_Comm comm, const qd_model *m, taps *t)
{
    const int rank = qd_coll_rank(comm), size = qd_coll_size(comm);
    qd_calib_data *d = NULL;
    int rc = qd_calib_data_open(m, cfg->calib, cfg->nsamples, cfg->seqlen, (uint64_t)cfg->calib_seed, &d);
    if (rc) return rc;
    const int n = qd_calib_data_count(d), mb = cfg->microbatch > 0 ? cfg->microbatch : 8;
    const qd_model_hooks hk = {.user = t, .linear_input = tap_input};
    for (int first = rank * mb; first < n && !rc; first += size * mb) {
        qd_batch b;
        if ((rc = qd_calib_data_batch(d, first, QD_MIN(mb, n - first), &b))) break;
        rc = qd_model_forward(m, &b, &hk, NULL, NULL, NULL);
    }
    qd_calib_data_free(d);
    return rc;
}

int qd_smooth_factors(const qd_job_config *cfg, MPI_Comm comm, const qd_checkpoint *ck, float **factors)
{
    const int nt = qd_ckpt_num_tensors(ck);
    for (int i = 0; i < nt; i++) factors[i] = NULL;
    char msg[1024] = "";
    qd_model *m = NULL;
    int rc = cfg->calib ? qd_model_load(cfg->model, &m)
                        : qd_err_set(QD_ECONFIG, "--smooth needs calibration data: --calib PATH (the activations' "
                                                 "per-channel range decides the factors)");
    const int ng = m ? qd_model_num_groups(m) : 0;
    taps t = {m, qd_xcalloc((size_t)(ng ? ng : 1), sizeof(float *))};
    for (int g = 0; g < ng; g++)
        t.ax[g] = qd_xcalloc((size_t)qd_model_linear(m, qd_model_group_first(m, g))->in, sizeof(float));
    if (!rc) rc = activation_absmax(cfg, comm, m, &t);
    rc = qd_coll_agree_msg(comm, rc, msg, sizeof msg, NULL);
    for (int g = 0; g < ng && !rc; g++) {
        const int in = qd_model_linear(m, qd_model_group_first(m, g))->in;
        qd_coll_max_floats(comm, t.ax[g], in);
    }
    /* the weights' per-column absmax over every Linear of a group, then the factors */
    for (int g = 0; g < ng && !rc; g++) {
        const int in = qd_model_linear(m, qd_model_group_first(m, g))->in;
        float *wx = qd_xcalloc((size_t)in, sizeof(float)), *s = qd_xmalloc((size_t)in * sizeof(float));
        for (int li = 0; li < qd_model_num_linears(m); li++) {
            const qd_linear *L = qd_model_linear(m, li);
            if (L->input_group != g) continue;
            for (int64_t n = 0; n < L->out; n++)
                for (int k = 0; k < in; k++) {
                    const float v = fabsf(L->W[n * in + k]);
                    wx[k] = v > wx[k] ? v : wx[k];
                }
        }
        const double alpha = cfg->smooth;
        for (int k = 0; k < in; k++) {
            double v = t.ax[g][k] > 0 && wx[k] > 0 ? pow(t.ax[g][k], alpha) / pow(wx[k], 1.0 - alpha) : 1.0;
            s[k] = (float)(v < 1e-5 ? 1e-5 : v > 1e5 ? 1e5 : v);
        }
        for (int li = 0; li < qd_model_num_linears(m); li++) {
            const qd_linear *L = qd_model_linear(m, li);
            if (L->input_group != g) continue;
            char name[200];
            snprintf(name, sizeof name, "%s.weight", L->name);
            const int ti = qd_ckpt_find(ck, name);
            if (ti < 0) continue;
            factors[ti] = qd_xmalloc((size_t)in * sizeof(float));
            memcpy(factors[ti], s, (size_t)in * sizeof(float));
        }
        free(wx);
        free(s);
    }
    for (int g = 0; g < ng; g++) free(t.ax[g]);
    free(t.ax);
    qd_model_free(m);
    if (rc) {
        for (int i = 0; i < nt; i++) free(factors[i]), factors[i] = NULL;
    }
    return rc;
}
