/* model/resample.c — bicubic resampling of position-embedding grids (DINOv2 runs at other input
 * sizes than it was trained at, so its learned positions are resampled to the input's patch grid,
 * as transformers does with torch's interpolate). Separable: along the width, then the height,
 * in double. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_internal.h"

/* Cubic convolution kernel (Keys) with parameter a. */
static double cubic(double x, double a)
{
    x = fabs(x);
    if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
    return 0;
}

/* Taps of output index o: first input index *lo, count *n, weights w[] (caller: room for the
 * widest support). */
static void taps(int in, int out, int o, int antialias, int *lo, int *n, double *w)
{
    const double scale = (double)in / out;
    if (!antialias) {
        /* torch upsample_bicubic2d (align_corners=False): source x = scale (o + 0.5) - 0.5, four
         * taps at floor(x) - 1 .. floor(x) + 2 clamped to the edge, a = -0.75 */
        double x = scale * (o + 0.5) - 0.5, fx = floor(x), t = x - fx;
        *lo = (int)fx - 1;
        *n = 4;
        for (int k = 0; k < 4; k++) w[k] = cubic(t + 1 - k, -0.75);
        return;
    }
    /* torch's antialiased bicubic (PIL's): a = -0.5, support 2 stretched by the scale when
     * shrinking, taps inside the input only, weights normalised to sum 1 */
    const double support = scale >= 1 ? 2.0 * scale : 2.0, inv = scale >= 1 ? 1.0 / scale : 1.0;
    const double center = scale * (o + 0.5);
    int x0 = (int)(center - support + 0.5), x1 = (int)(center + support + 0.5);
    if (x0 < 0) x0 = 0;
    if (x1 > in) x1 = in;
    double total = 0;
    for (int k = 0; k < x1 - x0; k++) total += w[k] = cubic((k + x0 - center + 0.5) * inv, -0.5);
    for (int k = 0; k < x1 - x0; k++) w[k] = total != 0 ? w[k] / total : 0;
    *lo = x0;
    *n = x1 - x0;
}

/* one axis: src [outer][in][inner] -> dst [outer][out][inner] */
static void axis(const double *src, int outer, int in, int inner, int out, int antialias, double *dst)
{
    const int cap = 4 + 4 * (in / (out > 0 ? out : 1) + 1);
    double *w = malloc((size_t)cap * sizeof *w);
    QD_ASSERT(w);
    for (int o = 0; o < out; o++) {
        int lo, n;
        taps(in, out, o, antialias, &lo, &n, w);
        QD_ASSERT(n <= cap);
        for (int a = 0; a < outer; a++) {
            double *d = dst + ((size_t)a * out + o) * inner;
            memset(d, 0, (size_t)inner * sizeof *d);
            for (int k = 0; k < n; k++) {
                int i = lo + k;
                i = i < 0 ? 0 : i >= in ? in - 1 : i;
                const double *s = src + ((size_t)a * in + i) * inner;
                for (int c = 0; c < inner; c++) d[c] += w[k] * s[c];
            }
        }
    }
    free(w);
}

void qd_resample_bicubic(const float *src, int C, int ih, int iw, int oh, int ow, int antialias, float *dst)
{
    double *a = malloc((size_t)ih * iw * C * sizeof *a), *b = malloc((size_t)ih * ow * C * sizeof *b);
    double *c = malloc((size_t)oh * ow * C * sizeof *c);
    QD_ASSERT(a && b && c);
    for (size_t i = 0; i < (size_t)ih * iw * C; i++) a[i] = src[i];
    axis(a, ih, iw, C, ow, antialias, b);     /* [ih][iw][C] -> [ih][ow][C] */
    axis(b, 1, ih, ow * C, oh, antialias, c); /* [ih][ow * C] -> [oh][ow * C] */
    for (size_t i = 0; i < (size_t)oh * ow * C; i++) dst[i] = (float)c[i];
    free(a);
    free(b);
    free(c);
}
