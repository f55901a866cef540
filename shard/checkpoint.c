/* shard/checkpoint.c — a checkpoint (one safetensors file or a sharded set) as a table of
 * tensors sorted by name. Headers are read with pread and validated at open; data files are
 * mmapped read-only on first use. torch.save files (pytorch_model.bin) are recognised by their
 * first bytes and parsed by shard/torch_zip.c; their tensors are then read exactly like
 * safetensors data (an absolute offset into the mapped file). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/qd_file.h"
#include "shard/safetensors.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the safetensors reader assumes a little-endian host"
#endif

#define QD_INDEX_NAME      "model.safetensors.index.json"
#define QD_SINGLE_NAME     "model.safetensors"
#define QD_PT_INDEX_NAME   "pytorch_model.bin.index.json"
#define QD_PT_SINGLE_NAME  "pytorch_model.bin"
#define QD_MAX_INDEX_BYTES (256u << 20)

typedef struct {
    int fd;
    const unsigned char *map; /* whole file, PROT_READ, or NULL until first use */
    size_t maplen;
} qd_st_map;

struct qd_checkpoint {
    char *dir;
    int nfiles;
    qd_st_file *files; /* [nfiles] */
    qd_st_map *maps;   /* [nfiles] */
    int ntensors;
    qd_tensor_info *tensors; /* [ntensors], sorted by name */
    pthread_mutex_t lock;    /* guards lazy mapping */
};

/* ---- small helpers ------------------------------------------------------------------------- */

static int open_error(const char *path, int err)
{
    if (err == ENOENT || err == ENOTDIR) return qd_err_set(QD_ENOENT, "%s: no such file", path);
    return qd_err_set(QD_EIO, "%s: cannot open: %s", path, strerror(err));
}

static int pread_full(int fd, void *buf, size_t n, off_t off)
{
    unsigned char *p = buf;
    while (n) {
        ssize_t r = pread(fd, p, n, off);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) return -2; /* file shrank */
        p += r;
        n -= (size_t)r;
        off += r;
    }
    return 0;
}

static int sha256(const unsigned char *buf, size_t n, unsigned char out[32])
{
    unsigned int len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) && EVP_DigestUpdate(ctx, buf, n) &&
             EVP_DigestFinal_ex(ctx, out, &len) && len == 32;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -1;
}

/* ---- one file ------------------------------------------------------------------------------ */

/* A torch.save file: the zip directory and the pickle are parsed from a temporary read-only
 * mapping (only their pages are read); the data is mapped again on first use like any file. */
static int load_torch(const char *path, int fd, uint64_t size, qd_st_file *f, qd_tensor_info **tensors, int *nt)
{
    if (size > SIZE_MAX) return qd_err_set(QD_EIO, "%s: too large to map", path);
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED)
        return qd_err_set(QD_EIO, "%s: mmap of %llu bytes failed: %s", path, (unsigned long long)size, strerror(errno));
    char *meta = NULL;
    uint64_t poff = 0, plen = 0;
    int rc = qd_pt_parse(path, map, (size_t)size, tensors, nt, &meta, &poff, &plen);
    if (rc == QD_OK && sha256((const unsigned char *)map + poff, (size_t)plen, f->header_sha256) != 0)
        rc = qd_err_set(QD_EIO, "%s: SHA-256 of data.pkl failed", path);
    munmap(map, (size_t)size);
    if (rc != QD_OK) {
        free(meta);
        if (*tensors) qd_st_free_tensors(*tensors, *nt);
        *tensors = NULL;
        return rc;
    }
    f->header_len = plen;
    f->metadata_json = meta;
    f->format = QD_FMT_TORCH_ZIP;
    return QD_OK;
}

/* Open, read and validate one safetensors file. On success fills *f and *m (fd kept open for the
 * lazy mapping) and returns its tensors (file_index = fidx). */
static int load_file(const char *path, int fidx, qd_st_file *f, qd_st_map *m, qd_tensor_info **tensors, int *nt)
{
    memset(f, 0, sizeof *f);
    m->fd = -1;
    m->map = NULL;
    m->maplen = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not block open() */
    if (fd < 0) return open_error(path, errno);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return qd_err_set(QD_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return qd_err_set(QD_EIO, "%s: not a regular file", path);
    }
    uint64_t size = (uint64_t)st.st_size;
    unsigned char head[16];
    size_t hn = size < sizeof head ? (size_t)size : sizeof head;
    if (hn && pread_full(fd, head, hn, 0) != 0) {
        close(fd);
        return qd_err_set(QD_EIO, "%s: cannot read the first bytes", path);
    }
    if (qd_pt_sniff(head, hn) != QD_PT_NONE) {
        *tensors = NULL;
        *nt = 0;
        int rc = load_torch(path, fd, size, f, tensors, nt);
        if (rc == QD_OK) {
            for (int i = 0; i < *nt; i++) (*tensors)[i].file_index = fidx;
            f->path = strdup(path);
            f->size = size;
            m->fd = fd;
            if (f->path) return QD_OK;
            qd_st_free_tensors(*tensors, *nt);
            *tensors = NULL;
            free(f->metadata_json);
            f->metadata_json = NULL;
            m->fd = -1;
            rc = qd_err_set(QD_ENOMEM, "%s: out of memory", path);
        }
        close(fd);
        return rc;
    }
    if (size < 8) {
        close(fd); /* the parser words the error */
        return qd_st_parse_header(path, head, hn, size, NULL, NULL, NULL, NULL);
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | head[i];
    if (n > QD_ST_MAX_HEADER || n > size - 8) {
        close(fd); /* let the parser word the error */
        return qd_st_parse_header(path, head, 8, size, NULL, NULL, NULL, NULL);
    }
    unsigned char *buf = malloc((size_t)n + 8);
    if (!buf) {
        close(fd);
        return qd_err_set(QD_ENOMEM, "%s: out of memory for a %llu-byte header", path, (unsigned long long)n);
    }
    if (pread_full(fd, buf, (size_t)n + 8, 0) != 0) {
        free(buf);
        close(fd);
        return qd_err_set(QD_EIO, "%s: cannot read the %llu-byte header", path, (unsigned long long)n);
    }
    char *meta = NULL;
    uint64_t hl = 0;
    int rc = qd_st_parse_header(path, buf, (size_t)n + 8, size, tensors, nt, &meta, &hl);
    if (rc == QD_OK && sha256(buf, (size_t)n + 8, f->header_sha256) != 0)
        rc = qd_err_set(QD_EIO, "%s: SHA-256 of the header failed", path);
    free(buf);
    if (rc != QD_OK) {
        close(fd);
        return rc;
    }
    for (int i = 0; i < *nt; i++) (*tensors)[i].file_index = fidx;
    f->path = strdup(path);
    f->size = size;
    f->header_len = hl;
    f->metadata_json = meta;
    m->fd = fd;
    if (!f->path) {
        qd_st_free_tensors(*tensors, *nt);
        *tensors = NULL;
        free(meta);
        f->metadata_json = NULL;
        close(fd);
        m->fd = -1;
        return qd_err_set(QD_ENOMEM, "%s: out of memory", path);
    }
    return QD_OK;
}

/* ---- checkpoint ---------------------------------------------------------------------------- */

static qd_checkpoint *ckpt_new(int nfiles)
{
    qd_checkpoint *ck = calloc(1, sizeof *ck);
    if (!ck) return NULL;
    ck->files = calloc((size_t)nfiles, sizeof *ck->files);
    ck->maps = calloc((size_t)nfiles, sizeof *ck->maps);
    if (!ck->files || !ck->maps) {
        free(ck->files);
        free(ck->maps);
        free(ck);
        return NULL;
    }
    for (int i = 0; i < nfiles; i++) ck->maps[i].fd = -1;
    pthread_mutex_init(&ck->lock, NULL);
    return ck;
}

void qd_ckpt_close(qd_checkpoint *ck)
{
    if (!ck) return;
    for (int i = 0; i < ck->nfiles; i++) {
        if (ck->maps[i].map) munmap((void *)ck->maps[i].map, ck->maps[i].maplen);
        if (ck->maps[i].fd >= 0) close(ck->maps[i].fd);
        free(ck->files[i].path);
        free(ck->files[i].metadata_json);
    }
    qd_st_free_tensors(ck->tensors, ck->ntensors);
    free(ck->files);
    free(ck->maps);
    free(ck->dir);
    pthread_mutex_destroy(&ck->lock);
    free(ck);
}

static int open_single(const char *path, qd_checkpoint **out)
{
    qd_checkpoint *ck = ckpt_new(1);
    if (!ck) return qd_err_set(QD_ENOMEM, "%s: out of memory", path);
    int rc = load_file(path, 0, &ck->files[0], &ck->maps[0], &ck->tensors, &ck->ntensors);
    if (rc != QD_OK) {
        qd_ckpt_close(ck);
        return rc;
    }
    ck->nfiles = 1;
    ck->dir = qd_path_dirname(path);
    if (!ck->dir) {
        qd_ckpt_close(ck);
        return qd_err_set(QD_ENOMEM, "%s: out of memory", path);
    }
    *out = ck;
    return QD_OK;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int cmp_name_ti(const void *a, const void *b)
{
    return strcmp(((const qd_tensor_info *)a)->name, ((const qd_tensor_info *)b)->name);
}

typedef struct {
    const char *tensor;
    const char *file;
} wm_entry;

static int cmp_wm(const void *a, const void *b)
{
    return strcmp(((const wm_entry *)a)->tensor, ((const wm_entry *)b)->tensor);
}

/* A shard file name from an index: relative, no ".." component. */
static int safe_rel_name(const char *s)
{
    if (!*s || s[0] == '/') return 0;
    const char *p = s;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.') return 0;
        if (!e) break;
        p = e + 1;
    }
    return 1;
}

/* The index's weight_map as entries sorted by tensor (pointing into root) and its distinct shard
 * files in name order (the same on every rank). *wm and *files are malloc'd even on failure. */
static int read_weight_map(const char *ipath, const cJSON *root, wm_entry **wm_out, int *nwm_out, char ***files_out,
                           int *nfiles_out)
{
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(map))
        return qd_err_set(QD_EFORMAT, "%s: no \"weight_map\" object", ipath);
    int nwm = 0, nfiles = 0;
    for (const cJSON *c = map->child; c; c = c->next) nwm++;
    wm_entry *wm = *wm_out = calloc((size_t)nwm + 1, sizeof *wm);
    char **files = *files_out = calloc((size_t)nwm + 1, sizeof *files);
    if (!wm || !files) return qd_err_set(QD_ENOMEM, "%s: out of memory", ipath);
    int k = 0;
    for (const cJSON *c = map->child; c; c = c->next, k++) {
        const char *tn = c->string ? c->string : "";
        if (!cJSON_IsString(c) || !c->valuestring || !safe_rel_name(c->valuestring))
            return qd_err_set(QD_EFORMAT,
                              "%s: tensor '%s': weight_map value is not a relative "
                              "file name",
                              ipath, tn);
        wm[k].tensor = tn;
        wm[k].file = c->valuestring;
        files[k] = c->valuestring;
    }
    qsort(wm, (size_t)nwm, sizeof *wm, cmp_wm);
    for (int i = 1; i < nwm; i++)
        if (!strcmp(wm[i - 1].tensor, wm[i].tensor))
            return qd_err_set(QD_EFORMAT, "%s: tensor '%s': listed twice in weight_map", ipath, wm[i].tensor);
    qsort(files, (size_t)nwm, sizeof *files, cmp_str);
    for (int i = 0; i < nwm; i++)
        if (!nfiles || strcmp(files[nfiles - 1], files[i])) files[nfiles++] = files[i];
    if (nfiles == 0) return qd_err_set(QD_EFORMAT, "%s: weight_map is empty", ipath);
    *nwm_out = nwm;
    *nfiles_out = nfiles;
    return QD_OK;
}

/* Shard i's tensors merged into ck->tensors (which has room), each checked against the index:
 * present in weight_map and mapped to this shard. Ownership of the names moves into ck. */
static int merge_shard(const char *ipath, const char *file, qd_tensor_info *ft, int fn, const wm_entry *wm, int nwm,
                       qd_checkpoint *ck)
{
    int rc = QD_OK;
    for (int j = 0; j < fn && rc == QD_OK; j++) {
        qd_tensor_info *t = &ft[j];
        wm_entry key = {.tensor = t->name};
        const wm_entry *e = bsearch(&key, wm, (size_t)nwm, sizeof *wm, cmp_wm);
        if (!e)
            rc = qd_err_set(QD_EFORMAT,
                            "%s: tensor '%s': in shard '%s' but not in the "
                            "index's weight_map",
                            ipath, t->name, file);
        else if (strcmp(e->file, file))
            rc = qd_err_set(QD_EFORMAT,
                            "%s: tensor '%s': found in shard '%s' but the "
                            "index maps it to '%s'",
                            ipath, t->name, file, e->file);
        if (rc == QD_OK) {
            ck->tensors[ck->ntensors++] = *t;
            t->name = NULL;
        }
    }
    return rc;
}

/* Every shard of the index loaded into ck (ck->files, ck->tensors sorted by name), and the index
 * and the shards agreeing on every tensor. */
static int load_shards(const char *ipath, const char *dir, char **files, int nfiles, const wm_entry *wm, int nwm,
                       qd_checkpoint *ck)
{
    qd_tensor_info **ft = calloc((size_t)nfiles, sizeof *ft);
    int *fn = calloc((size_t)nfiles, sizeof *fn);
    int total = 0, rc = QD_OK;
    if (!ft || !fn) rc = qd_err_set(QD_ENOMEM, "%s: out of memory", ipath);
    for (int i = 0; i < nfiles && rc == QD_OK; i++) {
        char *sp = qd_path_join(dir, files[i]);
        if (!sp) {
            rc = qd_err_set(QD_ENOMEM, "%s: out of memory", ipath);
            break;
        }
        rc = load_file(sp, i, &ck->files[i], &ck->maps[i], &ft[i], &fn[i]);
        if (rc == QD_OK) {
            ck->nfiles = i + 1;
            total += fn[i];
        } else if (rc == QD_ENOENT) {
            const char *who = "?";
            for (int j = 0; j < nwm; j++)
                if (!strcmp(wm[j].file, files[i])) {
                    who = wm[j].tensor;
                    break;
                }
            rc = qd_err_set(QD_ENOENT, "%s: tensor '%s': shard file '%s' does not exist", ipath, who, sp);
        }
        free(sp);
    }
    if (rc == QD_OK) {
        ck->tensors = calloc((size_t)total + 1, sizeof *ck->tensors);
        if (!ck->tensors) rc = qd_err_set(QD_ENOMEM, "%s: out of memory", ipath);
    }
    for (int i = 0; ft && fn && i < nfiles; i++) {
        if (rc == QD_OK) rc = merge_shard(ipath, files[i], ft[i], fn[i], wm, nwm, ck);
        qd_st_free_tensors(ft[i], fn[i]);
    }
    free(ft);
    free(fn);
    if (rc != QD_OK) return rc;
    qsort(ck->tensors, (size_t)ck->ntensors, sizeof *ck->tensors, cmp_name_ti);
    /* all shard tensors are in the map (checked) and names are unique within a shard; a name in
     * two shards maps to only one of them (checked) -> tensors are unique, and every index entry
     * must have been found */
    if (ck->ntensors == nwm) return QD_OK;
    for (int i = 0; i < nwm; i++)
        if (qd_ckpt_find(ck, wm[i].tensor) < 0)
            return qd_err_set(QD_EFORMAT,
                              "%s: tensor '%s': the index maps it to shard "
                              "'%s', which does not contain it",
                              ipath, wm[i].tensor, wm[i].file);
    return qd_err_set(QD_EFORMAT, "%s: %d tensors in the shards but %d in the index", ipath, ck->ntensors, nwm);
}

static int open_index(const char *ipath, qd_checkpoint **out)
{
    char *text = NULL;
    size_t len = 0;
    int rc = qd_read_file(ipath, QD_MAX_INDEX_BYTES, "an index", &text, &len);
    if (rc) return rc;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root) return qd_err_set(QD_EFORMAT, "%s: not valid JSON", ipath);
    qd_checkpoint *ck = NULL;
    wm_entry *wm = NULL;
    char **files = NULL;
    int nwm = 0, nfiles = 0;
    char *dir = qd_path_dirname(ipath);
    if (!dir)
        rc = qd_err_set(QD_ENOMEM, "%s: out of memory", ipath);
    else
        rc = read_weight_map(ipath, root, &wm, &nwm, &files, &nfiles);
    if (rc == QD_OK && !(ck = ckpt_new(nfiles))) rc = qd_err_set(QD_ENOMEM, "%s: out of memory", ipath);
    if (rc == QD_OK) rc = load_shards(ipath, dir, files, nfiles, wm, nwm, ck);
    free(wm);
    free(files);
    cJSON_Delete(root);
    if (rc != QD_OK) {
        qd_ckpt_close(ck);
        free(dir);
        return rc;
    }
    ck->dir = dir;
    *out = ck;
    return QD_OK;
}

int qd_ckpt_open(const char *path, qd_checkpoint **out)
{
    if (!path || !out) return qd_err_set(QD_EINVAL, "qd_ckpt_open: NULL argument");
    *out = NULL;
    struct stat st;
    if (stat(path, &st) != 0) return open_error(path, errno);
    if (S_ISDIR(st.st_mode)) {
        char *ip = qd_path_join(path, QD_INDEX_NAME);
        char *sp = qd_path_join(path, QD_SINGLE_NAME);
        char *tip = qd_path_join(path, QD_PT_INDEX_NAME);
        char *tsp = qd_path_join(path, QD_PT_SINGLE_NAME);
        int rc;
        if (!ip || !sp || !tip || !tsp)
            rc = qd_err_set(QD_ENOMEM, "%s: out of memory", path);
        else if (qd_is_file(ip))
            rc = open_index(ip, out);
        else if (qd_is_file(sp))
            rc = open_single(sp, out);
        else if (qd_is_file(tip))
            rc = open_index(tip, out);
        else if (qd_is_file(tsp))
            rc = open_single(tsp, out);
        else
            rc = qd_err_set(QD_ENOENT,
                            "%s: directory holds neither " QD_SINGLE_NAME " nor " QD_INDEX_NAME
                            " (nor " QD_PT_SINGLE_NAME " nor " QD_PT_INDEX_NAME ")",
                            path);
        free(ip);
        free(sp);
        free(tip);
        free(tsp);
        return rc;
    }
    if (qd_ends_with(path, ".json")) return open_index(path, out);
    return open_single(path, out);
}

const char *qd_ckpt_dir(const qd_checkpoint *ck) { return ck->dir; }
int qd_ckpt_num_files(const qd_checkpoint *ck) { return ck->nfiles; }

const qd_st_file *qd_ckpt_file(const qd_checkpoint *ck, int i)
{
    QD_ASSERT(i >= 0 && i < ck->nfiles);
    return &ck->files[i];
}

int qd_ckpt_num_tensors(const qd_checkpoint *ck) { return ck->ntensors; }

const qd_tensor_info *qd_ckpt_tensor(const qd_checkpoint *ck, int i)
{
    QD_ASSERT(i >= 0 && i < ck->ntensors);
    return &ck->tensors[i];
}

int qd_ckpt_find(const qd_checkpoint *ck, const char *name)
{
    int lo = 0, hi = ck->ntensors - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(ck->tensors[mid].name, name);
        if (c == 0) return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

static int map_file(qd_checkpoint *ck, int f)
{
    int rc = QD_OK;
    pthread_mutex_lock(&ck->lock);
    qd_st_map *m = &ck->maps[f];
    if (!m->map) {
        size_t len = (size_t)ck->files[f].size;
        struct stat st;
        if (fstat(m->fd, &st) != 0 || (uint64_t)st.st_size != ck->files[f].size) {
            rc = qd_err_set(QD_EIO, "%s: file changed size since it was opened", ck->files[f].path);
        } else {
            void *p = mmap(NULL, len, PROT_READ, MAP_PRIVATE, m->fd, 0);
            if (p == MAP_FAILED)
                rc = qd_err_set(QD_EIO, "%s: mmap of %zu bytes failed: %s", ck->files[f].path, len, strerror(errno));
            else {
                m->map = p;
                m->maplen = len;
            }
        }
    }
    pthread_mutex_unlock(&ck->lock);
    return rc;
}

int qd_ckpt_raw(qd_checkpoint *ck, int i, const void **data)
{
    QD_ASSERT(i >= 0 && i < ck->ntensors);
    const qd_tensor_info *t = &ck->tensors[i];
    int rc = map_file(ck, t->file_index);
    if (rc) return rc;
    const qd_st_map *m = &ck->maps[t->file_index];
    QD_ASSERT(t->offset <= m->maplen && t->nbytes <= m->maplen - t->offset);
    *data = m->map + t->offset;
    return QD_OK;
}

/* Convert n elements starting at element e0 of a float-like tensor to F32. */
static void convert_f32(qd_dtype dt, const unsigned char *src, uint64_t e0, size_t n, float *dst)
{
    switch (dt) {
    case QD_DT_F32: memcpy(dst, src + e0 * 4, n * 4); break;
    case QD_DT_F16:
    case QD_DT_BF16: {
        const unsigned char *p = src + e0 * 2;
        for (size_t k = 0; k < n; k++) {
            uint16_t h;
            memcpy(&h, p + 2 * k, 2);
            dst[k] = dt == QD_DT_F16 ? qd_f16_to_f32(h) : qd_bf16_to_f32(h);
        }
        break;
    }
    case QD_DT_F64: {
        const unsigned char *p = src + e0 * 8;
        for (size_t k = 0; k < n; k++) {
            double d;
            memcpy(&d, p + 8 * k, 8);
            dst[k] = (float)d;
        }
        break;
    }
    default: QD_ASSERT(!"not a float dtype");
    }
}

int qd_ckpt_read_f32(qd_checkpoint *ck, int i, const float **data, int *owned)
{
    QD_ASSERT(i >= 0 && i < ck->ntensors);
    const qd_tensor_info *t = &ck->tensors[i];
    *data = NULL;
    *owned = 0;
    if (!t->float_like)
        return qd_err_set(QD_EDTYPE, "%s: tensor '%s': dtype %s cannot be read as F32", ck->files[t->file_index].path,
                          t->name, qd_dtype_name(t->dtype));
    const void *raw;
    int rc = qd_ckpt_raw(ck, i, &raw);
    if (rc) return rc;
    if (t->dtype == QD_DT_F32 && ((uintptr_t)raw % _Alignof(float)) == 0) {
        *data = raw;
        return QD_OK;
    }
    if (t->numel > SIZE_MAX / sizeof(float))
        return qd_err_set(QD_ENOMEM, "%s: tensor '%s': too large", ck->files[t->file_index].path, t->name);
    float *buf = malloc(t->numel ? (size_t)t->numel * sizeof(float) : 1);
    if (!buf)
        return qd_err_set(QD_ENOMEM, "%s: tensor '%s': out of memory for %llu floats", ck->files[t->file_index].path,
                          t->name, (unsigned long long)t->numel);
    convert_f32(t->dtype, raw, 0, (size_t)t->numel, buf);
    *data = buf;
    *owned = 1;
    return QD_OK;
}

void qd_ckpt_forget(qd_checkpoint *ck, int i)
{
    QD_ASSERT(i >= 0 && i < ck->ntensors);
    const qd_tensor_info *t = &ck->tensors[i];
    const qd_st_map *m = &ck->maps[t->file_index];
    if (!m->map || !t->nbytes) return;
    /* whole pages only: a page shared with a neighbour is dropped too, and simply read again */
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)(m->map + t->offset) & ~(pg - 1);
    const uintptr_t e = ((uintptr_t)(m->map + t->offset + t->nbytes) + pg - 1) & ~(pg - 1);
    (void)madvise((void *)a, e - a, MADV_DONTNEED); /* a read-only private map: nothing is lost */
}

int qd_ckpt_read_rows_f32(qd_checkpoint *ck, int i, int64_t row0, int64_t nrows, float *dst)
{
    QD_ASSERT(i >= 0 && i < ck->ntensors);
    const qd_tensor_info *t = &ck->tensors[i];
    const char *fp = ck->files[t->file_index].path;
    if (!t->float_like)
        return qd_err_set(QD_EDTYPE, "%s: tensor '%s': dtype %s cannot be read as F32", fp, t->name,
                          qd_dtype_name(t->dtype));
    int64_t rows = t->ndim > 0 ? t->shape[0] : 1;
    uint64_t cols = rows > 0 ? t->numel / (uint64_t)rows : 0;
    if (row0 < 0 || nrows < 0 || row0 > rows || nrows > rows - row0)
        return qd_err_set(QD_EINVAL, "%s: tensor '%s': rows [%lld, %lld) outside [0, %lld)", fp, t->name,
                          (long long)row0, (long long)(row0 + nrows), (long long)rows);
    if (nrows == 0 || cols == 0) return QD_OK;
    const void *raw;
    int rc = qd_ckpt_raw(ck, i, &raw);
    if (rc) return rc;
    convert_f32(t->dtype, raw, (uint64_t)row0 * cols, (size_t)((uint64_t)nrows * cols), dst);
    return QD_OK;
}
