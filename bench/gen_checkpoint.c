/* bench/gen_checkpoint: writes a BERT-base-shaped safetensors checkpoint (12 blocks, hidden 768,
 * intermediate 3072, vocabulary 30522: about 110M parameters) with random N(0, 0.02) weights and
 * a config.json, for throughput benchmarks.   gen_checkpoint DIR [layers]
 * With --vit: a ViT-B/16 shape instead (224 x 224 x 3 images in 16 x 16 patches, 197 tokens,
 * 12 blocks of hidden 768, a 1000-class head: about 86M parameters), LayerNorms at weight 1 and
 * bias 0, and a preprocessor_config.json (no resize, mean and std 0.5).
 *   gen_checkpoint --vit DIR [layers] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench/bench_util.h"
#include "shard/st_write.h"

static uint64_t g_s = 3;
static float nrand(void) { return qd_bench_nrand(&g_s, 0.02); }

static int gen_vit(const char *dir, int L);

int main(int argc, char **argv)
{
    if (argc > 2 && !strcmp(argv[1], "--vit")) return gen_vit(argv[2], argc > 3 ? atoi(argv[3]) : 12);
    if (argc < 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: gen_checkpoint DIR [layers] | gen_checkpoint --vit DIR [layers]\n");
        return 2;
    }
    int L = argc > 2 ? atoi(argv[2]) : 12, H = 768, I = 3072, n = 0;
    qd_st_out_tensor *t = calloc((size_t)(20 * L + 8), sizeof *t);
    char(*names)[128] = calloc((size_t)(20 * L + 8), 128);
#define ADD(nm, d0, d1)                                                                \
    do {                                                                               \
        snprintf(names[n], 128, "%s", nm);                                             \
        int64_t ne = (int64_t)(d0) * ((d1) ? (d1) : 1);                                \
        float *p = malloc((size_t)ne * sizeof(float));                                 \
        for (int64_t i = 0; i < ne; i++) p[i] = nrand();                               \
        t[n] = (qd_st_out_tensor){names[n], QD_DT_F32, (d1) ? 2 : 1, {(d0), (d1)}, p}; \
        n++;                                                                           \
    } while (0)
    ADD("embeddings.word_embeddings.weight", 30522, H);
    ADD("embeddings.position_embeddings.weight", 512, H);
    ADD("embeddings.token_type_embeddings.weight", 2, H);
    ADD("embeddings.LayerNorm.weight", H, 0);
    ADD("embeddings.LayerNorm.bias", H, 0);
    char nm[128];
    const char *sq[] = {"attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"};
    for (int l = 0; l < L; l++) {
        for (int k = 0; k < 4; k++) {
            snprintf(nm, sizeof nm, "encoder.layer.%d.%s.weight", l, sq[k]);
            ADD(nm, H, H);
            snprintf(nm, sizeof nm, "encoder.layer.%d.%s.bias", l, sq[k]);
            ADD(nm, H, 0);
        }
        snprintf(nm, sizeof nm, "encoder.layer.%d.intermediate.dense.weight", l);
        ADD(nm, I, H);
        snprintf(nm, sizeof nm, "encoder.layer.%d.intermediate.dense.bias", l);
        ADD(nm, I, 0);
        snprintf(nm, sizeof nm, "encoder.layer.%d.output.dense.weight", l);
        ADD(nm, H, I);
        snprintf(nm, sizeof nm, "encoder.layer.%d.output.dense.bias", l);
        ADD(nm, H, 0);
        /* LayerNorms at weight 1, bias 0 (as transformers initializes missing ones) */
        const char *ln[] = {"attention.output.LayerNorm", "output.LayerNorm"};
        for (int k = 0; k < 2; k++) {
            snprintf(nm, sizeof nm, "encoder.layer.%d.%s.weight", l, ln[k]);
            ADD(nm, H, 0);
            for (int i = 0; i < H; i++) ((float *)t[n - 1].data)[i] = 1.0f;
            snprintf(nm, sizeof nm, "encoder.layer.%d.%s.bias", l, ln[k]);
            ADD(nm, H, 0);
            for (int i = 0; i < H; i++) ((float *)t[n - 1].data)[i] = 0.0f;
        }
    }
    ADD("pooler.dense.weight", H, H);
    ADD("pooler.dense.bias", H, 0);
    mkdir(argv[1], 0755);
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", argv[1]);
    if (qd_st_write(path, t, n, NULL) != QD_OK) {
        fprintf(stderr, "%s\n", qd_errmsg());
        return 1;
    }
    snprintf(path, sizeof path, "%s/config.json", argv[1]);
    FILE *f = fopen(path, "w");
    fprintf(f,
            "{\"model_type\": \"bert\", \"architectures\": [\"BertModel\"], \"hidden_size\": %d, "
            "\"num_hidden_layers\": %d, \"num_attention_heads\": 12, \"intermediate_size\": %d, "
            "\"vocab_size\": 30522, \"max_position_embeddings\": 512, \"type_vocab_size\": 2, "
            "\"hidden_act\": \"gelu\", \"layer_norm_eps\": 1e-12}\n",
            H, L, I);
    fclose(f);
    long long params = 0;
    for (int i = 0; i < n; i++) params += t[i].shape[0] * (t[i].ndim == 2 ? t[i].shape[1] : 1);
    printf("wrote %s: %d tensors, %lld parameters\n", argv[1], n, params);
    return 0;
}

/* one tensor of shape dims (up to 4), N(0, 0.02) or the constant c when c >= 0 */
static void add_tensor(qd_st_out_tensor *t, char (*names)[128], int *n, const char *nm, int nd, const int64_t *dims,
                       float c)
{
    snprintf(names[*n], 128, "%s", nm);
    int64_t ne = 1;
    qd_st_out_tensor *o = &t[*n];
    memset(o, 0, sizeof *o);
    for (int i = 0; i < nd; i++) ne *= dims[i], o->shape[i] = dims[i];
    float *p = malloc((size_t)ne * sizeof(float));
    for (int64_t i = 0; i < ne; i++) p[i] = c >= 0 ? c : nrand();
    o->name = names[*n];
    o->dtype = QD_DT_F32;
    o->ndim = nd;
    o->data = p;
    (*n)++;
}

static int gen_vit(const char *dir, int L)
{
    const int64_t H = 768, I = 3072, P = 16, S = 224, C = 3, T = (S / P) * (S / P) + 1, NL = 1000;
    qd_st_out_tensor *t = calloc((size_t)(16 * L + 16), sizeof *t);
    char(*names)[128] = calloc((size_t)(16 * L + 16), 128);
    int n = 0;
    char nm[128];
#define T1(name, a, c) add_tensor(t, names, &n, name, 1, (int64_t[]){a}, c)
#define T2(name, a, b) add_tensor(t, names, &n, name, 2, (int64_t[]){a, b}, -1)
    add_tensor(t, names, &n, "vit.embeddings.cls_token", 3, (int64_t[]){1, 1, H}, -1);
    add_tensor(t, names, &n, "vit.embeddings.position_embeddings", 3, (int64_t[]){1, T, H}, -1);
    add_tensor(t, names, &n, "vit.embeddings.patch_embeddings.projection.weight", 4, (int64_t[]){H, C, P, P}, -1);
    T1("vit.embeddings.patch_embeddings.projection.bias", H, -1);
    const char *lin[] = {"attention.attention.query", "attention.attention.key", "attention.attention.value",
                         "attention.output.dense"};
    for (int l = 0; l < L; l++) {
        for (int k = 0; k < 4; k++) {
            snprintf(nm, sizeof nm, "vit.encoder.layer.%d.%s.weight", l, lin[k]);
            T2(nm, H, H);
            snprintf(nm, sizeof nm, "vit.encoder.layer.%d.%s.bias", l, lin[k]);
            T1(nm, H, -1);
        }
        snprintf(nm, sizeof nm, "vit.encoder.layer.%d.intermediate.dense.weight", l);
        T2(nm, I, H);
        snprintf(nm, sizeof nm, "vit.encoder.layer.%d.intermediate.dense.bias", l);
        T1(nm, I, -1);
        snprintf(nm, sizeof nm, "vit.encoder.layer.%d.output.dense.weight", l);
        T2(nm, H, I);
        snprintf(nm, sizeof nm, "vit.encoder.layer.%d.output.dense.bias", l);
        T1(nm, H, -1);
        const char *ln[] = {"layernorm_before", "layernorm_after"};
        for (int k = 0; k < 2; k++) {
            snprintf(nm, sizeof nm, "vit.encoder.layer.%d.%s.weight", l, ln[k]);
            T1(nm, H, 1.0f);
            snprintf(nm, sizeof nm, "vit.encoder.layer.%d.%s.bias", l, ln[k]);
            T1(nm, H, 0.0f);
        }
    }
    T1("vit.layernorm.weight", H, 1.0f);
    T1("vit.layernorm.bias", H, 0.0f);
    T2("classifier.weight", NL, H);
    T1("classifier.bias", NL, -1);
#undef T1
#undef T2
    mkdir(dir, 0755);
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (qd_st_write(path, t, n, NULL) != QD_OK) {
        fprintf(stderr, "%s\n", qd_errmsg());
        return 1;
    }
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    fprintf(f,
            "{\"model_type\": \"vit\", \"architectures\": [\"ViTForImageClassification\"], \"hidden_size\": %lld, "
            "\"num_hidden_layers\": %d, \"num_attention_heads\": 12, \"intermediate_size\": %lld, "
            "\"hidden_act\": \"gelu\", \"layer_norm_eps\": 1e-12, \"image_size\": %lld, \"patch_size\": %lld, "
            "\"num_channels\": %lld, \"qkv_bias\": true, \"num_labels\": %lld}\n",
            (long long)H, L, (long long)I, (long long)S, (long long)P, (long long)C, (long long)NL);
    fclose(f);
    snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
    f = fopen(path, "w");
    fprintf(f, "{\"do_resize\": false, \"do_rescale\": true, \"rescale_factor\": 0.00392156862745098, "
               "\"do_normalize\": true, \"image_mean\": [0.5, 0.5, 0.5], \"image_std\": [0.5, 0.5, 0.5], "
               "\"size\": {\"height\": 224, \"width\": 224}}\n");
    fclose(f);
    long long params = 0;
    for (int i = 0; i < n; i++) {
        long long e = 1;
        for (int d = 0; d < t[i].ndim; d++) e *= t[i].shape[d];
        params += e;
    }
    printf("wrote %s: %d tensors, %lld parameters (ViT-B/16 shape)\n", dir, n, params);
    return 0;
}
