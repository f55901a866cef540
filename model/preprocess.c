/* model/preprocess.c — Hugging Face's ViTImageProcessor: its settings from
 * preprocessor_config.json, and the steps from an 8-bit image to the model's input (image.h). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/qd_file.h"
#include "model/image.h"
#include "model/model.h"

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
    if (pp->do_resize && !qd_image_resample_supported(pp->resample))
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

int qd_preprocess_load(const char *path, int channels, int height, int width, qd_preprocess *pp)
{
    if (channels != 1 && channels != 3)
        return qd_err_set(QD_EINVAL, "%s: %d image channels (1 or 3 supported)", path, channels);
    qd_preprocess_default(pp, channels, height, width);
    char *file = qd_is_dir(path) ? qd_path_join(path, "preprocessor_config.json") : strdup(path);
    if (!file) return qd_err_set(QD_ENOMEM, "out of memory");
    char *buf = NULL;
    size_t len = 0;
    int rc = qd_read_file(file, 1u << 20, "a preprocessor config", &buf, &len);
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
    char *file = qd_path_join(dir, "preprocessor_config.json");
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
