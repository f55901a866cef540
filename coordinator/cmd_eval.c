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
    "  --json                  one JSON object (docs/eval.md) instead of the table\n"
    "  -h, --help              this text\n";

enum { O_MODEL = 256, O_Q, O_DATA, O_LABELS, O_N, O_BATCH, O_SEQLEN, O_FAKE, O_W4F, O_JSON, O_OUTL };

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

/* ---- one pass over the samples -------------------------------------------------------------- */

typedef struct {
    float *out; /* [n, dim]: logits (classifier) or embeddings */
    int dim;
    double *lat; /* per batch: seconds per sample */
    int nb;
    double total;
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
    double t_all = 0;
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
                rc = qd_tokenizer_encode(s->tok, s->text[first + i], NULL, Tmax, 0, Tmax, ids + (size_t)i * Tmax,
                                         tt + (size_t)i * Tmax, mask + (size_t)i * Tmax, &lens[i], NULL);
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

static double cosine(const float *a, const float *b, int n)
{
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : (aa == bb ? 1.0 : 0.0);
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
                                 {"help", no_argument, 0, 'h'},
                                 {0, 0, 0, 0}};
    const char *model = NULL, *qfile = NULL, *data = NULL, *labels = NULL;
    long n = 0, batch = 1, seqlen = 128;
    int fake = 0, w4f = 0, json = 0, o;
    double outlier = 6.0;
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
        default: return qd_cli_usage_error(comm, "eval", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return qd_cli_usage_error(comm, "eval", "unexpected argument '%s'", argv[optind]);
    if (!model || !qfile || !data)
        return qd_cli_usage_error(comm, "eval", "--model, --quantized and --data are required");
    /* one process does the work; other ranks (if any) wait */
    int rank = 0;
    rank = qd_coll_rank(comm);
    int rc = QD_OK;
    if (rank != 0) goto done;

    qd_model *mq = NULL, *mf = NULL;
    qd_qmodel *q = NULL;
    samples S;
    memset(&S, 0, sizeof S);
    pass_result rq = {0}, rf = {0};
    int counts[QD_QL_KINDS_] = {0};
    uint64_t qbytes = 0;
    double outl_cols = 0;
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
        qbytes = qd_qmodel_weight_bytes(q);
        qd_model_hooks hk = qd_qmodel_hooks(q);
        rc = run_pass(mq, &hk, &S, (int)batch, embed_mode, &rq);
        outl_cols = qd_qmodel_outlier_cols(q);
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
        const int N = S.n, dim = rf.dim;
        int agree = 0, c32 = 0, cq = 0;
        double cs = 0, cmin = 1;
        for (int i = 0; i < N; i++) {
            const float *a = rf.out + (size_t)i * dim, *b = rq.out + (size_t)i * dim;
            double cv = cosine(a, b, dim);
            cs += cv;
            if (cv < cmin) cmin = cv;
            if (!embed_mode) {
                int pa = argmax(a, dim), pb = argmax(b, dim);
                agree += pa == pb;
                if (S.has_labels) {
                    c32 += pa == S.labels[i];
                    cq += pb == S.labels[i];
                }
            }
        }
        double probe32 = -1, probeq = -1;
        if (embed_mode && S.has_labels) linear_probe(rf.out, rq.out, S.labels, N, dim, &probe32, &probeq);
        double m32, p5032, p9532, mq_, p50q, p95q;
        lat_stats(&rf, &m32, &p5032, &p9532);
        lat_stats(&rq, &mq_, &p50q, &p95q);
        /* bytes: the checkpoint's float weights vs the quantized Linears + the float rest */
        double ck_bytes = 0, lin_f32 = 0;
        {
            qd_checkpoint *ck = NULL;
            if (qd_ckpt_open(model, &ck) == QD_OK) {
                for (int i = 0; i < qd_ckpt_num_tensors(ck); i++) ck_bytes += (double)qd_ckpt_tensor(ck, i)->nbytes;
                qd_ckpt_close(ck);
            }
            for (int li = 0; li < qd_model_num_linears(mf); li++)
                lin_f32 += 4.0 * qd_model_linear(mf, li)->in * qd_model_linear(mf, li)->out;
        }
        double q_weights = ck_bytes - lin_f32 + (double)qbytes;
        double f32_file = 0;
        {
            qd_checkpoint *ck = NULL;
            if (qd_ckpt_open(model, &ck) == QD_OK) {
                for (int f = 0; f < qd_ckpt_num_files(ck); f++) f32_file += (double)qd_ckpt_file(ck, f)->size;
                qd_ckpt_close(ck);
            }
        }
        double q_file = path_bytes(qfile);
        if (json) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "model", model);
            cJSON_AddStringToObject(j, "quantized_file", qfile);
            cJSON_AddStringToObject(j, "data", data);
            cJSON_AddNumberToObject(j, "samples", N);
            cJSON_AddNumberToObject(j, "batch", (double)batch);
            cJSON_AddStringToObject(j, "task", embed_mode ? "embedding" : "classification");
            cJSON_AddStringToObject(j, "kernels_isa", qd_kernels_isa());
            cJSON_AddBoolToObject(j, "fake_quant", fake);
            for (int side = 0; side < 2; side++) {
                pass_result *r = side ? &rq : &rf;
                cJSON *o2 = cJSON_AddObjectToObject(j, side ? "quantized" : "fp32");
                if (!embed_mode && S.has_labels)
                    cJSON_AddNumberToObject(o2, "accuracy", (double)(side ? cq : c32) / N);
                else if (embed_mode && probe32 >= 0)
                    cJSON_AddNumberToObject(o2, "probe_accuracy", side ? probeq : probe32);
                cJSON *lat = cJSON_AddObjectToObject(o2, "latency_ms");
                cJSON_AddNumberToObject(lat, "mean", 1e3 * (side ? mq_ : m32));
                cJSON_AddNumberToObject(lat, "p50", 1e3 * (side ? p50q : p5032));
                cJSON_AddNumberToObject(lat, "p95", 1e3 * (side ? p95q : p9532));
                cJSON_AddNumberToObject(o2, "throughput_per_s", r->total > 0 ? N / r->total : 0);
                cJSON_AddNumberToObject(o2, "peak_rss_bytes", (double)r->peak_kib * 1024);
                cJSON_AddNumberToObject(o2, "weight_bytes", side ? q_weights : ck_bytes);
                cJSON_AddNumberToObject(o2, "file_bytes", side ? q_file : f32_file);
            }
            cJSON *k = cJSON_GetObjectItem(j, "quantized");
            cJSON_AddNumberToObject(k, "outlier_threshold", outlier);
            cJSON_AddNumberToObject(k, "outlier_columns_mean", outl_cols);
            cJSON *kc = cJSON_AddObjectToObject(k, "linears");
            for (int t = 0; t < QD_QL_KINDS_; t++)
                cJSON_AddNumberToObject(kc, qd_ql_kind_name((qd_ql_kind)t), counts[t]);
            if (!embed_mode) cJSON_AddNumberToObject(j, "agreement", (double)agree / N);
            cJSON *cj = cJSON_AddObjectToObject(j, "cosine");
            cJSON_AddNumberToObject(cj, "mean", cs / N);
            cJSON_AddNumberToObject(cj, "min", cmin);
            cJSON_AddStringToObject(cj, "of", embed_mode ? "mean-pooled embeddings" : "logits");
            char *txt = cJSON_Print(j);
            puts(txt);
            free(txt);
            cJSON_Delete(j);
        } else {
            printf("eval: %s vs %s on %d samples of %s (batch %ld, kernels %s%s)\n", model, qfile, N, data, batch,
                   qd_kernels_isa(), fake ? ", fake-quant" : "");
            printf("  quantized Linears:");
            for (int t = 0; t < QD_QL_KINDS_; t++)
                if (counts[t]) printf(" %d %s", counts[t], qd_ql_kind_name((qd_ql_kind)t));
            if (outlier > 0 && (counts[QD_QL_INT8] || counts[QD_QL_INT8_24] || counts[QD_QL_INT4_S8]))
                printf("  int8 activations: %.1f columns per product above %g run in float (mixed-precision "
                       "decomposition)",
                       outl_cols, outlier);
            printf("\n%-22s %14s %14s\n", "", "fp32", "quantized");
            if (!embed_mode && S.has_labels)
                printf("%-22s %13.2f%% %13.2f%%\n", "accuracy", 100.0 * c32 / N, 100.0 * cq / N);
            if (embed_mode && probe32 >= 0)
                printf("%-22s %13.2f%% %13.2f%%\n", "linear probe accuracy", 100.0 * probe32, 100.0 * probeq);
            printf("%-22s %14.3f %14.3f\n", "latency mean (ms)", 1e3 * m32, 1e3 * mq_);
            printf("%-22s %14.3f %14.3f\n", "latency p50 (ms)", 1e3 * p5032, 1e3 * p50q);
            printf("%-22s %14.3f %14.3f\n", "latency p95 (ms)", 1e3 * p9532, 1e3 * p95q);
            printf("%-22s %14.1f %14.1f\n", "throughput (/s)", rf.total > 0 ? N / rf.total : 0,
                   rq.total > 0 ? N / rq.total : 0);
            printf("%-22s %14.1f %14.1f\n", "peak RSS (MiB)", rf.peak_kib / 1024.0, rq.peak_kib / 1024.0);
            printf("%-22s %14.0f %14.0f\n", "weight bytes", ck_bytes, q_weights);
            printf("%-22s %14.0f %14.0f\n", "file bytes", f32_file, q_file);
            if (!embed_mode) printf("agreement of predictions: %.2f%%\n", 100.0 * agree / N);
            printf("cosine of %s to FP32: mean %.6f, min %.6f\n", embed_mode ? "embeddings" : "logits", cs / N, cmin);
            printf("speed-up: %.2fx\n", rq.total > 0 ? rf.total / rq.total : 0);
        }
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
