/* qdist inspect PATH — describe a checkpoint: the architecture from config.json beside it, then
 * one line per tensor (dtype, shape, parameters, bytes, whether the default quantization touches
 * it) and totals. PATH is a .safetensors file, a model.safetensors.index.json, or a directory
 * holding either. Every rank opens the checkpoint and the ranks agree on the outcome; only rank 0
 * prints. A .h5 PATH is a qdist HDF5 model, handled by qd_cmd_inspect_h5 where built in. */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collective/collective.h"
#include "common/qd_common.h"
#include "common/qd_file.h"
#include "coordinator/cli.h"
#include "shard/safetensors.h"
#include "shard/select.h"

/* HDF5 model inspection (coordinator/cmd_inspect_h5.c). Returns a process exit code, the same on
 * every rank. */
int qd_cmd_inspect_h5(const char *path, MPI_Comm comm);

static void print_help(FILE *f)
{
    fprintf(f, "Usage: [mpirun -n N] qdist inspect [--json] PATH\n"
               "\n"
               "Describe a checkpoint: architecture (from config.json beside it), every tensor with\n"
               "its dtype, shape, parameter count, size, and whether quantization touches it by\n"
               "default (2-D Linear weights inside encoder blocks), then totals.\n"
               "\n"
               "PATH   a .safetensors file, a model.safetensors.index.json, or a directory holding\n"
               "       model.safetensors or model.safetensors.index.json; a .h5 path is a qdist model\n"
               "\n"
               "Options:\n"
               "  --json      print one JSON object instead of the table\n"
               "  -h, --help  this text\n"
               "\n"
               "Exit status: 0 success, 1 unreadable or invalid checkpoint, 2 usage error.\n");
}

/* 1234567 -> "1,234,567" */
static const char *grouped(uint64_t v, char buf[32])
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%" PRIu64, v);
    int o = 0;
    for (int i = 0; i < n; i++) {
        if (i && (n - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = tmp[i];
    }
    buf[o] = 0;
    return buf;
}

static void shape_str(const qd_tensor_info *t, char *buf, size_t cap)
{
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int k = 0; k < t->ndim && o < cap; k++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%" PRId64, k ? ", " : "", t->shape[k]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

static const char *k_config_keys[] = {"model_type",        "architectures",       "hidden_size",
                                      "num_hidden_layers", "num_attention_heads", "intermediate_size"};

/* config.json beside the checkpoint: the parsed object, or NULL with *why saying why. */
static cJSON *load_config(const char *dir, char *path, size_t cap, const char **why)
{
    snprintf(path, cap, "%s/config.json", dir);
    char *buf = NULL;
    size_t len = 0;
    int rc = qd_read_file(path, 16u << 20, "a model config", &buf, &len);
    if (rc) {
        *why = rc == QD_ENOENT ? "absent" : "unreadable, ignored";
        return NULL;
    }
    cJSON *j = cJSON_ParseWithLength(buf, len);
    free(buf);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        *why = "not a valid JSON object, ignored";
        return NULL;
    }
    return j;
}

/* A config value as text ("-" when absent); architectures shows its first entry. */
static void config_value(const cJSON *cfg, const char *key, char *buf, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsArray(v)) v = cJSON_GetArrayItem(v, 0);
    if (cJSON_IsString(v) && v->valuestring)
        snprintf(buf, cap, "%s", v->valuestring);
    else if (cJSON_IsNumber(v))
        snprintf(buf, cap, "%.15g", v->valuedouble);
    else if (cJSON_IsBool(v))
        snprintf(buf, cap, "%s", cJSON_IsTrue(v) ? "true" : "false");
    else
        snprintf(buf, cap, "-");
}

typedef struct {
    uint64_t params, bytes, qparams;
    int nq, nblocks;
} totals;

static totals compute_totals(const qd_checkpoint *ck)
{
    totals s = {0};
    for (int i = 0; i < qd_ckpt_num_tensors(ck); i++) {
        const qd_tensor_info *t = qd_ckpt_tensor(ck, i);
        s.params += t->numel;
        s.bytes += t->nbytes;
        if (qd_shard_default_quantizable(t)) {
            s.nq++;
            s.qparams += t->numel;
        }
        int b = qd_shard_block_index(t->name);
        if (b + 1 > s.nblocks) s.nblocks = b + 1;
    }
    return s;
}

static void hex32(const unsigned char *d, char out[65])
{
    for (int i = 0; i < 32; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

static void print_text(const qd_checkpoint *ck, const cJSON *cfg, const char *cfg_path, const char *cfg_why)
{
    char g1[32], g2[32], h[65];
    int nf = qd_ckpt_num_files(ck);
    printf("checkpoint: %s (%d file%s)\n", qd_ckpt_dir(ck), nf, nf == 1 ? "" : "s");
    for (int i = 0; i < nf; i++) {
        const qd_st_file *f = qd_ckpt_file(ck, i);
        hex32(f->header_sha256, h);
        printf("  [%d] %s  %s bytes, header %s bytes, header sha256 %s\n", i, f->path, grouped(f->size, g1),
               grouped(f->header_len, g2), h);
        if (f->metadata_json) printf("      metadata %s\n", f->metadata_json);
    }
    printf("\narchitecture (%s", cfg_path);
    if (!cfg) {
        printf(": %s)\n", cfg_why);
    } else {
        printf("):\n");
        for (size_t k = 0; k < QD_ARRAY_LEN(k_config_keys); k++) {
            char v[128];
            config_value(cfg, k_config_keys[k], v, sizeof v);
            printf("  %-20s %s\n", !strcmp(k_config_keys[k], "architectures") ? "architectures[0]" : k_config_keys[k],
                   v);
        }
    }

    int nt = qd_ckpt_num_tensors(ck);
    int wname = 4;
    for (int i = 0; i < nt; i++) {
        int l = (int)strlen(qd_ckpt_tensor(ck, i)->name);
        if (l > wname) wname = l;
    }
    printf("\n%-*s  %-5s  %-16s  %12s  %14s  %s%s\n", wname, "name", "dtype", "shape", "params", "bytes", "quantize",
           nf > 1 ? "  file" : "");
    for (int i = 0; i < nt; i++) {
        const qd_tensor_info *t = qd_ckpt_tensor(ck, i);
        char shp[160];
        shape_str(t, shp, sizeof shp);
        const char *q = qd_shard_default_quantizable(t) ? "yes" : "-";
        printf("%-*s  %-5s  %-16s  %12s  %14s  ", wname, t->name, qd_dtype_name(t->dtype), shp, grouped(t->numel, g1),
               grouped(t->nbytes, g2));
        if (nf > 1)
            printf("%-8s  %d", q, t->file_index);
        else
            printf("%s", q);
        printf("\n");
    }
    totals s = compute_totals(ck);
    char g3[32], g4[32];
    printf("\ntotal: %d tensors, %s parameters, %s bytes, %d encoder blocks\n", nt, grouped(s.params, g1),
           grouped(s.bytes, g2), s.nblocks);
    printf("quantized by default: %d tensors, %s parameters (%.1f%% of all parameters); "
           "kept float: %d tensors, %s parameters\n",
           s.nq, grouped(s.qparams, g3), s.params ? 100.0 * (double)s.qparams / (double)s.params : 0.0, nt - s.nq,
           grouped(s.params - s.qparams, g4));
}

static void print_json(const qd_checkpoint *ck, const cJSON *cfg, const char *cfg_path, const char *cfg_why)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "path", qd_ckpt_dir(ck));
    cJSON *files = cJSON_AddArrayToObject(root, "files");
    char h[65];
    for (int i = 0; i < qd_ckpt_num_files(ck); i++) {
        const qd_st_file *f = qd_ckpt_file(ck, i);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "path", f->path);
        cJSON_AddNumberToObject(o, "size", (double)f->size);
        cJSON_AddNumberToObject(o, "header_len", (double)f->header_len);
        hex32(f->header_sha256, h);
        cJSON_AddStringToObject(o, "header_sha256", h);
        cJSON *m = f->metadata_json ? cJSON_Parse(f->metadata_json) : NULL;
        cJSON_AddItemToObject(o, "metadata", m ? m : cJSON_CreateNull());
        cJSON_AddItemToArray(files, o);
    }
    cJSON *c = cJSON_AddObjectToObject(root, "config");
    cJSON_AddStringToObject(c, "path", cfg_path);
    if (cfg) {
        for (size_t k = 0; k < QD_ARRAY_LEN(k_config_keys); k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, k_config_keys[k]);
            cJSON_AddItemToObject(c, k_config_keys[k], v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull());
        }
    } else {
        cJSON_AddStringToObject(c, "error", cfg_why);
    }
    cJSON *ts = cJSON_AddArrayToObject(root, "tensors");
    for (int i = 0; i < qd_ckpt_num_tensors(ck); i++) {
        const qd_tensor_info *t = qd_ckpt_tensor(ck, i);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", t->name);
        cJSON_AddStringToObject(o, "dtype", qd_dtype_name(t->dtype));
        cJSON *sh = cJSON_AddArrayToObject(o, "shape");
        for (int k = 0; k < t->ndim; k++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[k]));
        cJSON_AddNumberToObject(o, "params", (double)t->numel);
        cJSON_AddNumberToObject(o, "bytes", (double)t->nbytes);
        cJSON_AddNumberToObject(o, "file", t->file_index);
        cJSON_AddNumberToObject(o, "block", qd_shard_block_index(t->name));
        cJSON_AddBoolToObject(o, "quantize", qd_shard_default_quantizable(t));
        cJSON_AddItemToArray(ts, o);
    }
    totals s = compute_totals(ck);
    cJSON *to = cJSON_AddObjectToObject(root, "totals");
    cJSON_AddNumberToObject(to, "tensors", qd_ckpt_num_tensors(ck));
    cJSON_AddNumberToObject(to, "params", (double)s.params);
    cJSON_AddNumberToObject(to, "bytes", (double)s.bytes);
    cJSON_AddNumberToObject(to, "blocks", s.nblocks);
    cJSON_AddNumberToObject(to, "quantize_tensors", s.nq);
    cJSON_AddNumberToObject(to, "quantize_params", (double)s.qparams);
    char *txt = cJSON_Print(root);
    if (txt) printf("%s\n", txt);
    cJSON_free(txt);
    cJSON_Delete(root);
}

int qd_cmd_inspect(int argc, char **argv, MPI_Comm comm)
{
    const char *path = NULL;
    int json = 0, opts_done = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!opts_done && a[0] == '-' && a[1]) {
            if (!strcmp(a, "--"))
                opts_done = 1;
            else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
                if (qd_cli_is_root(comm)) print_help(stdout);
                return QD_EXIT_OK;
            } else if (!strcmp(a, "--json"))
                json = 1;
            else
                return qd_cli_usage_error(comm, "inspect", "unknown option '%s'", a);
        } else if (path) {
            return qd_cli_usage_error(comm, "inspect", "more than one PATH ('%s', '%s')", path, a);
        } else {
            path = a;
        }
    }
    if (!path) return qd_cli_usage_error(comm, "inspect", "missing PATH");

    if (qd_ends_with(path, ".h5")) {
        return qd_cmd_inspect_h5(path, comm);
    }

    qd_checkpoint *ck = NULL;
    int rc = qd_ckpt_open(path, &ck);
    char msg[1024] = "";
    int failed_rank = -1;
    rc = qd_coll_agree_msg(comm, rc, msg, sizeof msg, &failed_rank);
    if (rc != QD_OK) {
        if (qd_cli_is_root(comm)) {
            if (failed_rank > 0)
                fprintf(stderr, "qdist inspect: rank %d: %s\n", failed_rank, msg);
            else
                fprintf(stderr, "qdist inspect: %s\n", msg);
        }
        qd_ckpt_close(ck);
        return QD_EXIT_FAIL;
    }
    if (qd_cli_is_root(comm)) {
        char cfg_path[4200];
        const char *why = NULL;
        cJSON *cfg = load_config(qd_ckpt_dir(ck), cfg_path, sizeof cfg_path, &why);
        if (json)
            print_json(ck, cfg, cfg_path, why);
        else
            print_text(ck, cfg, cfg_path, why);
        cJSON_Delete(cfg);
        fflush(stdout);
    }
    qd_ckpt_close(ck);
    return QD_EXIT_OK;
}
