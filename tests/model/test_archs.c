/* Every supported architecture against Hugging Face transformers: the tiny random-initialised
 * models of tests/reference/archs/ (tests/reference/make_arch_references.py), their float64
 * outputs, and qdist's FP32 forward pass on the same inputs. Every block's residual stream, the
 * pooled output, the embedding and the logits must agree within 1e-5 relative (max |diff| over
 * the reference's largest magnitude, at real tokens). The checkpoints come in three layouts
 * (model.safetensors, pytorch_model.bin, sharded safetensors) and load alike.
 * Also: ALBERT's shared weights appear once in the linear table; errors for unknown
 * architectures, model types and missing config fields name them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/model.h"
#include "qd_test.h"
#include "shard/safetensors.h"

#define TOL 1e-5

static const char *models[] = {"bert-token",   "roberta-seq", "xlm-roberta-token", "distilbert-seq", "mpnet",
                               "electra-disc", "albert-seq",  "beit-cls",          "beit-shared",    "dinov2-cls",
                               "dinov2-reg",   "clip-vision", "clip-cls"};

typedef struct {
    qd_checkpoint *ck;
    double *copies[64]; /* aligned copies of the F64 tensors (the file packs them after I32 ones) */
    int ncopies;
} ref_t;

/* A reference tensor as doubles (F64) or NULL when absent; *n its element count. */
static const double *ref_f64(ref_t *r, const char *name, uint64_t *n)
{
    int i = qd_ckpt_find(r->ck, name);
    if (i < 0) return NULL;
    const qd_tensor_info *t = qd_ckpt_tensor(r->ck, i);
    if (t->dtype != QD_DT_F64 || r->ncopies == 64) return NULL;
    const void *p;
    if (qd_ckpt_raw(r->ck, i, &p)) return NULL;
    if (n) *n = t->numel;
    double *c = malloc(t->numel * sizeof *c);
    memcpy(c, p, t->numel * sizeof *c);
    r->copies[r->ncopies++] = c;
    return c;
}

static const int32_t *ref_i32(ref_t *r, const char *name, int64_t *d0, int64_t *d1)
{
    int i = qd_ckpt_find(r->ck, name);
    if (i < 0) return NULL;
    const qd_tensor_info *t = qd_ckpt_tensor(r->ck, i);
    const void *p;
    if (t->dtype != QD_DT_I32 || t->ndim != 2 || qd_ckpt_raw(r->ck, i, &p)) return NULL;
    *d0 = t->shape[0];
    *d1 = t->shape[1];
    return p;
}

/* max |a - b| over rows with a set mask (row = index / width) divided by max |b| there */
static double rel_err(const float *a, const double *b, int64_t rows, int width, const int32_t *mask)
{
    double d = 0, s = 0;
    for (int64_t r = 0; r < rows; r++) {
        if (mask && !mask[r]) continue;
        for (int i = 0; i < width; i++) {
            double x = a[r * width + i], y = b[r * width + i];
            if (!(fabs(x - y) <= d)) d = fabs(x - y);
            if (fabs(y) > s) s = fabs(y);
        }
    }
    return s > 0 ? d / s : d;
}

static void check_model(const char *name)
{
    char dir[4200], path[4300];
    snprintf(dir, sizeof dir, "%s/tests/reference/archs/%s", QD_TEST_SOURCE_DIR, name);
    snprintf(path, sizeof path, "%s/reference.safetensors", dir);
    ref_t r = {0};
    qd_model *m = NULL;
    if (qd_ckpt_open(path, &r.ck) || qd_model_load(dir, &m)) {
        QT_FAIL_("%s: %s", name, qd_errmsg());
        qd_ckpt_close(r.ck);
        return;
    }
    const qd_model_config *c = qd_model_cfg(m);
    qd_batch b = {0};
    int64_t B = 0, T = 0;
    const int32_t *ids = ref_i32(&r, "input_ids", &B, &T), *mask = NULL;
    float *pix = NULL;
    if (ids) {
        int64_t b2, t2;
        mask = ref_i32(&r, "attention_mask", &b2, &t2);
        b = (qd_batch){.B = (int)B, .T = (int)T, .ids = ids, .mask = mask};
    } else {
        uint64_t n = 0;
        const double *pv = ref_f64(&r, "pixel_values", &n);
        const qd_tensor_info *t = qd_ckpt_tensor(r.ck, qd_ckpt_find(r.ck, "pixel_values"));
        CHECK(pv && t->ndim == 4);
        if (!pv) goto done;
        B = t->shape[0];
        pix = malloc(n * sizeof *pix);
        for (uint64_t i = 0; i < n; i++) pix[i] = (float)pv[i];
        CHECK_EQ(qd_model_set_image_size(m, (int)t->shape[2], (int)t->shape[3]), QD_OK);
        T = qd_model_tokens(m, 0);
        b = (qd_batch){.B = (int)B, .T = (int)T, .pixels = pix};
    }
    const int H = c->hidden;
    const int64_t rows = B * T;
    float *h = malloc((size_t)(rows * H) * sizeof *h);
    double worst = 0;
    int rc = qd_model_embed(m, &b, h);
    CHECK_MSG(rc == QD_OK, "%s: embed: %s", name, qd_errmsg());
    for (int k = 0; !rc && k <= c->layers; k++) {
        if (k > 0) {
            rc = qd_model_block(m, k - 1, &b, h, NULL);
            CHECK_MSG(rc == QD_OK, "%s: block %d: %s", name, k - 1, qd_errmsg());
        }
        char hn[32];
        snprintf(hn, sizeof hn, "hidden.%d", k);
        uint64_t n = 0;
        const double *ref = ref_f64(&r, hn, &n);
        CHECK_MSG(ref && n == (uint64_t)(rows * H), "%s: %s missing or mis-shaped (%llu values)", name, hn,
                  (unsigned long long)n);
        if (!ref || n != (uint64_t)(rows * H)) break;
        double e = rel_err(h, ref, rows, H, mask);
        CHECK_MSG(e <= TOL, "%s: %s: relative error %.3g > %g", name, hn, e, TOL);
        if (e > worst) worst = e;
    }
    /* the outputs beyond the blocks */
    uint64_t n = 0;
    const double *ref;
    double e_pool = -1, e_emb = -1, e_log = -1;
    if (!rc && (ref = ref_f64(&r, "pooler_output", &n))) {
        float *p = malloc(n * sizeof *p);
        CHECK_EQ(qd_model_head(m, &b, h, p, NULL), QD_OK);
        e_pool = rel_err(p, ref, B, H, NULL);
        CHECK_MSG(e_pool <= TOL, "%s: pooler_output: relative error %.3g", name, e_pool);
        free(p);
    }
    const char *emb_name = ids ? "sentence_embedding" : ref_f64(&r, "image_embeds", NULL) ? "image_embeds" : NULL;
    if (!rc && emb_name && (ref = ref_f64(&r, emb_name, &n))) {
        CHECK_EQ(n, (uint64_t)(B * c->embedding_dim));
        float *p = malloc(n * sizeof *p);
        CHECK_EQ(qd_model_embedding(m, &b, h, p), QD_OK);
        e_emb = rel_err(p, ref, B, c->embedding_dim, NULL);
        CHECK_MSG(e_emb <= TOL, "%s: %s: relative error %.3g", name, emb_name, e_emb);
        free(p);
    }
    if (!rc && (ref = ref_f64(&r, "logits", &n))) {
        int64_t per = qd_model_logits_per_item(m, (int)T);
        CHECK_EQ(n, (uint64_t)(B * per));
        float *p = malloc((size_t)(B * per) * sizeof *p);
        CHECK_EQ(qd_model_head(m, &b, h, NULL, p), QD_OK);
        if (c->head == QD_HEAD_TOKEN)
            e_log = rel_err(p, ref, rows, c->num_labels, mask);
        else
            e_log = rel_err(p, ref, B, (int)per, NULL);
        CHECK_MSG(e_log <= TOL, "%s: logits: relative error %.3g", name, e_log);
        free(p);
    } else
        CHECK_EQ(c->head, QD_HEAD_NONE);
    printf("%-18s %-34s blocks %d, linears %2d: hidden max rel %.1e, pooled %.1e, embedding %.1e, logits %.1e\n", name,
           c->architecture, c->layers, qd_model_num_linears(m), worst, e_pool, e_emb, e_log);
    free(h);
done:
    free(pix);
    qd_model_free(m);
    qd_ckpt_close(r.ck);
    for (int i = 0; i < r.ncopies; i++) free(r.copies[i]);
}

/* a scratch model directory: config.json with `config`, the weights of tiny model `from` */
static int load_with_config(const char *from, const char *config, qd_model **m)
{
    char dir[] = "/tmp/qd_archs_XXXXXX";
    QD_ASSERT(mkdtemp(dir));
    char p[4400], src[4400];
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *f = fopen(p, "w");
    fputs(config, f);
    fclose(f);
    snprintf(src, sizeof src, "%s/tests/reference/archs/%s/model.safetensors", QD_TEST_SOURCE_DIR, from);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    QD_ASSERT(symlink(src, p) == 0);
    int rc = qd_model_load(dir, m);
    unlink(p);
    snprintf(p, sizeof p, "%s/config.json", dir);
    unlink(p);
    rmdir(dir);
    return rc;
}

static void check_errors(void)
{
    qd_model *m = NULL;
    int rc = load_with_config("bert-token",
                              "{\"model_type\":\"bert\",\"architectures\":[\"BertForQuestionAnswering\"],"
                              "\"hidden_size\":32,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
                              "\"intermediate_size\":64,\"vocab_size\":96,\"max_position_embeddings\":40}",
                              &m);
    CHECK_EQ(rc, QD_EUNSUPPORTED);
    CHECK_CONTAINS(qd_errmsg(), "architectures 'BertForQuestionAnswering'");
    rc = load_with_config("bert-token", "{\"model_type\":\"gpt2\",\"hidden_size\":32}", &m);
    CHECK_EQ(rc, QD_EUNSUPPORTED);
    CHECK_CONTAINS(qd_errmsg(), "model_type 'gpt2' is not supported");
    rc = load_with_config("distilbert-seq", "{\"model_type\":\"distilbert\",\"dim\":32,\"n_layers\":2}", &m);
    CHECK_EQ(rc, QD_ECONFIG);
    CHECK_CONTAINS(qd_errmsg(), "field 'num_attention_heads' is missing");
    rc = load_with_config("beit-cls",
                          "{\"model_type\":\"beit\",\"hidden_size\":32,\"num_hidden_layers\":2,"
                          "\"num_attention_heads\":4,\"intermediate_size\":64,\"image_size\":16,\"patch_size\":4,"
                          "\"hidden_act\":\"mish\"}",
                          &m);
    CHECK_EQ(rc, QD_EUNSUPPORTED);
    CHECK_CONTAINS(qd_errmsg(), "hidden_act 'mish'");
    /* a RoBERTa config over BERT weights: the prefix names what is missing */
    rc = load_with_config("bert-token",
                          "{\"model_type\":\"mpnet\",\"hidden_size\":32,\"num_hidden_layers\":2,"
                          "\"num_attention_heads\":4,\"intermediate_size\":64,\"vocab_size\":96,"
                          "\"max_position_embeddings\":40}",
                          &m);
    CHECK_EQ(rc, QD_ENOTFOUND);
    CHECK_CONTAINS(qd_errmsg(), "embeddings.word_embeddings.weight");
    qd_model_free(m);
}

/* ALBERT: 4 blocks over 2 shared sets; block k runs set k / 2; each set's first user owns it */
static void check_albert_sharing(void)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/tests/reference/archs/albert-seq", QD_TEST_SOURCE_DIR);
    qd_model *m = NULL;
    CHECK_EQ(qd_model_load(dir, &m), QD_OK);
    if (!m) return;
    CHECK_EQ(qd_model_cfg(m)->layers, 4);
    CHECK_EQ(qd_model_num_linears(m), 12);
    CHECK_EQ(qd_model_num_groups(m), 8);
    CHECK_EQ(qd_model_linear(m, 0)->layer, 0);
    CHECK_EQ(qd_model_linear(m, 0)->last_layer, 1);
    CHECK_EQ(qd_model_linear(m, 6)->layer, 2);
    CHECK_EQ(qd_model_linear(m, 6)->last_layer, 3);
    CHECK_STREQ(qd_model_linear(m, 6)->name, "albert.encoder.albert_layer_groups.1.albert_layers.0.attention.query");
    qd_model_free(m);
}

int main(void)
{
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) check_model(models[i]);
    check_albert_sharing();
    check_errors();
    QD_TEST_MAIN_END();
}
