/* model/image.h — image inputs of ViT-family models: data sets and preprocessing.
 *
 * Data sets (qd_dataset):
 *   - IDX files (MNIST, Fashion-MNIST): u8 images [N, H, W] ("...-images-idx3-ubyte") and u8
 *     labels [N] ("...-labels-idx1-ubyte"), plain or gzip-compressed. The labels file is the one
 *     given, or the images file's name with images/idx3 replaced by labels/idx1 (with or
 *     without .gz) when it exists. Headers are checked against the data actually present.
 *   - a folder, as torchvision's ImageFolder: every sub-folder (hidden ones too) is a class
 *     (labels 0.. in name order); its files (sub-folders walked too) with a torchvision image extension (.jpg .jpeg
 *     .png .ppm .pgm .bmp, any case; .tif .tiff .webp are refused as undecodable here) are the
 *     items, ordered by folder path then file name (byte order). A folder without sub-folders
 *     is a flat, unlabelled list of its image files. PNG, JPEG, BMP, PPM/PGM decoded by stb_image.
 * Items are decoded on demand; a data set is read-only after qd_dataset_open, so threads may
 * fetch items from one data set at the same time.
 *
 * Preprocessing (qd_preprocess) follows Hugging Face's ViTImageProcessor on a PIL image:
 *   1. convert to the model's channels as PIL's convert("L") / convert("RGB") does (alpha is
 *      dropped; L = (19595 R + 38470 G + 7471 B + 2^15) >> 16);
 *   2. do_resize: PIL's Image.resize on 8-bit data, bit for bit: separable, horizontal pass
 *      then vertical, filter support scaled by the scale factor when downscaling (antialias),
 *      coefficients in 22-bit fixed point, rounded and clipped to u8 after each pass;
 *   3. do_rescale: x * rescale_factor; 4. do_normalize: (x - mean[c]) / std[c];
 *   output float32 channels-first [C, H, W]. Steps 3-4 are computed in double and rounded once
 *   (Hugging Face rounds to float32 after each step; the two differ by a float32 ulp or two).
 */
/* Where: model/image.c (decoding, conversion, resampling), model/preprocess.c (preprocessing),
 * model/dataset.c (data sets), model/idx.c (IDX files). */
#ifndef QD_IMAGE_H
#define QD_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "common/qd_common.h"

/* ---- 8-bit images --------------------------------------------------------------------------- */

#define QD_IMAGE_MAX_SIDE (1 << 16) /* the widest and highest image taken, in pixels */

typedef struct {
    int w, h, c;   /* c: 1 (L), 2 (LA), 3 (RGB) or 4 (RGBA) */
    uint8_t *data; /* [h][w][c], malloc'd */
} qd_image;

/* An uninitialised w x h x c image (QD_ENOMEM naming the size). */
int qd_image_alloc(qd_image *img, int w, int h, int c);

/* Decode a PNG/JPEG/BMP/PNM/... file (stb_image), channels as stored. */
int qd_image_load(const char *path, qd_image *out);
void qd_image_free(qd_image *img);

/* PIL's convert to 1 (L) or 3 (RGB) channels; a copy when already so. */
int qd_image_convert(const qd_image *in, int channels, qd_image *out);

/* Resampling filters, numbered as PIL's Image.Resampling. NEAREST is not supported. */
enum {
    QD_RESAMPLE_NEAREST = 0,
    QD_RESAMPLE_LANCZOS = 1,
    QD_RESAMPLE_BILINEAR = 2,
    QD_RESAMPLE_BICUBIC = 3,
    QD_RESAMPLE_BOX = 4,
    QD_RESAMPLE_HAMMING = 5
};

/* PIL's Image.resize((w, h), filter) of an 8-bit image (any channel count), bit for bit. */
int qd_image_resize(const qd_image *in, int w, int h, int filter, qd_image *out);
/* 1 when qd_image_resize takes this filter (every one but NEAREST). */
int qd_image_resample_supported(int filter);

/* ---- preprocessing -------------------------------------------------------------------------- */

typedef struct {
    int channels;      /* output channels: 1 or 3 */
    int height, width; /* output size; without do_resize images must already be this size */
    int do_resize;
    int resample; /* QD_RESAMPLE_* */
    int do_rescale;
    double rescale_factor;
    int do_normalize;
    double mean[3], std[3]; /* per output channel */
} qd_preprocess;

/* Hugging Face's ViTImageProcessor defaults: resize to height x width with BILINEAR, rescale by
 * 1/255, normalize with mean = std = 0.5. */
void qd_preprocess_default(qd_preprocess *pp, int channels, int height, int width);

/* Settings from preprocessor_config.json (`path` is the file or the folder holding it); keys
 * that are absent keep qd_preprocess_default(channels, height, width) values. "size" may be
 * {"height", "width"} or one number (square). image_mean / image_std: one number or a list of
 * `channels` numbers. Refused with QD_EUNSUPPORTED: "size": {"shortest_edge"...},
 * do_center_crop true, resample NEAREST. Errors name the file and the key. */
int qd_preprocess_load(const char *path, int channels, int height, int width, qd_preprocess *pp);

/* The preprocessing of a loaded ViT-family model: its folder's preprocessor_config.json (the
 * defaults when there is none) with the config's num_channels and image size as defaults; the
 * output must be exactly [num_channels, image_size, image_size] of the model (QD_ECONFIG). */
struct qd_model;
int qd_preprocess_for_model(const struct qd_model *m, qd_preprocess *pp);

/* Floats written by qd_image_preprocess / qd_dataset_image: channels * height * width. */
size_t qd_preprocess_numel(const qd_preprocess *pp);

/* Steps 1-4 on one image into out [channels, height, width]. QD_ESHAPE when the image is not
 * height x width and do_resize is off. */
int qd_image_preprocess(const qd_image *img, const qd_preprocess *pp, float *out);

/* ---- data sets ------------------------------------------------------------------------------ */

typedef struct qd_dataset qd_dataset;

/* Open an IDX images file (labels_path: the IDX labels file, or NULL to look beside it) or a
 * folder (labels_path must be NULL). IDX files are read whole (about 8 MB for MNIST's test set).
 * Errors name the file: QD_ENOENT, QD_EIO, QD_EFORMAT (bad magic, not u8, header and data
 * disagree), QD_EMISMATCH (label and image counts differ), QD_ENOTFOUND (a class folder without
 * images), QD_EUNSUPPORTED (.tif/.webp items). */
int qd_dataset_open(const char *path, const char *labels_path, qd_dataset **out);
void qd_dataset_free(qd_dataset *ds);

int qd_dataset_count(const qd_dataset *ds);
/* 1 when items have labels (IDX with a labels file, folder with class sub-folders). */
int qd_dataset_has_labels(const qd_dataset *ds);
/* Label of item i (0 <= i < count), -1 without labels. */
int qd_dataset_label(const qd_dataset *ds, int i);
/* Classes: folders: the sub-folder names; IDX: 1 + the largest label, names NULL. */
int qd_dataset_num_classes(const qd_dataset *ds);
const char *qd_dataset_class_name(const qd_dataset *ds, int label);
/* The labels file in use (IDX), or NULL. */
const char *qd_dataset_labels_path(const qd_dataset *ds);
/* Folder data sets: the file of item i; IDX: the images file. */
const char *qd_dataset_item_path(const qd_dataset *ds, int i);

/* Item i as stored (IDX: 1 channel; files: as decoded). Free with qd_image_free. */
int qd_dataset_raw(const qd_dataset *ds, int i, qd_image *out);
/* Item i preprocessed into out [pp->channels, pp->height, pp->width]. */
int qd_dataset_image(const qd_dataset *ds, int i, const qd_preprocess *pp, float *out);

/* The labels file expected beside an IDX images file (existing or not), malloc'd; NULL when
 * the name has no "images" and "idx3" in it. */
char *qd_idx_labels_name(const char *images_path);

#endif
