/* Image inputs: MNIST t10k (gzip IDX) preprocessed as vit-mnist-tiny's preprocessor_config.json
 * says, against pixel_values / labels of reference/vit-forward-reference.safetensors; all 10,000
 * labels and pixels (counts and sums computed with Python's gzip module); PIL's resampling and
 * convert("L") bit for bit (tables from make_resize_reference.py); IDX headers that lie, labels
 * files found beside images, image folders (PNG/JPEG written here with stb_image_write), and
 * preprocessor_config.json parsing; Fashion-MNIST when Debian's package is installed. */
#include <stb_image_write.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "model/image.h"
#include "model/model.h"
#include "qd_test.h"
#include "resize_reference.h"
#include "shard/safetensors.h"

static char g_tmp[64];

static char *tmp_path(const char *name)
{
    size_t n = strlen(g_tmp) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", g_tmp, name);
    return p;
}

static void write_bytes(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(buf, 1, len, f) != len) || fclose(f) != 0) {
        perror(path);
        exit(99);
    }
}

static void write_gz(const char *path, const void *buf, size_t len)
{
    gzFile f = gzopen(path, "wb");
    if (!f || (len && gzwrite(f, buf, (unsigned)len) != (int)len) || gzclose(f) != Z_OK) {
        fprintf(stderr, "%s: cannot write\n", path);
        exit(99);
    }
}

/* An IDX u8 file: magic 00 00 08 ndim (type byte overridable), dims, then `len` data bytes. */
static void write_idx(const char *path, int gz, int type, int ndim, const uint32_t *dims, const uint8_t *data,
                      size_t len)
{
    size_t hl = 4 + 4 * (size_t)ndim;
    uint8_t *b = calloc(hl + len + 1, 1);
    b[2] = (uint8_t)type;
    b[3] = (uint8_t)ndim;
    for (int d = 0; d < ndim; d++) {
        b[4 + 4 * d] = (uint8_t)(dims[d] >> 24);
        b[5 + 4 * d] = (uint8_t)(dims[d] >> 16);
        b[6 + 4 * d] = (uint8_t)(dims[d] >> 8);
        b[7 + 4 * d] = (uint8_t)dims[d];
    }
    if (len) memcpy(b + hl, data, len);
    if (gz)
        write_gz(path, b, hl + len);
    else
        write_bytes(path, b, hl + len);
    free(b);
}

static int same_pp(const qd_preprocess *a, const qd_preprocess *b)
{
    int same = a->channels == b->channels && a->height == b->height && a->width == b->width &&
               a->do_resize == b->do_resize && a->resample == b->resample && a->do_rescale == b->do_rescale &&
               a->rescale_factor == b->rescale_factor && a->do_normalize == b->do_normalize;
    for (int c = 0; c < 3; c++) same = same && a->mean[c] == b->mean[c] && a->std[c] == b->std[c];
    return same;
}

static void mkdir_or_die(const char *p)
{
    if (mkdir(p, 0755) != 0) {
        perror(p);
        exit(99);
    }
}

/* ---- MNIST against the reference ------------------------------------------------------------ */

static void test_mnist_reference(void)
{
    char img[1200], ref[1200], cfg[1200];
    const char *m = qd_test_models_dir();
    snprintf(img, sizeof img, "%s/data/mnist/t10k-images-idx3-ubyte.gz", m);
    snprintf(ref, sizeof ref, "%s/reference/vit-forward-reference.safetensors", m);
    snprintf(cfg, sizeof cfg, "%s/vit-mnist-tiny/preprocessor_config.json", m);

    qd_dataset *ds = NULL;
    double t0 = qd_now();
    int rc = qd_dataset_open(img, NULL, &ds);
    CHECK_MSG(rc == QD_OK, "%s", qd_errmsg());
    if (rc) return;
    printf("MNIST t10k opened (images + labels, gzip) in %.0f ms\n", 1e3 * (qd_now() - t0));
    CHECK_EQ(qd_dataset_count(ds), 10000);
    CHECK_EQ(qd_dataset_has_labels(ds), 1);
    CHECK_EQ(qd_dataset_num_classes(ds), 10);
    CHECK_CONTAINS(qd_dataset_labels_path(ds), "/data/mnist/t10k-labels-idx1-ubyte.gz");
    CHECK(qd_dataset_class_name(ds, 0) == NULL);
    CHECK_STREQ(qd_dataset_item_path(ds, 5), img);

    /* every label and every pixel (Python: collections.Counter of the labels, sum of pixels) */
    static const int want_hist[10] = {980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009};
    int hist[10] = {0}, bad = 0;
    uint64_t pixsum = 0;
    for (int i = 0; i < 10000; i++) {
        int l = qd_dataset_label(ds, i);
        if (l < 0 || l > 9)
            bad++;
        else
            hist[l]++;
        qd_image im;
        if (qd_dataset_raw(ds, i, &im) != QD_OK || im.w != 28 || im.h != 28 || im.c != 1) {
            bad++;
            continue;
        }
        for (int k = 0; k < 784; k++) pixsum += im.data[k];
        qd_image_free(&im);
    }
    CHECK_EQ(bad, 0);
    for (int l = 0; l < 10; l++) CHECK_EQ(hist[l], want_hist[l]);
    CHECK_EQ(pixsum, 264923200);

    qd_preprocess pp;
    rc = qd_preprocess_load(cfg, 1, 224, 224, &pp);
    CHECK_MSG(rc == QD_OK, "%s", qd_errmsg());
    CHECK_EQ(pp.channels, 1);
    CHECK_EQ(pp.height, 28);
    CHECK_EQ(pp.width, 28);
    CHECK_EQ(pp.do_resize, 0);
    CHECK_EQ(pp.do_rescale, 1);
    CHECK_EQ(pp.do_normalize, 1);
    CHECK_NEAR(pp.rescale_factor, 1.0 / 255, 1e-18);
    CHECK_NEAR(pp.mean[0], 0.1307, 1e-15);
    CHECK_NEAR(pp.std[0], 0.3081, 1e-15);
    CHECK_EQ(qd_preprocess_numel(&pp), 784);

    qd_checkpoint *ck = NULL;
    rc = qd_ckpt_open(ref, &ck);
    CHECK_MSG(rc == QD_OK, "%s", qd_errmsg());
    if (rc == QD_OK) {
        int ip = qd_ckpt_find(ck, "pixel_values"), il = qd_ckpt_find(ck, "labels");
        const float *px = NULL;
        const void *lab = NULL;
        int owned = 0;
        CHECK(ip >= 0 && il >= 0);
        if (ip >= 0 && il >= 0 && qd_ckpt_read_f32(ck, ip, &px, &owned) == QD_OK &&
            qd_ckpt_raw(ck, il, &lab) == QD_OK) {
            CHECK_EQ(qd_ckpt_tensor(ck, ip)->numel, 16 * 784);
            float out[784];
            double maxd = 0;
            int exact = 0;
            for (int i = 0; i < 16; i++) {
                rc = qd_dataset_image(ds, i, &pp, out);
                CHECK_MSG(rc == QD_OK, "%s", qd_errmsg());
                for (int k = 0; k < 784; k++) {
                    double d = fabs((double)out[k] - px[i * 784 + k]);
                    maxd = d > maxd ? d : maxd;
                    exact += out[k] == px[i * 784 + k];
                }
                CHECK_EQ(qd_dataset_label(ds, i), ((const int32_t *)lab)[i]);
            }
            printf("pixel_values: max |diff| %.3g, %d of %d bit-identical\n", maxd, exact, 16 * 784);
            CHECK_DBL_LE(maxd, 1e-6);
        }
        qd_ckpt_close(ck);
    }

    /* the same settings through the model */
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/vit-mnist-tiny", m);
    qd_model *model = NULL;
    rc = qd_model_load(dir, &model);
    CHECK_MSG(rc == QD_OK, "%s", qd_errmsg());
    if (rc == QD_OK) {
        qd_preprocess mp;
        rc = qd_preprocess_for_model(model, &mp);
        CHECK_MSG(rc == QD_OK, "%s", qd_errmsg());
        CHECK(same_pp(&mp, &pp));
        qd_model_free(model);
    }
    qd_dataset_free(ds);
}

/* Debian's dataset-fashion-mnist, when installed: the same IDX reader on 70,000 more images
 * (class counts and pixel sums from Python's gzip module). */
static void test_fashion_mnist(void)
{
    static const char *dir = "/usr/share/datasets/fashion-mnist";
    static const struct {
        const char *name;
        int n;
        uint64_t pixsum;
    } sets[2] = {{"train", 60000, 3431114169ull}, {"t10k", 10000, 573469082ull}};
    struct stat st;
    if (stat(dir, &st) != 0) {
        printf("%s absent (Debian package dataset-fashion-mnist): not checked\n", dir);
        return;
    }
    for (int s = 0; s < 2; s++) {
        char img[256], lab[256];
        snprintf(img, sizeof img, "%s/%s-images-idx3-ubyte.gz", dir, sets[s].name);
        snprintf(lab, sizeof lab, "%s/%s-labels-idx1-ubyte.gz", dir, sets[s].name);
        qd_dataset *ds = NULL;
        int rc = qd_dataset_open(img, NULL, &ds);
        CHECK_MSG(rc == QD_OK, "%s", qd_errmsg());
        if (rc) continue;
        CHECK_EQ(qd_dataset_count(ds), sets[s].n);
        CHECK_STREQ(qd_dataset_labels_path(ds), lab);
        CHECK_EQ(qd_dataset_num_classes(ds), 10);
        int hist[10] = {0};
        uint64_t sum = 0;
        for (int i = 0; i < qd_dataset_count(ds); i++) {
            hist[qd_dataset_label(ds, i)]++;
            qd_image im;
            if (qd_dataset_raw(ds, i, &im) == QD_OK) {
                for (int k = 0; k < im.w * im.h; k++) sum += im.data[k];
                qd_image_free(&im);
            }
        }
        for (int l = 0; l < 10; l++) CHECK_EQ(hist[l], sets[s].n / 10);
        CHECK_EQ(sum, sets[s].pixsum);
        qd_dataset_free(ds);
    }
}

/* ---- PIL resampling and conversion ---------------------------------------------------------- */

static void test_resize_pil(void)
{
    for (size_t t = 0; t < QD_ARRAY_LEN(k_resize_cases); t++) {
        const struct resize_case *c = &k_resize_cases[t];
        qd_image in = {c->w, c->h, c->c, (uint8_t *)c->in}, out;
        int rc = qd_image_resize(&in, c->out_w, c->out_h, c->filter, &out);
        CHECK_MSG(rc == QD_OK, "%s: %s", c->name, qd_errmsg());
        if (rc) continue;
        CHECK_EQ(out.w, c->out_w);
        CHECK_EQ(out.h, c->out_h);
        CHECK_EQ(out.c, c->c);
        size_t n = (size_t)c->out_w * (size_t)c->out_h * (size_t)c->c;
        int diff = 0;
        for (size_t i = 0; i < n; i++) {
            if (out.data[i] != c->out[i] && diff++ < 3)
                fprintf(stderr, "%s: byte %zu: %d, PIL %d\n", c->name, i, out.data[i], c->out[i]);
        }
        CHECK_MSG(diff == 0, "%s: %d of %zu bytes differ from PIL", c->name, diff, n);
        qd_image_free(&out);
    }
    for (size_t t = 0; t < QD_ARRAY_LEN(k_convert_cases); t++) {
        const struct convert_case *c = &k_convert_cases[t];
        qd_image in = {c->w, c->h, 3, (uint8_t *)c->in}, out;
        CHECK_EQ(qd_image_convert(&in, 1, &out), QD_OK);
        CHECK_MSG(memcmp(out.data, c->out, (size_t)(c->w * c->h)) == 0, "%s", c->name);
        qd_image_free(&out);
    }
    /* same size: a copy; NEAREST and bad sizes refused */
    uint8_t px[6] = {1, 2, 3, 4, 5, 6};
    qd_image in = {3, 2, 1, px}, out;
    CHECK_EQ(qd_image_resize(&in, 3, 2, QD_RESAMPLE_BICUBIC, &out), QD_OK);
    CHECK(out.data && memcmp(out.data, px, 6) == 0);
    qd_image_free(&out);
    CHECK_EQ(qd_image_resize(&in, 2, 2, QD_RESAMPLE_NEAREST, &out), QD_EUNSUPPORTED);
    CHECK_CONTAINS(qd_errmsg(), "NEAREST");
    CHECK(out.data == NULL);
    CHECK_EQ(qd_image_resize(&in, 0, 2, QD_RESAMPLE_BILINEAR, &out), QD_EINVAL);
    CHECK_EQ(qd_image_resize(&in, 2, 2, 9, &out), QD_EINVAL);
    /* gray to RGB replicates; LA and RGBA drop alpha */
    uint8_t la[4] = {10, 99, 20, 0};
    qd_image g = {2, 1, 2, la};
    CHECK_EQ(qd_image_convert(&g, 3, &out), QD_OK);
    static const uint8_t want_rgb[6] = {10, 10, 10, 20, 20, 20};
    CHECK(memcmp(out.data, want_rgb, 6) == 0);
    qd_image_free(&out);
    uint8_t rgba[4] = {255, 0, 0, 7};
    qd_image a = {1, 1, 4, rgba};
    CHECK_EQ(qd_image_convert(&a, 1, &out), QD_OK);
    CHECK_EQ(out.data[0], 76); /* PIL: Image.new("RGB", (1, 1), (255, 0, 0)).convert("L") */
    qd_image_free(&out);
    CHECK_EQ(qd_image_convert(&a, 2, &out), QD_EINVAL);
}

/* The whole pipeline on an RGB image: convert, PIL resize, rescale, normalize, [C, H, W]. */
static void test_preprocess_pipeline(void)
{
    const struct resize_case *c = &k_resize_cases[2]; /* mixed_rgb, BILINEAR */
    CHECK_STREQ(c->name, "mixed_rgb");
    qd_image in = {c->w, c->h, 3, (uint8_t *)c->in};
    qd_preprocess pp;
    qd_preprocess_default(&pp, 3, c->out_h, c->out_w);
    pp.mean[0] = 0.485;
    pp.mean[1] = 0.456;
    pp.mean[2] = 0.406;
    pp.std[0] = 0.229;
    pp.std[1] = 0.224;
    pp.std[2] = 0.225;
    float out[3 * 40];
    CHECK_EQ(qd_image_preprocess(&in, &pp, out), QD_OK);
    int bad = 0;
    for (int ch = 0; ch < 3; ch++)
        for (int i = 0; i < c->out_w * c->out_h; i++) {
            double want = (c->out[3 * i + ch] / 255.0 - pp.mean[ch]) / pp.std[ch];
            bad += fabs(out[ch * c->out_w * c->out_h + i] - want) > 1e-6;
        }
    CHECK_EQ(bad, 0);
    /* no rescale, no normalize: the resized bytes as floats */
    pp.do_rescale = pp.do_normalize = 0;
    CHECK_EQ(qd_image_preprocess(&in, &pp, out), QD_OK);
    CHECK_EQ(out[0], c->out[0]);
    CHECK_EQ(out[40 + 1], c->out[3 * 1 + 1]);
    /* to one channel: PIL's convert("L") first, then the resize */
    qd_preprocess_default(&pp, 1, c->out_h, c->out_w);
    pp.do_rescale = pp.do_normalize = 0;
    qd_image l, r;
    CHECK_EQ(qd_image_convert(&in, 1, &l), QD_OK);
    CHECK_EQ(qd_image_resize(&l, c->out_w, c->out_h, QD_RESAMPLE_BILINEAR, &r), QD_OK);
    CHECK_EQ(qd_image_preprocess(&in, &pp, out), QD_OK);
    bad = 0;
    for (int i = 0; i < 40; i++) bad += out[i] != r.data[i];
    CHECK_EQ(bad, 0);
    qd_image_free(&l);
    qd_image_free(&r);
    /* without do_resize the size must already be right */
    pp.do_resize = 0;
    CHECK_EQ(qd_image_preprocess(&in, &pp, out), QD_ESHAPE);
    CHECK_CONTAINS(qd_errmsg(), "9x7");
}

/* ---- IDX files -------------------------------------------------------------------------------- */

static void test_idx(void)
{
    uint8_t px[3 * 2 * 2] = {0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 255};
    uint8_t lab[3] = {2, 0, 7};
    uint32_t dims[3] = {3, 2, 2}, ldims[1] = {3};
    qd_dataset *ds = NULL;

    /* plain files, the labels beside */
    char *img = tmp_path("train-images-idx3-ubyte"), *lbl = tmp_path("train-labels-idx1-ubyte");
    write_idx(img, 0, 8, 3, dims, px, sizeof px);
    write_idx(lbl, 0, 8, 1, ldims, lab, sizeof lab);
    char *name = qd_idx_labels_name(img);
    CHECK_STREQ(name, lbl);
    free(name);
    CHECK(qd_idx_labels_name("/data/x-images.bin") == NULL);
    name = qd_idx_labels_name("/a/images-idx3/t10k-images.idx3-ubyte"); /* the file name only */
    CHECK_STREQ(name, "/a/images-idx3/t10k-labels.idx1-ubyte");
    free(name);
    int rc = qd_dataset_open(img, NULL, &ds);
    CHECK_MSG(rc == QD_OK, "%s", qd_errmsg());
    if (ds) {
        CHECK_EQ(qd_dataset_count(ds), 3);
        CHECK_STREQ(qd_dataset_labels_path(ds), lbl);
        CHECK_EQ(qd_dataset_num_classes(ds), 8);
        CHECK_EQ(qd_dataset_label(ds, 0), 2);
        CHECK_EQ(qd_dataset_label(ds, 2), 7);
        qd_image im;
        CHECK_EQ(qd_dataset_raw(ds, 2, &im), QD_OK);
        CHECK(im.w == 2 && im.h == 2 && im.c == 1 && memcmp(im.data, px + 8, 4) == 0);
        qd_image_free(&im);
        CHECK_EQ(qd_dataset_raw(ds, 3, &im), QD_EINVAL);
        /* no resize: a 2x2 image into a 2x2 model; upscaled to 4x4 with do_resize */
        qd_preprocess pp;
        qd_preprocess_default(&pp, 1, 2, 2);
        pp.do_resize = 0;
        pp.mean[0] = 0.25;
        pp.std[0] = 0.5;
        float out[16];
        CHECK_EQ(qd_dataset_image(ds, 2, &pp, out), QD_OK);
        CHECK_NEAR(out[3], (255 / 255.0 - 0.25) / 0.5, 1e-7);
        CHECK_NEAR(out[0], (20 / 255.0 - 0.25) / 0.5, 1e-7);
        qd_preprocess_default(&pp, 1, 4, 4);
        pp.do_resize = 0;
        CHECK_EQ(qd_dataset_image(ds, 1, &pp, out), QD_ESHAPE);
        CHECK_CONTAINS(qd_errmsg(), img);
        CHECK_CONTAINS(qd_errmsg(), "item 1");
        pp.do_resize = 1;
        CHECK_EQ(qd_dataset_image(ds, 1, &pp, out), QD_OK);
        qd_preprocess_default(&pp, 3, 2, 2); /* gray to RGB */
        pp.do_normalize = 0;
        CHECK_EQ(qd_dataset_image(ds, 1, &pp, out), QD_OK);
        CHECK_NEAR(out[4 + 1], 11 / 255.0, 1e-7);
        CHECK_NEAR(out[8 + 3], 13 / 255.0, 1e-7);
        qd_dataset_free(ds);
    }
    /* explicit labels; a labels file with the wrong count */
    char *lbl2 = tmp_path("other-labels");
    uint32_t two[1] = {2};
    write_idx(lbl2, 0, 8, 1, two, lab, 2);
    CHECK_EQ(qd_dataset_open(img, lbl2, &ds), QD_EMISMATCH);
    CHECK(ds == NULL);
    CHECK_CONTAINS(qd_errmsg(), lbl2);
    CHECK_CONTAINS(qd_errmsg(), "2 labels for the 3 images");
    CHECK_EQ(qd_dataset_open(img, lbl, &ds), QD_OK);
    qd_dataset_free(ds);
    char *nolbl = tmp_path("missing-labels");
    CHECK_EQ(qd_dataset_open(img, nolbl, &ds), QD_ENOENT);
    CHECK_CONTAINS(qd_errmsg(), nolbl);
    CHECK_EQ(qd_dataset_open(lbl, NULL, &ds), QD_EFORMAT); /* a labels file as images */
    CHECK_CONTAINS(qd_errmsg(), "1 dimensions, expected 3");
    remove(lbl);

    /* no labels beside */
    CHECK_EQ(qd_dataset_open(img, NULL, &ds), QD_OK);
    if (ds) {
        CHECK_EQ(qd_dataset_has_labels(ds), 0);
        CHECK_EQ(qd_dataset_label(ds, 1), -1);
        CHECK(qd_dataset_labels_path(ds) == NULL);
        qd_dataset_free(ds);
    }

    /* gzip images, plain labels (".gz" dropped), and the other way round */
    char *gimg = tmp_path("x-images-idx3-ubyte.gz"), *plab = tmp_path("x-labels-idx1-ubyte");
    write_idx(gimg, 1, 8, 3, dims, px, sizeof px);
    write_idx(plab, 0, 8, 1, ldims, lab, sizeof lab);
    CHECK_EQ(qd_dataset_open(gimg, NULL, &ds), QD_OK);
    if (ds) {
        CHECK_STREQ(qd_dataset_labels_path(ds), plab);
        CHECK_EQ(qd_dataset_label(ds, 2), 7);
        qd_dataset_free(ds);
    }
    char *pimg = tmp_path("y-images-idx3-ubyte"), *glab = tmp_path("y-labels-idx1-ubyte.gz");
    write_idx(pimg, 0, 8, 3, dims, px, sizeof px);
    write_idx(glab, 1, 8, 1, ldims, lab, sizeof lab);
    CHECK_EQ(qd_dataset_open(pimg, NULL, &ds), QD_OK);
    if (ds) {
        CHECK_STREQ(qd_dataset_labels_path(ds), glab);
        qd_dataset_free(ds);
    }

    /* headers that lie, truncated files, wrong types */
    char *bad = tmp_path("bad-images-idx3-ubyte");
    uint8_t head6[6] = {0, 0, 8, 3, 0, 0};
    write_bytes(bad, head6, sizeof head6);
    CHECK_EQ(qd_dataset_open(bad, NULL, &ds), QD_EFORMAT);
    CHECK_CONTAINS(qd_errmsg(), bad);
    CHECK_CONTAINS(qd_errmsg(), "truncated IDX header");
    write_bytes(bad, "", 0);
    CHECK_EQ(qd_dataset_open(bad, NULL, &ds), QD_EFORMAT);
    CHECK_CONTAINS(qd_errmsg(), "truncated IDX header");
    uint32_t lie[3] = {1000, 28, 28};
    for (int gz = 0; gz < 2; gz++) {
        write_idx(bad, gz, 8, 3, lie, px, sizeof px);
        CHECK_EQ(qd_dataset_open(bad, NULL, &ds), QD_EFORMAT);
        CHECK_CONTAINS(qd_errmsg(), bad);
        CHECK_CONTAINS(qd_errmsg(), "declares 784000 bytes of image data, the file holds 12");
    }
    uint32_t fewer[3] = {2, 2, 2};
    write_idx(bad, 1, 8, 3, fewer, px, sizeof px);
    CHECK_EQ(qd_dataset_open(bad, NULL, &ds), QD_EFORMAT);
    CHECK_CONTAINS(qd_errmsg(), "holds more");
    uint32_t huge[3] = {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu};
    write_idx(bad, 0, 8, 3, huge, px, sizeof px);
    CHECK_EQ(qd_dataset_open(bad, NULL, &ds), QD_EFORMAT);
    CHECK_CONTAINS(qd_errmsg(), "impossible size");
    write_idx(bad, 0, 0x0D, 3, dims, px, sizeof px); /* float32 IDX */
    CHECK_EQ(qd_dataset_open(bad, NULL, &ds), QD_EFORMAT);
    CHECK_CONTAINS(qd_errmsg(), "data type 0x0d");
    write_bytes(bad, "\x1f\x8b\x08\x00garbage-garbage", 19);
    CHECK_EQ(qd_dataset_open(bad, NULL, &ds), QD_EFORMAT);
    CHECK_CONTAINS(qd_errmsg(), bad);
    write_bytes(bad, "P5\n2 2\n255\n....", 15);
    CHECK_EQ(qd_dataset_open(bad, NULL, &ds), QD_EFORMAT);
    CHECK_CONTAINS(qd_errmsg(), "not an IDX file");
    uint32_t zero_h[3] = {1, 0, 2};
    write_idx(bad, 0, 8, 3, zero_h, px, 0);
    CHECK_EQ(qd_dataset_open(bad, NULL, &ds), QD_EFORMAT);
    CHECK_CONTAINS(qd_errmsg(), "not a usable size");
    /* a gzip stream cut short, and one whose checksum is wrong */
    write_idx(bad, 1, 8, 3, dims, px, sizeof px);
    FILE *f = fopen(bad, "rb");
    uint8_t gzb[256];
    size_t gzn = fread(gzb, 1, sizeof gzb, f);
    fclose(f);
    write_bytes(bad, gzb, gzn - 12);
    CHECK_EQ(qd_dataset_open(bad, NULL, &ds), QD_EFORMAT);
    CHECK_CONTAINS(qd_errmsg(), bad);
    gzb[gzn - 8] ^= 0x55; /* CRC-32 of the trailer */
    write_bytes(bad, gzb, gzn);
    CHECK_EQ(qd_dataset_open(bad, NULL, &ds), QD_EFORMAT);
    CHECK_CONTAINS(qd_errmsg(), "corrupt gzip data");
    char *none = tmp_path("nothing-images-idx3-ubyte");
    CHECK_EQ(qd_dataset_open(none, NULL, &ds), QD_ENOENT);
    CHECK_CONTAINS(qd_errmsg(), none);

    free(img), free(lbl), free(lbl2), free(nolbl), free(gimg), free(plab), free(pimg);
    free(glab), free(bad), free(none);
}

/* ---- folders of PNG / JPEG files ----------------------------------------------------------- */

static void pattern(uint8_t *p, int w, int h, int c, int seed)
{
    for (int i = 0; i < w * h * c; i++) p[i] = (uint8_t)(i * 29 + seed * 71);
}

static void write_png(const char *path, int w, int h, int c, int seed)
{
    uint8_t px[64 * 64 * 4];
    pattern(px, w, h, c, seed);
    if (!stbi_write_png(path, w, h, c, px, w * c)) {
        fprintf(stderr, "%s: cannot write\n", path);
        exit(99);
    }
}

static void test_folder(void)
{
    char *root = tmp_path("folder");
    mkdir_or_die(root);
    const char *dirs[] = {"dog", "cat", "dog/sub"};
    for (size_t i = 0; i < QD_ARRAY_LEN(dirs); i++) {
        char *p = tmp_path("folder"), *q = malloc(strlen(p) + 32);
        sprintf(q, "%s/%s", p, dirs[i]);
        mkdir_or_die(q);
        free(p);
        free(q);
    }
    char *p;
    /* files written out of order; the order read must be by folder, then name */
    write_png(p = tmp_path("folder/dog/2.png"), 5, 4, 3, 1), free(p);
    write_png(p = tmp_path("folder/dog/sub/1.png"), 3, 3, 1, 2), free(p);
    write_png(p = tmp_path("folder/dog/10.png"), 6, 2, 4, 3), free(p);
    write_png(p = tmp_path("folder/cat/x.PNG"), 5, 4, 2, 4), free(p);
    write_bytes(p = tmp_path("folder/cat/notes.txt"), "not an image", 12), free(p);
    write_bytes(p = tmp_path("folder/loose.png"), "ignored: not in a class", 23), free(p);

    qd_dataset *ds = NULL;
    int rc = qd_dataset_open(root, NULL, &ds);
    CHECK_MSG(rc == QD_OK, "%s", qd_errmsg());
    if (ds) {
        CHECK_EQ(qd_dataset_count(ds), 4);
        CHECK_EQ(qd_dataset_has_labels(ds), 1);
        CHECK_EQ(qd_dataset_num_classes(ds), 2);
        CHECK_STREQ(qd_dataset_class_name(ds, 0), "cat");
        CHECK_STREQ(qd_dataset_class_name(ds, 1), "dog");
        CHECK(qd_dataset_class_name(ds, 2) == NULL);
        static const char *want[4] = {"folder/cat/x.PNG", "folder/dog/10.png", "folder/dog/2.png",
                                      "folder/dog/sub/1.png"};
        static const int want_label[4] = {0, 1, 1, 1};
        static const int want_geo[4][3] = {{5, 4, 2}, {6, 2, 4}, {5, 4, 3}, {3, 3, 1}};
        static const int seed[4] = {4, 3, 1, 2};
        for (int i = 0; i < 4; i++) {
            char *w = tmp_path(want[i]);
            CHECK_STREQ(qd_dataset_item_path(ds, i), w);
            free(w);
            CHECK_EQ(qd_dataset_label(ds, i), want_label[i]);
            qd_image im;
            rc = qd_dataset_raw(ds, i, &im);
            CHECK_MSG(rc == QD_OK, "%s", qd_errmsg());
            if (rc) continue;
            CHECK_EQ(im.w, want_geo[i][0]);
            CHECK_EQ(im.h, want_geo[i][1]);
            CHECK_EQ(im.c, want_geo[i][2]);
            uint8_t px[64 * 64 * 4];
            pattern(px, im.w, im.h, im.c, seed[i]);
            CHECK_MSG(memcmp(px, im.data, (size_t)(im.w * im.h * im.c)) == 0, "item %d pixels", i);
            qd_image_free(&im);
        }
        /* preprocessing to one channel: RGB 5x4 through PIL's convert("L"), resized to 2x3 */
        qd_preprocess pp;
        qd_preprocess_default(&pp, 1, 3, 2);
        pp.do_rescale = pp.do_normalize = 0;
        float out[6];
        CHECK_EQ(qd_dataset_image(ds, 2, &pp, out), QD_OK);
        uint8_t rgb[5 * 4 * 3];
        pattern(rgb, 5, 4, 3, 1);
        qd_image in = {5, 4, 3, rgb}, l, r;
        CHECK_EQ(qd_image_convert(&in, 1, &l), QD_OK);
        CHECK_EQ(l.data[1], (uint8_t)((rgb[3] * 19595u + rgb[4] * 38470u + rgb[5] * 7471u + 0x8000u) >> 16));
        CHECK_EQ(qd_image_resize(&l, 2, 3, QD_RESAMPLE_BILINEAR, &r), QD_OK);
        int bad = 0;
        for (int k = 0; k < 6; k++) bad += out[k] != r.data[k];
        CHECK_EQ(bad, 0);
        qd_image_free(&l);
        qd_image_free(&r);
        qd_dataset_free(ds);
    }
    CHECK_EQ(qd_dataset_open(root, "labels.idx", &ds), QD_EINVAL);

    /* a broken file is found at open, refused when fetched, with its name */
    write_bytes(p = tmp_path("folder/cat/broken.png"), "\x89PNG\r\n\x1a\n-truncated", 18), free(p);
    CHECK_EQ(qd_dataset_open(root, NULL, &ds), QD_OK);
    if (ds) {
        CHECK_EQ(qd_dataset_count(ds), 5);
        qd_preprocess pp;
        qd_preprocess_default(&pp, 3, 4, 4);
        float out[48];
        CHECK_EQ(qd_dataset_image(ds, 0, &pp, out), QD_EFORMAT);
        CHECK_CONTAINS(qd_errmsg(), "folder/cat/broken.png");
        CHECK_EQ(qd_dataset_image(ds, 1, &pp, out), QD_OK);
        qd_dataset_free(ds);
    }
    /* an empty class, then a TIFF */
    mkdir_or_die(p = tmp_path("folder/empty")), free(p);
    CHECK_EQ(qd_dataset_open(root, NULL, &ds), QD_ENOTFOUND);
    CHECK_CONTAINS(qd_errmsg(), "folder/empty");
    rmdir(p = tmp_path("folder/empty")), free(p);
    write_bytes(p = tmp_path("folder/dog/scan.TIFF"), "II*\0", 4), free(p);
    CHECK_EQ(qd_dataset_open(root, NULL, &ds), QD_EUNSUPPORTED);
    CHECK_CONTAINS(qd_errmsg(), "scan.TIFF");

    /* a flat folder: unlabelled, PNG and JPEG */
    char *flat = tmp_path("flat");
    mkdir_or_die(flat);
    write_png(p = tmp_path("flat/b.png"), 8, 8, 3, 5), free(p);
    uint8_t px[8 * 8 * 3];
    pattern(px, 8, 8, 3, 6);
    p = tmp_path("flat/a.jpeg");
    CHECK(stbi_write_jpg(p, 8, 8, 3, px, 90));
    free(p);
    CHECK_EQ(qd_dataset_open(flat, NULL, &ds), QD_OK);
    if (ds) {
        CHECK_EQ(qd_dataset_count(ds), 2);
        CHECK_EQ(qd_dataset_has_labels(ds), 0);
        CHECK_EQ(qd_dataset_label(ds, 0), -1);
        CHECK_EQ(qd_dataset_num_classes(ds), 0);
        CHECK_CONTAINS(qd_dataset_item_path(ds, 0), "flat/a.jpeg");
        qd_image im;
        CHECK_EQ(qd_dataset_raw(ds, 0, &im), QD_OK);
        CHECK(im.w == 8 && im.h == 8 && im.c == 3);
        qd_image_free(&im);
        qd_dataset_free(ds);
    }
    char *empty = tmp_path("flat_empty");
    mkdir_or_die(empty);
    CHECK_EQ(qd_dataset_open(empty, NULL, &ds), QD_ENOTFOUND);
    CHECK_CONTAINS(qd_errmsg(), empty);

    qd_image im;
    CHECK_EQ(qd_image_load(root, &im), QD_EIO);
    p = tmp_path("nope.png");
    CHECK_EQ(qd_image_load(p, &im), QD_ENOENT);
    free(p);
    free(root);
    free(flat);
    free(empty);
}

/* ---- preprocessor_config.json --------------------------------------------------------------- */

static int load_cfg(const char *json, int channels, qd_preprocess *pp)
{
    char *p = tmp_path("preprocessor_config.json");
    write_bytes(p, json, strlen(json));
    int rc = qd_preprocess_load(p, channels, 224, 224, pp);
    free(p);
    return rc;
}

static void test_config(void)
{
    qd_preprocess pp;
    /* defaults (Hugging Face ViTImageProcessor) and the folder form of the path */
    CHECK_EQ(load_cfg("{}", 3, &pp), QD_OK);
    qd_preprocess d;
    qd_preprocess_default(&d, 3, 224, 224);
    CHECK(same_pp(&pp, &d));
    CHECK_EQ(pp.resample, QD_RESAMPLE_BILINEAR);
    CHECK_EQ(qd_preprocess_load(g_tmp, 3, 224, 224, &pp), QD_OK);

    CHECK_EQ(load_cfg("{\"size\": 32, \"resample\": 3, \"image_mean\": 0.25, \"image_std\": "
                      "[0.1, 0.2, 0.3], \"do_rescale\": false, \"rescale_factor\": 2}",
                      3, &pp),
             QD_OK);
    CHECK(pp.height == 32 && pp.width == 32 && pp.resample == 3 && pp.do_rescale == 0);
    CHECK(pp.mean[2] == 0.25 && pp.std[1] == 0.2 && pp.rescale_factor == 2);
    CHECK_EQ(load_cfg("{\"size\": {\"height\": 20, \"width\": 30}, \"do_center_crop\": false}", 1, &pp), QD_OK);
    CHECK(pp.height == 20 && pp.width == 30);

    CHECK_EQ(load_cfg("{\"size\": {\"shortest_edge\": 256}}", 3, &pp), QD_EUNSUPPORTED);
    CHECK_CONTAINS(qd_errmsg(), "shortest_edge");
    CHECK_CONTAINS(qd_errmsg(), "preprocessor_config.json");
    CHECK_EQ(load_cfg("{\"do_center_crop\": true}", 3, &pp), QD_EUNSUPPORTED);
    CHECK_EQ(load_cfg("{\"resample\": 0}", 3, &pp), QD_EUNSUPPORTED);
    CHECK_EQ(load_cfg("{\"resample\": 0, \"do_resize\": false}", 3, &pp), QD_OK);
    CHECK_EQ(load_cfg("{\"resample\": 7}", 3, &pp), QD_EFORMAT);
    CHECK_EQ(load_cfg("{\"image_mean\": [0.5, 0.5]}", 3, &pp), QD_EFORMAT);
    CHECK_CONTAINS(qd_errmsg(), "image_mean");
    CHECK_EQ(load_cfg("{\"image_std\": [0.5, 0, 0.5]}", 3, &pp), QD_ECONFIG);
    CHECK_CONTAINS(qd_errmsg(), "channel 1");
    CHECK_EQ(load_cfg("{\"size\": {\"height\": 0, \"width\": 3}}", 3, &pp), QD_EFORMAT);
    CHECK_CONTAINS(qd_errmsg(), "size.height");
    CHECK_EQ(load_cfg("{\"do_resize\": 1}", 3, &pp), QD_EFORMAT);
    CHECK_CONTAINS(qd_errmsg(), "do_resize");
    CHECK_EQ(load_cfg("{\"do_resize\": tru", 3, &pp), QD_EFORMAT);
    CHECK_CONTAINS(qd_errmsg(), "not a JSON object");
    CHECK_EQ(load_cfg("{}", 2, &pp), QD_EINVAL);
    char *p = tmp_path("preprocessor_config.json");
    remove(p);
    CHECK_EQ(qd_preprocess_load(p, 1, 28, 28, &pp), QD_ENOENT);
    CHECK_CONTAINS(qd_errmsg(), p);
    free(p);
}

int main(void)
{
    snprintf(g_tmp, sizeof g_tmp, "/tmp/qd_image_XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 99;
    }
    test_mnist_reference();
    test_fashion_mnist();
    test_resize_pil();
    test_preprocess_pipeline();
    test_idx();
    test_folder();
    test_config();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_tmp);
    QD_TEST_MAIN_END();
}
