/* coordinator/sweep_layers.c — per-layer output error of a model file on the FP32 model's
 * Linear inputs (sweep_layers.h). */
#include "coordinator/sweep_layers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "collective/h5model.h"
#include "common/qd_common.h"
#include "kernels/gemm.h"
#include "model/calib_data.h"
#include "model/model.h"

struct qd_sweep_inputs {
    qd_model *m;
    int ngroups, nlin;
    int64_t max_rows;
    float **X;      /* [group][rows][in]: the real tokens' inputs */
    int64_t *rows;  /* [group] */
    double *ynorm2; /* [linear] ||X W^T + b||^2 */
};

/* the hook: keep the real tokens of each input group, up to max_rows */
static int keep_input(void *user, const qd_model *m, int li, const float *X, int64_t rows, const uint8_t *valid)
{
    qd_sweep_inputs *in = user;
    const qd_linear *L = qd_model_linear(m, li);
    const int g = L->input_group;
    const int64_t K = L->in;
    for (int64_t r = 0; r < rows && in->rows[g] < in->max_rows; r++) {
        if (valid && !valid[r]) continue;
        if (!in->X[g]) in->X[g] = qd_xmalloc((size_t)(in->max_rows * K) * sizeof(float));
        memcpy(in->X[g] + in->rows[g] * K, X + r * K, (size_t)K * sizeof(float));
        in->rows[g]++;
    }
    return 0;
}

/* ||X W^T + b||^2 over the kept inputs of linear li (b may be NULL) */
static double out_norm2(const qd_sweep_inputs *in, int li, const float *W, const float *b)
{
    const qd_linear *L = qd_model_linear(in->m, li);
    const int64_t M = in->rows[L->input_group], N = L->out, K = L->in;
    if (M == 0) return 0;
    qd_gemm_wf *wf = NULL;
    if (qd_gemm_wf_create(W, N, K, K, b, &wf) != QD_OK) return NAN;
    float *Y = qd_xmalloc((size_t)(M * N) * sizeof(float));
    qd_gemm_f32(in->X[L->input_group], K, M, wf, 0, N, Y, N);
    double s = 0;
    for (int64_t i = 0; i < M * N; i++) s += (double)Y[i] * Y[i];
    free(Y);
    qd_gemm_wf_free(wf);
    return s;
}

int qd_sweep_inputs_collect(const char *model, const char *data, int nsamples, int max_rows, qd_sweep_inputs **out)
{
    *out = NULL;
    qd_sweep_inputs *in = qd_xcalloc(1, sizeof *in);
    int rc = qd_model_load(model, &in->m);
    qd_calib_data *d = NULL;
    if (!rc) rc = qd_calib_data_open(in->m, data, nsamples, 128, 0, &d);
    if (rc) {
        qd_sweep_inputs_free(in);
        return rc;
    }
    in->ngroups = qd_model_num_groups(in->m);
    in->nlin = qd_model_num_linears(in->m);
    in->max_rows = max_rows;
    in->X = qd_xcalloc((size_t)in->ngroups + 1, sizeof *in->X);
    in->rows = qd_xcalloc((size_t)in->ngroups + 1, sizeof *in->rows);
    in->ynorm2 = qd_xcalloc((size_t)in->nlin + 1, sizeof *in->ynorm2);
    const qd_model_hooks hk = {.user = in, .linear_input = keep_input};
    const int n = qd_calib_data_count(d);
    for (int i = 0; i < n && !rc; i += 8) {
        qd_batch b;
        rc = qd_calib_data_batch(d, i, n - i < 8 ? n - i : 8, &b);
        if (!rc) rc = qd_model_forward(in->m, &b, &hk, NULL, NULL, NULL);
    }
    qd_calib_data_free(d);
    for (int li = 0; !rc && li < in->nlin; li++) {
        const qd_linear *L = qd_model_linear(in->m, li);
        in->ynorm2[li] = out_norm2(in, li, L->W, L->b);
    }
    if (rc) {
        qd_sweep_inputs_free(in);
        return rc;
    }
    *out = in;
    return QD_OK;
}

void qd_sweep_inputs_free(qd_sweep_inputs *in)
{
    if (!in) return;
    for (int g = 0; in->X && g < in->ngroups; g++) free(in->X[g]);
    free(in->X);
    free(in->rows);
    free(in->ynorm2);
    qd_model_free(in->m);
    free(in);
}

cJSON *qd_sweep_output_errors(const qd_sweep_inputs *in, const char *h5)
{
    cJSON *o = cJSON_CreateObject();
    qd_h5m *f = NULL;
    if (!in || qd_h5m_open(h5, NULL, &f) != QD_OK) return o;
    for (int i = 0; i < qd_h5m_num_tensors(f); i++) {
        const qd_h5m_record *r = qd_h5m_tensor(f, i);
        const int li = qd_model_find_linear(in->m, r->name);
        if (li < 0 || r->kind == QD_H5M_RAWBYTES) continue;
        const qd_linear *L = qd_model_linear(in->m, li);
        if (qd_h5m_numel(r) != (int64_t)L->out * L->in || !(in->ynorm2[li] > 0)) continue;
        qd_h5m_values v;
        if (qd_h5m_read(f, i, &v) != QD_OK) continue;
        const int64_t n = (int64_t)L->out * L->in;
        float *dW = qd_xmalloc((size_t)n * sizeof(float));
        if (r->kind == QD_H5M_QUANTIZED)
            qd_h5m_dequantize(r, &v, dW);
        else
            memcpy(dW, v.data, (size_t)n * sizeof(float));
        qd_h5m_values_free(&v);
        for (int64_t k = 0; k < n; k++) dW[k] -= L->W[k];
        const double e2 = out_norm2(in, li, dW, NULL);
        free(dW);
        cJSON_AddNumberToObject(o, r->name, sqrt(e2 / in->ynorm2[li]));
    }
    qd_h5m_close(f);
    return o;
}
