/* export_outputs: qdist's own outputs on real eval data, for comparing exported models with.
 * Runs the FP32 model and a quantized file (the runtime's kernels, as `qdist eval` does, or its
 * --fake-quant / --w4-float-act forms) over the first N samples in batches of B, and writes one
 * safetensors file with the inputs exactly as they were fed and both outputs:
 *   ViT:  pixel_values F32 [N, C, H, W], labels I32 [N] (when known), fp32 / quant F32 [N, L]
 *         (logits);
 *   BERT: input_ids, token_type_ids, attention_mask I64 [N, seqlen] (padding after each text;
 *         a batch runs padded to its longest text), fp32 / quant F32 [N, hidden] (mean-pooled
 *         embeddings) or [N, labels] (logits, with a head).
 * Metadata: "batch" (B), "task" (logits | embedding).
 *   export_outputs --model DIR --quantized FILE.h5 --data PATH --out FILE [--n N] [--batch B]
 *                  [--fake-quant] [--w4-float-act] [--outlier X] [--seqlen L] [--no-fp32]
 *                  [--integer-only [--float-ops gelu,softmax,layernorm]]
 * --no-fp32: skip the FP32 pass (its output is left out of the file). --integer-only: the
 * quantized pass is the integer graph on the file's static activation scales (runtime/intmodel.h,
 * `qdist eval --integer-only`), with the listed stages in float. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/calib_data.h"
#include "model/image.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "runtime/intmodel.h"
#include "runtime/intprep.h"
#include "runtime/qmodel.h"
#include "shard/st_write.h"

static int fail(const char *what)
{
    fprintf(stderr, "export_outputs: %s: %s\n", what, qd_errmsg());
    return 1;
}

int main(int argc, char **argv)
{
    const char *model = NULL, *qfile = NULL, *data = NULL, *out = NULL;
    int n = 0, batch = 1, fake = 0, w4f = 0, seqlen = 128, no_fp32 = 0, intonly = 0, float_ops = 0;
    float outlier = 6.0f;
    static struct option lo[] = {{"model", 1, 0, 'm'},      {"quantized", 1, 0, 'q'},
                                 {"data", 1, 0, 'd'},       {"out", 1, 0, 'o'},
                                 {"n", 1, 0, 'n'},          {"batch", 1, 0, 'b'},
                                 {"fake-quant", 0, 0, 'f'}, {"w4-float-act", 0, 0, 'w'},
                                 {"outlier", 1, 0, 't'},    {"seqlen", 1, 0, 's'},
                                 {"no-fp32", 0, 0, 'x'},    {"integer-only", 0, 0, 'i'},
                                 {"float-ops", 1, 0, 'F'},  {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) switch (c) {
        case 'm': model = optarg; break;
        case 'q': qfile = optarg; break;
        case 'd': data = optarg; break;
        case 'o': out = optarg; break;
        case 'n': n = atoi(optarg); break;
        case 'b': batch = atoi(optarg); break;
        case 'f': fake = 1; break;
        case 'w': w4f = 1; break;
        case 't': outlier = strtof(optarg, NULL); break;
        case 's': seqlen = atoi(optarg); break;
        case 'x': no_fp32 = 1; break;
        case 'i': intonly = 1; break;
        case 'F':
            float_ops |= (strstr(optarg, "gelu") ? QD_IFLOAT_GELU : 0) |
                         (strstr(optarg, "softmax") ? QD_IFLOAT_SOFTMAX : 0) |
                         (strstr(optarg, "layernorm") ? QD_IFLOAT_LAYERNORM : 0);
            break;
        default: return 2;
        }
    if (!model || !qfile || !data || !out || batch < 1) {
        fprintf(stderr, "usage: export_outputs --model DIR --quantized FILE.h5 --data PATH --out FILE [options]\n");
        return 2;
    }
    qd_model *m;
    qd_qmodel *qm;
    if (qd_model_load(model, &m)) return fail(model);
    if (qd_qmodel_load(qfile, m, fake, w4f, outlier, &qm)) return fail(qfile);
    qd_imodel *im = NULL;
    if (intonly && qd_imodel_build(m, qfile, float_ops, &im)) return fail(qfile);
    const qd_model_config *cfg = qd_model_cfg(m);
    const int vit = cfg->arch == QD_ARCH_VIT, H = cfg->hidden, L = cfg->num_labels;
    const int dim = L > 0 ? L : H;
    /* inputs */
    qd_dataset *ds = NULL;
    qd_preprocess pp;
    qd_tokenizer *tok = NULL;
    qd_text_samples txt = {0};
    size_t item = 0;
    if (vit) {
        if (qd_dataset_open(data, NULL, &ds) || qd_preprocess_for_model(m, &pp)) return fail(data);
        int total = qd_dataset_count(ds);
        if (n <= 0 || n > total) n = total;
        item = qd_preprocess_numel(&pp);
    } else {
        char vocab[4200];
        snprintf(vocab, sizeof vocab, "%s/vocab.txt", qd_model_dir(m));
        if (qd_tokenizer_load(vocab, QD_TOK_LOWER_AUTO, &tok) || qd_text_samples_read(data, n, &txt)) return fail(data);
        n = txt.n;
    }
    const int T = vit ? qd_model_tokens(m, 0) : seqlen;
    float *pix = vit ? qd_xmalloc((size_t)n * item * sizeof(float)) : NULL;
    int32_t *labels = qd_xcalloc((size_t)n, sizeof(int32_t));
    int32_t *ids = qd_xcalloc((size_t)n * T, 4), *tt = qd_xcalloc((size_t)n * T, 4),
            *mask = qd_xcalloc((size_t)n * T, 4);
    int *lens = qd_xcalloc((size_t)n, sizeof(int));
    int have_labels = vit ? qd_dataset_has_labels(ds) : txt.has_labels;
    for (int i = 0; i < n; i++) {
        if (vit) {
            if (qd_dataset_image(ds, i, &pp, pix + (size_t)i * item)) return fail(data);
            if (have_labels) labels[i] = qd_dataset_label(ds, i);
        } else {
            if (qd_tokenizer_encode(tok, txt.text[i], NULL, T, T, T, ids + (size_t)i * T, tt + (size_t)i * T,
                                    mask + (size_t)i * T, &lens[i], NULL))
                return fail(data);
            if (have_labels) labels[i] = txt.labels[i];
        }
    }
    /* both passes, batch by batch; text batches padded to their longest item */
    float *res[2] = {qd_xmalloc((size_t)n * dim * sizeof(float)), qd_xmalloc((size_t)n * dim * sizeof(float))};
    float *h = qd_xmalloc((size_t)batch * T * H * sizeof(float));
    int32_t *bi = qd_xmalloc((size_t)batch * T * 4), *bt = qd_xmalloc((size_t)batch * T * 4),
            *bm = qd_xmalloc((size_t)batch * T * 4);
    for (int pass = no_fp32; pass < 2; pass++) {
        qd_model_hooks hk = qd_qmodel_hooks(qm);
        for (int first = 0; first < n; first += batch) {
            int nb = QD_MIN(batch, n - first), Tb = T;
            qd_batch b = {.B = nb, .T = T};
            if (vit)
                b.pixels = pix + (size_t)first * item;
            else {
                Tb = 0;
                for (int i = 0; i < nb; i++) Tb = QD_MAX(Tb, lens[first + i]);
                for (int i = 0; i < nb; i++)
                    for (int t = 0; t < Tb; t++) {
                        size_t src = (size_t)(first + i) * T + t, dst = (size_t)i * Tb + t;
                        bi[dst] = ids[src];
                        bt[dst] = tt[src];
                        bm[dst] = mask[src];
                    }
                b.T = Tb;
                b.ids = bi;
                b.type_ids = bt;
                b.mask = bm;
            }
            float *o = res[pass] + (size_t)first * dim;
            if (pass && im) { /* the integer graph: ViT logits, BERT mean-pooled embeddings */
                const qd_ibatch ib = {
                    .B = b.B, .T = b.T, .ids = b.ids, .type_ids = b.type_ids, .mask = b.mask, .pixels = b.pixels};
                if (L > 0 && !vit) return fail("--integer-only: a BERT classifier is not compared here");
                if (qd_imodel_forward(im, &ib, vit ? o : NULL, vit ? NULL : o, NULL, NULL, NULL))
                    return fail("forward");
                continue;
            }
            int rc = qd_model_embed(m, &b, h);
            for (int k = 0; k < cfg->layers && !rc; k++) rc = qd_model_block(m, k, &b, h, pass ? &hk : NULL);
            if (!rc) {
                if (L > 0)
                    rc = qd_model_head(m, &b, h, NULL, o);
                else if (!vit)
                    qd_model_mean_pool(m, &b, h, o);
                else
                    rc = qd_model_head(m, &b, h, o, NULL);
            }
            if (rc) return fail("forward");
        }
    }
    /* the file */
    qd_st_out_tensor t[8];
    int nt = 0;
    int64_t *lids = NULL, *ltt = NULL, *lmask = NULL;
    if (vit) {
        t[nt++] = (qd_st_out_tensor){"pixel_values", QD_DT_F32, 4, {n, cfg->channels, cfg->image_h, cfg->image_w}, pix};
    } else {
        lids = qd_xmalloc((size_t)n * T * 8);
        ltt = qd_xmalloc((size_t)n * T * 8);
        lmask = qd_xmalloc((size_t)n * T * 8);
        for (size_t i = 0; i < (size_t)n * T; i++) {
            lids[i] = ids[i];
            ltt[i] = tt[i];
            lmask[i] = mask[i];
        }
        t[nt++] = (qd_st_out_tensor){"input_ids", QD_DT_I64, 2, {n, T}, lids};
        t[nt++] = (qd_st_out_tensor){"token_type_ids", QD_DT_I64, 2, {n, T}, ltt};
        t[nt++] = (qd_st_out_tensor){"attention_mask", QD_DT_I64, 2, {n, T}, lmask};
    }
    if (have_labels) t[nt++] = (qd_st_out_tensor){"labels", QD_DT_I32, 1, {n}, labels};
    if (!no_fp32) t[nt++] = (qd_st_out_tensor){"fp32", QD_DT_F32, 2, {n, dim}, res[0]};
    t[nt++] = (qd_st_out_tensor){"quant", QD_DT_F32, 2, {n, dim}, res[1]};
    char meta[128];
    snprintf(meta, sizeof meta, "{\"batch\":\"%d\",\"task\":\"%s\"}", batch, L > 0 ? "logits" : "embedding");
    if (qd_st_write(out, t, nt, meta)) return fail(out);
    printf("export_outputs: %d samples, batch %d, %s [%d]\n", n, batch, L > 0 ? "logits" : "embedding", dim);
    return 0;
}
