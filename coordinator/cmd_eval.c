/* qdist eval: the FP32 model and its quantized file, run on the same inputs, compared on task
 * accuracy, agreement, cosine of outputs, latency, throughput, peak memory and bytes. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "collective/collective.h"
#include "coordinator/cli.h"
#include "coordinator/outputs_file.h"
#include "runtime/qmodel.h"
#include "kernels/kernels.h"
#include "model/calib_data.h"
#include "model/image.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "shard/safetensors.h"

static const char *eval_help =
    "Usage: qdist eval --model DIR --quantized FILE.h5 --data PATH [options]\n"
    "\n"
    "Runs the FP32 model and the quantized model (integer kernels: int8 x int8 for 8-bit symmetric\n"
    "per-channel weights, packed int4 x int8 for 4-bit weights; dequantized float for other\n"
    "schemes) on the same inputs and reports, for both: task accuracy (when labels exist),\n"
    "latency per sample (mean, p50, p95), throughput, peak RSS and weight/file bytes; and the\n"
    "agreement of predicted labels and the cosine of logits (classifiers) or of mean-pooled\n"
    "sentence embeddings (encoders without a head, which also get a linear probe: a ridge\n"
    "classifier fit on the FP32 embeddings of the first half of the samples, tested on the other\n"
    "half for FP32 and quantized alike).\n"
    "\n"
    "  --model DIR             the original checkpoint directory (config.json + weights)\n"
    "  --quantized FILE.h5     the output of 'qdist quantize' for that checkpoint\n"
    "  --data PATH             ViT: an IDX images file (labels found beside it: ...-images-idx3-...\n"
    "                          <-> ...-labels-idx1-...) or an image folder (class sub-folders);\n"
    "                          BERT: a TSV with a 'sentence' (and 'label') column, or a text file\n"
    "  --labels PATH           the IDX labels file, when not beside the images\n"
    "  --n N                   the first N samples (default: all)\n"
    "  --batch N               samples per forward call (default 1: latency per sample)\n"
    "  --seqlen L              longest token sequence for text (default 128)\n"
    "  --fake-quant            run the quantized weights dequantized in float (no integer kernels)\n"
    "  --w4-float-act          4-bit weights with float activations instead of int8 ones\n"
    "  --outlier-threshold X   int8 activations: input columns holding a value above X are\n"
    "                          multiplied in float (mixed-precision decomposition; default 6, 0 = off)\n"
    "  --save-outputs FILE     write the outputs of every sample, in input order, to FILE.safetensors\n"
    "                          as 'qdist forward --save-outputs' does (docs/eval.md, \"Outputs\n"
    "                          files\"): the quantized model's under transformers' name (logits,\n"
    "                          sentence_embedding, pooler_output, image_embeds), the FP32 model's\n"
    "                          as fp32.NAME, with sample_index, labels and the text inputs (token\n"
    "                          ids and masks: 'qdist forward --inputs FILE' runs them again)\n"
    "  --reference FILE        score the quantized (and FP32) outputs against the tensor of FILE\n"
    "                          named as ours (an outputs file of eval or forward, or another\n"
    "                          runtime's; rows matched by its sample_index when it has one):\n"
    "                          cosine mean/min, max abs difference, agreement of predictions\n"
    "  --reference-tensor NAME the reference's tensor to read instead (e.g. 'fp32.logits')\n"
    "  --json                  one JSON object (docs/eval.md) instead of the table\n"
    "  -h, --help              this text\n";

enum {
    O_MODEL = 256,
    O_Q,
    O_DATA,
    O_LABELS,
    O_N,
    O_BATCH,
    O_SEQLEN,
    O_FAKE,
    O_W4F,
    O_JSON,
    O_OUTL,
    O_SAVE,
    O_REF,
    O_REFT
};

/* ---- samples -------------------------------------------------------------------------------- */

typedef struct {
    int n;
    int has_labels;
    int *labels;
    /* text */
    char **text;
    qd_tokenizer *tok;
    int seqlen;
    /* images */
    qd_dataset *ds;
    qd_preprocess pp;
} samples;

static void samples_free(samples *s)
{
    for (int i = 0; s->text && i < s->n; i++) free(s->text[i]);
    free(s->text);
    free(s->labels);
    qd_tokenizer_free(s->tok);
    if (s->ds) qd_dataset_free(s->ds);
}

static int open_samples(const qd_model *m, const char *data, const char *labels, int limit, int seqlen, samples *s)
{
    memset(s, 0, sizeof *s);
    const qd_model_config *c = qd_model_cfg(m);
    if (c->arch == QD_ARCH_VIT) {
        int rc = qd_dataset_open(data, labels, &s->ds);
        if (rc) return rc;
        if ((rc = qd_preprocess_for_model(m, &s->pp))) return rc;
        s->n = qd_dataset_count(s->ds);
        if (limit > 0 && limit < s->n) s->n = limit;
        s->has_labels = qd_dataset_has_labels(s->ds);
        if (s->has_labels) {
            s->labels = qd_xmalloc((size_t)s->n * sizeof *s->labels);
            for (int i = 0; i < s->n; i++) s->labels[i] = qd_dataset_label(s->ds, i);
        }
        return QD_OK;
    }
    s->seqlen = seqlen;
    int rc = qd_tokenizer_load(qd_model_dir(m), QD_TOK_LOWER_AUTO, &s->tok);
    if (rc) return rc;
    qd_text_samples t;
    if ((rc = qd_text_samples_read(data, limit, &t))) return rc;
    /* the samples own the texts and labels from here */
    s->text = t.text;
    s->labels = t.labels;
    s->n = t.n;
    s->has_labels = t.has_labels;
    return QD_OK;
}

/* Sample i's tokens into ids/tt/mask (room for Tmax each, padded with 0); *len real tokens. */
static int encode_text(samples *s, int i, int Tmax, int32_t *ids, int32_t *tt, int32_t *mask, int *len)
{
    return qd_tokenizer_encode(s->tok, s->text[i], NULL, Tmax, 0, Tmax, ids, tt, mask, len, NULL);
}

/* ---- one pass over the samples -------------------------------------------------------------- */

typedef struct {
    float *out; /* [n, dim]: logits (classifier) or embeddings */
    int dim;
    double *lat; /* per batch: seconds per sample */
    int nb;
    double total; /* forward calls only */
    double wall;  /* the whole pass: inputs decoded or tokenized, forward calls, outputs */
    long peak_kib;
} pass_result;

static long vm_hwm_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) v = atol(line + 6);
    if (f) fclose(f);
    return v;
}

static void reset_hwm(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

static int run_pass(const qd_model *m, const qd_model_hooks *hk, samples *s, int batch, int embed_mode, pass_result *r)
{
    const qd_model_config *c = qd_model_cfg(m);
    const int L = c->num_labels, H = c->hidden;
    r->dim = embed_mode ? c->embedding_dim : L;
    r->out = qd_xmalloc((size_t)s->n * (size_t)r->dim * sizeof(float));
    r->lat = qd_xmalloc((size_t)((s->n + batch - 1) / batch) * sizeof(double));
    int Tmax = c->arch == QD_ARCH_VIT ? qd_model_tokens(m, 0) : s->seqlen;
    int32_t *ids = qd_xmalloc((size_t)batch * Tmax * sizeof(int32_t)),
            *tt = qd_xmalloc((size_t)batch * Tmax * sizeof(int32_t)),
            *mask = qd_xmalloc((size_t)batch * Tmax * sizeof(int32_t));
    size_t item = c->arch == QD_ARCH_VIT ? qd_preprocess_numel(&s->pp) : 0;
    float *pix = item ? qd_xmalloc((size_t)batch * item * sizeof(float)) : NULL;
    float *h = qd_xmalloc((size_t)batch * Tmax * H * sizeof(float));
    int rc = QD_OK;
    double t_all = 0, w0 = qd_now();
    for (int first = 0; first < s->n && !rc; first += batch) {
        int n = QD_MIN(batch, s->n - first), T = Tmax;
        qd_batch b = {.B = n};
        /* inputs are prepared outside the timed region */
        if (c->arch == QD_ARCH_VIT) {
            for (int i = 0; i < n && !rc; i++) rc = qd_dataset_image(s->ds, first + i, &s->pp, pix + (size_t)i * item);
            b.T = T;
            b.pixels = pix;
        } else {
            int lens[batch], longest = 0;
            for (int i = 0; i < n && !rc; i++) {
                rc = encode_text(s, first + i, Tmax, ids + (size_t)i * Tmax, tt + (size_t)i * Tmax,
                                 mask + (size_t)i * Tmax, &lens[i]);
                if (lens[i] > longest) longest = lens[i];
            }
            /* pad to the longest of the batch: repack rows with stride `longest` */
            T = longest;
            const int32_t pad = qd_tokenizer_specials(s->tok).pad;
            for (int i = 0; i < n && !rc; i++) {
                for (int t = 0; t < T; t++) {
                    int src = t < lens[i];
                    int32_t id = src ? ids[(size_t)i * Tmax + t] : pad, ty = src ? tt[(size_t)i * Tmax + t] : 0;
                    /* rows are moved forward only (T <= Tmax), so in-place is safe in index order */
                    ids[(size_t)i * T + t] = id;
                    tt[(size_t)i * T + t] = ty;
                    mask[(size_t)i * T + t] = src;
                }
            }
            b.T = T;
            b.ids = ids;
            b.type_ids = tt;
            b.mask = mask;
        }
        if (rc) break;
        double t0 = qd_now();
        rc = qd_model_embed(m, &b, h);
        for (int k = 0; k < c->layers && !rc; k++) rc = qd_model_block(m, k, &b, h, hk);
        float *o = r->out + (size_t)first * r->dim;
        if (!rc) {
            if (embed_mode)
                rc = qd_model_embedding(m, &b, h, o);
            else
                rc = qd_model_head(m, &b, h, NULL, o);
        }
        double dt = qd_now() - t0;
        t_all += dt;
        r->lat[r->nb++] = dt / n;
    }
    r->total = t_all;
    r->wall = qd_now() - w0;
    r->peak_kib = vm_hwm_kib();
    free(ids);
    free(tt);
    free(mask);
    free(pix);
    free(h);
    return rc;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void lat_stats(pass_result *r, double *mean, double *p50, double *p95)
{
    double *v = qd_xmalloc((size_t)(r->nb ? r->nb : 1) * sizeof *v);
    memcpy(v, r->lat, (size_t)r->nb * sizeof *v);
    qsort(v, (size_t)r->nb, sizeof *v, cmp_d);
    double s = 0;
    for (int i = 0; i < r->nb; i++) s += v[i];
    *mean = r->nb ? s / r->nb : 0;
    *p50 = r->nb ? v[(r->nb - 1) / 2] : 0;
    *p95 = r->nb ? v[(int)((r->nb - 1) * 0.95)] : 0;
    free(v);
}

static int argmax(const float *v, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

/* Ridge classifier (one-vs-rest on +-1 targets) fit on FP32 features of samples [0, ntrain),
 * tested on [ntrain, n) for both feature sets. */
static int linear_probe(const float *f32, const float *fq, const int *labels, int n, int dim, double *acc32,
                        double *accq)
{
    int ntrain = n / 2, K = 0;
    for (int i = 0; i < n; i++)
        if (labels[i] + 1 > K) K = labels[i] + 1;
    if (ntrain < 2 || n - ntrain < 1 || K < 2) return -1;
    int D = dim + 1;
    double *A = calloc((size_t)D * D, sizeof *A), *B = calloc((size_t)D * K, sizeof *B);
    QD_ASSERT(A && B);
    for (int s = 0; s < ntrain; s++) {
        const float *x = f32 + (size_t)s * dim;
        for (int i = 0; i < D; i++) {
            double xi = i < dim ? x[i] : 1.0;
            for (int j = 0; j < D; j++) A[(size_t)i * D + j] += xi * (j < dim ? x[j] : 1.0);
            for (int k = 0; k < K; k++) B[(size_t)i * K + k] += xi * (labels[s] == k ? 1.0 : -1.0);
        }
    }
    double tr = 0;
    for (int i = 0; i < dim; i++) tr += A[(size_t)i * D + i];
    for (int i = 0; i < dim; i++) A[(size_t)i * D + i] += tr / dim; /* ridge: lambda = mean diag */
    int info = LAPACKE_dposv(LAPACK_ROW_MAJOR, 'U', D, K, A, D, B, K);
    if (info != 0) {
        free(A);
        free(B);
        return -1;
    }
    int c32 = 0, cq = 0;
    for (int s = ntrain; s < n; s++) {
        for (int pass = 0; pass < 2; pass++) {
            const float *x = (pass ? fq : f32) + (size_t)s * dim;
            int best = 0;
            double bv = -1e300;
            for (int k = 0; k < K; k++) {
                double v = B[(size_t)dim * K + k];
                for (int i = 0; i < dim; i++) v += x[i] * B[(size_t)i * K + k];
                if (v > bv) {
                    bv = v;
                    best = k;
                }
            }
            if (best == labels[s]) *(pass ? &cq : &c32) += 1;
        }
    }
    *acc32 = (double)c32 / (n - ntrain);
    *accq = (double)cq / (n - ntrain);
    free(A);
    free(B);
    return 0;
}

static double path_bytes(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (double)st.st_size : 0;
}

/* ---- the report ------------------------------------------------------------------------------ */

/* One sentence on the path the quantized pass ran: integer kernels (which), dequantized float
 * weights, fake-quant, and the outlier columns multiplied in float. */
static void runtime_path(char *buf, size_t cap, int fake, const int counts[QD_QL_KINDS_], double outlier,
                         double outl_cols)
{
    int nq = 0, nint = counts[QD_QL_INT8] + counts[QD_QL_INT4_S8] + counts[QD_QL_INT4_F32];
    for (int t = 0; t < QD_QL_KINDS_; t++)
        if (t != QD_QL_FLOAT) nq += counts[t];
    int o;
    if (fake)
        o = snprintf(buf, cap,
                     "fake-quant: the %d quantized Linears run their dequantized weights in float (no integer "
                     "kernels)",
                     nq);
    else if (nint == 0)
        o = snprintf(buf, cap,
                     "dequantized float weights for the %d quantized Linears (no integer kernel for their "
                     "scheme)",
                     nq);
    else {
        o = snprintf(buf, cap, "integer kernels (%s) for %d of %d quantized Linears:", qd_kernels_isa(), nint, nq);
        for (int t = QD_QL_INT8; t < QD_QL_KINDS_; t++)
            if (counts[t])
                o += snprintf(buf + o, cap - (size_t)o, " %d %s,", counts[t],
                              t == QD_QL_INT8 ? "int8 x int8" : qd_ql_kind_name((qd_ql_kind)t));
        buf[--o] = 0; /* the last comma */
        if (counts[QD_QL_INT8] || counts[QD_QL_INT4_S8]) {
            if (outlier > 0)
                o += snprintf(buf + o, cap - (size_t)o,
                              "; int8 activations per token, outlier columns (a value above %g) in float: %.2f per "
                              "product on average",
                              outlier, outl_cols);
            else
                o += snprintf(buf + o, cap - (size_t)o,
                              "; int8 activations per token, no outlier columns (threshold 0)");
        }
    }
    if (counts[QD_QL_FLOAT])
        snprintf(buf + o, cap - (size_t)o, "; %d Linears not in the file run in float", counts[QD_QL_FLOAT]);
}

/* Everything one run measured, for the table or the JSON. */
/* How one set of our outputs compares with the reference's, row by row. */
typedef struct {
    double cos_mean, cos_min; /* cosine of each sample's row */
    double max_abs;           /* largest |difference| of any value */
    double agreement;         /* same argmax (logits only), else -1 */
} ref_match;

typedef struct {
    char tensor[128];          /* the reference tensor read */
    int n;                     /* samples compared */
    ref_match quantized, fp32; /* ours (quantized / FP32) against the reference */
} ref_scores;

typedef struct {
    const char *model, *qfile, *data;
    long batch;
    int N, embed_mode, fake, has_acc, agree, c32, cq;
    double probe32, probeq; /* < 0: none */
    double cs, cmin;
    pass_result *rf, *rq;
    double lat[2][3]; /* [fp32, quantized][mean, p50, p95], seconds */
    double tensor_bytes[2], file_bytes[2], qpayload;
    double outlier, outl_cols;
    int counts[QD_QL_KINDS_];
    char path[512];
    const ref_scores *ref; /* NULL: no --reference */
    const char *ref_file, *saved;
    double wall_total;
} eval_report;

static void json_match(cJSON *o, const char *key, const ref_match *m)
{
    cJSON *x = cJSON_AddObjectToObject(o, key);
    cJSON_AddNumberToObject(x, "cosine_mean", m->cos_mean);
    cJSON_AddNumberToObject(x, "cosine_min", m->cos_min);
    cJSON_AddNumberToObject(x, "max_abs_diff", m->max_abs);
    if (m->agreement >= 0) cJSON_AddNumberToObject(x, "agreement", m->agreement);
}

static void report_json(const eval_report *e)
{
    const int N = e->N;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", e->model);
    cJSON_AddStringToObject(j, "quantized_file", e->qfile);
    cJSON_AddStringToObject(j, "data", e->data);
    cJSON_AddNumberToObject(j, "samples", N);
    cJSON_AddNumberToObject(j, "batch", (double)e->batch);
    cJSON_AddStringToObject(j, "task", e->embed_mode ? "embedding" : "classification");
    cJSON_AddStringToObject(j, "kernels_isa", qd_kernels_isa());
    cJSON_AddBoolToObject(j, "fake_quant", e->fake);
    cJSON_AddStringToObject(j, "runtime_path", e->path);
    cJSON_AddNumberToObject(j, "wall_seconds_total", e->wall_total);
    for (int side = 0; side < 2; side++) {
        const pass_result *r = side ? e->rq : e->rf;
        cJSON *o2 = cJSON_AddObjectToObject(j, side ? "quantized" : "fp32");
        if (e->has_acc)
            cJSON_AddNumberToObject(o2, "accuracy", (double)(side ? e->cq : e->c32) / N);
        else if (e->embed_mode && e->probe32 >= 0)
            cJSON_AddNumberToObject(o2, "probe_accuracy", side ? e->probeq : e->probe32);
        cJSON *lat = cJSON_AddObjectToObject(o2, "latency_ms");
        cJSON_AddNumberToObject(lat, "mean", 1e3 * e->lat[side][0]);
        cJSON_AddNumberToObject(lat, "p50", 1e3 * e->lat[side][1]);
        cJSON_AddNumberToObject(lat, "p95", 1e3 * e->lat[side][2]);
        cJSON_AddNumberToObject(o2, "forward_seconds", r->total);
        cJSON_AddNumberToObject(o2, "wall_seconds", r->wall);
        cJSON_AddNumberToObject(o2, "throughput_per_s", r->total > 0 ? N / r->total : 0);
        cJSON_AddNumberToObject(o2, "peak_rss_bytes", (double)r->peak_kib * 1024);
        cJSON_AddNumberToObject(o2, "tensor_bytes", e->tensor_bytes[side]);
        if (side) cJSON_AddNumberToObject(o2, "quantized_payload_bytes", e->qpayload);
        cJSON_AddNumberToObject(o2, "file_bytes", e->file_bytes[side]);
    }
    cJSON *k = cJSON_GetObjectItem(j, "quantized");
    cJSON_AddNumberToObject(k, "outlier_threshold", e->outlier);
    cJSON_AddNumberToObject(k, "outlier_columns_mean", e->outl_cols);
    cJSON *kc = cJSON_AddObjectToObject(k, "linears");
    for (int t = 0; t < QD_QL_KINDS_; t++) cJSON_AddNumberToObject(kc, qd_ql_kind_name((qd_ql_kind)t), e->counts[t]);
    if (!e->embed_mode) cJSON_AddNumberToObject(j, "agreement", (double)e->agree / N);
    cJSON *cj = cJSON_AddObjectToObject(j, "cosine");
    cJSON_AddNumberToObject(cj, "mean", e->cs / N);
    cJSON_AddNumberToObject(cj, "min", e->cmin);
    cJSON_AddStringToObject(cj, "of", e->embed_mode ? "mean-pooled embeddings" : "logits");
    if (e->saved) cJSON_AddStringToObject(j, "saved_outputs", e->saved);
    if (e->ref) {
        cJSON *r = cJSON_AddObjectToObject(j, "reference");
        cJSON_AddStringToObject(r, "file", e->ref_file);
        cJSON_AddStringToObject(r, "tensor", e->ref->tensor);
        cJSON_AddNumberToObject(r, "samples", e->ref->n);
        json_match(r, "quantized", &e->ref->quantized);
        json_match(r, "fp32", &e->ref->fp32);
    }
    char *txt = cJSON_Print(j);
    puts(txt);
    free(txt);
    cJSON_Delete(j);
}

static void print_match(const char *who, const char *of, const ref_match *m)
{
    printf("  %-9s cosine of %s: mean %.6f, min %.6f; max abs difference %.4g", who, of, m->cos_mean, m->cos_min,
           m->max_abs);
    if (m->agreement >= 0) printf("; agreement of predictions %.2f%%", 100.0 * m->agreement);
    printf("\n");
}

static void report_table(const eval_report *e)
{
    const int N = e->N;
    const pass_result *rf = e->rf, *rq = e->rq;
    printf("eval: %s vs %s on %d samples of %s (batch %ld)\n", e->model, e->qfile, N, e->data, e->batch);
    printf("runtime path: %s\n", e->path);
    printf("%-26s %14s %14s\n", "", "fp32", "quantized");
    if (e->has_acc) printf("%-26s %13.2f%% %13.2f%%\n", "accuracy", 100.0 * e->c32 / N, 100.0 * e->cq / N);
    if (e->embed_mode && e->probe32 >= 0)
        printf("%-26s %13.2f%% %13.2f%%\n", "linear probe accuracy", 100.0 * e->probe32, 100.0 * e->probeq);
    printf("%-26s %14.3f %14.3f\n", "latency mean (ms/sample)", 1e3 * e->lat[0][0], 1e3 * e->lat[1][0]);
    printf("%-26s %14.3f %14.3f\n", "latency p50 (ms/sample)", 1e3 * e->lat[0][1], 1e3 * e->lat[1][1]);
    printf("%-26s %14.3f %14.3f\n", "latency p95 (ms/sample)", 1e3 * e->lat[0][2], 1e3 * e->lat[1][2]);
    printf("%-26s %14.1f %14.1f\n", "throughput (samples/s)", rf->total > 0 ? N / rf->total : 0,
           rq->total > 0 ? N / rq->total : 0);
    printf("%-26s %14.3f %14.3f\n", "forward time total (s)", rf->total, rq->total);
    printf("%-26s %14.3f %14.3f\n", "wall time of the pass (s)", rf->wall, rq->wall);
    printf("%-26s %14.1f %14.1f\n", "peak RSS (MiB)", rf->peak_kib / 1024.0, rq->peak_kib / 1024.0);
    printf("%-26s %14.0f %14.0f\n", "tensor data (bytes)", e->tensor_bytes[0], e->tensor_bytes[1]);
    printf("%-26s %14.0f %14.0f\n", "file (bytes)", e->file_bytes[0], e->file_bytes[1]);
    if (!e->embed_mode) printf("agreement of predictions: %.2f%%\n", 100.0 * e->agree / N);
    printf("cosine of %s to FP32: mean %.6f, min %.6f\n", e->embed_mode ? "embeddings" : "logits", e->cs / N, e->cmin);
    printf("speed-up (FP32 forward time / quantized): %.2fx\n", rq->total > 0 ? rf->total / rq->total : 0);
    if (e->ref) {
        const char *of = e->embed_mode ? "embeddings" : "logits";
        printf("reference %s ('%s', %d samples):\n", e->ref_file, e->ref->tensor, e->ref->n);
        print_match("quantized", of, &e->ref->quantized);
        print_match("fp32", of, &e->ref->fp32);
    }
    if (e->saved) printf("outputs saved to %s\n", e->saved);
    printf("wall time total: %.2f s (loading, both passes, scoring)\n", e->wall_total);
}

/* The text inputs of every sample, [n, T] with T the longest, for the outputs file. */
static int all_inputs(samples *S, int32_t **ids, int32_t **mask, int32_t **tt, int *Tout)
{
    const int n = S->n, Tmax = S->seqlen;
    int32_t *i0 = qd_xcalloc((size_t)n * Tmax + 1, sizeof(int32_t)), *m0 = qd_xcalloc((size_t)n * Tmax + 1, 4),
            *t0 = qd_xcalloc((size_t)n * Tmax + 1, 4);
    int T = 1, rc = QD_OK;
    for (int i = 0; i < n && !rc; i++) {
        int len = 0;
        rc = encode_text(S, i, Tmax, i0 + (size_t)i * Tmax, t0 + (size_t)i * Tmax, m0 + (size_t)i * Tmax, &len);
        if (len > T) T = len;
    }
    /* rows of Tmax to rows of T (moved forward only) */
    for (int i = 0; i < n; i++)
        for (int t = 0; t < T; t++) {
            i0[(size_t)i * T + t] = i0[(size_t)i * Tmax + t];
            m0[(size_t)i * T + t] = m0[(size_t)i * Tmax + t];
            t0[(size_t)i * T + t] = t0[(size_t)i * Tmax + t];
        }
    *ids = i0;
    *mask = m0;
    *tt = t0;
    *Tout = T;
    return rc;
}

/* What the two passes produced: rows of `dim` values named as transformers names them. */
typedef struct {
    int n, dim, classify;
    const float *fp32, *quantized;
    const char *name; /* logits, sentence_embedding, pooler_output, image_embeds */
} eval_outputs;

/* --save-outputs: the quantized model's outputs under their name, the FP32 model's under
 * "fp32.<name>", which sample of --data each row is, the labels, and text inputs (docs/eval.md,
 * "Outputs files"). Images are not stored: sample_index names them. */
static int save_outputs(const char *path, const eval_outputs *o, samples *S, int text, const char *const *meta)
{
    const int64_t n = o->n;
    int64_t *index = qd_xmalloc((size_t)(n ? n : 1) * sizeof *index), *lab = NULL, *in64[3] = {NULL, NULL, NULL};
    for (int64_t i = 0; i < n; i++) index[i] = i;
    char fp32_name[64];
    snprintf(fp32_name, sizeof fp32_name, "fp32.%s", o->name);
    qd_st_out_tensor t[7];
    int k = 0, rc = QD_OK;
    t[k++] = (qd_st_out_tensor){o->name, QD_DT_F32, 2, {n, o->dim}, o->quantized};
    t[k++] = (qd_st_out_tensor){fp32_name, QD_DT_F32, 2, {n, o->dim}, o->fp32};
    t[k++] = (qd_st_out_tensor){"sample_index", QD_DT_I64, 1, {n}, index};
    if (S->has_labels) {
        lab = qd_xmalloc((size_t)(n ? n : 1) * sizeof *lab);
        for (int64_t i = 0; i < n; i++) lab[i] = S->labels[i];
        t[k++] = (qd_st_out_tensor){"labels", QD_DT_I64, 1, {n}, lab};
    }
    if (text) {
        int32_t *in32[3] = {NULL, NULL, NULL};
        int T = 0;
        rc = all_inputs(S, &in32[0], &in32[1], &in32[2], &T);
        static const char *names[3] = {"input_ids", "attention_mask", "token_type_ids"};
        for (int a = 0; a < 3; a++) {
            in64[a] = qd_xmalloc((size_t)(n * T > 0 ? n * T : 1) * sizeof *in64[a]);
            for (int64_t v = 0; v < n * T; v++) in64[a][v] = in32[a][v];
            t[k++] = (qd_st_out_tensor){names[a], QD_DT_I64, 2, {n, T}, in64[a]};
            free(in32[a]);
        }
    }
    if (!rc) rc = qd_outputs_write(path, t, k, "eval", meta);
    free(index);
    free(lab);
    for (int a = 0; a < 3; a++) free(in64[a]);
    return rc;
}

static void match(const float *ours, const qd_outputs_ref *r, int n, int dim, int classify, ref_match *m)
{
    double cs = 0, cmin = 1, mx = 0;
    int agree = 0;
    for (int i = 0; i < n; i++) {
        const float *a = ours + (size_t)i * dim;
        double ab = 0, aa = 0, bb = 0, bmax = 0;
        int pa = 0, pb = 0;
        for (int j = 0; j < dim; j++) {
            const double y = qd_outputs_ref_at(r, i, j), d = fabs((double)a[j] - y);
            ab += (double)a[j] * y;
            aa += (double)a[j] * a[j];
            bb += y * y;
            if (!(d <= mx)) mx = d; /* NaN propagates */
            if (a[j] > a[pa]) pa = j;
            if (j == 0 || y > bmax) {
                bmax = y;
                pb = j;
            }
        }
        const double c = aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : (aa == bb ? 1.0 : 0.0);
        cs += c;
        if (c < cmin) cmin = c;
        agree += pa == pb;
    }
    m->cos_mean = n ? cs / n : 0;
    m->cos_min = n ? cmin : 0;
    m->max_abs = mx;
    m->agreement = classify && n ? (double)agree / n : -1;
}

/* --reference: the tensor named `tensor`, else the one named as our outputs, of an outputs file
 * (qdist eval's or forward's, or another runtime's), rows matched through its sample_index. */
static int score_reference(const char *path, const char *tensor, const eval_outputs *o, ref_scores *s)
{
    memset(s, 0, sizeof *s);
    qd_checkpoint *ck = NULL;
    int rc = qd_ckpt_open(path, &ck);
    if (rc) return qd_err_wrap(rc, "--reference");
    const char *name = tensor ? tensor : o->name;
    snprintf(s->tensor, sizeof s->tensor, "%s", name);
    const int64_t shape[2] = {o->n, o->dim};
    qd_outputs_ref r;
    rc = qd_outputs_ref_open(ck, path, name, 2, shape, &r);
    if (!rc && !r.t)
        rc = tensor
                 ? qd_err_set(QD_ENOTFOUND, "%s: no tensor '%s'", path, tensor)
                 : qd_err_set(QD_ENOTFOUND,
                              "%s: no tensor '%s' (the outputs computed here; --reference-tensor NAME reads another)",
                              path, name);
    if (!rc) {
        s->n = o->n;
        match(o->quantized, &r, o->n, o->dim, o->classify, &s->quantized);
        match(o->fp32, &r, o->n, o->dim, o->classify, &s->fp32);
    }
    qd_outputs_ref_free(&r);
    qd_ckpt_close(ck);
    return rc;
}

int qd_cmd_eval(int argc, char **argv, MPI_Comm comm)
{
    static struct option lo[] = {{"model", required_argument, 0, O_MODEL},
                                 {"quantized", required_argument, 0, O_Q},
                                 {"data", required_argument, 0, O_DATA},
                                 {"labels", required_argument, 0, O_LABELS},
                                 {"n", required_argument, 0, O_N},
                                 {"batch", required_argument, 0, O_BATCH},
                                 {"seqlen", required_argument, 0, O_SEQLEN},
                                 {"fake-quant", no_argument, 0, O_FAKE},
                                 {"w4-float-act", no_argument, 0, O_W4F},
                                 {"json", no_argument, 0, O_JSON},
                                 {"outlier-threshold", required_argument, 0, O_OUTL},
                                 {"save-outputs", required_argument, 0, O_SAVE},
                                 {"reference", required_argument, 0, O_REF},
                                 {"reference-tensor", required_argument, 0, O_REFT},
                                 {"help", no_argument, 0, 'h'},
                                 {0, 0, 0, 0}};
    const char *model = NULL, *qfile = NULL, *data = NULL, *labels = NULL, *save = NULL, *reference = NULL,
               *ref_tensor = NULL;
    long n = 0, batch = 1, seqlen = 128;
    int fake = 0, w4f = 0, json = 0, o;
    double outlier = 6.0, t_begin = qd_now();
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        char *end = NULL;
        switch (o) {
        case 'h':
            if (qd_cli_is_root(comm)) fputs(eval_help, stdout);
            return QD_EXIT_OK;
        case O_MODEL: model = optarg; break;
        case O_Q: qfile = optarg; break;
        case O_DATA: data = optarg; break;
        case O_LABELS: labels = optarg; break;
        case O_N:
        case O_BATCH:
        case O_SEQLEN: {
            long v = strtol(optarg, &end, 10);
            long lo_ = o == O_N ? 0 : o == O_BATCH ? 1 : 3;
            if (!*optarg || *end || v < lo_ || v > (1L << 24))
                return qd_cli_usage_error(comm, "eval", "--%s must be an integer >= %ld, got '%s'",
                                          o == O_N       ? "n"
                                          : o == O_BATCH ? "batch"
                                                         : "seqlen",
                                          lo_, optarg);
            if (o == O_N)
                n = v;
            else if (o == O_BATCH)
                batch = v;
            else
                seqlen = v;
            break;
        }
        case O_FAKE: fake = 1; break;
        case O_W4F: w4f = 1; break;
        case O_OUTL: {
            char *e2;
            outlier = strtod(optarg, &e2);
            if (!*optarg || *e2 || !(outlier >= 0))
                return qd_cli_usage_error(comm, "eval", "--outlier-threshold must be a number >= 0, got '%s'", optarg);
            break;
        }
        case O_JSON: json = 1; break;
        case O_SAVE: save = optarg; break;
        case O_REF: reference = optarg; break;
        case O_REFT: ref_tensor = optarg; break;
        default: return qd_cli_usage_error(comm, "eval", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return qd_cli_usage_error(comm, "eval", "unexpected argument '%s'", argv[optind]);
    if (!model || !qfile || !data)
        return qd_cli_usage_error(comm, "eval", "--model, --quantized and --data are required");
    /* one process does the work; other ranks (if any) wait */
    const int rank = qd_coll_rank(comm);
    int rc = QD_OK;
    if (rank != 0) goto done;

    qd_model *mq = NULL, *mf = NULL;
    qd_qmodel *q = NULL;
    samples S;
    memset(&S, 0, sizeof S);
    pass_result rq = {0}, rf = {0};
    int counts[QD_QL_KINDS_] = {0};
    double outl_cols = 0, qpayload = 0, qkept = 0;
    /* quantized first, its FP32 Linear weights never read, so its peak memory is its own */
    rc = qd_model_load_flags(model, QD_MODEL_LAZY_LINEARS, &mq);
    if (!rc) rc = open_samples(mq, data, labels, (int)n, (int)seqlen, &S);
    if (!rc) rc = qd_qmodel_load(qfile, mq, fake, w4f, (float)outlier, &q);
    const qd_model_config *c = mq ? qd_model_cfg(mq) : NULL;
    /* encoders and token classifiers are compared by their embeddings (qdist forward compares
     * per-token logits) */
    int embed_mode = c && (c->num_labels == 0 || c->head == QD_HEAD_TOKEN);
    if (!rc) {
        qd_qmodel_counts(q, counts);
        qd_model_hooks hk = qd_qmodel_hooks(q);
        rc = run_pass(mq, &hk, &S, (int)batch, embed_mode, &rq);
        outl_cols = qd_qmodel_outlier_cols(q);
        qd_qmodel_tensor_bytes(q, &qpayload, &qkept);
    }
    qd_qmodel_free(q);
    qd_model_free(mq);
    if (!rc) {
        reset_hwm();
        rc = qd_model_load(model, &mf);
        if (!rc) rc = run_pass(mf, NULL, &S, (int)batch, embed_mode, &rf);
    }
    if (rc) {
        fprintf(stderr, "qdist eval: %s\n", qd_errmsg());
        goto cleanup;
    }
    {
        eval_report e = {.model = model,
                         .qfile = qfile,
                         .data = data,
                         .batch = batch,
                         .N = S.n,
                         .embed_mode = embed_mode,
                         .fake = fake,
                         .probe32 = -1,
                         .probeq = -1,
                         .cmin = 1,
                         .rf = &rf,
                         .rq = &rq,
                         .outlier = outlier,
                         .outl_cols = outl_cols};
        memcpy(e.counts, counts, sizeof counts);
        const int arch = qd_model_cfg(mf)->arch; /* the quantized pass's model is freed by now */
        runtime_path(e.path, sizeof e.path, fake, counts, outlier, outl_cols);
        const int N = S.n, dim = rf.dim;
        e.has_acc = !embed_mode && S.has_labels;
        for (int i = 0; i < N; i++) {
            const float *a = rf.out + (size_t)i * dim, *b = rq.out + (size_t)i * dim;
            double cv = qd_outputs_cosine(a, b, dim);
            e.cs += cv;
            if (cv < e.cmin) e.cmin = cv;
            if (!embed_mode) {
                int pa = argmax(a, dim), pb = argmax(b, dim);
                e.agree += pa == pb;
                if (S.has_labels) {
                    e.c32 += pa == S.labels[i];
                    e.cq += pb == S.labels[i];
                }
            }
        }
        if (embed_mode && S.has_labels) linear_probe(rf.out, rq.out, S.labels, N, dim, &e.probe32, &e.probeq);
        lat_stats(&rf, &e.lat[0][0], &e.lat[0][1], &e.lat[0][2]);
        lat_stats(&rq, &e.lat[1][0], &e.lat[1][1], &e.lat[1][2]);
        /* sizes, one meaning each (as qdist quantize prints them): tensor data — the checkpoint's
         * tensors, the quantized file's datasets — and the files' bytes */
        qd_checkpoint *ck = NULL;
        if (qd_ckpt_open(model, &ck) == QD_OK) {
            for (int i = 0; i < qd_ckpt_num_tensors(ck); i++)
                e.tensor_bytes[0] += (double)qd_ckpt_tensor(ck, i)->nbytes;
            for (int f = 0; f < qd_ckpt_num_files(ck); f++) e.file_bytes[0] += (double)qd_ckpt_file(ck, f)->size;
            qd_ckpt_close(ck);
        }
        e.qpayload = qpayload;
        e.tensor_bytes[1] = qpayload + qkept;
        e.file_bytes[1] = path_bytes(qfile);

        const qd_model_config *fc = qd_model_cfg(mf);
        const eval_outputs out = {.n = N,
                                  .dim = dim,
                                  .classify = !embed_mode,
                                  .fp32 = rf.out,
                                  .quantized = rq.out,
                                  .name = embed_mode ? qd_outputs_embedding_name(fc) : "logits"};
        const char *meta[] = {"model",          model,     "inputs", data, "quantized", qfile, "architecture",
                              fc->architecture, "runtime", e.path,   NULL};
        if (save) rc = save_outputs(save, &out, &S, arch != QD_ARCH_VIT, meta);
        e.saved = save;
        ref_scores refs;
        if (reference && !rc) {
            rc = score_reference(reference, ref_tensor, &out, &refs);
            e.ref = &refs;
            e.ref_file = reference;
        }
        if (rc) {
            fprintf(stderr, "qdist eval: %s\n", qd_errmsg());
            goto cleanup;
        }
        e.wall_total = qd_now() - t_begin;
        if (json)
            report_json(&e);
        else
            report_table(&e);
    }
cleanup:
    qd_model_free(mf);
    samples_free(&S);
    free(rq.out);
    free(rq.lat);
    free(rf.out);
    free(rf.lat);
done:
    qd_coll_bcast(comm, &rc, sizeof rc, 0);
    return rc == QD_OK ? QD_EXIT_OK : rc == QD_EINVAL ? QD_EXIT_USAGE : QD_EXIT_FAIL;
}
