/* qdist export FILE.h5 --out DIR [--dtype f32|f16]: a dequantized safetensors checkpoint with the
 * original names and shapes, and the source config.json, loadable by the Hugging Face tools.
 * Rank 0 does the work; the other ranks wait for its verdict. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/qd_common.h"
#include "coordinator/cli.h"
#include "collective/h5model.h"
#include "export/export.h"
#include "model/model.h"
#include "quant/quant.h"
#include "shard/st_write.h"

static const char *export_help =
    "Usage: qdist export FILE.h5 --out DIR [--dtype f32|f16] [--keep-pruned-heads]\n"
    "       qdist export FILE.h5 --format onnx --out MODEL.onnx [--opset N] [--onnx-ops qdq|nbits|integer]\n"
    "                    [--outlier-threshold X]\n"
    "       qdist export FILE.h5 --format compressed-tensors --out DIR\n"
    "       qdist export FILE.h5 --format tflite --out MODEL.tflite [--activation-ranges RANGES.json]\n"
    "\n"
    "Default (--format safetensors): writes DIR/model.safetensors with every tensor of the qdist\n"
    "model dequantized (scale * (q - zero)) under its original name and shape, and DIR/config.json\n"
    "from the model's recorded configuration. Non-float tensors are copied unchanged. A model pruned\n"
    "by --prune-ffn keeps its smaller FFN matrices and intermediate_size; one pruned by --prune-heads\n"
    "gets its removed heads back as zero rows and columns (they add exactly nothing) and a config\n"
    "without pruned_heads, which transformers loads (it no longer prunes heads itself);\n"
    "--keep-pruned-heads writes the smaller matrices with pruned_heads instead (qdist loads both).\n"
    "\n"
    "--format onnx: the model's forward pass as an ONNX graph for ONNX Runtime, the quantized weights\n"
    "carried as stored (codes, scales, zero points, groups). Inputs: input_ids, attention_mask\n"
    "(and token_type_ids) for BERT, RoBERTa, XLM-R, CamemBERT, DistilBERT, ELECTRA and ALBERT\n"
    "models, pixel_values for ViT;\n"
    "outputs last_hidden_state, sentence_embedding (text: mean over real tokens), pooler_output,\n"
    "logits (BERT's and ViT's classification heads). Other families are refused.\n"
    "  --opset N               ONNX opset, 17 to 23 (default 21; groups in qdq form need 21)\n"
    "  --onnx-ops qdq          DequantizeLinear + MatMul, float activations (default; the\n"
    "                          results of 'qdist eval --fake-quant')\n"
    "  --onnx-ops nbits        com.microsoft MatMulNBits for 2/4/8-bit weights in power-of-two\n"
    "                          blocks >= 16, qdq for the rest\n"
    "  --onnx-ops integer      MatMulInteger on int8 activations quantized per token for 8-bit\n"
    "                          symmetric per-channel weights (the results of 'qdist eval'), qdq\n"
    "                          for the rest\n"
    "  --onnx-ops qoperator    integer operators (QuantizeLinear, MatMulInteger) on the file's static\n"
    "                          activation scales (quantize --activations static), float between\n"
    "  --outlier-threshold X   integer: input columns holding a value above X run in float, as in\n"
    "                          'qdist eval' (default 6, 0 = off)\n"
    "\n"
    "--format compressed-tensors: DIR/model.safetensors and DIR/config.json with the\n"
    "quantization_config of the compressed-tensors package, which transformers loads with\n"
    "AutoModel.from_pretrained: 8-bit Linears int-quantized (int8 weights), 2-7-bit ones\n"
    "pack-quantized (codes packed in int32), with their scales, zero points and group size.\n"
    "Every family qdist runs except DINOv2 (which transformers cannot load quantized). Act-order\n"
    "groups (g_idx) and groups that do not divide the input width are refused.\n"
    "Copy the tokenizer or preprocessor files beside them from the original checkpoint.\n"
    "\n"
    "--format tflite: an integer-only INT8 ViT for LiteRT (int8 activations with static scales,\n"
    "int8 per-channel weights, int32 biases; float pixel_values in, float logits out). The\n"
    "activation scales are the file's static ones (quantize --activations static), or come from\n"
    "--activation-ranges (a JSON object of [min, max] per tensor name, e.g. from\n"
    "tests/export/vit_ranges.py). Quantized\n"
    "Linears must be symmetric per output channel; float ones are quantized to int8 here.\n"
    "\n"
    "On an error nothing is written.\n";

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
        if (qd_h5m_record_has(r, QD_H5M_SMOOTH)) { /* docs/FORMAT.md "Smoothing": the file holds W diag(s) */
            float *sm = NULL;
            int64_t ns = 0;
            if ((rc = qd_h5m_read_field(f, i, QD_H5M_SMOOTH, (void **)&sm, &ns))) {
                free(vals);
                qd_h5m_values_free(&v);
                return rc;
            }
            const int64_t C = qd_h5m_cols(r);
            for (int64_t k = 0; ns == C && k < numel; k++) vals[k] /= sm[k % C];
            free(sm);
        }
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

/* Tensor i of layer l's attention: 1 for query/key/value weights and biases (rows by head), 2 for
 * the attention output's weight (columns by head), else 0. */
static int head_role(const char *name, int l)
{
    char key[32];
    snprintf(key, sizeof key, ".layer.%d.", l);
    if (!strstr(name, key)) return 0;
    static const char *rows[] = {"query.weight", "query.bias", "key.weight", "key.bias", "value.weight", "value.bias"};
    const size_t n = strlen(name);
    for (int k = 0; k < 6; k++)
        if (n >= strlen(rows[k]) && !strcmp(name + n - strlen(rows[k]), rows[k])) return 1;
    const char *o = "attention.output.dense.weight";
    return n >= strlen(o) && !strcmp(name + n - strlen(o), o) ? 2 : 0;
}

/* A model whose config lists pruned_heads, in the form transformers (which no longer prunes heads
 * when it loads) runs: each removed head back as zero query/key/value rows and biases and zero
 * attention-output columns — a head that adds exactly nothing — and pruned_heads dropped from the
 * config. *cfg_out: the new config (malloc'd), or NULL when there is nothing to do. */
static int pad_heads(const char *cfg, qd_st_out_tensor *t, int n, char **cfg_out)
{
    *cfg_out = NULL;
    cJSON *j = cJSON_Parse(cfg);
    const cJSON *ph = j ? cJSON_GetObjectItemCaseSensitive(j, "pruned_heads") : NULL;
    if (!cJSON_IsObject(ph) || !ph->child) {
        cJSON_Delete(j);
        return QD_OK;
    }
    const cJSON *nh = cJSON_GetObjectItemCaseSensitive(j, "num_attention_heads"),
                *hs = cJSON_GetObjectItemCaseSensitive(j, "attention_head_size"),
                *hid = cJSON_GetObjectItemCaseSensitive(j, "hidden_size");
    const int heads = cJSON_IsNumber(nh) ? nh->valueint : 0;
    const int64_t d = cJSON_IsNumber(hs) ? hs->valueint : heads && cJSON_IsNumber(hid) ? hid->valueint / heads : 0;
    int rc = heads > 0 && d > 0 ? QD_OK : qd_err_set(QD_ECONFIG, "model_config: pruned_heads without head sizes");
    for (const cJSON *e = ph->child; !rc && e; e = e->next) {
        const int l = atoi(e->string);
        uint8_t *keep = qd_xmalloc((size_t)heads);
        memset(keep, 1, (size_t)heads);
        for (const cJSON *h = e->child; h; h = h->next)
            if (cJSON_IsNumber(h) && h->valueint >= 0 && h->valueint < heads) keep[h->valueint] = 0;
        int kept = 0;
        for (int h = 0; h < heads; h++) kept += keep[h];
        for (int i = 0; i < n; i++) {
            const int role = head_role(t[i].name, l);
            if (!role) continue;
            const size_t es = t[i].dtype == QD_DT_F16 ? 2 : 4;
            const int64_t R = t[i].shape[0], C = t[i].ndim > 1 ? t[i].shape[1] : 1;
            const int64_t a = role == 1 ? R : C; /* the side that holds the heads */
            if (a != kept * d) {
                rc = qd_err_set(QD_ESHAPE, "tensor '%s': %lld head rows or columns, not %d heads of %lld", t[i].name,
                                (long long)a, kept, (long long)d);
                break;
            }
            const int64_t R2 = role == 1 ? heads * d : R, C2 = role == 1 ? C : heads * d;
            uint8_t *o = qd_xcalloc((size_t)(R2 * C2), es);
            const uint8_t *src = t[i].data;
            for (int h = 0, k = 0; h < heads; h++) {
                if (!keep[h]) continue;
                for (int64_t x = 0; x < d; x++) {
                    const int64_t to = h * d + x, from = k * d + x;
                    if (role == 1)
                        memcpy(o + (size_t)(to * C2) * es, src + (size_t)(from * C) * es, (size_t)C * es);
                    else
                        for (int64_t r = 0; r < R; r++)
                            memcpy(o + (size_t)(r * C2 + to) * es, src + (size_t)(r * C + from) * es, es);
                }
                k++;
            }
            free((void *)t[i].data);
            t[i].data = o;
            t[i].shape[role == 1 ? 0 : 1] = role == 1 ? R2 : C2;
        }
        free(keep);
    }
    if (!rc) {
        cJSON_DeleteItemFromObjectCaseSensitive(j, "pruned_heads");
        *cfg_out = cJSON_PrintUnformatted(j);
    }
    cJSON_Delete(j);
    return rc;
}

static int do_export(const char *path, const char *dir, int f16, int keep_pruned)
{
    qd_h5m *f = NULL;
    const qd_h5m_open_opts oo = {.arch_known = qd_model_type_known};
    int st = qd_h5m_open(path, &oo, &f);
    if (st) return st;
    const int n = qd_h5m_num_tensors(f);
    qd_st_out_tensor *t = qd_xcalloc((size_t)(n ? n : 1), sizeof *t);
    int nt = 0;
    for (; nt < n && st == QD_OK; nt++) st = export_tensor(f, nt, f16, &t[nt]);
    char *padded = NULL;
    if (st == QD_OK && !keep_pruned) st = pad_heads(qd_h5m_info_of(f)->model_config, t, n, &padded);
    if (st == QD_OK) {
        mkdir(dir, 0755);
        char out[4096];
        snprintf(out, sizeof out, "%s/model.safetensors", dir);
        char meta[256];
        snprintf(meta, sizeof meta, "{\"format\":\"pt\",\"qdist\":\"dequantized from a qdist model\"}");
        st = qd_st_write(out, t, n, meta);
        const char *cfg = padded ? padded : qd_h5m_info_of(f)->model_config;
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
    free(padded);
    qd_h5m_close(f);
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
               "DequantizeLinear, %d MatMulNBits, %d MatMulInteger, %d codebook Gather%s\n",
               out, (double)sum.bytes / 1e6, oo->opset, qd_onnx_ops_name(oo->ops), sum.linears_float, sum.linears_qdq,
               sum.linears_blocked, sum.linears_nbits, sum.linears_integer, sum.linears_gather,
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
                                 {"keep-pruned-heads", no_argument, 0, 'k'},
                                 {"help", no_argument, 0, 'h'},
                                 {0, 0, 0, 0}};
    const char *out = NULL, *format = "safetensors", *ranges = NULL;
    qd_onnx_opts oo = {.opset = QD_ONNX_OPSET_DEFAULT, .ops = QD_ONNX_QDQ, .outlier = 6.0f};
    char *end;
    int f16 = 0, keep_pruned = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'k': keep_pruned = 1; break;
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
    return qd_cli_root_verdict(comm, "export",
                               !qd_cli_is_root(comm)            ? QD_OK
                               : !strcmp(format, "safetensors") ? do_export(argv[optind], out, f16, keep_pruned)
                                                                : do_export_to(format, argv[optind], out, &oo, ranges));
}
