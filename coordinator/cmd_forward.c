/* qdist forward: a model (FP32, or with a quantized file's integer kernels) run on inputs prepared
 * elsewhere — a safetensors file of input_ids / attention_mask or pixel_values — its outputs
 * written to a safetensors file and, optionally, compared with another runtime's outputs for the
 * same inputs. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collective/collective.h"
#include "coordinator/cli.h"
#include "coordinator/outputs_file.h"
#include "model/inputs.h"
#include "model/model.h"
#include "runtime/qmodel.h"

static const char *forward_help =
    "Usage: qdist forward --model DIR --inputs FILE.safetensors [options]\n"
    "\n"
    "Runs the model on the inputs of FILE (input_ids [N, T] with optional attention_mask and\n"
    "token_type_ids, I32 or I64; or pixel_values [N, C, H, W], preprocessed) and writes what it\n"
    "computes, as transformers names it: logits ([N, labels], token heads [N, T, labels]),\n"
    "pooler_output [N, hidden] (models with a pooler), sentence_embedding [N, hidden] (text: the\n"
    "mean-pooled or first-token last hidden state, per 1_Pooling/config.json), image_embeds (CLIP\n"
    "with a projection), last_hidden_state [N, T, hidden] and hidden.K for K = 0..blocks with\n"
    "--hidden. All F32, in the format 'qdist eval --save-outputs' writes too (docs/eval.md,\n"
    "\"Outputs files\").\n"
    "\n"
    "  --model DIR             the checkpoint directory (config.json + weights)\n"
    "  --inputs FILE           the inputs (safetensors)\n"
    "  --quantized FILE.h5     run the quantized Linears of this file (integer kernels, as eval)\n"
    "  --fake-quant            with --quantized: the dequantized weights in float\n"
    "  --save-outputs FILE     write the outputs here (safetensors)\n"
    "  --hidden                also write last_hidden_state and every block's hidden.K\n"
    "  --reference FILE        compare with these outputs (safetensors, same names; F32 or F64;\n"
    "                          rows through its sample_index when it has one, e.g. a file of\n"
    "                          'qdist eval --save-outputs'): max |ours - theirs| / max |theirs|\n"
    "                          per tensor, at real tokens\n"
    "  --tol X                 with --reference: fail (exit 1) when a relative error exceeds X\n"
    "  --batch N               items per forward call (default 8)\n"
    "  --json                  the summary as one JSON object\n"
    "  -h, --help              this text\n";

enum { O_MODEL = 256, O_INPUTS, O_Q, O_FAKE, O_SAVE, O_HIDDEN, O_REF, O_TOL, O_BATCH, O_JSON };

typedef struct {
    char name[32];
    int ndim;
    int64_t shape[4];
    float *data;
    int per_token; /* [N, T, ...]: compare at real tokens only */
} output;

static output *add_out(output *o, int *n, const char *name, int ndim, const int64_t *shape, int per_token)
{
    output *x = &o[(*n)++];
    memset(x, 0, sizeof *x);
    snprintf(x->name, sizeof x->name, "%s", name);
    x->ndim = ndim;
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) numel *= x->shape[d] = shape[d];
    x->data = qd_xcalloc((size_t)numel, sizeof(float));
    x->per_token = per_token;
    return x;
}

/* Relative error of x against the reference file's tensor of the same name (-1: absent): rows
 * matched through its sample_index when it has one, per-token outputs at real tokens only. */
static int compare(const output *x, qd_checkpoint *ref, const char *refpath, const qd_inputs *in, double *err)
{
    *err = -1;
    qd_outputs_ref r;
    int rc = qd_outputs_ref_open(ref, refpath, x->name, x->ndim, x->shape, &r);
    if (rc || !r.t) return rc;
    const int64_t N = x->shape[0], T = x->per_token ? x->shape[1] : 1, per = r.width / T;
    double d = 0, s = 0;
    for (int64_t i = 0; i < N; i++)
        for (int64_t t = 0; t < T; t++) {
            if (x->per_token && in->mask && !in->mask[i * T + t]) continue;
            for (int64_t k = t * per; k < (t + 1) * per; k++) {
                const double y = qd_outputs_ref_at(&r, i, k), v = x->data[i * r.width + k];
                if (!(fabs(v - y) <= d)) d = fabs(v - y);
                if (fabs(y) > s) s = fabs(y);
            }
        }
    qd_outputs_ref_free(&r);
    *err = s > 0 ? d / s : d;
    return QD_OK;
}

/* The passes and the outputs. */
static int run(qd_model *m, const qd_model_hooks *hk, const qd_inputs *in, int batch, int hidden, output *outs,
               int *nout, double *seconds)
{
    const qd_model_config *c = qd_model_cfg(m);
    const int N = in->n, T = in->ids ? in->T : qd_model_tokens(m, 0), H = c->hidden;
    const int64_t per = qd_model_logits_per_item(m, T);
    output *lg = NULL, *pool = NULL, *emb = NULL, *last = NULL, *hs = NULL;
    *nout = 0;
    if (c->head != QD_HEAD_NONE) {
        /* token heads [N, T, labels]; one label (ELECTRA's discriminator) squeezed to [N, T] */
        const int tok = c->head == QD_HEAD_TOKEN;
        int64_t s3[3] = {N, tok ? T : c->num_labels, c->num_labels};
        lg = add_out(outs, nout, "logits", tok && c->num_labels > 1 ? 3 : 2, s3, tok);
    }
    int64_t s2[2] = {N, H};
    /* a pooler exists when qd_model_head can compute pooled outputs */
    qd_batch probe = qd_inputs_batch(in, m, 0, 1);
    float *tmp = qd_xmalloc((size_t)T * H * sizeof *tmp), *ptmp = qd_xmalloc((size_t)H * sizeof *ptmp);
    memset(tmp, 0, (size_t)T * H * sizeof *tmp);
    probe.T = T;
    if (qd_model_head(m, &probe, tmp, ptmp, NULL) == QD_OK) pool = add_out(outs, nout, "pooler_output", 2, s2, 0);
    free(tmp);
    free(ptmp);
    int64_t se[2] = {N, c->embedding_dim};
    if (c->arch == QD_ARCH_BERT || c->embedding_dim != H) /* else the pooler output is the embedding */
        emb = add_out(outs, nout, qd_outputs_embedding_name(c), 2, se, 0);
    int64_t s3h[3] = {N, T, H};
    if (hidden) {
        last = add_out(outs, nout, "last_hidden_state", 3, s3h, 1);
        for (int k = 0; k <= c->layers; k++) {
            char nm[32];
            snprintf(nm, sizeof nm, "hidden.%d", k);
            output *x = add_out(outs, nout, nm, 3, s3h, 1);
            if (k == 0) hs = x;
        }
    }
    float *h = qd_xmalloc((size_t)batch * T * H * sizeof *h);
    int rc = QD_OK;
    double t0 = qd_now();
    for (int first = 0; first < N && !rc; first += batch) {
        const int n = QD_MIN(batch, N - first);
        qd_batch b = qd_inputs_batch(in, m, first, n);
        const int64_t slab = (int64_t)n * T * H, at = (int64_t)first * T * H;
        rc = qd_model_embed(m, &b, h);
        if (!rc && hs) memcpy(hs[0].data + at, h, (size_t)slab * sizeof *h);
        for (int k = 0; k < c->layers && !rc; k++) {
            rc = qd_model_block(m, k, &b, h, hk);
            if (!rc && hs) memcpy(hs[k + 1].data + at, h, (size_t)slab * sizeof *h);
        }
        if (!rc && (lg || pool))
            rc = qd_model_head(m, &b, h, pool ? pool->data + (int64_t)first * H : NULL,
                               lg ? lg->data + (int64_t)first * per : NULL);
        if (!rc && emb) rc = qd_model_embedding(m, &b, h, emb->data + (int64_t)first * c->embedding_dim);
        if (!rc && last) rc = qd_model_final_norm(m, &b, h, last->data + at);
    }
    *seconds = qd_now() - t0;
    free(h);
    return rc;
}

int qd_cmd_forward(int argc, char **argv, MPI_Comm comm)
{
    static struct option lo[] = {{"model", required_argument, 0, O_MODEL},
                                 {"inputs", required_argument, 0, O_INPUTS},
                                 {"quantized", required_argument, 0, O_Q},
                                 {"fake-quant", no_argument, 0, O_FAKE},
                                 {"save-outputs", required_argument, 0, O_SAVE},
                                 {"hidden", no_argument, 0, O_HIDDEN},
                                 {"reference", required_argument, 0, O_REF},
                                 {"tol", required_argument, 0, O_TOL},
                                 {"batch", required_argument, 0, O_BATCH},
                                 {"json", no_argument, 0, O_JSON},
                                 {"help", no_argument, 0, 'h'},
                                 {0, 0, 0, 0}};
    const char *model = NULL, *inputs = NULL, *qfile = NULL, *save = NULL, *refpath = NULL;
    int fake = 0, hidden = 0, json = 0, o;
    long batch = 8;
    double tol = -1;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        char *end = NULL;
        switch (o) {
        case 'h':
            if (qd_cli_is_root(comm)) fputs(forward_help, stdout);
            return QD_EXIT_OK;
        case O_MODEL: model = optarg; break;
        case O_INPUTS: inputs = optarg; break;
        case O_Q: qfile = optarg; break;
        case O_FAKE: fake = 1; break;
        case O_SAVE: save = optarg; break;
        case O_HIDDEN: hidden = 1; break;
        case O_REF: refpath = optarg; break;
        case O_JSON: json = 1; break;
        case O_TOL:
            tol = strtod(optarg, &end);
            if (!*optarg || *end || !(tol >= 0))
                return qd_cli_usage_error(comm, "forward", "--tol must be a number >= 0, got '%s'", optarg);
            break;
        case O_BATCH:
            batch = strtol(optarg, &end, 10);
            if (!*optarg || *end || batch < 1 || batch > 65536)
                return qd_cli_usage_error(comm, "forward", "--batch must be an integer in [1, 65536], got '%s'",
                                          optarg);
            break;
        default: return qd_cli_usage_error(comm, "forward", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return qd_cli_usage_error(comm, "forward", "unexpected argument '%s'", argv[optind]);
    if (!model || !inputs) return qd_cli_usage_error(comm, "forward", "--model and --inputs are required");
    if (fake && !qfile) return qd_cli_usage_error(comm, "forward", "--fake-quant needs --quantized");
    if (tol >= 0 && !refpath) return qd_cli_usage_error(comm, "forward", "--tol needs --reference");
    const int rank = qd_coll_rank(comm);
    int rc = QD_OK, over = 0;
    if (rank != 0) goto done; /* one process does the work */

    qd_model *m = NULL;
    qd_qmodel *q = NULL;
    qd_inputs in;
    memset(&in, 0, sizeof in);
    output outs[80];
    int nout = 0;
    double secs = 0;
    qd_checkpoint *ref = NULL;
    rc = qd_model_load_flags(model, qfile ? QD_MODEL_LAZY_LINEARS : 0, &m);
    if (!rc) rc = qd_inputs_read(inputs, &in);
    if (!rc && in.pixels && qd_model_cfg(m)->arch == QD_ARCH_VIT) rc = qd_model_set_image_size(m, in.H, in.W);
    if (!rc) rc = qd_inputs_check(&in, m, inputs);
    if (!rc && qd_model_cfg(m)->layers + 6 > (int)QD_ARRAY_LEN(outs) && hidden)
        rc = qd_err_set(QD_EUNSUPPORTED, "%s: --hidden for more than %d blocks", model, (int)QD_ARRAY_LEN(outs) - 6);
    if (!rc && qfile) rc = qd_qmodel_load(qfile, m, fake, 0, 6.0f, &q);
    qd_model_hooks hk = {0};
    if (q) hk = qd_qmodel_hooks(q);
    if (!rc) rc = run(m, q ? &hk : NULL, &in, (int)batch, hidden, outs, &nout, &secs);
    if (!rc && save) {
        qd_st_out_tensor t[QD_ARRAY_LEN(outs)];
        for (int i = 0; i < nout; i++) {
            t[i] = (qd_st_out_tensor){
                .name = outs[i].name, .dtype = QD_DT_F32, .ndim = outs[i].ndim, .data = outs[i].data};
            memcpy(t[i].shape, outs[i].shape, sizeof outs[i].shape);
        }
        const char *meta[] = {"model",
                              model,
                              "inputs",
                              inputs,
                              "quantized",
                              qfile ? qfile : "",
                              "architecture",
                              qd_model_cfg(m)->architecture,
                              NULL};
        rc = qd_outputs_write(save, t, nout, "forward", meta);
    }
    cJSON *j = json ? cJSON_CreateObject() : NULL;
    if (!rc) {
        const qd_model_config *c = qd_model_cfg(m);
        if (j) {
            cJSON_AddStringToObject(j, "model", model);
            cJSON_AddStringToObject(j, "model_type", c->model_type);
            cJSON_AddStringToObject(j, "architecture", c->architecture);
            cJSON_AddNumberToObject(j, "items", in.n);
            cJSON_AddNumberToObject(j, "seconds", secs);
        } else
            printf("forward: %s (%s, %s) on %d items of %s%s%s: %.3f s\n", model, c->model_type,
                   c->architecture[0] ? c->architecture : "no architectures", in.n, inputs, qfile ? ", quantized " : "",
                   qfile ? qfile : "", secs);
        if (refpath && !(rc = qd_ckpt_open(refpath, &ref))) {
            cJSON *cj = j ? cJSON_AddObjectToObject(j, "relative_error") : NULL;
            int compared = 0;
            for (int i = 0; i < nout && !rc; i++) {
                double e;
                if ((rc = compare(&outs[i], ref, refpath, &in, &e)) || e < 0) continue;
                compared++;
                int bad = tol >= 0 && !(e <= tol);
                over |= bad;
                if (cj)
                    cJSON_AddNumberToObject(cj, outs[i].name, e);
                else
                    printf("  %-20s relative error %.3g%s\n", outs[i].name, e, bad ? "  (above --tol)" : "");
            }
            if (!rc && !compared) rc = qd_err_set(QD_ENOTFOUND, "%s: holds none of the outputs computed here", refpath);
        }
        if (!rc && save && !j) printf("  outputs written to %s (%d tensors)\n", save, nout);
    }
    if (j) {
        if (!rc) {
            char *txt = cJSON_Print(j);
            puts(txt);
            free(txt);
        }
        cJSON_Delete(j);
    }
    if (rc)
        fprintf(stderr, "qdist forward: %s\n", qd_errmsg());
    else if (over) {
        fprintf(stderr, "qdist forward: outputs differ from %s by more than --tol %g\n", refpath, tol);
        rc = QD_EMISMATCH;
    }
    qd_ckpt_close(ref);
    for (int i = 0; i < nout; i++) free(outs[i].data);
    qd_inputs_free(&in);
    qd_qmodel_free(q);
    qd_model_free(m);
done:
    qd_coll_bcast(comm, &rc, sizeof rc, 0);
    return rc == QD_OK ? QD_EXIT_OK : rc == QD_EINVAL ? QD_EXIT_USAGE : QD_EXIT_FAIL;
}
