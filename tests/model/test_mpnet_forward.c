/* The real all-mpnet-base-v2 (110 M parameters, MPNet: relative position buckets, positions after
 * the padding id, <s> A </s> WordPiece from tokenizer.json) against Hugging Face transformers in
 * float64 (tests/reference/mpnet-all-mpnet-base-v2-reference.safetensors, 4 SST-2 sentences,
 * make_bert_reference.py --model all-mpnet-base-v2): our tokenizer gives the reference's ids and
 * mask; every block (whole or its first-token row), the pooler and the mean-pooled sentence
 * embedding agree within 1e-5 relative at real tokens. Skipped (77) when the checkpoint has not
 * been fetched (deploy/fetch-models.sh all-mpnet-base-v2). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/calib_data.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "qd_test.h"
#include "shard/safetensors.h"

#define NS  4
#define H   768
#define TOL 1e-5

static const char *mpnet_dir(void)
{
    static char buf[4200];
    const char *e = getenv("QD_MPNET_DIR"), *c = getenv("QD_CACHE"), *h = getenv("HOME");
    struct stat st;
    if (e && *e) snprintf(buf, sizeof buf, "%s/model.safetensors", e);
    if (e && *e && stat(buf, &st) == 0) return e;
    if (c && *c) {
        snprintf(buf, sizeof buf, "%s/models/all-mpnet-base-v2/model.safetensors", c);
        if (stat(buf, &st) == 0) return (buf[strlen(buf) - 18] = 0, buf);
    }
    if (h && *h) {
        snprintf(buf, sizeof buf, "%s/.cache/qdist/models/all-mpnet-base-v2/model.safetensors", h);
        if (stat(buf, &st) == 0) return (buf[strlen(buf) - 18] = 0, buf);
    }
    return NULL;
}

static const void *ref_raw(qd_checkpoint *ck, const char *name, uint64_t *n)
{
    int i = qd_ckpt_find(ck, name);
    const void *p = NULL;
    if (i < 0 || qd_ckpt_raw(ck, i, &p)) return NULL;
    *n = qd_ckpt_tensor(ck, i)->numel;
    return p;
}

/* max |a - b| / max |b| over the rows whose mask is set (mask NULL: all) */
static double rel(const float *a, const float *b, int rows, int n, const int32_t *mask)
{
    double d = 0, s = 0;
    for (int r = 0; r < rows; r++) {
        if (mask && !mask[r]) continue;
        for (int i = 0; i < n; i++) {
            double x = a[(int64_t)r * n + i], y = b[(int64_t)r * n + i];
            if (!(fabs(x - y) <= d)) d = fabs(x - y);
            if (fabs(y) > s) s = fabs(y);
        }
    }
    return d / s;
}

int main(void)
{
    const char *dir = mpnet_dir();
    if (!dir) {
        printf("skipped: all-mpnet-base-v2 is not fetched (deploy/fetch-models.sh all-mpnet-base-v2)\n");
        return 77;
    }
    qd_model *m = NULL;
    if (qd_model_load(dir, &m)) {
        fprintf(stderr, "%s\n", qd_errmsg());
        return 1;
    }
    const qd_model_config *c = qd_model_cfg(m);
    CHECK_STREQ(c->model_type, "mpnet");
    CHECK_EQ(c->layers, 12);
    CHECK_EQ(c->hidden, H);
    CHECK_EQ(c->relpos, QD_RELPOS_BUCKETS);
    CHECK_EQ(c->pos, QD_POS_AFTER_PAD);
    CHECK_EQ(c->pad_id, 1);
    CHECK_EQ(c->head, QD_HEAD_NONE); /* MPNetForMaskedLM without its LM head: the encoder */
    CHECK_EQ(qd_model_num_linears(m), 72);
    qd_checkpoint *ref = NULL;
    if (qd_ckpt_open(QD_TEST_SOURCE_DIR "/tests/reference/mpnet-all-mpnet-base-v2-reference.safetensors", &ref)) {
        fprintf(stderr, "%s\n", qd_errmsg());
        return 1;
    }
    uint64_t n = 0;
    const int32_t *ids = ref_raw(ref, "input_ids", &n);
    const int T = (int)(n / NS);
    const int32_t *mask = ref_raw(ref, "attention_mask", &n);
    CHECK(ids && mask && T > 4);

    /* our tokenizer (tokenizer.json beside the checkpoint) on the same sentences */
    char tsv[4200];
    snprintf(tsv, sizeof tsv, "%s/data/sst2/dev.tsv", qd_test_models_dir());
    qd_text_samples s;
    qd_tokenizer *tok = NULL;
    CHECK_EQ(qd_text_samples_read(tsv, NS, &s), QD_OK);
    CHECK_EQ(qd_tokenizer_load(dir, QD_TOK_LOWER_AUTO, &tok), QD_OK);
    int32_t ti[NS * 64], tm[NS * 64];
    for (int i = 0; tok && i < NS; i++) {
        int len = 0;
        CHECK_EQ(qd_tokenizer_encode(tok, s.text[i], NULL, T, T, T, ti + i * T, NULL, tm + i * T, &len, NULL), QD_OK);
        for (int t = 0; t < T; t++) {
            CHECK_EQ(ti[i * T + t], ids[i * T + t]);
            CHECK_EQ(tm[i * T + t], mask[i * T + t]);
        }
    }
    qd_tokenizer_free(tok);
    qd_text_samples_free(&s);

    qd_batch b = {.B = NS, .T = T, .ids = ids, .mask = mask};
    float *h = malloc((size_t)NS * T * H * sizeof *h), *row = malloc((size_t)NS * H * sizeof *row);
    CHECK_EQ(qd_model_embed(m, &b, h), QD_OK);
    double worst = 0;
    for (int k = 0; k <= c->layers; k++) {
        if (k > 0) CHECK_EQ(qd_model_block(m, k - 1, &b, h, NULL), QD_OK);
        char name[32];
        snprintf(name, sizeof name, "hidden.%d", k);
        const float *r = ref_raw(ref, name, &n);
        double e;
        if (r) {
            e = rel(h, r, NS * T, H, mask);
        } else {
            snprintf(name, sizeof name, "hidden.%d.cls", k);
            r = ref_raw(ref, name, &n);
            CHECK_MSG(r != NULL, "%s missing", name);
            if (!r) continue;
            for (int i = 0; i < NS; i++) memcpy(row + i * H, h + (int64_t)i * T * H, H * sizeof *row);
            e = rel(row, r, NS, H, NULL);
        }
        CHECK_MSG(e <= TOL, "%s: relative error %.3g", name, e);
        if (e > worst) worst = e;
    }
    const float *r = ref_raw(ref, "pooler_output", &n);
    CHECK_EQ(qd_model_head(m, &b, h, row, NULL), QD_OK);
    double ep = rel(row, r, NS, H, NULL);
    CHECK_MSG(ep <= TOL, "pooler_output: %.3g", ep);
    r = ref_raw(ref, "sentence_embedding", &n);
    CHECK_EQ(qd_model_embedding(m, &b, h, row), QD_OK);
    double ee = rel(row, r, NS, H, NULL);
    CHECK_MSG(ee <= TOL, "sentence_embedding: %.3g", ee);
    printf("all-mpnet-base-v2 vs transformers (float64), %d sentences: every block within %.2g relative, pooler %.2g, "
           "sentence embedding %.2g; token ids identical\n",
           NS, worst, ep, ee);
    free(h);
    free(row);
    qd_ckpt_close(ref);
    qd_model_free(m);
    QD_TEST_MAIN_END();
}
