/* model/image.c — image data sets and ViT preprocessing (see image.h).
 *
 * Libraries: IDX files are published gzip-compressed (MNIST, Fashion-MNIST), so they are read
 * through zlib's gzopen/gzread, which also reads uncompressed files unchanged: one code path for
 * both, and no temporary decompressed copy. PNG/JPEG/BMP/PNM decoding is stb_image's, from
 * Debian's libstb (the header is included without STB_IMAGE_IMPLEMENTATION: the implementation
 * lives in libstb.so, built by Debian with the default options). The resampling is PIL's own
 * algorithm (Pillow src/libImaging/Resample.c), written again here because preprocessing has to
 * match what the model saw in training bit for bit and no C library reproduces it. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stb_image.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <zlib.h>

#include "model/image.h"
#include "model/model.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

#define QD_IDX_MAX_BYTES    (1ull << 34) /* 16 GiB of pixels: far above any IDX data set */
#define QD_IMAGE_MAX_SIDE   (1 << 16)
#define QD_FOLDER_MAX_DEPTH 32

/* ---- 8-bit images --------------------------------------------------------------------------- */

static int image_alloc(qd_image *img, int w, int h, int c)
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
    int rc = image_alloc(out, w, h, c);
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
    int rc = image_alloc(out, in->w, in->h, channels);
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
        if ((rc = image_alloc(&tmp, w, y_last - y_first, C))) goto done;
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
        if ((rc = image_alloc(out, src->w, h, C))) goto done;
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
        if ((rc = image_alloc(out, in->w, in->h, C))) goto done;
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

/* ---- preprocessing -------------------------------------------------------------------------- */

void qd_preprocess_default(qd_preprocess *pp, int channels, int height, int width)
{
    memset(pp, 0, sizeof *pp);
    pp->channels = channels;
    pp->height = height;
    pp->width = width;
    pp->do_resize = 1;
    pp->resample = QD_RESAMPLE_BILINEAR;
    pp->do_rescale = 1;
    pp->rescale_factor = 1.0 / 255.0;
    pp->do_normalize = 1;
    for (int c = 0; c < 3; c++) {
        pp->mean[c] = 0.5;
        pp->std[c] = 0.5;
    }
}

size_t qd_preprocess_numel(const qd_preprocess *pp)
{
    return (size_t)pp->channels * (size_t)pp->height * (size_t)pp->width;
}

static int json_bool(const char *file, const cJSON *js, const char *key, int *v)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(js, key);
    if (!x || cJSON_IsNull(x)) return QD_OK;
    if (!cJSON_IsBool(x)) return qd_err_set(QD_EFORMAT, "%s: \"%s\" must be true or false", file, key);
    *v = cJSON_IsTrue(x);
    return QD_OK;
}

static int json_side(const char *file, const char *key, const cJSON *x, int *v)
{
    if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble) || x->valuedouble < 1 ||
        x->valuedouble > QD_IMAGE_MAX_SIDE)
        return qd_err_set(QD_EFORMAT, "%s: \"%s\" must be a whole number of pixels in 1..%d", file, key,
                          QD_IMAGE_MAX_SIDE);
    *v = (int)x->valuedouble;
    return QD_OK;
}

static int json_per_channel(const char *file, const cJSON *js, const char *key, int channels, double *v)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(js, key);
    if (!x || cJSON_IsNull(x)) return QD_OK;
    if (cJSON_IsNumber(x)) {
        for (int c = 0; c < channels; c++) v[c] = x->valuedouble;
        return QD_OK;
    }
    if (!cJSON_IsArray(x) || cJSON_GetArraySize(x) != channels)
        return qd_err_set(QD_EFORMAT,
                          "%s: \"%s\" must be a number or a list of %d numbers (one "
                          "per channel)",
                          file, key, channels);
    for (int c = 0; c < channels; c++) {
        const cJSON *e = cJSON_GetArrayItem(x, c);
        if (!cJSON_IsNumber(e)) return qd_err_set(QD_EFORMAT, "%s: \"%s\"[%d] is not a number", file, key, c);
        v[c] = e->valuedouble;
    }
    return QD_OK;
}

static int parse_preprocess(const char *file, const cJSON *js, qd_preprocess *pp)
{
    int rc;
    if ((rc = json_bool(file, js, "do_resize", &pp->do_resize)) ||
        (rc = json_bool(file, js, "do_rescale", &pp->do_rescale)) ||
        (rc = json_bool(file, js, "do_normalize", &pp->do_normalize)))
        return rc;
    int crop = 0;
    if ((rc = json_bool(file, js, "do_center_crop", &crop))) return rc;
    if (crop)
        return qd_err_set(QD_EUNSUPPORTED,
                          "%s: \"do_center_crop\": true is not supported "
                          "(resize to {height, width} only)",
                          file);
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(js, "size");
    if (size && !cJSON_IsNull(size)) {
        if (cJSON_IsNumber(size)) {
            if ((rc = json_side(file, "size", size, &pp->height))) return rc;
            pp->width = pp->height;
        } else if (cJSON_IsObject(size)) {
            const cJSON *hh = cJSON_GetObjectItemCaseSensitive(size, "height");
            const cJSON *ww = cJSON_GetObjectItemCaseSensitive(size, "width");
            if (!hh || !ww) {
                const cJSON *k = size->child;
                return qd_err_set(QD_EUNSUPPORTED,
                                  "%s: \"size\" %s%s%s is not supported "
                                  "(only {\"height\", \"width\"})",
                                  file, k ? "with \"" : "without keys", k && k->string ? k->string : "", k ? "\"" : "");
            }
            if ((rc = json_side(file, "size.height", hh, &pp->height)) ||
                (rc = json_side(file, "size.width", ww, &pp->width)))
                return rc;
        } else {
            return qd_err_set(QD_EFORMAT, "%s: \"size\" must be a number or an object", file);
        }
    }
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(js, "resample");
    if (rs && !cJSON_IsNull(rs)) {
        if (!cJSON_IsNumber(rs) || rs->valuedouble != floor(rs->valuedouble) || rs->valuedouble < 0 ||
            rs->valuedouble > 5)
            return qd_err_set(QD_EFORMAT, "%s: \"resample\" must be a PIL filter number 0..5", file);
        pp->resample = (int)rs->valuedouble;
    }
    if (pp->do_resize && !filter_of(pp->resample))
        return qd_err_set(QD_EUNSUPPORTED, "%s: \"resample\": %d (NEAREST) is not supported", file, pp->resample);
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(js, "rescale_factor");
    if (rf && !cJSON_IsNull(rf)) {
        if (!cJSON_IsNumber(rf) || !isfinite(rf->valuedouble))
            return qd_err_set(QD_EFORMAT, "%s: \"rescale_factor\" must be a number", file);
        pp->rescale_factor = rf->valuedouble;
    }
    if ((rc = json_per_channel(file, js, "image_mean", pp->channels, pp->mean)) ||
        (rc = json_per_channel(file, js, "image_std", pp->channels, pp->std)))
        return rc;
    for (int c = 0; c < pp->channels; c++)
        if (pp->do_normalize && (!isfinite(pp->mean[c]) || !isfinite(pp->std[c]) || pp->std[c] == 0))
            return qd_err_set(QD_ECONFIG,
                              "%s: channel %d: mean %g, std %g: std must be a non-zero "
                              "number",
                              file, c, pp->mean[c], pp->std[c]);
    return QD_OK;
}

static char *join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The whole of a small file (a JSON config). */
static int slurp(const char *path, size_t max, char **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT || errno == ENOTDIR) return qd_err_set(QD_ENOENT, "%s: no such file", path);
        return qd_err_set(QD_EIO, "%s: cannot open: %s", path, strerror(errno));
    }
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    for (;;) {
        if (!b) {
            fclose(f);
            return qd_err_set(QD_ENOMEM, "%s: out of memory", path);
        }
        n += fread(b + n, 1, cap - n, f);
        if (n < cap) break;
        if (cap >= max) {
            fclose(f);
            free(b);
            return qd_err_set(QD_EFORMAT, "%s: larger than %zu bytes", path, max);
        }
        char *nb = realloc(b, cap * 2);
        if (!nb) free(b);
        b = nb;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(b);
        return qd_err_set(QD_EIO, "%s: read error", path);
    }
    *buf = b;
    *len = n;
    return QD_OK;
}

int qd_preprocess_load(const char *path, int channels, int height, int width, qd_preprocess *pp)
{
    if (channels != 1 && channels != 3)
        return qd_err_set(QD_EINVAL, "%s: %d image channels (1 or 3 supported)", path, channels);
    qd_preprocess_default(pp, channels, height, width);
    char *file = is_dir(path) ? join(path, "preprocessor_config.json") : strdup(path);
    if (!file) return qd_err_set(QD_ENOMEM, "out of memory");
    char *buf = NULL;
    size_t len = 0;
    int rc = slurp(file, 1u << 20, &buf, &len);
    if (rc) {
        free(file);
        return rc;
    }
    cJSON *js = cJSON_ParseWithLength(buf, len);
    free(buf);
    if (!cJSON_IsObject(js))
        rc = qd_err_set(QD_EFORMAT, "%s: not a JSON object", file);
    else
        rc = parse_preprocess(file, js, pp);
    cJSON_Delete(js);
    free(file);
    return rc;
}

int qd_preprocess_for_model(const struct qd_model *m, qd_preprocess *pp)
{
    const qd_model_config *c = qd_model_cfg(m);
    const char *dir = qd_model_dir(m);
    if (c->arch != QD_ARCH_VIT) return qd_err_set(QD_EINVAL, "%s: image preprocessing needs a ViT-family model", dir);
    if (c->channels != 1 && c->channels != 3)
        return qd_err_set(QD_ECONFIG, "%s: num_channels %d: images have 1 or 3 channels", dir, c->channels);
    char *file = join(dir, "preprocessor_config.json");
    if (!file) return qd_err_set(QD_ENOMEM, "out of memory");
    struct stat st;
    int rc = QD_OK;
    if (stat(file, &st) == 0)
        rc = qd_preprocess_load(file, c->channels, c->image_h, c->image_w, pp);
    else
        qd_preprocess_default(pp, c->channels, c->image_h, c->image_w);
    if (rc == QD_OK && (pp->height != c->image_h || pp->width != c->image_w))
        rc = qd_err_set(QD_ECONFIG,
                        "%s: images are preprocessed to %dx%d but the model takes "
                        "image_size %dx%d",
                        file, pp->height, pp->width, c->image_h, c->image_w);
    free(file);
    return rc;
}

int qd_image_preprocess(const qd_image *img, const qd_preprocess *pp, float *out)
{
    if (pp->channels != 1 && pp->channels != 3)
        return qd_err_set(QD_EINVAL, "preprocess: %d channels (1 or 3)", pp->channels);
    qd_image conv = {0}, sized = {0};
    const qd_image *x = img;
    int rc = QD_OK;
    if (img->c != pp->channels) {
        if ((rc = qd_image_convert(img, pp->channels, &conv))) return rc;
        x = &conv;
    }
    if (x->w != pp->width || x->h != pp->height) {
        if (!pp->do_resize) {
            rc = qd_err_set(QD_ESHAPE,
                            "preprocess: image is %dx%d, the model takes %dx%d and "
                            "do_resize is off",
                            x->w, x->h, pp->width, pp->height);
            goto done;
        }
        if ((rc = qd_image_resize(x, pp->width, pp->height, pp->resample, &sized))) goto done;
        x = &sized;
    }
    const int C = pp->channels;
    const size_t hw = (size_t)pp->width * (size_t)pp->height;
    for (int c = 0; c < C; c++) {
        double scale = pp->do_rescale ? pp->rescale_factor : 1.0;
        double mean = pp->do_normalize ? pp->mean[c] : 0.0;
        double std = pp->do_normalize ? pp->std[c] : 1.0;
        float *o = out + (size_t)c * hw;
        for (size_t i = 0; i < hw; i++) o[i] = (float)((x->data[i * C + c] * scale - mean) / std);
    }
done:
    qd_image_free(&conv);
    qd_image_free(&sized);
    return rc;
}

/* ---- IDX files -------------------------------------------------------------------------------- */

/* Read exactly n bytes (n may be 0); returns the count read, -1 on a zlib error. */
static int64_t gz_read_full(gzFile f, uint8_t *p, uint64_t n)
{
    uint64_t got = 0;
    while (got < n) {
        uint64_t chunk = n - got > (1u << 30) ? (1u << 30) : n - got;
        int r = gzread(f, p + got, (unsigned)chunk);
        if (r < 0) return -1;
        if (r == 0) break;
        got += (uint64_t)r;
    }
    return (int64_t)got;
}

static int gz_error(gzFile f, const char *path)
{
    int zerr = 0;
    const char *msg = gzerror(f, &zerr);
    if (zerr == Z_ERRNO) return qd_err_set(QD_EIO, "%s: read error: %s", path, strerror(errno));
    return qd_err_set(QD_EFORMAT, "%s: corrupt gzip data: %s", path, msg ? msg : "?");
}

/* An IDX file of unsigned bytes with `ndim` dimensions: dims[ndim] and data (malloc'd). */
static int idx_read(const char *path, int ndim, const char *what, uint32_t *dims, uint8_t **data)
{
    *data = NULL;
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR) return qd_err_set(QD_ENOENT, "%s: no such file", path);
        return qd_err_set(QD_EIO, "%s: %s", path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) return qd_err_set(QD_EIO, "%s: not a regular file", path);
    gzFile f = gzopen(path, "rb");
    if (!f) return qd_err_set(QD_EIO, "%s: cannot open: %s", path, strerror(errno));
    gzbuffer(f, 1u << 17);
    uint8_t head[4 + 4 * 4];
    int rc = QD_OK;
    uint8_t *buf = NULL;
    size_t hlen = 4 + 4 * (size_t)ndim;
    int64_t got = gz_read_full(f, head, hlen);
    if (got < 0) {
        rc = gz_error(f, path);
        goto done;
    }
    if (got >= 4 && (head[0] != 0 || head[1] != 0)) {
        rc = qd_err_set(QD_EFORMAT, "%s: not an IDX file (magic %02x %02x %02x %02x)", path, head[0], head[1], head[2],
                        head[3]);
        goto done;
    }
    if (got >= 4 && head[2] != 0x08) {
        rc = qd_err_set(QD_EFORMAT, "%s: IDX data type 0x%02x, expected 0x08 (unsigned byte)", path, head[2]);
        goto done;
    }
    if (got >= 4 && head[3] != ndim) {
        rc = qd_err_set(QD_EFORMAT, "%s: IDX with %d dimensions, expected %d (%s)", path, head[3], ndim, what);
        goto done;
    }
    if ((size_t)got < hlen) {
        rc = qd_err_set(QD_EFORMAT,
                        "%s: truncated IDX header: %lld bytes, a %d-dimensional "
                        "header needs %zu",
                        path, (long long)got, ndim, hlen);
        goto done;
    }
    uint64_t total = 1;
    for (int d = 0; d < ndim; d++) {
        const uint8_t *b = head + 4 + 4 * d;
        dims[d] = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
        if (qd_mul_overflow(total, dims[d], &total) || total > QD_IDX_MAX_BYTES) {
            rc = qd_err_set(QD_EFORMAT, "%s: IDX header declares an impossible size", path);
            goto done;
        }
    }
    /* Grow the buffer as data arrives, so that a header lying about its size costs no more
     * memory than the file really holds. */
    uint64_t cap = total < (1u << 24) ? total : (1u << 24), have = 0;
    for (;;) {
        uint8_t *nb = realloc(buf, cap + 1);
        if (!nb) {
            rc = qd_err_set(QD_ENOMEM, "%s: out of memory for %llu bytes", path, (unsigned long long)cap);
            goto done;
        }
        buf = nb;
        got = gz_read_full(f, buf + have, cap - have);
        if (got < 0) {
            rc = gz_error(f, path);
            goto done;
        }
        have += (uint64_t)got;
        if (have < cap || cap == total) break;
        cap = cap * 2 < total ? cap * 2 : total;
    }
    if (have < total) {
        int zerr = 0;
        gzerror(f, &zerr);
        rc = qd_err_set(QD_EFORMAT,
                        "%s: truncated: the IDX header declares %llu bytes of %s "
                        "data, the file holds %llu%s",
                        path, (unsigned long long)total, what, (unsigned long long)have,
                        zerr == Z_BUF_ERROR ? " (and its gzip stream is cut short)" : "");
        goto done;
    }
    uint8_t extra;
    got = gz_read_full(f, &extra, 1);
    if (got < 0) {
        rc = gz_error(f, path);
        goto done;
    }
    if (got > 0) {
        rc = qd_err_set(QD_EFORMAT,
                        "%s: the IDX header declares %llu bytes of %s data but the "
                        "file holds more",
                        path, (unsigned long long)total, what);
        goto done;
    }
    int zerr = Z_OK;
    gzerror(f, &zerr);
    if (zerr != Z_OK) /* all data came out, but the gzip stream stops before its end */
        rc = qd_err_set(QD_EFORMAT, "%s: the gzip stream is cut short", path);
done:
    gzclose(f);
    if (rc) {
        free(buf);
        return rc;
    }
    *data = buf;
    return QD_OK;
}

char *qd_idx_labels_name(const char *images_path)
{
    const char *base = strrchr(images_path, '/');
    base = base ? base + 1 : images_path;
    const char *im = strstr(base, "images"), *i3 = strstr(base, "idx3");
    if (!im || !i3) return NULL;
    char *p = strdup(images_path);
    if (!p) return NULL;
    memcpy(p + (im - images_path), "labels", 6);
    memcpy(p + (i3 - images_path), "idx1", 4);
    return p;
}

/* ---- data sets ------------------------------------------------------------------------------ */

typedef enum { DS_IDX = 1, DS_FOLDER = 2 } ds_kind;

struct qd_dataset {
    ds_kind kind;
    char *path;
    int n;
    int32_t *labels; /* [n] or NULL */
    int num_classes;
    /* IDX */
    char *labels_path;
    int h, w;
    uint8_t *pixels; /* [n][h][w] */
    /* folder */
    char **files;   /* [n] */
    char **classes; /* [num_classes] */
};

void qd_dataset_free(qd_dataset *ds)
{
    if (!ds) return;
    free(ds->path);
    free(ds->labels);
    free(ds->labels_path);
    free(ds->pixels);
    for (int i = 0; ds->files && i < ds->n; i++) free(ds->files[i]);
    free(ds->files);
    for (int i = 0; ds->classes && i < ds->num_classes; i++) free(ds->classes[i]);
    free(ds->classes);
    free(ds);
}

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* The labels file beside an images file: the renamed name, then with ".gz" added or removed. */
static char *find_labels(const char *images_path)
{
    char *base = qd_idx_labels_name(images_path);
    if (!base) return NULL;
    if (file_exists(base)) return base;
    size_t n = strlen(base);
    char *alt = malloc(n + 4);
    if (!alt) {
        free(base);
        return NULL;
    }
    if (n > 3 && strcmp(base + n - 3, ".gz") == 0) {
        memcpy(alt, base, n - 3);
        alt[n - 3] = 0;
    } else {
        memcpy(alt, base, n);
        memcpy(alt + n, ".gz", 4);
    }
    free(base);
    if (file_exists(alt)) return alt;
    free(alt);
    return NULL;
}

static int open_idx(qd_dataset *ds, const char *path, const char *labels_path)
{
    uint32_t dims[3];
    int rc = idx_read(path, 3, "image", dims, &ds->pixels);
    if (rc) return rc;
    if (dims[0] > INT_MAX || dims[1] == 0 || dims[2] == 0 || dims[1] > QD_IMAGE_MAX_SIDE || dims[2] > QD_IMAGE_MAX_SIDE)
        return qd_err_set(QD_EFORMAT, "%s: IDX images of %ux%u, %u of them: not a usable size", path, dims[1], dims[2],
                          dims[0]);
    ds->n = (int)dims[0];
    ds->h = (int)dims[1];
    ds->w = (int)dims[2];
    ds->labels_path = labels_path ? strdup(labels_path) : find_labels(path);
    if (labels_path && !ds->labels_path) return qd_err_set(QD_ENOMEM, "out of memory");
    if (!ds->labels_path) return QD_OK;
    uint32_t ln;
    uint8_t *lab;
    if ((rc = idx_read(ds->labels_path, 1, "label", &ln, &lab))) return qd_err_wrap(rc, "labels of %s", path);
    if (ln != dims[0]) {
        free(lab);
        return qd_err_set(QD_EMISMATCH, "%s: %u labels for the %u images of %s", ds->labels_path, ln, dims[0], path);
    }
    ds->labels = malloc((size_t)(ln ? ln : 1) * sizeof *ds->labels);
    if (!ds->labels) {
        free(lab);
        return qd_err_set(QD_ENOMEM, "out of memory");
    }
    for (uint32_t i = 0; i < ln; i++) {
        ds->labels[i] = lab[i];
        if (lab[i] + 1 > ds->num_classes) ds->num_classes = lab[i] + 1;
    }
    free(lab);
    return QD_OK;
}

/* torchvision's IMG_EXTENSIONS; 1 = decodable here, -1 = refused, 0 = not an image. */
static int image_extension(const char *name)
{
    static const char *ok[] = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm"};
    static const char *no[] = {".tif", ".tiff", ".webp"};
    size_t n = strlen(name);
    for (size_t i = 0; i < QD_ARRAY_LEN(ok); i++) {
        size_t e = strlen(ok[i]);
        if (n >= e && strcasecmp(name + n - e, ok[i]) == 0) return 1;
    }
    for (size_t i = 0; i < QD_ARRAY_LEN(no); i++) {
        size_t e = strlen(no[i]);
        if (n >= e && strcasecmp(name + n - e, no[i]) == 0) return -1;
    }
    return 0;
}

typedef struct {
    char *dir; /* the folder the file is in (shared by its files) */
    char *name;
    int label;
} walk_entry;

typedef struct {
    walk_entry *v;
    size_t n, cap;
    char **dirs; /* every folder path allocated (freed at the end) */
    size_t ndirs, dcap;
} walk_list;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int cmp_entry(const void *a, const void *b)
{
    const walk_entry *x = a, *y = b;
    if (x->label != y->label) return x->label < y->label ? -1 : 1;
    int c = strcmp(x->dir, y->dir);
    return c ? c : strcmp(x->name, y->name);
}

/* Names in `dir` (without . and ..), sorted; sets *nout. */
static int list_dir(const char *dir, char ***out, size_t *nout)
{
    *out = NULL;
    *nout = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT || errno == ENOTDIR) return qd_err_set(QD_ENOENT, "%s: no such folder", dir);
        return qd_err_set(QD_EIO, "%s: cannot list: %s", dir, strerror(errno));
    }
    char **v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    int rc = QD_OK;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 32;
            char **nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                rc = qd_err_set(QD_ENOMEM, "%s: out of memory", dir);
                break;
            }
            v = nv;
        }
        if (!(v[n] = strdup(e->d_name))) {
            rc = qd_err_set(QD_ENOMEM, "%s: out of memory", dir);
            break;
        }
        n++;
    }
    closedir(d);
    if (rc) {
        for (size_t i = 0; i < n; i++) free(v[i]);
        free(v);
        return rc;
    }
    if (n) qsort(v, n, sizeof *v, cmp_str);
    *out = v;
    *nout = n;
    return QD_OK;
}

static void free_names(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* Image files under `dir` (recursively when `recurse`, following links like os.walk with
 * followlinks=True) appended to w with `label`. */
static int walk(walk_list *w, const char *dir, int label, int recurse, int depth)
{
    if (depth > QD_FOLDER_MAX_DEPTH)
        return qd_err_set(QD_EFORMAT, "%s: folders nested more than %d deep (a link loop?)", dir, QD_FOLDER_MAX_DEPTH);
    char **names;
    size_t n;
    int rc = list_dir(dir, &names, &n);
    if (rc) return rc;
    char *dcopy = strdup(dir);
    if (dcopy && w->ndirs == w->dcap) {
        size_t cap = w->dcap ? 2 * w->dcap : 16;
        char **nd = realloc(w->dirs, cap * sizeof *nd);
        if (nd) {
            w->dirs = nd;
            w->dcap = cap;
        }
    }
    if (!dcopy || w->ndirs == w->dcap) {
        free(dcopy);
        free_names(names, n);
        return qd_err_set(QD_ENOMEM, "%s: out of memory", dir);
    }
    w->dirs[w->ndirs++] = dcopy;
    for (size_t i = 0; i < n && rc == QD_OK; i++) {
        char *p = join(dir, names[i]);
        if (!p) {
            rc = qd_err_set(QD_ENOMEM, "%s: out of memory", dir);
            break;
        }
        if (is_dir(p)) {
            if (recurse) rc = walk(w, p, label, recurse, depth + 1);
        } else {
            int ext = image_extension(names[i]);
            if (ext < 0) {
                rc = qd_err_set(QD_EUNSUPPORTED,
                                "%s: TIFF and WebP images cannot be decoded "
                                "(convert them to PNG)",
                                p);
            } else if (ext > 0) {
                if (w->n == w->cap) {
                    size_t cap = w->cap ? 2 * w->cap : 256;
                    walk_entry *nv = realloc(w->v, cap * sizeof *nv);
                    if (!nv)
                        rc = qd_err_set(QD_ENOMEM, "%s: out of memory", dir);
                    else {
                        w->v = nv;
                        w->cap = cap;
                    }
                }
                if (rc == QD_OK) {
                    w->v[w->n].dir = dcopy;
                    w->v[w->n].name = names[i];
                    w->v[w->n].label = label;
                    names[i] = NULL;
                    w->n++;
                }
            }
        }
        free(p);
    }
    free_names(names, n);
    return rc;
}

static int open_folder(qd_dataset *ds, const char *root)
{
    char **names;
    size_t n;
    int rc = list_dir(root, &names, &n);
    if (rc) return rc;
    walk_list w = {0};
    /* classes: the sub-folders, in name order */
    size_t ncls = 0;
    for (size_t i = 0; i < n; i++) {
        char *p = join(root, names[i]);
        if (p && is_dir(p))
            names[ncls++] = names[i];
        else
            free(names[i]);
        free(p);
    }
    if (ncls) {
        ds->classes = names;
        ds->num_classes = (int)ncls;
        names = NULL;
        for (int c = 0; c < ds->num_classes && rc == QD_OK; c++) {
            char *p = join(root, ds->classes[c]);
            size_t before = w.n;
            rc = p ? walk(&w, p, c, 1, 1) : qd_err_set(QD_ENOMEM, "out of memory");
            if (rc == QD_OK && w.n == before)
                rc = qd_err_set(QD_ENOTFOUND,
                                "%s: class folder without any image file (.jpg "
                                ".jpeg .png .ppm .pgm .bmp)",
                                p);
            free(p);
        }
    } else {
        free(names);
        rc = walk(&w, root, -1, 0, 0);
        if (rc == QD_OK && w.n == 0)
            rc = qd_err_set(QD_ENOTFOUND,
                            "%s: no image files (.jpg .jpeg .png .ppm .pgm .bmp) "
                            "and no class sub-folders",
                            root);
    }
    if (rc == QD_OK && w.n > (size_t)INT_MAX) rc = qd_err_set(QD_EFORMAT, "%s: too many images", root);
    if (rc == QD_OK) {
        qsort(w.v, w.n, sizeof *w.v, cmp_entry);
        ds->files = calloc(w.n ? w.n : 1, sizeof *ds->files);
        ds->labels = ds->num_classes ? malloc((w.n ? w.n : 1) * sizeof *ds->labels) : NULL;
        if (!ds->files || (ds->num_classes && !ds->labels)) rc = qd_err_set(QD_ENOMEM, "%s: out of memory", root);
        for (size_t i = 0; rc == QD_OK && i < w.n; i++) {
            if (!(ds->files[i] = join(w.v[i].dir, w.v[i].name))) {
                rc = qd_err_set(QD_ENOMEM, "%s: out of memory", root);
                break;
            }
            ds->n = (int)i + 1;
            if (ds->labels) ds->labels[i] = w.v[i].label;
        }
    }
    for (size_t i = 0; i < w.n; i++) free(w.v[i].name);
    free(w.v);
    for (size_t i = 0; i < w.ndirs; i++) free(w.dirs[i]);
    free(w.dirs);
    return rc;
}

int qd_dataset_open(const char *path, const char *labels_path, qd_dataset **out)
{
    *out = NULL;
    qd_dataset *ds = calloc(1, sizeof *ds);
    if (!ds || !(ds->path = strdup(path))) {
        free(ds);
        return qd_err_set(QD_ENOMEM, "out of memory");
    }
    int rc;
    if (is_dir(path)) {
        ds->kind = DS_FOLDER;
        rc = labels_path ? qd_err_set(QD_EINVAL,
                                      "%s: a folder's labels are its class "
                                      "sub-folders; no labels file (%s) is taken",
                                      path, labels_path)
                         : open_folder(ds, path);
    } else {
        ds->kind = DS_IDX;
        rc = open_idx(ds, path, labels_path);
    }
    if (rc) {
        qd_dataset_free(ds);
        return rc;
    }
    *out = ds;
    return QD_OK;
}

int qd_dataset_count(const qd_dataset *ds) { return ds->n; }
int qd_dataset_has_labels(const qd_dataset *ds) { return ds->labels != NULL; }
int qd_dataset_num_classes(const qd_dataset *ds) { return ds->num_classes; }
const char *qd_dataset_labels_path(const qd_dataset *ds) { return ds->labels_path; }

int qd_dataset_label(const qd_dataset *ds, int i)
{
    QD_ASSERT(i >= 0 && i < ds->n);
    return ds->labels ? ds->labels[i] : -1;
}

const char *qd_dataset_class_name(const qd_dataset *ds, int label)
{
    return ds->classes && label >= 0 && label < ds->num_classes ? ds->classes[label] : NULL;
}

const char *qd_dataset_item_path(const qd_dataset *ds, int i)
{
    QD_ASSERT(i >= 0 && i < ds->n);
    return ds->kind == DS_FOLDER ? ds->files[i] : ds->path;
}

int qd_dataset_raw(const qd_dataset *ds, int i, qd_image *out)
{
    memset(out, 0, sizeof *out);
    if (i < 0 || i >= ds->n) return qd_err_set(QD_EINVAL, "%s: item %d of %d", ds->path, i, ds->n);
    if (ds->kind == DS_FOLDER) return qd_image_load(ds->files[i], out);
    int rc = image_alloc(out, ds->w, ds->h, 1);
    if (rc) return rc;
    size_t sz = (size_t)ds->w * (size_t)ds->h;
    memcpy(out->data, ds->pixels + (size_t)i * sz, sz);
    return QD_OK;
}

int qd_dataset_image(const qd_dataset *ds, int i, const qd_preprocess *pp, float *out)
{
    qd_image img;
    int rc = qd_dataset_raw(ds, i, &img);
    if (rc) return rc;
    rc = qd_image_preprocess(&img, pp, out);
    qd_image_free(&img);
    if (rc) return qd_err_wrap(rc, "%s: item %d", qd_dataset_item_path(ds, i), i);
    return QD_OK;
}
