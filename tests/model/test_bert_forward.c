/* The BERT forward pass on the real all-MiniLM-L6-v2 checkpoint against Hugging Face
 * transformers (float64 reference in tests/reference/, 8 SST-2 sentences padded to 28 tokens),
 * at real tokens, within the criteria of tests/reference/README.md: hidden.0 2e-5, every block
 * 1e-4, pooler 1e-5, mean-pooled sentence embedding 2e-5 (5e-6 once L2-normalized). The model's
 * own tokenizer (vocab.txt beside the checkpoint) reproduces the reference's input ids and mask.
 * Skipped (77) when the checkpoint has not been fetched. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "model/tokenizer.h"
#include "qd_test.h"
#include "reference/bert_dir.h"
#include "shard/safetensors.h"

#define NS 8
#define L  28
#define H  384

static const void *ref_tensor(qd_checkpoint *ck, const char *name, uint64_t numel)
{
    int i = qd_ckpt_find(ck, name);
    if (i < 0 || qd_ckpt_tensor(ck, i)->numel != numel) {
        fprintf(stderr, "reference tensor %s missing or mis-shaped\n", name);
        exit(1);
    }
    const void *p;
    if (qd_ckpt_raw(ck, i, &p)) exit(1);
    return p;
}

/* max |a - b| over rows whose mask is set (mask NULL: all rows) */
static double diff_rows(const float *a, const float *b, int rows, int n, const int32_t *mask)
{
    double d = 0;
    for (int r = 0; r < rows; r++) {
        if (mask && !mask[r]) continue;
        for (int i = 0; i < n; i++) {
            double e = fabs((double)a[(int64_t)r * n + i] - b[(int64_t)r * n + i]);
            if (!(e <= d)) d = e;
        }
    }
    return d;
}

int main(void)
{
    const char *dir = qd_test_bert_dir();
    if (!dir) {
        printf("skipped: the BERT checkpoint is not fetched (deploy/fetch-models.sh)\n");
        return QD_TEST_SKIP;
    }
    qd_model *m = NULL;
    if (qd_model_load(dir, &m)) {
        fprintf(stderr, "load: %s\n", qd_errmsg());
        return 1;
    }
    const qd_model_config *c = qd_model_cfg(m);
    CHECK_EQ(c->arch, QD_ARCH_BERT);
    CHECK_EQ(c->hidden, H);
    CHECK_EQ(c->layers, 6);
    CHECK_EQ(c->head_size, 32);
    CHECK_EQ(c->act, QD_ACT_GELU);
    CHECK_EQ(c->has_pooler, 1);
    CHECK_EQ(c->num_labels, 0);
    CHECK_EQ(qd_model_num_linears(m), 36);
    CHECK_EQ(qd_model_find_linear(m, "encoder.layer.0.attention.self.query.weight"), 0);

    qd_checkpoint *ref = NULL;
    if (qd_ckpt_open(QD_TEST_SOURCE_DIR "/tests/reference/bert-all-MiniLM-L6-v2-reference.safetensors", &ref)) {
        fprintf(stderr, "%s\n", qd_errmsg());
        return 1;
    }
    const int32_t *ids = ref_tensor(ref, "input_ids", NS * L);
    const int32_t *tt = ref_tensor(ref, "token_type_ids", NS * L);
    const int32_t *mask = ref_tensor(ref, "attention_mask", NS * L);

    /* our tokenizer on the same sentences */
    char vocab[4200];
    snprintf(vocab, sizeof vocab, "%s/vocab.txt", dir);
    qd_tokenizer *tok = NULL;
    CHECK_EQ(qd_tokenizer_load(vocab, QD_TOK_LOWER_AUTO, &tok), 0);
    FILE *f = fopen(QD_TEST_MODELS_DIR "/data/sst2/dev.tsv", "r");
    char line[4096];
    CHECK(f && fgets(line, sizeof line, f));
    for (int s = 0; s < NS && tok && f && fgets(line, sizeof line, f); s++) {
        char *tab = strrchr(line, '\t');
        if (tab) *tab = 0;
        int32_t myids[L], mymask[L];
        int n = 0;
        CHECK_EQ(qd_tokenizer_encode(tok, line, NULL, L, L, L, myids, NULL, mymask, &n, NULL), 0);
        CHECK(memcmp(myids, ids + s * L, sizeof myids) == 0);
        CHECK(memcmp(mymask, mask + s * L, sizeof mymask) == 0);
    }
    if (f) fclose(f);
    qd_tokenizer_free(tok);

    qd_batch b = {.B = NS, .T = L, .ids = ids, .type_ids = tt, .mask = mask};
    int64_t n = (int64_t)NS * L * H;
    float *hidden = malloc((size_t)(7 * n) * sizeof(float));
    float pooled[NS * H], emb[NS * H];
    CHECK_EQ(qd_model_forward(m, &b, NULL, pooled, NULL, hidden), 0);
    struct {
        const char *name;
        int k;
        double tol;
    } full[] = {{"hidden.0", 0, 2e-5}, {"hidden.1", 1, 1e-4}, {"hidden.6", 6, 1e-4}};
    for (size_t i = 0; i < QD_ARRAY_LEN(full); i++) {
        double d = diff_rows(hidden + full[i].k * n, ref_tensor(ref, full[i].name, (uint64_t)n), NS * L, H, mask);
        printf("%-32s max|diff| at real tokens %.3g (criterion %.0e)\n", full[i].name, d, full[i].tol);
        CHECK_DBL_LE(d, full[i].tol);
    }
    for (int k = 2; k <= 5; k++) {
        char name[32];
        snprintf(name, sizeof name, "hidden.%d.cls", k);
        float cls[NS * H];
        for (int s = 0; s < NS; s++) memcpy(cls + s * H, hidden + k * n + (int64_t)s * L * H, H * sizeof(float));
        double d = diff_rows(cls, ref_tensor(ref, name, NS * H), NS, H, NULL);
        printf("%-32s max|diff| %.3g (criterion 1e-4)\n", name, d);
        CHECK_DBL_LE(d, 1e-4);
    }
    double d = diff_rows(pooled, ref_tensor(ref, "pooler_output", NS * H), NS, H, NULL);
    printf("%-32s max|diff| %.3g (criterion 1e-5)\n", "pooler_output", d);
    CHECK_DBL_LE(d, 1e-5);
    qd_model_mean_pool(m, &b, hidden + 6 * n, emb);
    d = diff_rows(emb, ref_tensor(ref, "sentence_embedding", NS * H), NS, H, NULL);
    printf("%-32s max|diff| %.3g (criterion 2e-5)\n", "sentence_embedding", d);
    CHECK_DBL_LE(d, 2e-5);
    for (int s = 0; s < NS; s++) {
        double nn = 0;
        for (int i = 0; i < H; i++) nn += (double)emb[s * H + i] * emb[s * H + i];
        for (int i = 0; i < H; i++) emb[s * H + i] = (float)(emb[s * H + i] / sqrt(nn));
    }
    d = diff_rows(emb, ref_tensor(ref, "sentence_embedding_normalized", NS * H), NS, H, NULL);
    printf("%-32s max|diff| %.3g (criterion 5e-6)\n", "sentence_embedding_normalized", d);
    CHECK_DBL_LE(d, 5e-6);

    /* the word table streamed row by row (QD_MODEL_STREAM_EMBEDDINGS) embeds bit for bit the same */
    {
        qd_model *ms = NULL;
        CHECK_EQ(qd_model_load_flags(dir, QD_MODEL_STREAM_EMBEDDINGS, &ms), 0);
        qd_model_tensors tw;
        qd_model_get_tensors(ms, &tw);
        CHECK(tw.word_emb == NULL);
        float *e0 = malloc((size_t)n * sizeof(float)), *e1 = malloc((size_t)n * sizeof(float));
        CHECK_EQ(qd_model_embed(m, &b, e0), 0);
        CHECK_EQ(qd_model_embed(ms, &b, e1), 0);
        CHECK(memcmp(e0, e1, (size_t)n * sizeof(float)) == 0);
        int32_t far[L];
        memcpy(far, ids, sizeof far);
        far[2] = c->vocab_size;
        qd_batch fb = {.B = 1, .T = L, .ids = far, .mask = mask};
        CHECK_EQ(qd_model_embed(ms, &fb, e1), QD_EINVAL);
        free(e0);
        free(e1);
        qd_model_free(ms);
    }

    /* bad inputs are errors naming the model */
    int32_t badids[L];
    memcpy(badids, ids, sizeof badids);
    badids[3] = 40000;
    qd_batch bb = {.B = 1, .T = L, .ids = badids};
    CHECK_EQ(qd_model_forward(m, &bb, NULL, NULL, NULL, NULL), QD_EINVAL);
    CHECK(strstr(qd_errmsg(), "outside the vocabulary") != NULL);
    qd_batch longb = {.B = 1, .T = 513, .ids = ids};
    CHECK_EQ(qd_model_forward(m, &longb, NULL, NULL, NULL, NULL), QD_ESHAPE);
    float logits[8];
    CHECK_EQ(qd_model_head(m, &b, hidden + 6 * n, NULL, logits), QD_EUNSUPPORTED);

    free(hidden);
    qd_ckpt_close(ref);
    qd_model_free(m);
    printf("%d checks, %d failures\n", qd_test_checks_, qd_test_failures_);
    return qd_test_failures_;
}
