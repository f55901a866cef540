/* qdist inspect FILE.h5: format version, configuration, and a per-tensor table of a qdist model
 * (docs/FORMAT.md). Rank 0 reads the file; the others wait for its verdict. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collective/collective.h"
#include "common/qd_common.h"
#include "coordinator/cli.h"

/* string attribute into buf ("" if absent) */
static void get_str(hid_t obj, const char *name, char *buf, size_t cap)
{
    buf[0] = 0;
    if (H5Aexists(obj, name) <= 0) return;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t t = H5Aget_type(a);
    if (H5Tget_class(t) == H5T_STRING && !H5Tis_variable_str(t)) {
        size_t n = H5Tget_size(t);
        char *tmp = calloc(n + 1, 1);
        H5Aread(a, t, tmp);
        snprintf(buf, cap, "%s", tmp);
        free(tmp);
    }
    H5Tclose(t);
    H5Aclose(a);
}

static int64_t get_i64(hid_t obj, const char *name, int64_t dflt)
{
    if (H5Aexists(obj, name) <= 0) return dflt;
    int64_t v = dflt;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    H5Aread(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
    return v;
}

typedef struct {
    int n, nq;
    double sum_err, max_err;
} walk_ctx;

/* " sparsity 50.0% (2:4, sparsegpt)" from a pruned tensor's mask dataset (zeros counted), "" for
 * dense tensors */
static void sparsity_suffix(hid_t t, const int64_t *shape, char *out, size_t cap)
{
    out[0] = 0;
    char pat[32], how[32];
    get_str(t, "sparsity", pat, sizeof pat);
    get_str(t, "prune_method", how, sizeof how);
    if (!pat[0] || H5Lexists(t, "mask", H5P_DEFAULT) <= 0) return;
    const int64_t rows = shape[0], cols = shape[1], rb = (cols + 7) / 8;
    uint8_t *m = malloc((size_t)(rows * rb) + 1);
    hid_t d = H5Dopen2(t, "mask", H5P_DEFAULT);
    int64_t kept = 0;
    if (m && d >= 0 && H5Dread(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, m) >= 0) {
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) kept += (m[r * rb + c / 8] >> (c % 8)) & 1;
        snprintf(out, cap, "  sparsity %.1f%% (%s, %s)", 100.0 * (1.0 - (double)kept / (double)(rows * cols)), pat,
                 how);
    }
    if (d >= 0) H5Dclose(d);
    free(m);
}

static herr_t on_tensor(hid_t g, const char *name, const H5L_info_t *info, void *op)
{
    (void)info;
    walk_ctx *w = op;
    hid_t t = H5Gopen2(g, name, H5P_DEFAULT);
    if (t < 0) return -1;
    char kind[32], method[32], gran[32], dtype[16];
    get_str(t, "kind", kind, sizeof kind);
    get_str(t, "method", method, sizeof method);
    get_str(t, "granularity", gran, sizeof gran);
    get_str(t, "orig_dtype", dtype, sizeof dtype);
    int64_t shape[8] = {0};
    char sh[96] = "[";
    if (H5Aexists(t, "shape") > 0) {
        hid_t a = H5Aopen(t, "shape", H5P_DEFAULT);
        hid_t sp = H5Aget_space(a);
        hssize_t nd = H5Sget_simple_extent_npoints(sp);
        if (nd > 0 && nd <= 8) {
            H5Aread(a, H5T_NATIVE_INT64, shape);
            for (int i = 0; i < nd; i++)
                snprintf(sh + strlen(sh), sizeof sh - strlen(sh), "%s%lld", i ? ", " : "", (long long)shape[i]);
        }
        H5Sclose(sp);
        H5Aclose(a);
    }
    strcat(sh, "]");
    w->n++;
    if (!strcmp(kind, "quantized")) {
        double m[4] = {0};
        if (H5Aexists(t, "metrics") > 0) {
            hid_t a = H5Aopen(t, "metrics", H5P_DEFAULT);
            H5Aread(a, H5T_NATIVE_DOUBLE, m);
            H5Aclose(a);
        }
        int64_t gs = get_i64(t, "group_size", -1);
        char gdesc[48];
        if (gs > 0)
            snprintf(gdesc, sizeof gdesc, "group %lld", (long long)gs);
        else
            snprintf(gdesc, sizeof gdesc, "%s", gran);
        char spx[96];
        sparsity_suffix(t, shape, spx, sizeof spx);
        printf("%-56s %-14s %4lld %-8s %-10s %-4s %11.3e %8.1f%s\n", name, sh, (long long)get_i64(t, "bits", 0), method,
               gdesc, get_i64(t, "sym", 0) ? "sym" : "asym", m[0], m[3], spx);
        w->nq++;
        w->sum_err += m[0];
        if (m[0] > w->max_err) w->max_err = m[0];
    } else {
        char spx[96];
        sparsity_suffix(t, shape, spx, sizeof spx);
        printf("%-56s %-14s %4s %-8s %-10s %-4s %11s %8s%s\n", name, sh, "-", kind, dtype, "", "", "", spx);
    }
    H5Gclose(t);
    return 0;
}

int qd_cmd_inspect_h5(const char *path, MPI_Comm comm)
{
    int st = QD_OK;
    if (qd_cli_is_root(comm)) {
        H5E_auto2_t fn;
        void *data;
        H5Eget_auto2(H5E_DEFAULT, &fn, &data);
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        char fmt[64] = "";
        if (f >= 0) get_str(f, "format", fmt, sizeof fmt);
        if (f < 0)
            st = qd_err_set(QD_EFORMAT, "%s: not an HDF5 file (or unreadable)", path);
        else if (strcmp(fmt, "qdist") != 0)
            st = qd_err_set(QD_EFORMAT, "%s: not a qdist model (root attribute format is '%s')", path, fmt);
        else {
            char *buf = malloc(1 << 16);
            int64_t ver = get_i64(f, "format_version", -1);
            get_str(f, "qdist_version", buf, 1 << 16);
            printf("model: %s\n  format qdist v%lld (written by qdist %s)\n", path, (long long)ver, buf);
            get_str(f, "status", buf, 1 << 16);
            printf("  status        %s\n", buf);
            get_str(f, "arch", buf, 1 << 16);
            printf("  arch          %s\n", buf);
            get_str(f, "quant_config", buf, 1 << 16);
            printf("  quant_config  %s\n", buf);
            get_str(f, "source", buf, 1 << 16);
            printf("  source        %s\n\n", buf);
            free(buf);
            if (ver != 1)
                st = qd_err_set(QD_EFORMAT, "%s: format version %lld is not supported (1)", path, (long long)ver);
            printf("%-56s %-14s %4s %-8s %-10s %-4s %11s %8s\n", "tensor", "shape", "bits", "method", "granularity", "",
                   "rel.error", "SQNR dB");
            walk_ctx w = {0};
            hid_t tg = H5Gopen2(f, "tensors", H5P_DEFAULT);
            if (tg < 0 || H5Literate(tg, H5_INDEX_NAME, H5_ITER_INC, NULL, on_tensor, &w) < 0)
                st = qd_err_set(QD_EFORMAT, "%s: cannot read /tensors", path);
            if (tg >= 0) H5Gclose(tg);
            printf("\n%d tensors, %d quantized; rel. error mean %.3e, max %.3e\n", w.n, w.nq,
                   w.nq ? w.sum_err / w.nq : 0, w.max_err);
        }
        if (f >= 0) H5Fclose(f);
        H5Eset_auto2(H5E_DEFAULT, fn, data);
    }
    char msg[1024];
    st = qd_coll_agree_msg(comm, st, msg, sizeof msg, NULL);
    if (st) {
        if (qd_cli_is_root(comm)) fprintf(stderr, "qdist inspect: %s\n", msg);
        return QD_EXIT_FAIL;
    }
    return QD_EXIT_OK;
}
