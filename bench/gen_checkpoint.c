/* bench/gen_checkpoint: writes a BERT-base-shaped safetensors checkpoint (12 blocks, hidden 768,
 * intermediate 3072, vocabulary 30522: about 110M parameters) with random N(0, 0.02) weights and
 * a config.json, for throughput benchmarks.   gen_checkpoint DIR [layers] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench/bench_util.h"
#include "shard/st_write.h"

static uint64_t g_s = 3;
static float nrand(void) { return qd_bench_nrand(&g_s, 0.02); }

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: gen_checkpoint DIR [layers]\n");
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
        /* the blocks' LayerNorms, so that qdist eval can run the model too */
        const char *ln[] = {"attention.output.LayerNorm", "output.LayerNorm"};
        for (int k = 0; k < 2; k++) {
            snprintf(nm, sizeof nm, "encoder.layer.%d.%s.weight", l, ln[k]);
            ADD(nm, H, 0);
            snprintf(nm, sizeof nm, "encoder.layer.%d.%s.bias", l, ln[k]);
            ADD(nm, H, 0);
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
            "\"num_hidden_layers\": %d, \"num_attention_heads\": 12, \"intermediate_size\": %d}\n",
            H, L, I);
    fclose(f);
    long long params = 0;
    for (int i = 0; i < n; i++) params += t[i].shape[0] * (t[i].ndim == 2 ? t[i].shape[1] : 1);
    printf("wrote %s: %d tensors, %lld parameters\n", argv[1], n, params);
    return 0;
}
