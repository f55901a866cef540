/* bench_layer_error: per-layer relative output error tr(D H D^T) / tr(W H W^T) (D = W - W') of
 * RTN (min-max and MSE-searched scales), GPTQ and AdaRound on every encoder Linear of the real
 * checkpoints, at 8, 4 and 3 bits per channel and in groups of 32 and 64, with Hessians from real
 * calibration data (ViT: 128 MNIST test images; BERT all-MiniLM-L6-v2 when fetched: 128 SST-2
 * sentences of at most 64 tokens). Prints, per model and scheme, the mean and worst layer error of
 * each method and how many layers each method wins, plus the time per method.
 *
 *   bench_layer_error [--iters N] [--bits 8,4,3] [--vit-only | --bert-only] [--rows R] [--csv FILE]
 * AdaRound runs in Hessian mode with N Adam steps (default 1000; quant/adaround.h defaults else).
 * --rows R: only the first R output rows of each larger layer (rows are independent given H for
 * every method here, so a row subset is a sub-problem of the layer; RTN, GPTQ and AdaRound see
 * the same rows); 0 (default): all rows. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/calib.h"
#include "model/calib_data.h"
#include "model/model.h"
#include "quant/adaround.h"
#include "quant/gptq.h"
#include "quant/quant.h"

enum { M_RTN = 0, M_RTN_MSE, M_GPTQ, M_ADA, M_N };
static const char *mname[M_N] = {"rtn", "rtn-mse", "gptq", "adaround"};

static FILE *g_csv;
static int64_t g_rows; /* 0: all rows */

static int run(const char *name, const char *dir, const char *data, int seqlen, const int *bits, int nbits, int iters)
{
    qd_model *m = NULL;
    qd_calib_data *d = NULL;
    if (qd_model_load(dir, &m) || qd_calib_data_open(m, data, 128, seqlen, 0, &d)) {
        fprintf(stderr, "%s: %s\n", name, qd_errmsg());
        return 1;
    }
    qd_calib *c = NULL;
    qd_calib_new(m, NULL, &c);
    qd_model_hooks hk = qd_calib_hooks(c);
    for (int pass = 0; pass < 2; pass++) {
        for (int first = 0; first < qd_calib_data_count(d); first += 16) {
            qd_batch b;
            int n = QD_MIN(16, qd_calib_data_count(d) - first);
            if (qd_calib_data_batch(d, first, n, &b) || qd_model_forward(m, &b, &hk, NULL, NULL, NULL)) {
                fprintf(stderr, "%s\n", qd_errmsg());
                return 1;
            }
        }
        if (pass == 0) qd_calib_begin_accumulate(c);
    }
    const int L = qd_model_num_linears(m);
    float **H = qd_xcalloc((size_t)L, sizeof *H);
    for (int li = 0; li < L; li++) {
        const qd_linear *lin = qd_model_linear(m, li);
        H[li] = qd_xmalloc((size_t)lin->in * lin->in * sizeof(float));
        qd_calib_hessian_f32(qd_calib_find(c, lin->input_group), H[li]);
    }
    const int64_t gsz[3] = {-1, 32, 64};
    printf("\n%s: %d Linears, Hessians from %d samples (%d real tokens); AdaRound %d steps%s\n", name, L,
           qd_calib_data_count(d), qd_calib_data_real_tokens(d), iters,
           g_rows > 0 ? "; the first rows of each layer only" : "");
    if (g_rows > 0) printf("(at most %lld rows per layer)\n", (long long)g_rows);
    printf("%-5s %-8s | %-22s %-22s %-22s %-22s | wins (rtn/mse/gptq/ada)\n", "bits", "groups", "rtn mean (worst)",
           "rtn-mse mean (worst)", "gptq mean (worst)", "adaround mean (worst)");
    for (int bi = 0; bi < nbits; bi++)
        for (int gi = 0; gi < 3; gi++) {
            double sum[M_N] = {0}, worst[M_N] = {0}, secs[M_N] = {0};
            int wins[M_N] = {0};
            for (int li = 0; li < L; li++) {
                const qd_linear *lin = qd_model_linear(m, li);
                const int64_t R = g_rows > 0 && g_rows < lin->out ? g_rows : lin->out, C = lin->in;
                const int64_t G = gsz[gi] > 0 && gsz[gi] < C ? gsz[gi] : C;
                qd_qscheme s = {
                    .bits = bits[bi], .sym = 0, .gran = G < C ? QD_GRAN_GROUP : QD_GRAN_CHANNEL, .group_size = G};
                float *Q = qd_xmalloc((size_t)(R * C) * sizeof(float));
                uint8_t *codes = qd_xmalloc((size_t)(R * C));
                double e[M_N];
                for (int mi = 0; mi < M_N; mi++) {
                    double t0 = qd_now();
                    qd_qparams p;
                    qd_clip_opts mse = {100, 0.8f, 2.0f};
                    if (mi == M_GPTQ) {
                        qd_gptq_opts o;
                        qd_gptq_default_opts(&o);
                        o.bits = bits[bi];
                        o.sym = 0;
                        o.group_size = G < C ? G : -1;
                        int64_t ng = (C + G - 1) / G;
                        float *sc = qd_xmalloc((size_t)(R * ng) * sizeof(float));
                        int32_t *zr = qd_xmalloc((size_t)(R * ng) * sizeof(int32_t));
                        memcpy(Q, lin->W, (size_t)(R * C) * sizeof(float));
                        qd_gptq_quantize(Q, R, C, H[li], &o, codes, sc, zr, NULL, NULL);
                        free(sc);
                        free(zr);
                    } else {
                        qd_quant_params(lin->W, R, C, &s, mi == M_RTN ? &QD_CLIP_MINMAX : &mse, &p);
                        if (mi == M_ADA) {
                            qd_adaround_problem pb = {.R = R, .C = C, .W = lin->W, .H = H[li], .p = &p};
                            qd_adaround_opts o;
                            qd_adaround_default_opts(&o);
                            o.iters = iters;
                            qd_adaround_quantize(&pb, &o, codes, Q, NULL);
                        } else {
                            qd_rtn_quantize(lin->W, &p, NULL, codes);
                            qd_dequantize(codes, &p, NULL, Q);
                        }
                        qd_qparams_free(&p);
                    }
                    secs[mi] += qd_now() - t0;
                    e[mi] = qd_output_rel_error(lin->W, Q, H[li], R, C);
                    sum[mi] += e[mi];
                    if (e[mi] > worst[mi]) worst[mi] = e[mi];
                    if (g_csv)
                        fprintf(g_csv, "%s,%s,%d,%lld,%s,%.6e\n", name, lin->name, bits[bi],
                                (long long)(G < C ? G : -1), mname[mi], e[mi]);
                }
                int best = 0;
                for (int mi = 1; mi < M_N; mi++)
                    if (e[mi] < e[best]) best = mi;
                wins[best]++;
                free(Q);
                free(codes);
            }
            char gname[16];
            snprintf(gname, sizeof gname, gsz[gi] > 0 ? "g%lld" : "channel", (long long)gsz[gi]);
            printf("%-5d %-8s |", bits[bi], gname);
            for (int mi = 0; mi < M_N; mi++) printf(" %9.3e (%9.3e) ", sum[mi] / L, worst[mi]);
            printf("| %d/%d/%d/%d   [s: %.1f %.1f %.1f %.1f]\n", wins[0], wins[1], wins[2], wins[3], secs[0], secs[1],
                   secs[2], secs[3]);
            fflush(stdout);
        }
    for (int li = 0; li < L; li++) free(H[li]);
    free(H);
    qd_calib_free(c);
    qd_calib_data_free(d);
    qd_model_free(m);
    return 0;
}

int main(int argc, char **argv)
{
    int iters = 1000, vit_only = 0, bert_only = 0, bits[8] = {8, 4, 3}, nbits = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--iters") && i + 1 < argc)
            iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--vit-only"))
            vit_only = 1;
        else if (!strcmp(argv[i], "--bert-only"))
            bert_only = 1;
        else if (!strcmp(argv[i], "--rows") && i + 1 < argc)
            g_rows = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--csv") && i + 1 < argc)
            g_csv = fopen(argv[++i], "w");
        else if (!strcmp(argv[i], "--bits") && i + 1 < argc) {
            nbits = 0;
            for (char *t = strtok(argv[++i], ","); t && nbits < 8; t = strtok(NULL, ",")) bits[nbits++] = atoi(t);
        } else {
            fprintf(stderr, "usage: bench_layer_error [--iters N] [--bits 8,4,3] [--vit-only | --bert-only] [--rows R] "
                            "[--csv FILE]\n");
            return 2;
        }
    }
    if (g_csv) fprintf(g_csv, "model,layer,bits,group_size,method,rel_output_error\n");
    int rc = 0;
    if (!bert_only)
        rc = run("vit-mnist-tiny", QD_BENCH_MODELS_DIR "/vit-mnist-tiny",
                 QD_BENCH_MODELS_DIR "/data/mnist/t10k-images-idx3-ubyte.gz", 0, bits, nbits, iters);
    const char *bert = getenv("QD_BERT_DIR");
    char buf[4096];
    if (!bert) {
        snprintf(buf, sizeof buf, "%s/.cache/qdist/models/all-MiniLM-L6-v2", getenv("HOME") ? getenv("HOME") : "");
        bert = buf;
    }
    FILE *f;
    char cfgp[4200];
    snprintf(cfgp, sizeof cfgp, "%s/config.json", bert);
    if (!vit_only && (f = fopen(cfgp, "r"))) {
        fclose(f);
        rc |= run("all-MiniLM-L6-v2", bert, QD_BENCH_MODELS_DIR "/data/sst2/dev.tsv", 64, bits, nbits, iters);
    } else if (!vit_only)
        printf("\nBERT checkpoint not found (deploy/fetch-models.sh or QD_BERT_DIR): ViT only\n");
    if (g_csv) fclose(g_csv);
    return rc;
}
