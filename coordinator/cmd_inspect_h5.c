/* qdist inspect FILE.h5: format version, configuration, and a per-tensor table of a qdist model
 * (docs/FORMAT.md). The file is opened leniently: inspect describes what it can read and lists
 * every problem the validation of eval and export would refuse (exit 1 when there is one).
 * Rank 0 reads the file; the others wait for its verdict. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collective/h5model.h"
#include "common/qd_common.h"
#include "coordinator/cli.h"
#include "model/model.h"

static int damaged(const qd_h5m *f, const char *tensor)
{
    for (int i = 0; i < qd_h5m_num_problems(f); i++)
        if (!strcmp(qd_h5m_problem_at(f, i)->tensor, tensor)) return 1;
    return 0;
}

/* " sparsity 50.0% (2:4, sparsegpt)" from a pruned tensor's mask (zeros counted), "" for dense
 * tensors */
static void sparsity_suffix(qd_h5m *f, int i, char *out, size_t cap)
{
    const qd_h5m_record *r = qd_h5m_tensor(f, i);
    out[0] = 0;
    qd_h5m_values v;
    if (!r->sparsity[0] || qd_h5m_read(f, i, &v) != QD_OK) return;
    const uint8_t *m = v.mask;
    const int64_t rows = qd_h5m_rows(r), cols = qd_h5m_cols(r), rb = (cols + 7) / 8;
    int64_t kept = 0;
    for (int64_t a = 0; a < rows; a++)
        for (int64_t c = 0; c < cols; c++) kept += (m[a * rb + c / 8] >> (c % 8)) & 1;
    snprintf(out, cap, "  sparsity %.1f%% (%s, %s, %lld stored per row)",
             100.0 * (1.0 - (double)kept / (double)(rows * cols)), r->sparsity, r->prune_method,
             (long long)r->nz_slots);
    qd_h5m_values_free(&v);
}

/* " codebook 16 levels x 2 groups/row, row 0: -0.21 .. 0.33" for K-means tensors, "" otherwise */
static void codebook_suffix(qd_h5m *f, int i, char *out, size_t cap)
{
    const qd_h5m_record *r = qd_h5m_tensor(f, i);
    out[0] = 0;
    void *v = NULL;
    int64_t n = 0;
    const int64_t K = (int64_t)1 << r->bits;
    if (!qd_h5m_is_codebook(r) || qd_h5m_read_field(f, i, QD_H5M_CODEBOOK, &v, &n) != QD_OK) return;
    const float *c = v;
    if (n >= K * r->ngroups) {
        float lo = c[0], hi = c[0];
        for (int64_t k = 0; k < K * r->ngroups; k++) {
            lo = c[k] < lo ? c[k] : lo;
            hi = c[k] > hi ? c[k] : hi;
        }
        snprintf(out, cap, "  codebook %lld levels x %lld group%s/row, row 0: %.4g .. %.4g", (long long)K,
                 (long long)r->ngroups, r->ngroups == 1 ? "" : "s", (double)lo, (double)hi);
    }
    free(v);
}

static void print_tensor(qd_h5m *f, int i, int *nq, double *sum_err, double *max_err)
{
    const qd_h5m_record *r = qd_h5m_tensor(f, i);
    char spx[160];
    sparsity_suffix(f, i, spx, sizeof spx);
    codebook_suffix(f, i, spx + strlen(spx), sizeof spx - strlen(spx));
    char sh[96] = "[";
    for (int d = 0; d < r->ndim && !r->zero_d; d++)
        snprintf(sh + strlen(sh), sizeof sh - strlen(sh), "%s%lld", d ? ", " : "", (long long)r->shape[d]);
    strcat(sh, "]");
    const char *mark = damaged(f, r->name) ? " !" : "";
    if (r->kind != QD_H5M_QUANTIZED) {
        printf("%-56s %-14s %4s %-8s %-10s %-4s %11s %8s%s%s\n", r->name, sh, "-", qd_h5m_kind_name(r->kind),
               r->orig_dtype, "", "", "", spx, mark);
        return;
    }
    char gdesc[48];
    if (r->group_size > 0)
        snprintf(gdesc, sizeof gdesc, "group %lld", (long long)r->group_size);
    else
        snprintf(gdesc, sizeof gdesc, "%s", r->gran == QD_GRAN_TENSOR ? "tensor" : "channel");
    const double *m = r->metrics;
    printf("%-56s %-14s %4d %-8s %-10s %-4s %11.3e %8.1f%s%s\n", r->name, sh, r->bits, r->method, gdesc,
           r->sym ? "sym" : "asym", m[0], m[3], spx, mark);
    (*nq)++;
    *sum_err += m[0];
    if (m[0] > *max_err) *max_err = m[0];
}

static int describe(const char *path)
{
    qd_h5m *f = NULL;
    const qd_h5m_open_opts o = {.flags = QD_H5M_LENIENT, .arch_known = qd_model_type_known};
    int st = qd_h5m_open(path, &o, &f);
    if (st) return st;
    const qd_h5m_info *in = qd_h5m_info_of(f);
    printf("model: %s\n  format qdist v%lld (written by qdist %s)\n", path, (long long)in->format_version,
           in->qdist_version);
    printf("  status        %s\n", in->status);
    printf("  arch          %s\n", in->arch);
    printf("  quant_config  %s\n", in->quant_config);
    printf("  source        %s\n\n", in->source);
    printf("%-56s %-14s %4s %-8s %-10s %-4s %11s %8s\n", "tensor", "shape", "bits", "method", "granularity", "",
           "rel.error", "SQNR dB");
    int nq = 0;
    double sum_err = 0, max_err = 0;
    for (int i = 0; i < qd_h5m_num_tensors(f); i++) print_tensor(f, i, &nq, &sum_err, &max_err);
    printf("\n%d tensors, %d quantized; rel. error mean %.3e, max %.3e\n", qd_h5m_num_tensors(f), nq,
           nq ? sum_err / nq : 0, max_err);
    const int np = qd_h5m_num_problems(f);
    if (np) {
        printf("\n%d problem%s (eval and export refuse this file):\n", np, np == 1 ? "" : "s");
        for (int i = 0; i < np; i++) {
            const qd_h5m_problem *p = qd_h5m_problem_at(f, i);
            if (p->tensor[0])
                printf("  ! tensor '%s': %s\n", p->tensor, p->what);
            else
                printf("  ! %s\n", p->what);
        }
        const qd_h5m_problem *p = qd_h5m_problem_at(f, 0);
        st = qd_err_set(QD_EFORMAT, "%s: %d problem%s, the first: %s%s%s%s", path, np, np == 1 ? "" : "s",
                        p->tensor[0] ? "tensor '" : "", p->tensor, p->tensor[0] ? "': " : "", p->what);
    }
    qd_h5m_close(f);
    return st;
}

int qd_cmd_inspect_h5(const char *path, MPI_Comm comm)
{
    return qd_cli_root_verdict(comm, "inspect", qd_cli_is_root(comm) ? describe(path) : QD_OK);
}
