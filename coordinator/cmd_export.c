/* qdist export FILE.h5 --out DIR [--dtype f32|f16]: a dequantized safetensors checkpoint with the
 * original names and shapes, and the source config.json, loadable by the Hugging Face tools.
 * Rank 0 does the work; the other ranks wait for its verdict. */
#include <getopt.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "collective/collective.h"
#include "common/qd_common.h"
#include "coordinator/cli.h"
#include "collective/h5_read.h"
#include "export/export.h"
#include "quant/quant.h"
#include "shard/st_write.h"

static const char *export_help =
    "Usage: qdist export FILE.h5 --out DIR [--dtype f32|f16]\n"
    "       qdist export FILE.h5 --format onnx --out MODEL.onnx [--opset N] [--onnx-ops qdq|nbits|integer]\n"
    "                    [--outlier-threshold X]\n"
    "       qdist export FILE.h5 --format compressed-tensors --out DIR\n"
    "       qdist export FILE.h5 --format tflite --out MODEL.tflite --activation-ranges RANGES.json\n"
    "\n"
    "Default (--format safetensors): writes DIR/model.safetensors with every tensor of the qdist\n"
    "model dequantized (scale * (q - zero)) under its original name and shape, and DIR/config.json\n"
    "from the model's recorded configuration. Non-float tensors are copied unchanged.\n"
    "\n"
    "--format onnx: the model's forward pass as an ONNX graph for ONNX Runtime, the quantized weights\n"
    "carried as stored (codes, scales, zero points, groups). Inputs: input_ids, attention_mask\n"
    "(and token_type_ids) for BERT models, pixel_values for ViT models; outputs last_hidden_state,\n"
    "sentence_embedding (BERT: mean over real tokens), pooler_output, logits (with a head).\n"
    "  --opset N               ONNX opset, 17 to 23 (default 21; groups in qdq form need 21)\n"
    "  --onnx-ops qdq          DequantizeLinear + MatMul, float activations (default; the\n"
    "                          results of 'qdist eval --fake-quant')\n"
    "  --onnx-ops nbits        com.microsoft MatMulNBits for 2/4/8-bit weights in power-of-two\n"
    "                          blocks >= 16, qdq for the rest\n"
    "  --onnx-ops integer      MatMulInteger on int8 activations quantized per token for 8-bit\n"
    "                          symmetric per-channel weights (the results of 'qdist eval'), qdq\n"
    "                          for the rest\n"
    "  --onnx-ops qoperator    QLinearMatMul graphs on static activation scales (not yet: refused)\n"
    "  --outlier-threshold X   integer: input columns holding a value above X run in float, as in\n"
    "                          'qdist eval' (default 6, 0 = off)\n"
    "\n"
    "--format compressed-tensors: DIR/model.safetensors and DIR/config.json with the\n"
    "quantization_config of the compressed-tensors package, which transformers loads with\n"
    "AutoModel.from_pretrained: 8-bit Linears int-quantized (int8 weights), 2-7-bit ones\n"
    "pack-quantized (codes packed in int32), with their scales, zero points and group size.\n"
    "Act-order groups (g_idx) and groups that do not divide the input width are refused.\n"
    "Copy the tokenizer or preprocessor files beside them from the original checkpoint.\n"
    "\n"
    "--format tflite: an integer-only INT8 ViT for LiteRT (int8 activations with static scales,\n"
    "int8 per-channel weights, int32 biases; float pixel_values in, float logits out). The\n"
    "activation scales come from --activation-ranges (a JSON object of [min, max] per tensor\n"
    "name, e.g. from tests/export/vit_ranges.py): model files do not record them yet. Quantized\n"
    "Linears must be symmetric per output channel; float ones are quantized to int8 here.\n"
    "\n"
    "On an error nothing is written.\n";

typedef struct {
    qd_st_out_tensor *t;
    int n, cap, f16;
    int st;
    const char *path;
} exp_ctx;

static herr_t on_tensor(hid_t tg, const char *name, const H5L_info_t *info, void *op)
{
    (void)info;
    exp_ctx *x = op;
    hid_t g = H5Gopen2(tg, name, H5P_DEFAULT);
    if (g < 0) return -1;
    char *kind = qd_h5_attr_text(g, "kind"), *dt = qd_h5_attr_text(g, "orig_dtype");
    int64_t shape[QD_ST_MAX_DIMS] = {0};
    int nd = 0;
    if (H5Aexists(g, "shape") > 0) {
        hid_t a = H5Aopen(g, "shape", H5P_DEFAULT), sp = H5Aget_space(a);
        hssize_t k = H5Sget_simple_extent_npoints(sp);
        if (k > 0 && k <= QD_ST_MAX_DIMS) {
            H5Aread(a, H5T_NATIVE_INT64, shape);
            nd = (int)k;
        }
        H5Sclose(sp);
        H5Aclose(a);
    }
    int64_t numel = 1;
    for (int d = 0; d < nd; d++) numel *= shape[d];
    float *vals = NULL;
    void *rawbuf = NULL;
    qd_dtype odt = QD_DT_F32;
    if (kind && !strcmp(kind, "quantized") && nd == 2) {
        int bits = (int)qd_h5_attr_int(g, "bits", 8), sym = (int)qd_h5_attr_int(g, "sym", 1);
        int64_t R = shape[0], C = shape[1], gs = qd_h5_attr_int(g, "group_size", -1);
        size_t nq = 0, ns = 0;
        uint8_t *packed = qd_h5_read_ds(g, "qweight", H5T_NATIVE_UINT8, 1, &nq);
        float *sc = qd_h5_read_ds(g, "scales", H5T_NATIVE_FLOAT, 4, &ns);
        int32_t *zr = qd_h5_read_ds(g, "zeros", H5T_NATIVE_INT32, 4, NULL);
        int32_t *gi = qd_h5_read_ds(g, "g_idx", H5T_NATIVE_INT32, 4, NULL);
        if (packed && sc && nq == (size_t)(R * qd_packed_row_bytes(C, bits)) && ns % (size_t)R == 0) {
            qd_qparams p = {.rows = R,
                            .cols = C,
                            .ngroups = (int64_t)ns / R,
                            .group_size = gs > 0 ? gs : C,
                            .bits = bits,
                            .sym = sym,
                            .scales = sc};
            p.zeros = zr ? zr : qd_xmalloc(ns * sizeof(int32_t));
            if (!zr)
                for (size_t i = 0; i < ns; i++) p.zeros[i] = 1 << (bits - 1);
            uint8_t *codes = qd_xmalloc((size_t)(R * C));
            qd_unpack_matrix(packed, R, C, bits, codes);
            vals = qd_xmalloc((size_t)(R * C) * sizeof(float));
            qd_dequantize(codes, &p, gi, vals);
            free(codes);
            if (!zr) free(p.zeros);
        } else
            x->st = qd_err_set(QD_EFORMAT, "%s: tensor '%s': quantized datasets missing or of the wrong size", x->path,
                               name);
        free(packed);
        free(sc);
        free(zr);
        free(gi);
    } else if (kind && !strcmp(kind, "float")) {
        size_t cnt = 0;
        vals = qd_h5_read_ds(g, "data", H5T_NATIVE_FLOAT, 4, &cnt);
        if (!vals || (int64_t)cnt != (nd ? numel : 1))
            x->st = qd_err_set(QD_EFORMAT, "%s: tensor '%s': data missing or of the wrong size", x->path, name);
    } else if (kind && !strcmp(kind, "raw")) {
        if (!dt || qd_dtype_from_name(dt, &odt) != QD_OK)
            x->st = qd_err_set(QD_EFORMAT, "%s: tensor '%s': unknown orig_dtype '%s'", x->path, name, dt ? dt : "");
        rawbuf = qd_h5_read_ds(g, "raw", H5T_NATIVE_UINT8, 1, NULL);
    } else
        x->st = qd_err_set(QD_EFORMAT, "%s: tensor '%s': unknown kind '%s'", x->path, name, kind ? kind : "");
    if (x->st == QD_OK) {
        if (x->n == x->cap) {
            x->cap = x->cap ? 2 * x->cap : 64;
            x->t = realloc(x->t, (size_t)x->cap * sizeof *x->t);
        }
        qd_st_out_tensor *o = &x->t[x->n++];
        memset(o, 0, sizeof *o);
        o->name = qd_xstrdup(name);
        o->ndim = nd;
        memcpy(o->shape, shape, sizeof shape);
        if (vals && x->f16) {
            uint16_t *h = qd_xmalloc((size_t)numel * 2);
            for (int64_t i = 0; i < numel; i++) h[i] = qd_f32_to_f16(vals[i]);
            free(vals);
            o->dtype = QD_DT_F16;
            o->data = h;
        } else if (vals) {
            o->dtype = QD_DT_F32;
            o->data = vals;
        } else {
            o->dtype = odt;
            o->data = rawbuf;
        }
    } else {
        free(vals);
        free(rawbuf);
    }
    free(kind);
    free(dt);
    H5Gclose(g);
    return x->st == QD_OK ? 0 : -1;
}

static int do_export(const char *path, const char *dir, int f16)
{
    H5E_auto2_t fn;
    void *data;
    H5Eget_auto2(H5E_DEFAULT, &fn, &data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    int st = QD_OK;
    char *fmt = f >= 0 ? qd_h5_attr_text(f, "format") : NULL, *status = f >= 0 ? qd_h5_attr_text(f, "status") : NULL;
    if (f < 0)
        st = qd_err_set(QD_EFORMAT, "%s: not an HDF5 file (or unreadable)", path);
    else if (!fmt || strcmp(fmt, "qdist"))
        st = qd_err_set(QD_EFORMAT, "%s: not a qdist model", path);
    else if (qd_h5_attr_int(f, "format_version", -1) != 1)
        st = qd_err_set(QD_EFORMAT, "%s: unsupported format version %lld", path,
                        (long long)qd_h5_attr_int(f, "format_version", -1));
    else if (!status || strcmp(status, "complete"))
        st = qd_err_set(QD_EFORMAT, "%s: the model is incomplete (status '%s')", path, status ? status : "");
    exp_ctx x = {.f16 = f16, .path = path};
    if (st == QD_OK) {
        hid_t tg = H5Gopen2(f, "tensors", H5P_DEFAULT);
        if (tg < 0 || H5Literate(tg, H5_INDEX_NAME, H5_ITER_INC, NULL, on_tensor, &x) < 0)
            st = x.st ? x.st : qd_err_set(QD_EFORMAT, "%s: cannot read /tensors", path);
        if (tg >= 0) H5Gclose(tg);
    }
    if (st == QD_OK) {
        mkdir(dir, 0755);
        char out[4096];
        snprintf(out, sizeof out, "%s/model.safetensors", dir);
        char meta[256];
        snprintf(meta, sizeof meta, "{\"format\":\"pt\",\"qdist\":\"dequantized from a qdist model\"}");
        st = qd_st_write(out, x.t, x.n, meta);
        char *cfg = qd_h5_attr_text(f, "model_config");
        if (st == QD_OK && cfg && cfg[0]) {
            snprintf(out, sizeof out, "%s/config.json", dir);
            FILE *c = fopen(out, "w");
            if (!c || fputs(cfg, c) < 0 || fclose(c) != 0) st = qd_err_set(QD_EIO, "%s: cannot write", out);
        }
        free(cfg);
        if (st == QD_OK)
            printf("wrote %s/model.safetensors (%d tensors, %s) and config.json\n", dir, x.n, f16 ? "F16" : "F32");
    }
    for (int i = 0; i < x.n; i++) {
        free((void *)x.t[i].name);
        free((void *)x.t[i].data);
    }
    free(x.t);
    free(fmt);
    free(status);
    if (f >= 0) H5Fclose(f);
    H5Eset_auto2(H5E_DEFAULT, fn, data);
    return st;
}

/* --format onnx|... : the other runtimes' formats (export/) */
static int do_export_to(const char *format, const char *path, const char *out, const qd_onnx_opts *oo,
                        const char *ranges)
{
    qd_export_summary sum;
    int rc;
    if (!strcmp(format, "onnx")) {
        if ((rc = qd_export_onnx(path, out, oo, &sum))) return rc;
        printf("wrote %s (%.2f MB, opset %d, %s): Linears %d float, %d per-channel DequantizeLinear, %d blocked "
               "DequantizeLinear, %d MatMulNBits, %d MatMulInteger%s\n",
               out, (double)sum.bytes / 1e6, oo->opset, qd_onnx_ops_name(oo->ops), sum.linears_float, sum.linears_qdq,
               sum.linears_blocked, sum.linears_nbits, sum.linears_integer,
               sum.act_order_gathers ? " (act-order inputs gathered)" : "");
        return QD_OK;
    }
    if (!strcmp(format, "compressed-tensors")) {
        if ((rc = qd_export_ctensors(path, out, &sum))) return rc;
        printf("wrote %s/model.safetensors (%.2f MB) and config.json (compressed-tensors): Linears %d int-quantized, "
               "%d pack-quantized, %d float\n",
               out, (double)sum.bytes / 1e6, sum.linears_integer, sum.linears_nbits, sum.linears_float);
        return QD_OK;
    }
    if (!strcmp(format, "tflite")) {
        if ((rc = qd_export_tflite(path, ranges, out, &sum))) return rc;
        printf("wrote %s (%.2f MB, LiteRT integer-only int8): Linears %d from the file's codes, %d quantized to int8 "
               "here\n",
               out, (double)sum.bytes / 1e6, sum.linears_integer, sum.linears_float);
        return QD_OK;
    }
    return qd_err_set(QD_EINVAL, "unknown --format '%s'", format);
}

int qd_cmd_export(int argc, char **argv, MPI_Comm comm)
{
    enum { O_FORMAT = 256, O_OPSET, O_ONNX_OPS, O_OUTLIER, O_RANGES };
    static struct option lo[] = {{"out", required_argument, 0, 'o'},
                                 {"dtype", required_argument, 0, 'd'},
                                 {"format", required_argument, 0, O_FORMAT},
                                 {"opset", required_argument, 0, O_OPSET},
                                 {"onnx-ops", required_argument, 0, O_ONNX_OPS},
                                 {"outlier-threshold", required_argument, 0, O_OUTLIER},
                                 {"activation-ranges", required_argument, 0, O_RANGES},
                                 {"help", no_argument, 0, 'h'},
                                 {0, 0, 0, 0}};
    const char *out = NULL, *format = "safetensors", *ranges = NULL;
    qd_onnx_opts oo = {.opset = QD_ONNX_OPSET_DEFAULT, .ops = QD_ONNX_QDQ, .outlier = 6.0f};
    char *end;
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
        case O_FORMAT:
            if (strcmp(optarg, "safetensors") && strcmp(optarg, "onnx") && strcmp(optarg, "compressed-tensors") &&
                strcmp(optarg, "tflite"))
                return qd_cli_usage_error(comm, "export",
                                          "--format must be safetensors, onnx, compressed-tensors or tflite, got '%s'",
                                          optarg);
            format = optarg;
            break;
        case O_OPSET:
            oo.opset = (int)strtol(optarg, &end, 10);
            if (*end || oo.opset < QD_ONNX_OPSET_MIN || oo.opset > QD_ONNX_OPSET_MAX)
                return qd_cli_usage_error(comm, "export", "--opset must be %d to %d, got '%s'", QD_ONNX_OPSET_MIN,
                                          QD_ONNX_OPSET_MAX, optarg);
            break;
        case O_ONNX_OPS:
            if (qd_onnx_ops_parse(optarg, &oo.ops))
                return qd_cli_usage_error(comm, "export",
                                          "--onnx-ops must be qdq, nbits, integer or qoperator, got '%s'", optarg);
            break;
        case O_RANGES: ranges = optarg; break;
        case O_OUTLIER:
            oo.outlier = strtof(optarg, &end);
            if (*end || !(oo.outlier >= 0))
                return qd_cli_usage_error(comm, "export", "--outlier-threshold must be a number >= 0, got '%s'",
                                          optarg);
            break;
        case 'h':
            if (qd_cli_is_root(comm)) fputs(export_help, stdout);
            return QD_EXIT_OK;
        default: return qd_cli_usage_error(comm, "export", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc) return qd_cli_usage_error(comm, "export", "missing FILE.h5");
    if (optind + 1 < argc) return qd_cli_usage_error(comm, "export", "unexpected argument '%s'", argv[optind + 1]);
    if (!out) return qd_cli_usage_error(comm, "export", "missing --out");
    int st = !qd_cli_is_root(comm)            ? QD_OK
             : !strcmp(format, "safetensors") ? do_export(argv[optind], out, f16)
                                              : do_export_to(format, argv[optind], out, &oo, ranges);
    char msg[1024];
    st = qd_coll_agree_msg(comm, st, msg, sizeof msg, NULL);
    if (st) {
        if (qd_cli_is_root(comm)) fprintf(stderr, "qdist export: %s\n", msg);
        return QD_EXIT_FAIL;
    }
    return QD_EXIT_OK;
}
