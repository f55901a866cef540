/* bench/gen_checkpoint: writes a generated transformer checkpoint for benchmarks and scaling runs.
 *
 *   gen_checkpoint DIR [layers]
 *       BERT-base shape (hidden 768, intermediate 3072, vocabulary 30522; 12 blocks: about 110M
 *       parameters), F32, one model.safetensors, N(0, 0.02) weights (the throughput benchmarks).
 *   gen_checkpoint --shape bert|vit [--layers L] [--hidden H] [--intermediate I] [--heads N]
 *                  [--dtype bf16|f32] [--shard-mb MB] [--seed S] DIR
 *       A complete model (every LayerNorm and bias, a pooler) that `qdist quantize --calib` can
 *       run, written as shards model-0000k-of-0000n.safetensors of at most MB megabytes (default
 *       1024) with model.safetensors.index.json. Defaults: bert 26 blocks at hidden 2048,
 *       intermediate 8192, 16 heads (1.34 B parameters); vit ViT-g proportions (hidden 1408,
 *       intermediate 6144, 16 heads, 14x14 patches of 224x224 images) at 52 blocks (1.31 B).
 *
 * Weights look like trained ones where it matters to quantization: Linear weights N(0, 0.02)
 * with a log-normal spread of row norms, and a few input columns (about 1 in 200) ten to twenty
 * times larger — the outlier columns that make per-channel and group scales differ; LayerNorm
 * gains near 1 with a few large channels (the activation outliers of real models), small biases.
 * Everything comes from one seeded generator: the same arguments give the same files.
 * Generated models are never committed: write them under /tmp or ~/.cache. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench/bench_util.h"
#include "shard/st_write.h"

static uint64_t g_s = 3;
static float nrand(double sd) { return qd_bench_nrand(&g_s, sd); }
static double urand(void)
{
    g_s = g_s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(g_s >> 11) / 9007199254740992.0;
}

typedef enum { LIN, BIAS, LN_GAIN, LN_BIAS, EMB, PLAIN } kind;

typedef struct {
    char name[128];
    int ndim;
    int64_t shape[4];
    kind k;
} spec;

typedef struct {
    spec *s;
    int n, cap;
} specs;

static void add(specs *v, kind k, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3, const char *fmt, ...)
    __attribute__((format(printf, 8, 9)));
static void add(specs *v, kind k, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3, const char *fmt, ...)
{
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 256;
        v->s = realloc(v->s, (size_t)v->cap * sizeof *v->s);
    }
    spec *s = &v->s[v->n++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->name, sizeof s->name, fmt, ap);
    va_end(ap);
    s->ndim = ndim;
    s->shape[0] = d0;
    s->shape[1] = d1;
    s->shape[2] = d2;
    s->shape[3] = d3;
    s->k = k;
}

static int64_t numel(const spec *s)
{
    int64_t n = 1;
    for (int d = 0; d < s->ndim; d++) n *= s->shape[d];
    return n;
}

/* The values of one tensor, as its kind says. */
static void fill(const spec *s, float *p)
{
    const int64_t n = numel(s);
    switch (s->k) {
    case LIN: { /* [out, in]: rows scaled log-normally, outlier input columns */
        const int64_t R = s->shape[0], C = numel(s) / R;
        float *colscale = malloc((size_t)C * sizeof *colscale);
        for (int64_t c = 0; c < C; c++) colscale[c] = urand() < 0.005 ? (float)(10.0 + 10.0 * urand()) : 1.0f;
        for (int64_t r = 0; r < R; r++) {
            const double rs = exp(nrand(0.2));
            for (int64_t c = 0; c < C; c++) p[r * C + c] = (float)(rs * nrand(0.02)) * colscale[c];
        }
        free(colscale);
        break;
    }
    case LN_GAIN:
        for (int64_t i = 0; i < n; i++) p[i] = 1.0f + nrand(0.05) + (urand() < 0.002 ? (float)(4.0 + 4 * urand()) : 0);
        break;
    case BIAS:
    case LN_BIAS:
        for (int64_t i = 0; i < n; i++) p[i] = nrand(0.01);
        break;
    case EMB:
    case PLAIN:
        for (int64_t i = 0; i < n; i++) p[i] = nrand(0.02);
        break;
    }
}

static void linear(specs *v, const char *mod, int64_t out, int64_t in)
{
    add(v, LIN, 2, out, in, 0, 0, "%s.weight", mod);
    add(v, BIAS, 1, out, 0, 0, 0, "%s.bias", mod);
}

static void ln(specs *v, const char *mod, int64_t H)
{
    add(v, LN_GAIN, 1, H, 0, 0, 0, "%s.weight", mod);
    add(v, LN_BIAS, 1, H, 0, 0, 0, "%s.bias", mod);
}

/* Block l under `pfx`: four attention Linears (names sq), the MLP, and two LayerNorms named
 * ln_a and ln_b — before attention and before the MLP when pre (ViT), else after each (BERT). */
static void block(specs *v, const char *pfx, int l, int64_t H, int64_t I, const char *const sq[4], const char *ln_a,
                  const char *ln_b, int pre)
{
    char m[160];
#define QD_MOD(name) snprintf(m, sizeof m, "%sencoder.layer.%d.%s", pfx, l, name)
    if (pre) ln(v, (QD_MOD(ln_a), m), H);
    for (int k = 0; k < 4; k++) linear(v, (QD_MOD(sq[k]), m), H, H);
    ln(v, (QD_MOD(pre ? ln_b : ln_a), m), H);
    linear(v, (QD_MOD("intermediate.dense"), m), I, H);
    linear(v, (QD_MOD("output.dense"), m), H, I);
    if (!pre) ln(v, (QD_MOD(ln_b), m), H);
#undef QD_MOD
}

static void bert(specs *v, int L, int64_t H, int64_t I)
{
    add(v, EMB, 2, 30522, H, 0, 0, "embeddings.word_embeddings.weight");
    add(v, EMB, 2, 512, H, 0, 0, "embeddings.position_embeddings.weight");
    add(v, EMB, 2, 2, H, 0, 0, "embeddings.token_type_embeddings.weight");
    ln(v, "embeddings.LayerNorm", H);
    static const char *const sq[] = {"attention.self.query", "attention.self.key", "attention.self.value",
                                     "attention.output.dense"};
    for (int l = 0; l < L; l++) block(v, "", l, H, I, sq, "attention.output.LayerNorm", "output.LayerNorm", 0);
    linear(v, "pooler.dense", H, H);
}

static void vit(specs *v, int L, int64_t H, int64_t I, int patch, int image)
{
    const int64_t np = (int64_t)(image / patch) * (image / patch);
    add(v, PLAIN, 3, 1, 1, H, 0, "vit.embeddings.cls_token");
    add(v, PLAIN, 3, 1, np + 1, H, 0, "vit.embeddings.position_embeddings");
    add(v, LIN, 4, H, 3, patch, patch, "vit.embeddings.patch_embeddings.projection.weight");
    add(v, BIAS, 1, H, 0, 0, 0, "vit.embeddings.patch_embeddings.projection.bias");
    static const char *const sq[] = {"attention.attention.query", "attention.attention.key",
                                     "attention.attention.value", "attention.output.dense"};
    for (int l = 0; l < L; l++) block(v, "vit.", l, H, I, sq, "layernorm_before", "layernorm_after", 1);
    ln(v, "vit.layernorm", H);
}

static int cmp_spec(const void *a, const void *b) { return strcmp(((const spec *)a)->name, ((const spec *)b)->name); }

/* The legacy form: BERT-base, F32, one file, no block LayerNorms (RTN throughput only). */
static int legacy(const char *dir, int L)
{
    const int H = 768, I = 3072;
    specs v = {0};
    add(&v, PLAIN, 2, 30522, H, 0, 0, "embeddings.word_embeddings.weight");
    add(&v, PLAIN, 2, 512, H, 0, 0, "embeddings.position_embeddings.weight");
    add(&v, PLAIN, 2, 2, H, 0, 0, "embeddings.token_type_embeddings.weight");
    add(&v, PLAIN, 1, H, 0, 0, 0, "embeddings.LayerNorm.weight");
    add(&v, PLAIN, 1, H, 0, 0, 0, "embeddings.LayerNorm.bias");
    static const char *sq[] = {"attention.self.query", "attention.self.key", "attention.self.value",
                               "attention.output.dense"};
    for (int l = 0; l < L; l++) {
        for (int k = 0; k < 4; k++) {
            add(&v, PLAIN, 2, H, H, 0, 0, "encoder.layer.%d.%s.weight", l, sq[k]);
            add(&v, PLAIN, 1, H, 0, 0, 0, "encoder.layer.%d.%s.bias", l, sq[k]);
        }
        add(&v, PLAIN, 2, I, H, 0, 0, "encoder.layer.%d.intermediate.dense.weight", l);
        add(&v, PLAIN, 1, I, 0, 0, 0, "encoder.layer.%d.intermediate.dense.bias", l);
        add(&v, PLAIN, 2, H, I, 0, 0, "encoder.layer.%d.output.dense.weight", l);
        add(&v, PLAIN, 1, H, 0, 0, 0, "encoder.layer.%d.output.dense.bias", l);
    }
    add(&v, PLAIN, 2, H, H, 0, 0, "pooler.dense.weight");
    add(&v, PLAIN, 1, H, 0, 0, 0, "pooler.dense.bias");
    qd_st_out_tensor *t = calloc((size_t)v.n, sizeof *t);
    long long params = 0;
    for (int i = 0; i < v.n; i++) {
        float *p = malloc((size_t)numel(&v.s[i]) * sizeof(float));
        for (int64_t k = 0; k < numel(&v.s[i]); k++) p[k] = nrand(0.02);
        t[i] = (qd_st_out_tensor){v.s[i].name, QD_DT_F32, v.s[i].ndim, {v.s[i].shape[0], v.s[i].shape[1]}, p};
        params += numel(&v.s[i]);
    }
    mkdir(dir, 0755);
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (qd_st_write(path, t, v.n, NULL) != QD_OK) {
        fprintf(stderr, "%s\n", qd_errmsg());
        return 1;
    }
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    fprintf(f,
            "{\"model_type\": \"bert\", \"architectures\": [\"BertModel\"], \"hidden_size\": %d, "
            "\"num_hidden_layers\": %d, \"num_attention_heads\": 12, \"intermediate_size\": %d}\n",
            H, L, I);
    fclose(f);
    printf("wrote %s: %d tensors, %lld parameters\n", dir, v.n, params);
    for (int i = 0; i < v.n; i++) free((void *)t[i].data);
    free(t);
    free(v.s);
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: gen_checkpoint DIR [layers]\n"
                    "       gen_checkpoint --shape bert|vit [--layers L] [--hidden H] [--intermediate I] [--heads N]\n"
                    "                      [--dtype bf16|f32] [--shard-mb MB] [--seed S] DIR\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage();
        return 2;
    }
    if (strncmp(argv[1], "--", 2)) return legacy(argv[1], argc > 2 ? atoi(argv[2]) : 12);
    const char *shape = "bert", *dtype = "bf16", *dir = NULL;
    int L = 0, heads = 16, patch = 14, image = 224;
    int64_t H = 0, I = 0, shard_mb = 1024;
    for (int a = 1; a < argc; a++) {
        const char *o = argv[a];
        const char *val = a + 1 < argc ? argv[a + 1] : NULL;
        if (!strncmp(o, "--", 2) && !val) {
            usage();
            return 2;
        }
        if (!strcmp(o, "--shape"))
            shape = argv[++a];
        else if (!strcmp(o, "--layers"))
            L = atoi(argv[++a]);
        else if (!strcmp(o, "--hidden"))
            H = atoll(argv[++a]);
        else if (!strcmp(o, "--intermediate"))
            I = atoll(argv[++a]);
        else if (!strcmp(o, "--heads"))
            heads = atoi(argv[++a]);
        else if (!strcmp(o, "--dtype"))
            dtype = argv[++a];
        else if (!strcmp(o, "--shard-mb"))
            shard_mb = atoll(argv[++a]);
        else if (!strcmp(o, "--seed"))
            g_s = (uint64_t)atoll(argv[++a]);
        else if (!strncmp(o, "--", 2)) {
            fprintf(stderr, "gen_checkpoint: unknown option %s\n", o);
            return 2;
        } else
            dir = o;
    }
    const int is_vit = !strcmp(shape, "vit");
    if ((!is_vit && strcmp(shape, "bert")) || (strcmp(dtype, "bf16") && strcmp(dtype, "f32")) || !dir || shard_mb < 1) {
        usage();
        return 2;
    }
    if (!L) L = is_vit ? 52 : 26;
    if (!H) H = is_vit ? 1408 : 2048;
    if (!I) I = is_vit ? 6144 : 4 * H;
    if (H % heads) {
        fprintf(stderr, "gen_checkpoint: hidden %lld is not a multiple of %d heads\n", (long long)H, heads);
        return 2;
    }
    specs v = {0};
    if (is_vit)
        vit(&v, L, H, I, patch, image);
    else
        bert(&v, L, H, I);
    /* values are drawn in model order (the same for any shard size), files hold name order */
    const qd_dtype dt = strcmp(dtype, "bf16") ? QD_DT_F32 : QD_DT_BF16;
    const size_t esz = dt == QD_DT_BF16 ? 2 : 4;
    void **data = calloc((size_t)v.n, sizeof *data);
    int *order = malloc((size_t)v.n * sizeof *order);
    spec *sorted = malloc((size_t)v.n * sizeof *sorted);
    memcpy(sorted, v.s, (size_t)v.n * sizeof *sorted);
    qsort(sorted, (size_t)v.n, sizeof *sorted, cmp_spec);
    /* shard boundaries in name order; each tensor's values drawn with a seed of its own (its model
     * index), so a shard can be generated alone */
    for (int i = 0; i < v.n; i++)
        for (int j = 0; j < v.n; j++)
            if (!strcmp(sorted[i].name, v.s[j].name)) order[i] = j;
    int nshards = 0, *shard_of = malloc((size_t)v.n * sizeof *shard_of);
    int64_t bytes = 0, params = 0;
    for (int i = 0; i < v.n; i++) {
        const int64_t b = numel(&sorted[i]) * (int64_t)esz;
        if (bytes > 0 && bytes + b > shard_mb * 1000000) {
            nshards++;
            bytes = 0;
        }
        bytes += b;
        shard_of[i] = nshards;
        params += numel(&sorted[i]);
    }
    nshards++;
    mkdir(dir, 0755);
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    FILE *idx = fopen(path, "w");
    if (!idx) {
        perror(path);
        return 1;
    }
    fprintf(idx, "{\n  \"metadata\": {\"total_size\": %lld},\n  \"weight_map\": {\n",
            (long long)(params * (int64_t)esz));
    const uint64_t seed0 = g_s;
    for (int sh = 0; sh < nshards; sh++) {
        qd_st_out_tensor *t = calloc((size_t)v.n, sizeof *t);
        int nt = 0;
        for (int i = 0; i < v.n; i++) {
            if (shard_of[i] != sh) continue;
            const spec *s = &sorted[i];
            const int64_t ne = numel(s);
            float *f = malloc((size_t)ne * sizeof *f);
            g_s = seed0 * 1000003ull + (uint64_t)order[i] * 7919ull + 1;
            fill(s, f);
            void *p = f;
            if (dt == QD_DT_BF16) {
                uint16_t *b = malloc((size_t)ne * 2);
                for (int64_t k = 0; k < ne; k++) b[k] = qd_f32_to_bf16(f[k]);
                free(f);
                p = b;
            }
            data[i] = p;
            t[nt] = (qd_st_out_tensor){s->name, dt, s->ndim, {0}, p};
            for (int d = 0; d < s->ndim; d++) t[nt].shape[d] = s->shape[d];
            nt++;
        }
        char file[64];
        snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", sh + 1, nshards);
        snprintf(path, sizeof path, "%s/%s", dir, file);
        if (qd_st_write(path, t, nt, "{\"format\": \"pt\"}") != QD_OK) {
            fprintf(stderr, "%s\n", qd_errmsg());
            return 1;
        }
        for (int i = 0; i < v.n; i++)
            if (shard_of[i] == sh) {
                fprintf(idx, "    \"%s\": \"%s\"%s\n", sorted[i].name, file, i + 1 < v.n ? "," : "");
                free(data[i]);
                data[i] = NULL;
            }
        free(t);
        fprintf(stderr, "gen_checkpoint: %s written\n", file);
    }
    fprintf(idx, "  }\n}\n");
    fclose(idx);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (is_vit)
        fprintf(f,
                "{\"model_type\": \"vit\", \"architectures\": [\"ViTModel\"], \"hidden_size\": %lld, "
                "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"intermediate_size\": %lld, "
                "\"hidden_act\": \"gelu\", \"layer_norm_eps\": 1e-06, \"image_size\": %d, \"patch_size\": %d, "
                "\"num_channels\": 3, \"qkv_bias\": true, \"torch_dtype\": \"%s\"}\n",
                (long long)H, L, heads, (long long)I, image, patch, dt == QD_DT_BF16 ? "bfloat16" : "float32");
    else
        fprintf(f,
                "{\"model_type\": \"bert\", \"architectures\": [\"BertModel\"], \"hidden_size\": %lld, "
                "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"intermediate_size\": %lld, "
                "\"hidden_act\": \"gelu\", \"layer_norm_eps\": 1e-12, \"max_position_embeddings\": 512, "
                "\"type_vocab_size\": 2, \"vocab_size\": 30522, \"torch_dtype\": \"%s\"}\n",
                (long long)H, L, heads, (long long)I, dt == QD_DT_BF16 ? "bfloat16" : "float32");
    fclose(f);
    printf("wrote %s: %s-shaped, %d blocks at hidden %lld, %d tensors, %lld parameters, %s, %d shard%s\n", dir, shape,
           L, (long long)H, v.n, (long long)params, dtype, nshards, nshards == 1 ? "" : "s");
    free(data);
    free(order);
    free(sorted);
    free(shard_of);
    free(v.s);
    return 0;
}
