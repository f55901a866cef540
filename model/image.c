/* model/image.c — 8-bit images: decoding, channel conversion and PIL's resampling (image.h).
 *
 * Libraries: PNG/JPEG/BMP/PNM decoding is stb_image's, from Debian's libstb (the header is
 * included without STB_IMAGE_IMPLEMENTATION: the implementation lives in libstb.so, built by
 * Debian with the default options). The resampling is PIL's own algorithm (Pillow
 * src/libImaging/Resample.c), written again here because preprocessing has to match what the
 * model saw in training bit for bit and no C library reproduces it. */
#include <errno.h>
#include <math.h>
#include <stb_image.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/image.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* ---- 8-bit images --------------------------------------------------------------------------- */

int qd_image_alloc(qd_image *img, int w, int h, int c)
{
    img->w = w;
    img->h = h;
    img->c = c;
    img->data = malloc((size_t)w * (size_t)h * (size_t)c + 1);
    if (!img->data) return qd_err_set(QD_ENOMEM, "image: out of memory for %dx%dx%d", w, h, c);
    return QD_OK;
}

void qd_image_free(qd_image *img)
{
    if (!img) return;
    free(img->data);
    img->data = NULL;
    img->w = img->h = img->c = 0;
}

int qd_image_load(const char *path, qd_image *out)
{
    memset(out, 0, sizeof *out);
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR) return qd_err_set(QD_ENOENT, "%s: no such file", path);
        return qd_err_set(QD_EIO, "%s: %s", path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) return qd_err_set(QD_EIO, "%s: not a regular file", path);
    int w, h, c;
    unsigned char *px = stbi_load(path, &w, &h, &c, 0);
    if (!px)
        return qd_err_set(QD_EFORMAT, "%s: cannot decode the image: %s", path,
                          stbi_failure_reason() ? stbi_failure_reason() : "unknown reason");
    if (w <= 0 || h <= 0 || c < 1 || c > 4 || w > QD_IMAGE_MAX_SIDE || h > QD_IMAGE_MAX_SIDE) {
        stbi_image_free(px);
        return qd_err_set(QD_EFORMAT, "%s: unsupported image geometry %dx%d with %d channels", path, w, h, c);
    }
    int rc = qd_image_alloc(out, w, h, c);
    if (rc == QD_OK) memcpy(out->data, px, (size_t)w * (size_t)h * (size_t)c);
    stbi_image_free(px);
    return rc;
}

int qd_image_convert(const qd_image *in, int channels, qd_image *out)
{
    memset(out, 0, sizeof *out);
    if (channels != 1 && channels != 3)
        return qd_err_set(QD_EINVAL, "image: cannot convert to %d channels (1 or 3)", channels);
    if (in->c < 1 || in->c > 4) return qd_err_set(QD_EINVAL, "image: %d channels", in->c);
    int rc = qd_image_alloc(out, in->w, in->h, channels);
    if (rc) return rc;
    size_t n = (size_t)in->w * (size_t)in->h;
    const uint8_t *s = in->data;
    uint8_t *d = out->data;
    int gray = in->c <= 2; /* L or LA */
    for (size_t i = 0; i < n; i++, s += in->c) {
        if (channels == 1) {
            /* PIL's rgb2l: ITU-R 601-2 luma in 16-bit fixed point, rounded */
            d[i] = gray ? s[0]
                        : (uint8_t)(((uint32_t)s[0] * 19595u + (uint32_t)s[1] * 38470u + (uint32_t)s[2] * 7471u +
                                     0x8000u) >>
                                    16);
        } else {
            d[3 * i + 0] = s[0];
            d[3 * i + 1] = gray ? s[0] : s[1];
            d[3 * i + 2] = gray ? s[0] : s[2];
        }
    }
    return QD_OK;
}

/* ---- PIL's resampling ------------------------------------------------------------------------ */

static double box_filter(double x) { return x > -0.5 && x <= 0.5 ? 1.0 : 0.0; }

static double bilinear_filter(double x)
{
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double hamming_filter(double x)
{
    if (x < 0.0) x = -x;
    if (x == 0.0) return 1.0;
    if (x >= 1.0) return 0.0;
    x = x * M_PI;
    return sin(x) / x * (0.54f + 0.46f * cos(x)); /* float constants, as in PIL */
}

static double bicubic_filter(double x)
{
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static double sinc_filter(double x)
{
    if (x == 0.0) return 1.0;
    x = x * M_PI;
    return sin(x) / x;
}

static double lanczos_filter(double x) { return -3.0 <= x && x < 3.0 ? sinc_filter(x) * sinc_filter(x / 3) : 0.0; }

typedef struct {
    double (*fn)(double);
    double support;
} resample_filter;

static const resample_filter *filter_of(int id)
{
    static const resample_filter lanczos = {lanczos_filter, 3.0}, bilinear = {bilinear_filter, 1.0},
                                 bicubic = {bicubic_filter, 2.0}, box = {box_filter, 0.5},
                                 hamming = {hamming_filter, 1.0};
    switch (id) {
    case QD_RESAMPLE_LANCZOS: return &lanczos;
    case QD_RESAMPLE_BILINEAR: return &bilinear;
    case QD_RESAMPLE_BICUBIC: return &bicubic;
    case QD_RESAMPLE_BOX: return &box;
    case QD_RESAMPLE_HAMMING: return &hamming;
    default: return NULL;
    }
}

int qd_image_resample_supported(int filter) { return filter_of(filter) != NULL; }

/* 8 bits of result, 2 bits of headroom for filters with negative lobes. */
#define PRECISION_BITS (32 - 8 - 2)

typedef struct {
    int ksize;
    int *bounds; /* [out][2]: first input index, count */
    int32_t *k;  /* [out][ksize] fixed-point coefficients */
} resample_coeffs;

/* PIL's precompute_coeffs + normalize_coeffs_8bpc for the box [0, in_size). */
static int coeffs(int in_size, int out_size, const resample_filter *f, resample_coeffs *c)
{
    double scale = (double)in_size / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    double support = f->support * filterscale; /* wider filter when downscaling: antialias */
    int ksize = (int)ceil(support) * 2 + 1;
    c->ksize = ksize;
    c->bounds = malloc((size_t)out_size * 2 * sizeof *c->bounds);
    c->k = malloc((size_t)out_size * (size_t)ksize * sizeof *c->k);
    double *w = malloc((size_t)ksize * sizeof *w);
    if (!c->bounds || !c->k || !w) {
        free(w);
        return qd_err_set(QD_ENOMEM, "image resize: out of memory");
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5); /* truncation, as PIL */
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        int x = 0;
        for (; x < xmax; x++) {
            w[x] = f->fn((x + xmin - center + 0.5) * ss);
            ww += w[x];
        }
        int32_t *k = c->k + (size_t)xx * (size_t)ksize;
        for (x = 0; x < xmax; x++) {
            double v = ww != 0.0 ? w[x] / ww : w[x];
            k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS)) : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
        }
        for (; x < ksize; x++) k[x] = 0;
        c->bounds[2 * xx] = xmin;
        c->bounds[2 * xx + 1] = xmax;
    }
    free(w);
    return QD_OK;
}

static inline uint8_t clip8(int64_t ss)
{
    if (ss < 0) return 0;
    ss >>= PRECISION_BITS;
    return ss > 255 ? 255 : (uint8_t)ss;
}

int qd_image_resize(const qd_image *in, int w, int h, int filter, qd_image *out)
{
    memset(out, 0, sizeof *out);
    const resample_filter *f = filter_of(filter);
    if (!f)
        return qd_err_set(filter == QD_RESAMPLE_NEAREST ? QD_EUNSUPPORTED : QD_EINVAL,
                          "image resize: resampling filter %d%s is not supported (LANCZOS 1, "
                          "BILINEAR 2, BICUBIC 3, BOX 4, HAMMING 5)",
                          filter, filter == QD_RESAMPLE_NEAREST ? " (NEAREST)" : "");
    if (w < 1 || h < 1 || w > QD_IMAGE_MAX_SIDE || h > QD_IMAGE_MAX_SIDE || in->w < 1 || in->h < 1 || in->c < 1 ||
        in->c > 4)
        return qd_err_set(QD_EINVAL, "image resize: %dx%dx%d to %dx%d", in->w, in->h, in->c, w, h);
    const int C = in->c;
    int need_h = w != in->w, need_v = h != in->h;
    resample_coeffs cv = {0}, ch = {0};
    qd_image tmp = {0};
    int rc = coeffs(in->h, h, f, &cv);
    if (rc) goto done;
    /* rows of the input the vertical pass reads: the horizontal pass computes only those */
    int y_first = cv.bounds[0], y_last = cv.bounds[2 * h - 2] + cv.bounds[2 * h - 1];
    const qd_image *src = in;
    if (need_h) {
        if ((rc = coeffs(in->w, w, f, &ch))) goto done;
        for (int i = 0; i < h; i++) cv.bounds[2 * i] -= y_first;
        if ((rc = qd_image_alloc(&tmp, w, y_last - y_first, C))) goto done;
        for (int yy = 0; yy < tmp.h; yy++) {
            const uint8_t *row = in->data + (size_t)(yy + y_first) * (size_t)in->w * (size_t)C;
            uint8_t *o = tmp.data + (size_t)yy * (size_t)w * (size_t)C;
            for (int xx = 0; xx < w; xx++) {
                int xmin = ch.bounds[2 * xx], xmax = ch.bounds[2 * xx + 1];
                const int32_t *k = ch.k + (size_t)xx * (size_t)ch.ksize;
                for (int b = 0; b < C; b++) {
                    int64_t ss = 1 << (PRECISION_BITS - 1);
                    for (int x = 0; x < xmax; x++)
                        ss += (int64_t)row[(size_t)(x + xmin) * (size_t)C + (size_t)b] * k[x];
                    o[(size_t)xx * (size_t)C + (size_t)b] = clip8(ss);
                }
            }
        }
        src = &tmp;
    }
    if (need_v) {
        if ((rc = qd_image_alloc(out, src->w, h, C))) goto done;
        size_t stride = (size_t)src->w * (size_t)C;
        for (int yy = 0; yy < h; yy++) {
            int ymin = cv.bounds[2 * yy], ymax = cv.bounds[2 * yy + 1];
            const int32_t *k = cv.k + (size_t)yy * (size_t)cv.ksize;
            uint8_t *o = out->data + (size_t)yy * stride;
            for (size_t xb = 0; xb < stride; xb++) {
                int64_t ss = 1 << (PRECISION_BITS - 1);
                for (int y = 0; y < ymax; y++) ss += (int64_t)src->data[(size_t)(y + ymin) * stride + xb] * k[y];
                o[xb] = clip8(ss);
            }
        }
    } else if (need_h) {
        *out = tmp; /* y_first = 0 and every row computed */
        tmp.data = NULL;
    } else {
        if ((rc = qd_image_alloc(out, in->w, in->h, C))) goto done;
        memcpy(out->data, in->data, (size_t)in->w * (size_t)in->h * (size_t)C);
    }
done:
    free(cv.bounds);
    free(cv.k);
    free(ch.bounds);
    free(ch.k);
    qd_image_free(&tmp);
    if (rc) qd_image_free(out);
    return rc;
}
