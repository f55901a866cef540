/* The real BERT checkpoint (all-MiniLM-L6-v2, fetched by deploy/fetch-models.sh) through the
 * qd_checkpoint API, checked against its config.json and against the committed reference outputs
 * of Hugging Face transformers: the embeddings output (hidden.0) and the pooler are recomputed
 * here in double from the weights the reader returns. Exits 77 (skipped) without the checkpoint.
 */
#include <cjson/cJSON.h>
#include <math.h>

#include "qd_test.h"
#include "reference/bert_dir.h"
#include "shard/safetensors.h"

static cJSON *read_json(const char *dir, const char *name)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return cJSON_Parse(buf);
}

static int cfg_int(const cJSON *c, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, k);
    return cJSON_IsNumber(v) ? v->valueint : -1;
}

/* The F32 data of a tensor that must exist with the given shape (ndim entries). */
static const float *tensor_f32(qd_checkpoint *ck, const char *name, int ndim, const int64_t *shape)
{
    int i = qd_ckpt_find(ck, name);
    CHECK_MSG(i >= 0, "tensor '%s' missing", name);
    if (i < 0) return NULL;
    const qd_tensor_info *t = qd_ckpt_tensor(ck, i);
    CHECK_EQ(t->dtype, QD_DT_F32);
    CHECK_EQ(t->ndim, ndim);
    for (int k = 0; k < ndim && k < t->ndim; k++)
        CHECK_MSG(t->shape[k] == shape[k], "%s: dim %d is %lld, expected %lld", name, k, (long long)t->shape[k],
                  (long long)shape[k]);
    const float *p = NULL;
    int owned = 1;
    int rc = qd_ckpt_read_f32(ck, i, &p, &owned);
    CHECK_MSG(rc == QD_OK, "%s: %s", name, qd_errmsg());
    CHECK_EQ(owned, 0); /* F32 in a safetensors file: zero-copy */
    return rc == QD_OK ? p : NULL;
}

int main(void)
{
    const char *dir = qd_test_bert_dir_or_skip("test_bert_checkpoint");
    printf("checkpoint: %s\n", dir);
    cJSON *cfg = read_json(dir, "config.json");
    CHECK(cfg != NULL);
    if (!cfg) QD_TEST_MAIN_END();
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(cfg, "model_type");
    CHECK(cJSON_IsString(mt) && !strcmp(mt->valuestring, "bert"));
    const int64_t H = cfg_int(cfg, "hidden_size"), L = cfg_int(cfg, "num_hidden_layers");
    const int64_t I = cfg_int(cfg, "intermediate_size"), V = cfg_int(cfg, "vocab_size");
    const int64_t P = cfg_int(cfg, "max_position_embeddings"), T = cfg_int(cfg, "type_vocab_size");
    CHECK_EQ(H, 384);
    CHECK_EQ(L, 6);
    CHECK_EQ(cfg_int(cfg, "num_attention_heads"), 12);
    const cJSON *eps_j = cJSON_GetObjectItemCaseSensitive(cfg, "layer_norm_eps");
    const double eps = cJSON_IsNumber(eps_j) ? eps_j->valuedouble : 1e-12;

    qd_checkpoint *ck = NULL;
    int rc = qd_ckpt_open(dir, &ck);
    CHECK_MSG(rc == QD_OK, "%s", qd_errmsg());
    if (rc != QD_OK) QD_TEST_MAIN_END();
    /* 6 embedding tensors (position_ids included), 16 per layer, 2 for the pooler */
    CHECK_EQ(qd_ckpt_num_tensors(ck), 6 + 16 * L + 2);
    CHECK_EQ(qd_ckpt_num_files(ck), 1);

    const float *wte = tensor_f32(ck, "embeddings.word_embeddings.weight", 2, (int64_t[]){V, H});
    const float *wpe = tensor_f32(ck, "embeddings.position_embeddings.weight", 2, (int64_t[]){P, H});
    const float *wtt = tensor_f32(ck, "embeddings.token_type_embeddings.weight", 2, (int64_t[]){T, H});
    const float *lnw = tensor_f32(ck, "embeddings.LayerNorm.weight", 1, (int64_t[]){H});
    const float *lnb = tensor_f32(ck, "embeddings.LayerNorm.bias", 1, (int64_t[]){H});
    const float *pw = tensor_f32(ck, "pooler.dense.weight", 2, (int64_t[]){H, H});
    const float *pb = tensor_f32(ck, "pooler.dense.bias", 1, (int64_t[]){H});
    for (int l = 0; l < L; l++) {
        static const struct {
            const char *n;
            int o, i;
        } lin[] = {{"attention.self.query", 0, 0},   {"attention.self.key", 0, 0}, {"attention.self.value", 0, 0},
                   {"attention.output.dense", 0, 0}, {"intermediate.dense", 1, 0}, {"output.dense", 0, 1}};
        char n[256];
        for (size_t k = 0; k < sizeof lin / sizeof lin[0]; k++) {
            int64_t o = lin[k].o ? I : H, in = lin[k].i ? I : H;
            snprintf(n, sizeof n, "encoder.layer.%d.%s.weight", l, lin[k].n);
            tensor_f32(ck, n, 2, (int64_t[]){o, in});
            snprintf(n, sizeof n, "encoder.layer.%d.%s.bias", l, lin[k].n);
            tensor_f32(ck, n, 1, (int64_t[]){o});
        }
        snprintf(n, sizeof n, "encoder.layer.%d.attention.output.LayerNorm.weight", l);
        tensor_f32(ck, n, 1, (int64_t[]){H});
        snprintf(n, sizeof n, "encoder.layer.%d.output.LayerNorm.bias", l);
        tensor_f32(ck, n, 1, (int64_t[]){H});
    }
    int ip = qd_ckpt_find(ck, "embeddings.position_ids");
    CHECK(ip >= 0);
    if (ip >= 0) {
        CHECK_EQ(qd_ckpt_tensor(ck, ip)->dtype, QD_DT_I64);
        CHECK(!qd_ckpt_tensor(ck, ip)->float_like);
    }

    /* the reference outputs */
    qd_checkpoint *ref = NULL;
    rc = qd_ckpt_open(qd_test_bert_reference(), &ref);
    CHECK_MSG(rc == QD_OK, "%s", qd_errmsg());
    if (rc != QD_OK || !wte || !wpe || !wtt || !lnw || !lnb || !pw || !pb) {
        qd_ckpt_close(ck);
        cJSON_Delete(cfg);
        QD_TEST_MAIN_END();
    }
    const void *ids_raw = NULL, *tt_raw = NULL, *mask_raw = NULL;
    int i_ids = qd_ckpt_find(ref, "input_ids"), i_tt = qd_ckpt_find(ref, "token_type_ids");
    int i_mask = qd_ckpt_find(ref, "attention_mask");
    CHECK(i_ids >= 0 && i_tt >= 0 && i_mask >= 0);
    if (i_ids < 0 || i_tt < 0 || i_mask < 0) QD_TEST_MAIN_END();
    qd_ckpt_raw(ref, i_ids, &ids_raw);
    qd_ckpt_raw(ref, i_tt, &tt_raw);
    qd_ckpt_raw(ref, i_mask, &mask_raw);
    const int32_t *ids = ids_raw, *tt = tt_raw, *mask = mask_raw;
    const int64_t B = qd_ckpt_tensor(ref, i_ids)->shape[0], S = qd_ckpt_tensor(ref, i_ids)->shape[1];
    const float *h0 = NULL, *hL = NULL, *pool = NULL;
    int own;
    char hl_name[32];
    snprintf(hl_name, sizeof hl_name, "hidden.%d", (int)L);
    CHECK_EQ(qd_ckpt_read_f32(ref, qd_ckpt_find(ref, "hidden.0"), &h0, &own), QD_OK);
    CHECK_EQ(qd_ckpt_read_f32(ref, qd_ckpt_find(ref, hl_name), &hL, &own), QD_OK);
    CHECK_EQ(qd_ckpt_read_f32(ref, qd_ckpt_find(ref, "pooler_output"), &pool, &own), QD_OK);

    /* hidden.0 = LayerNorm(word[id] + position[s] + token_type[tt]) at every real token */
    double max_e = 0, max_p = 0;
    double *x = malloc((size_t)H * sizeof *x);
    for (int64_t b = 0; b < B; b++) {
        for (int64_t s = 0; s < S; s++) {
            if (!mask[b * S + s]) continue;
            int32_t id = ids[b * S + s], ty = tt[b * S + s];
            CHECK(id >= 0 && id < V && ty >= 0 && ty < T);
            if (id < 0 || id >= V || ty < 0 || ty >= T) continue;
            double mean = 0, var = 0;
            for (int64_t h = 0; h < H; h++) {
                x[h] = (double)wte[id * H + h] + wpe[s * H + h] + wtt[ty * H + h];
                mean += x[h];
            }
            mean /= (double)H;
            for (int64_t h = 0; h < H; h++) var += (x[h] - mean) * (x[h] - mean);
            var /= (double)H;
            for (int64_t h = 0; h < H; h++) {
                double y = (x[h] - mean) / sqrt(var + eps) * lnw[h] + lnb[h];
                double d = fabs(y - h0[(b * S + s) * H + h]);
                if (d > max_e) max_e = d;
            }
        }
        /* pooler_output = tanh(W h_L[CLS] + b) */
        for (int64_t o = 0; o < H && hL && pool; o++) {
            double acc = pb[o];
            for (int64_t h = 0; h < H; h++) acc += (double)pw[o * H + h] * hL[(b * S) * H + h];
            double d = fabs(tanh(acc) - pool[b * H + o]);
            if (d > max_p) max_p = d;
        }
    }
    free(x);
    printf("max |hidden.0 (C, f64) - reference| = %.2e, max |pooler (C, from hidden.%d) - "
           "reference| = %.2e\n",
           max_e, (int)L, max_p);
    /* reference stored as F32: rounding <= 5e-7 at |values| <= 8; tolerances per README.md */
    CHECK_DBL_LE(max_e, 1e-5);
    CHECK_DBL_LE(max_p, 1e-5);
    qd_ckpt_close(ref);
    qd_ckpt_close(ck);
    cJSON_Delete(cfg);
    QD_TEST_MAIN_END();
}
