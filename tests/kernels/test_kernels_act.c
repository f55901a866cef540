/* The forward pass's elementwise kernels (kernels.h gelu, exp_sum): the AVX2 versions give the
 * reference's bits (every length 0..40 and a long random run, special values), and the reference
 * is close to libm in double: GELU within 1e-6 absolute, exp within 3e-7 relative for normal results,
 * exactly 0 for masked (-inf) and underflowing inputs, the sum as specified. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "qd_test.h"

static uint64_t rs = 88172645463325252ull;
static double urand(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (double)(rs >> 11) / 9007199254740992.0;
}

int main(void)
{
    const qd_kernel_table *ref = qd_kernels_table("ref"), *avx = qd_kernels_table("avx2");
    CHECK(ref && ref->gelu && ref->exp_sum);
    enum { N = 4099 };
    float *x = malloc(N * sizeof(float)), *a = malloc(N * sizeof(float)), *b = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++) x[i] = (float)((urand() * 2 - 1) * (i % 3 ? 6 : 30));
    x[0] = 0;
    x[1] = -0.0f;
    x[2] = 4.0f;
    x[3] = -4.0f;
    x[4] = 1e-30f;
    x[5] = INFINITY;
    x[6] = -INFINITY;
    /* GELU vs libm */
    memcpy(a, x, N * sizeof(float));
    ref->gelu(a, N);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        if (isinf(x[i])) continue;
        double g = 0.5 * x[i] * (1.0 + erf(x[i] * 0.70710678118654752440));
        if (fabs(a[i] - g) > worst) worst = fabs(a[i] - g);
    }
    printf("gelu: max |ref - libm| = %.3g\n", worst);
    CHECK_DBL_LE(worst, 1e-6);
    CHECK(a[0] == 0.0f);
    CHECK(a[5] == INFINITY);
    /* exp_sum vs libm, with a max subtracted and masked entries */
    memcpy(a, x, N * sizeof(float));
    float m = -INFINITY;
    for (int i = 0; i < N; i++)
        if (!isinf(x[i]) && x[i] > m) m = x[i];
    a[5] = -INFINITY; /* a masked key */
    float s = ref->exp_sum(a, N, m);
    double rel = 0, sum = 0;
    for (int i = 0; i < N; i++) {
        double e = i == 5 || i == 6 ? 0.0 : exp((double)(float)(x[i] - m)); /* the difference in float, as the kernel */
        if (i == 5 || i == 6) {
            CHECK(a[i] == 0.0f);
            continue;
        }
        sum += a[i];
        /* relative error for normal results; below 2^-126 the result is subnormal: absolute */
        if (e > 1.2e-38) {
            double r = fabs(a[i] - e) / e;
            if (r > rel) rel = r;
        } else
            CHECK(fabs(a[i] - e) < 1.5e-45 * 4);
    }
    printf("exp: max relative error %.3g\n", rel);
    CHECK_DBL_LE(rel, 3e-7);
    CHECK_DBL_LE(fabs(s - sum), 1e-5 * sum);
    /* the specified summation order, written out */
    {
        float t[20];
        for (int i = 0; i < 20; i++) t[i] = (float)(-urand() * 5);
        float u[20];
        memcpy(u, t, sizeof t);
        float got = ref->exp_sum(u, 20, 0.0f), lane[8] = {0}, want = 0;
        for (int i = 0; i < 16; i++) lane[i % 8] += u[i];
        for (int j = 0; j < 8; j++) want += lane[j];
        for (int i = 16; i < 20; i++) want += u[i];
        CHECK(got == want);
    }
    static const char *isas[] = {"avx2", "avx512"}; /* the tables with their own versions */
    for (int ii = 0; ii < 2; ii++) {
        avx = qd_kernels_table(isas[ii]);
        if (!avx) {
            printf("no %s on this CPU: not checked\n", isas[ii]);
            continue;
        }
        for (int len = 0; len <= 40; len++) {
            memcpy(a, x + 7, (size_t)len * sizeof(float));
            memcpy(b, x + 7, (size_t)len * sizeof(float));
            ref->gelu(a, len);
            avx->gelu(b, len);
            CHECK(memcmp(a, b, (size_t)len * sizeof(float)) == 0);
            memcpy(a, x + 7, (size_t)len * sizeof(float));
            memcpy(b, x + 7, (size_t)len * sizeof(float));
            float sa = ref->exp_sum(a, len, 30.0f), sb = avx->exp_sum(b, len, 30.0f);
            CHECK(memcmp(a, b, (size_t)len * sizeof(float)) == 0);
            CHECK(sa == sb);
        }
        memcpy(a, x, N * sizeof(float));
        memcpy(b, x, N * sizeof(float));
        ref->gelu(a, N);
        avx->gelu(b, N);
        CHECK(memcmp(a, b, N * sizeof(float)) == 0);
        memcpy(a, x, N * sizeof(float));
        memcpy(b, x, N * sizeof(float));
        a[5] = b[5] = -INFINITY;
        CHECK(ref->exp_sum(a, N, m) == avx->exp_sum(b, N, m));
        CHECK(memcmp(a, b, N * sizeof(float)) == 0);
        printf("%s gelu and exp_sum: the reference's bits\n", isas[ii]);
    }
    free(x);
    free(a);
    free(b);
    printf("%d checks, %d failures\n", qd_test_checks_, qd_test_failures_);
    return qd_test_failures_;
}
