/* qdist export FILE.h5 --out DIR [--dtype f32|f16]: a dequantized safetensors checkpoint with the
 * original names and shapes, and the source config.json, loadable by the Hugging Face tools.
 * Rank 0 does the work; the other ranks wait for its verdict. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/qd_common.h"
#include "coordinator/cli.h"
#include "collective/h5model.h"
#include "model/model.h"
#include "quant/quant.h"
#include "shard/st_write.h"

static const char *export_help =
    "Usage: qdist export FILE.h5 --out DIR [--dtype f32|f16]\n"
    "\n"
    "Writes DIR/model.safetensors with every tensor of the qdist model dequantized\n"
    "(scale * (q - zero)) under its original name and shape, and DIR/config.json from the model's\n"
    "recorded configuration. Non-float tensors are copied unchanged.\n";

/* Record i as an output tensor: dequantized (F32 or F16), or raw bytes in their dtype. */
static int export_tensor(qd_h5m *f, int i, int f16, qd_st_out_tensor *o)
{
    const qd_h5m_record *r = qd_h5m_tensor(f, i);
    memset(o, 0, sizeof *o);
    qd_h5m_values v;
    int rc = qd_h5m_read(f, i, &v);
    if (rc) return rc;
    qd_dtype odt = QD_DT_F32;
    if (r->kind == QD_H5M_RAWBYTES && qd_dtype_from_name(r->orig_dtype, &odt) != QD_OK) {
        qd_h5m_values_free(&v);
        return qd_err_set(QD_EFORMAT, "%s: tensor '%s': orig_dtype '%s' is not a safetensors dtype", qd_h5m_path(f),
                          r->name, r->orig_dtype);
    }
    const int64_t numel = qd_h5m_numel(r);
    float *vals = NULL;
    if (r->kind == QD_H5M_QUANTIZED) {
        vals = qd_xmalloc((size_t)(numel > 0 ? numel : 1) * sizeof(float));
        qd_h5m_dequantize(r, &v, vals);
    } else if (r->kind == QD_H5M_FLOAT) {
        vals = v.data;
        v.data = NULL;
    }
    o->name = qd_xstrdup(r->name);
    o->ndim = r->zero_d ? 0 : r->ndim;
    memcpy(o->shape, r->shape, sizeof(int64_t) * (size_t)QD_MIN(r->ndim, QD_ST_MAX_DIMS));
    if (vals && f16) {
        uint16_t *h = qd_xmalloc((size_t)(numel > 0 ? numel : 1) * 2);
        for (int64_t k = 0; k < numel; k++) h[k] = qd_f32_to_f16(vals[k]);
        free(vals);
        o->dtype = QD_DT_F16;
        o->data = h;
    } else if (vals) {
        o->dtype = QD_DT_F32;
        o->data = vals;
    } else {
        o->dtype = odt;
        o->data = v.raw;
        v.raw = NULL;
    }
    qd_h5m_values_free(&v);
    return QD_OK;
}

static int do_export(const char *path, const char *dir, int f16)
{
    qd_h5m *f = NULL;
    const qd_h5m_open_opts oo = {.arch_known = qd_model_type_known};
    int st = qd_h5m_open(path, &oo, &f);
    if (st) return st;
    const int n = qd_h5m_num_tensors(f);
    qd_st_out_tensor *t = qd_xcalloc((size_t)(n ? n : 1), sizeof *t);
    int nt = 0;
    for (; nt < n && st == QD_OK; nt++) st = export_tensor(f, nt, f16, &t[nt]);
    if (st == QD_OK) {
        mkdir(dir, 0755);
        char out[4096];
        snprintf(out, sizeof out, "%s/model.safetensors", dir);
        char meta[256];
        snprintf(meta, sizeof meta, "{\"format\":\"pt\",\"qdist\":\"dequantized from a qdist model\"}");
        st = qd_st_write(out, t, n, meta);
        const char *cfg = qd_h5m_info_of(f)->model_config;
        if (st == QD_OK && cfg[0]) {
            snprintf(out, sizeof out, "%s/config.json", dir);
            FILE *c = fopen(out, "w");
            if (!c || fputs(cfg, c) < 0 || fclose(c) != 0) st = qd_err_set(QD_EIO, "%s: cannot write", out);
        }
        if (st == QD_OK)
            printf("wrote %s/model.safetensors (%d tensors, %s) and config.json\n", dir, n, f16 ? "F16" : "F32");
    }
    for (int i = 0; i < nt; i++) {
        free((void *)t[i].name);
        free((void *)t[i].data);
    }
    free(t);
    qd_h5m_close(f);
    return st;
}

int qd_cmd_export(int argc, char **argv, MPI_Comm comm)
{
    static struct option lo[] = {{"out", required_argument, 0, 'o'},
                                 {"dtype", required_argument, 0, 'd'},
                                 {"help", no_argument, 0, 'h'},
                                 {0, 0, 0, 0}};
    const char *out = NULL;
    int f16 = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'd':
            if (!strcmp(optarg, "f16"))
                f16 = 1;
            else if (!strcmp(optarg, "f32"))
                f16 = 0;
            else
                return qd_cli_usage_error(comm, "export", "--dtype must be f32 or f16, got '%s'", optarg);
            break;
        case 'h':
            if (qd_cli_is_root(comm)) fputs(export_help, stdout);
            return QD_EXIT_OK;
        default: return qd_cli_usage_error(comm, "export", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc) return qd_cli_usage_error(comm, "export", "missing FILE.h5");
    if (optind + 1 < argc) return qd_cli_usage_error(comm, "export", "unexpected argument '%s'", argv[optind + 1]);
    if (!out) return qd_cli_usage_error(comm, "export", "missing --out DIR");
    return qd_cli_root_verdict(comm, "export", qd_cli_is_root(comm) ? do_export(argv[optind], out, f16) : QD_OK);
}
