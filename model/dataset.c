/* model/dataset.c — image data sets (image.h): an IDX images file with its labels, or a folder
 * laid out as torchvision's ImageFolder; items decoded and preprocessed on demand. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "common/qd_file.h"
#include "model/idx.h"
#include "model/image.h"

#define QD_FOLDER_MAX_DEPTH 32

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

static int open_idx(qd_dataset *ds, const char *path, const char *labels_path)
{
    uint32_t dims[3];
    int rc = qd_idx_read(path, 3, "image", dims, &ds->pixels);
    if (rc) return rc;
    if (dims[0] > INT_MAX || dims[1] == 0 || dims[2] == 0 || dims[1] > QD_IMAGE_MAX_SIDE || dims[2] > QD_IMAGE_MAX_SIDE)
        return qd_err_set(QD_EFORMAT, "%s: IDX images of %ux%u, %u of them: not a usable size", path, dims[1], dims[2],
                          dims[0]);
    ds->n = (int)dims[0];
    ds->h = (int)dims[1];
    ds->w = (int)dims[2];
    ds->labels_path = labels_path ? strdup(labels_path) : qd_idx_find_labels(path);
    if (labels_path && !ds->labels_path) return qd_err_set(QD_ENOMEM, "out of memory");
    if (!ds->labels_path) return QD_OK;
    uint32_t ln;
    uint8_t *lab;
    if ((rc = qd_idx_read(ds->labels_path, 1, "label", &ln, &lab))) return qd_err_wrap(rc, "labels of %s", path);
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
        char *p = qd_path_join(dir, names[i]);
        if (!p) {
            rc = qd_err_set(QD_ENOMEM, "%s: out of memory", dir);
            break;
        }
        if (qd_is_dir(p)) {
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
        char *p = qd_path_join(root, names[i]);
        if (p && qd_is_dir(p))
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
            char *p = qd_path_join(root, ds->classes[c]);
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
            if (!(ds->files[i] = qd_path_join(w.v[i].dir, w.v[i].name))) {
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
    if (qd_is_dir(path)) {
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
    int rc = qd_image_alloc(out, ds->w, ds->h, 1);
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
