/* Row quantization throughput: quantize + pack of FP32 weights with given (scale, zero), AVX2
 * kernels against the scalar reference measured in the same run, single thread.
 *
 * Matrix set: the six Linear weights of one BERT-base layer (Q, K, V, O 768x768, FFN in
 * 3072x768, FFN out 768x3072; 7.1 M values, 28 MB FP32), Gaussian (std 0.02) with 0.1% outliers
 * at 10x. Schemes: 8-bit per channel, 4-bit groups of 128 (asymmetric min-max parameters,
 * computed once and not timed). Figures: GB/s of FP32 input (quantize) or FP32 output
 * (dequantize), best of several timed passes over the whole set; the outputs of both ISAs are
 * compared byte for byte.
 *
 *   bench_quant_speed [seconds per measurement, default 0.4]
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

typedef struct {
    const char *name;
    int64_t rows, cols;
    float *w;
} mat;

static uint64_t rng = 0x853C49E6748FEA9Bull;
static double unif(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) * 0x1.0p-53;
}
static float gauss(void)
{
    double u = unif(), v = unif();
    return (float)(sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v));
}

typedef struct {
    int bits;
    int64_t G; /* 0: per channel */
    const char *label;
} scheme;

/* per-matrix parameters and outputs of one scheme */
typedef struct {
    float *scales;
    int32_t *zeros;
    int64_t G, ng, rb;
    uint8_t *out_ref, *out_isa;
    float *deq;
} prep;

static void make_params(const mat *m, const scheme *s, prep *p)
{
    const int maxq = (1 << s->bits) - 1;
    p->G = s->G ? QD_MIN(s->G, m->cols) : m->cols;
    p->ng = (m->cols + p->G - 1) / p->G;
    p->rb = (m->cols * s->bits + 7) / 8;
    p->scales = qd_xmalloc((size_t)(m->rows * p->ng) * sizeof(float));
    p->zeros = qd_xmalloc((size_t)(m->rows * p->ng) * sizeof(int32_t));
    p->out_ref = qd_xcalloc((size_t)(m->rows * p->rb), 1);
    p->out_isa = qd_xcalloc((size_t)(m->rows * p->rb), 1);
    p->deq = qd_xmalloc((size_t)(m->rows * m->cols) * sizeof(float));
    for (int64_t r = 0; r < m->rows; r++)
        for (int64_t g = 0; g < p->ng; g++) {
            const float *x = m->w + r * m->cols + g * p->G;
            int64_t n = QD_MIN(p->G, m->cols - g * p->G);
            float lo = 0, hi = 0;
            for (int64_t c = 0; c < n; c++) lo = fminf(lo, x[c]), hi = fmaxf(hi, x[c]);
            float sc = (hi - lo) / (float)maxq;
            if (sc == 0) sc = 1;
            p->scales[r * p->ng + g] = sc;
            p->zeros[r * p->ng + g] = (int32_t)rintf(-lo / sc);
        }
}

static void quant_all(const qd_kernel_table *k, const mat *ms, int nm, const scheme *s, prep *ps, int isa_out)
{
    for (int i = 0; i < nm; i++) {
        const mat *m = &ms[i];
        prep *p = &ps[i];
        uint8_t *out = isa_out ? p->out_isa : p->out_ref;
        for (int64_t r = 0; r < m->rows; r++) {
            const float *x = m->w + r * m->cols;
            if (s->bits == 8)
                k->quantize_codes(x, m->cols, p->G, p->scales + r * p->ng, p->zeros + r * p->ng, 255, out + r * p->rb);
            else
                k->quantize_q4(x, m->cols, p->G, p->scales + r * p->ng, p->zeros + r * p->ng, out + r * p->rb);
        }
    }
}

static void dequant_all(const qd_kernel_table *k, const mat *ms, int nm, const scheme *s, prep *ps)
{
    for (int i = 0; i < nm; i++) {
        const mat *m = &ms[i];
        prep *p = &ps[i];
        for (int64_t r = 0; r < m->rows; r++) {
            const uint8_t *in = p->out_ref + r * p->rb;
            float *y = p->deq + r * m->cols;
            if (s->bits == 8)
                k->dequantize_codes(in, m->cols, p->G, p->scales + r * p->ng, p->zeros + r * p->ng, y);
            else
                k->dequantize_q4(in, m->cols, p->G, p->scales + r * p->ng, p->zeros + r * p->ng, y);
        }
    }
}

/* best seconds per pass over at least min_s seconds (at least 3 passes) */
static double time_pass(int dequant, const qd_kernel_table *k, const mat *ms, int nm, const scheme *s, prep *ps,
                        int isa_out, double min_s)
{
    double best = 1e30, t0 = qd_now();
    int passes = 0;
    while (passes < 3 || qd_now() - t0 < min_s) {
        double a = qd_now();
        if (dequant)
            dequant_all(k, ms, nm, s, ps);
        else
            quant_all(k, ms, nm, s, ps, isa_out);
        double t = qd_now() - a;
        if (t < best) best = t;
        passes++;
    }
    return best;
}

int main(int argc, char **argv)
{
    const double min_s = argc > 1 ? atof(argv[1]) : 0.4;
    mat ms[] = {{"attn.query", 768, 768, NULL},  {"attn.key", 768, 768, NULL},      {"attn.value", 768, 768, NULL},
                {"attn.output", 768, 768, NULL}, {"intermediate", 3072, 768, NULL}, {"output", 768, 3072, NULL}};
    const int nm = (int)QD_ARRAY_LEN(ms);
    int64_t total = 0;
    for (int i = 0; i < nm; i++) {
        int64_t n = ms[i].rows * ms[i].cols;
        ms[i].w = qd_xmalloc((size_t)n * sizeof(float));
        for (int64_t j = 0; j < n; j++) {
            float v = 0.02f * gauss();
            if (unif() < 0.001) v *= 10.0f;
            ms[i].w[j] = v;
        }
        total += n;
    }
    const double gb = (double)total * sizeof(float) / 1e9;
    const qd_kernel_table *ref = qd_kernels_table("ref"), *isa = qd_kernels_table("avx2");
    printf("quant_speed: one BERT-base layer's Linear weights (4x 768x768, 3072x768, 768x3072), %.1f M values, "
           "%.1f MB FP32; single thread\n",
           (double)total / 1e6, gb * 1e3);
    printf("reference kernels: plain scalar C built without ISA flags (%s); selected ISA: %s\n", __VERSION__,
           qd_kernels_isa());
    if (!isa) {
        printf("this CPU lacks AVX2/FMA/F16C: only the reference is measured\n");
        isa = ref;
    }

    const scheme schemes[] = {{8, 0, "8-bit per channel RTN"}, {4, 128, "4-bit group-128 RTN"}};
    int mismatch = 0;
    for (size_t si = 0; si < QD_ARRAY_LEN(schemes); si++) {
        const scheme *s = &schemes[si];
        prep ps[QD_ARRAY_LEN(ms)];
        for (int i = 0; i < nm; i++) make_params(&ms[i], s, &ps[i]);

        double tq_ref = time_pass(0, ref, ms, nm, s, ps, 0, min_s);
        double tq_isa = time_pass(0, isa, ms, nm, s, ps, 1, min_s);
        int same = 1;
        for (int i = 0; i < nm; i++) same &= memcmp(ps[i].out_ref, ps[i].out_isa, (size_t)(ms[i].rows * ps[i].rb)) == 0;
        mismatch |= !same;
        double td_ref = time_pass(1, ref, ms, nm, s, ps, 0, min_s);
        double td_isa = time_pass(1, isa, ms, nm, s, ps, 0, min_s);

        printf("\n%s (packed output identical: %s)\n", s->label, same ? "yes" : "NO");
        printf("  quantize+pack    ref %6.2f GB/s   %s %6.2f GB/s   ratio %5.2fx\n", gb / tq_ref, isa->isa, gb / tq_isa,
               tq_ref / tq_isa);
        printf("  unpack+dequant   ref %6.2f GB/s   %s %6.2f GB/s   ratio %5.2fx\n", gb / td_ref, isa->isa, gb / td_isa,
               td_ref / td_isa);
        for (int i = 0; i < nm; i++) {
            free(ps[i].scales), free(ps[i].zeros), free(ps[i].out_ref), free(ps[i].out_isa), free(ps[i].deq);
        }
    }
    printf("\nGB/s: FP32 bytes read (quantize) or written (dequantize) per second, best pass\n");
    for (int i = 0; i < nm; i++) free(ms[i].w);
    return mismatch;
}
