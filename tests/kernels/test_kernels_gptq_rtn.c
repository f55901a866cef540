/* GPTQ's column step and the fused round-to-nearest kernels (kernels.h gptq_column, range_f32,
 * all_finite, rtn_group): the reference against the formulas written out here, and every ISA
 * table of this CPU (avx2, avx512) against the reference bit for bit, over lengths 1..70 (every
 * remainder of 8 rows or lanes) and long runs, with ties at half steps, values far outside the
 * range (clamped codes), signed zeros, and NaN/Inf for the finiteness checks. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "qd_test.h"

static unsigned long long g_rs = 0x9E3779B97F4A7C15ull;
static double urand(void) { return qd_test_urand(&g_rs); }

/* a value that divides by s onto a half step, or far outside the range, or plain noise */
static float sample(float s, int maxq, int i)
{
    switch (i % 9) {
    case 0: return s * ((float)(int)(urand() * maxq) - (float)maxq / 2 + 0.5f);
    case 1: return (float)((urand() - 0.5) * 1e6);
    case 2: return i % 2 ? 0.0f : -0.0f;
    default: return (float)((urand() - 0.5) * maxq * s * 1.3);
    }
}

static const qd_kernel_table *isa_tables(int k)
{
    static const char *names[] = {"avx2", "avx512"};
    return k < 2 ? qd_kernels_table(names[k]) : NULL;
}

/* ---- gptq_column ------------------------------------------------------------------------------ */

typedef struct {
    float *T, *s, *hrow, *q, *e;
    int32_t *z;
    uint8_t *qc;
    double *err;
} col_bufs;

enum { LDT = 80, CNT = 6 };

static void col_alloc(col_bufs *b)
{
    b->T = malloc(sizeof(float) * LDT * CNT);
    b->s = malloc(sizeof(float) * LDT);
    b->hrow = malloc(sizeof(float) * CNT);
    b->q = malloc(sizeof(float) * LDT);
    b->e = malloc(sizeof(float) * LDT);
    b->z = malloc(sizeof(int32_t) * LDT);
    b->qc = malloc(LDT);
    b->err = malloc(sizeof(double) * LDT);
}

static void col_copy(col_bufs *d, const col_bufs *s)
{
    memcpy(d->T, s->T, sizeof(float) * LDT * CNT);
    memcpy(d->s, s->s, sizeof(float) * LDT);
    memcpy(d->hrow, s->hrow, sizeof(float) * CNT);
    memcpy(d->z, s->z, sizeof(int32_t) * LDT);
    memcpy(d->err, s->err, sizeof(double) * LDT);
    memset(d->q, 0, sizeof(float) * LDT);
    memset(d->e, 0, sizeof(float) * LDT);
    memset(d->qc, 0, LDT);
}

static void col_free(col_bufs *b)
{
    free(b->T);
    free(b->s);
    free(b->hrow);
    free(b->q);
    free(b->e);
    free(b->z);
    free(b->qc);
    free(b->err);
}

static void col_run(const qd_kernel_table *k, col_bufs *b, int64_t n, int maxq, float d, int64_t i)
{
    qd_gptq_col a = {.T = b->T,
                     .ldt = LDT,
                     .n = n,
                     .cnt = CNT,
                     .s = b->s,
                     .z = b->z,
                     .hrow = b->hrow,
                     .d = d,
                     .maxq = maxq,
                     .q = b->q,
                     .qc = b->qc,
                     .e = b->e,
                     .err = b->err};
    k->gptq_column(&a, i);
}

static void test_gptq_column(void)
{
    const qd_kernel_table *ref = qd_kernels_table("ref");
    col_bufs src, r, v;
    col_alloc(&src);
    col_alloc(&r);
    col_alloc(&v);
    int cases = 0;
    for (int bits = 2; bits <= 8; bits += 3)
        for (int64_t n = 1; n <= 70; n++) {
            const int maxq = (1 << bits) - 1;
            for (int64_t r0 = 0; r0 < LDT; r0++) {
                src.s[r0] = (float)(0.01 + urand() * 0.1);
                src.z[r0] = (int32_t)(urand() * (maxq + 1));
                src.err[r0] = urand();
            }
            for (int64_t x = 0; x < LDT * CNT; x++) src.T[x] = sample(src.s[x % LDT], maxq, (int)x);
            for (int j = 0; j < CNT; j++) src.hrow[j] = (float)(urand() - 0.5);
            const float d = (float)(0.5 + urand());
            const int64_t i = n % 3;
            col_copy(&r, &src);
            col_run(ref, &r, n, maxq, d, i);
            /* the reference is the formula */
            for (int64_t row = 0; row < n; row++) {
                float w = src.T[i * LDT + row], qf = rintf(w / src.s[row]) + (float)src.z[row];
                qf = qf < 0 ? 0 : qf > maxq ? (float)maxq : qf;
                float q = src.s[row] * (float)((int)qf - src.z[row]);
                CHECK_EQ(r.qc[row], (int)qf);
                CHECK(r.q[row] == q && r.e[row] == (w - q) / d);
                CHECK(r.err[row] == src.err[row] + (double)(w - q) * (w - q) / ((double)d * d) / 2.0);
                for (int j = (int)i + 1; j < CNT; j++)
                    CHECK(r.T[j * LDT + row] == src.T[j * LDT + row] - r.e[row] * src.hrow[j]);
            }
            CHECK(!memcmp(r.T + n, src.T + n, sizeof(float) * (LDT - n))); /* rows past n untouched */
            for (int k = 0; k < 2; k++) {
                const qd_kernel_table *t = isa_tables(k);
                if (!t) continue;
                col_copy(&v, &src);
                col_run(t, &v, n, maxq, d, i);
                CHECK_MSG(!memcmp(v.T, r.T, sizeof(float) * LDT * CNT) && !memcmp(v.q, r.q, sizeof(float) * n) &&
                              !memcmp(v.e, r.e, sizeof(float) * n) && !memcmp(v.qc, r.qc, (size_t)n) &&
                              !memcmp(v.err, r.err, sizeof(double) * LDT),
                          "%s: gptq_column differs from ref, bits %d, n %lld", t->isa, bits, (long long)n);
                cases++;
            }
        }
    printf("gptq_column: %d ISA comparisons\n", cases);
    col_free(&src);
    col_free(&r);
    col_free(&v);
}

/* ---- range_f32, all_finite -------------------------------------------------------------------- */

static void test_range(void)
{
    const qd_kernel_table *ref = qd_kernels_table("ref");
    enum { N = 1029 };
    float *x = malloc(sizeof(float) * N);
    int cases = 0;
    const int64_t lens[] = {1, 2, 7, 8, 9, 15, 16, 17, 23, 24, 31, 32, 33, 63, 64, 65, 70, 1000, N};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        const int64_t n = lens[li];
        for (int bad = -1; bad < 3; bad++) {
            for (int64_t c = 0; c < n; c++) x[c] = c % 5 == 1 ? (c % 2 ? -0.0f : 0.0f) : (float)(urand() - 0.5);
            if (bad >= 0) x[(n - 1) * bad / 2] = bad == 1 ? NAN : bad == 0 ? INFINITY : -INFINITY;
            float lo, hi;
            int ok = ref->range_f32(x, n, &lo, &hi);
            CHECK_EQ(ok, bad < 0);
            CHECK_EQ(ref->all_finite(x, n), bad < 0);
            if (bad < 0) {
                float elo = x[0], ehi = x[0];
                for (int64_t c = 1; c < n; c++) {
                    elo = fminf(elo, x[c]);
                    ehi = fmaxf(ehi, x[c]);
                }
                CHECK(lo == elo && hi == ehi); /* equal up to the sign of a zero */
            }
            for (int k = 0; k < 2; k++) {
                const qd_kernel_table *t = isa_tables(k);
                if (!t) continue;
                float vlo, vhi;
                int vok = t->range_f32(x, n, &vlo, &vhi);
                CHECK_EQ(vok, ok);
                CHECK_EQ(t->all_finite(x, n), bad < 0);
                if (ok)
                    CHECK_MSG(!memcmp(&vlo, &lo, sizeof lo) && !memcmp(&vhi, &hi, sizeof hi),
                              "%s: range_f32 n %lld: [%g, %g] vs ref [%g, %g]", t->isa, (long long)n, vlo, vhi, lo, hi);
                cases++;
            }
        }
    }
    printf("range_f32 / all_finite: %d ISA comparisons\n", cases);
    free(x);
}

/* ---- rtn_group -------------------------------------------------------------------------------- */

static void test_rtn_group(void)
{
    const qd_kernel_table *ref = qd_kernels_table("ref");
    enum { N = 1000 };
    float *x = malloc(sizeof(float) * N);
    uint8_t *cr = malloc(N), *cv = malloc(N);
    int cases = 0;
    for (int bits = 2; bits <= 8; bits++)
        for (int64_t n = 1; n <= N; n = n < 70 ? n + 1 : n * 3) {
            const int64_t len = QD_MIN(n, (int64_t)N);
            const int maxq = (1 << bits) - 1;
            const float s = (float)(0.001 + urand() * 0.05);
            const int32_t z = (int32_t)(urand() * (maxq + 1));
            for (int64_t c = 0; c < len; c++) x[c] = sample(s, maxq, (int)c);
            double e2 = 0.25, w2 = 0.5, mx = 1e-9;
            ref->rtn_group(x, len, s, z, maxq, cr, &e2, &w2, &mx);
            double ee = 0, ew = 0, em = 0;
            for (int64_t c = 0; c < len; c++) {
                float v = x[c] / s, q = fabsf(v) < 4194304.0f ? rintf(v) + (float)z : (v < 0 ? 0.0f : (float)maxq);
                q = q < 0 ? 0 : q > maxq ? (float)maxq : q;
                CHECK_EQ(cr[c], (int)q);
                double d = (double)x[c] - (double)(s * (q - (float)z));
                ee += d * d;
                ew += (double)x[c] * x[c];
                em = fmax(em, fabs(d));
            }
            CHECK_NEAR(e2, 0.25 + ee, 1e-12 * (1 + ee));
            CHECK_NEAR(w2, 0.5 + ew, 1e-12 * (1 + ew));
            CHECK(mx == fmax(em, 1e-9));
            for (int k = 0; k < 2; k++) {
                const qd_kernel_table *t = isa_tables(k);
                if (!t) continue;
                double v2 = 0.25, vw = 0.5, vm = 1e-9;
                t->rtn_group(x, len, s, z, maxq, cv, &v2, &vw, &vm);
                CHECK_MSG(!memcmp(cv, cr, (size_t)len) && !memcmp(&v2, &e2, sizeof e2) &&
                              !memcmp(&vw, &w2, sizeof w2) && !memcmp(&vm, &mx, sizeof mx),
                          "%s: rtn_group differs from ref, bits %d, n %lld", t->isa, bits, (long long)len);
                cases++;
            }
        }
    printf("rtn_group: %d ISA comparisons\n", cases);
    free(x);
    free(cr);
    free(cv);
}

int main(void)
{
    printf("ISA tables on this CPU: avx2 %s, avx512 %s\n", qd_kernels_table("avx2") ? "yes" : "no",
           qd_kernels_table("avx512") ? "yes" : "no");
    test_gptq_column();
    test_range();
    test_rtn_group();
    QD_TEST_MAIN_END();
}
