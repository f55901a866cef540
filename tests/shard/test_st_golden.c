/* The safetensors reader on the real vit-mnist-tiny checkpoint: tensor table, values, header
 * SHA-256 (all reference values computed independently with Python's struct/json/hashlib), row
 * reads, and the same checkpoint split by this test into two shards + an index. */
#include <inttypes.h>

#include "qd_test.h"
#include "shard/safetensors.h"
#include "shard/select.h"
#include "st_testutil.h"

static float bits_f(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t f_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Reference values: python3 struct.unpack('<f', ...) on the file, printed as hex bytes. */
static const struct {
    const char *name;
    int idx;
    uint32_t bits;
} k_values[] = {
    {"classifier.bias", 0, 0xbe379fbau},     /* -0.17932024598121643 */
    {"classifier.bias", 9, 0x3dca701du},     /* 0.09884665161371231 */
    {"classifier.weight", 197, 0x3ea15306u}, /* 0.3150865435600281 */
    {"vit.encoder.layer.3.attention.attention.query.weight", 0, 0xbdd9a252u},
    {"vit.encoder.layer.3.attention.attention.query.weight", 6407, 0x3d79a4ffu},
    {"vit.encoder.layer.5.output.dense.weight", 8191, 0x3f019c7eu}, /* 0.5062941312789917 */
    {"vit.layernorm.weight", 10, 0x3f9c9710u},                      /* 1.2233600616455078 */
};

static const char *k_sha256 = "921c57c6b3a202868435ef686e7657fe7cd40bed458dcdcc5332f63a3ab87b04";

static void hex(const unsigned char *d, int n, char *out)
{
    for (int i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

static void check_values(qd_checkpoint *ck)
{
    for (size_t v = 0; v < QD_ARRAY_LEN(k_values); v++) {
        int i = qd_ckpt_find(ck, k_values[v].name);
        CHECK_MSG(i >= 0, "%s", k_values[v].name);
        if (i < 0) continue;
        const float *d;
        int owned = -1;
        CHECK_EQ(qd_ckpt_read_f32(ck, i, &d, &owned), QD_OK);
        CHECK_EQ(owned, 0); /* F32, aligned: zero-copy */
        CHECK_EQ(f_bits(d[k_values[v].idx]), k_values[v].bits);
        CHECK_EQ(d[k_values[v].idx], bits_f(k_values[v].bits));
    }
}

/* Tables equal apart from file_index/offset; data equal byte for byte. */
static void check_same(qd_checkpoint *a, qd_checkpoint *b)
{
    CHECK_EQ(qd_ckpt_num_tensors(a), qd_ckpt_num_tensors(b));
    int n = QD_MIN(qd_ckpt_num_tensors(a), qd_ckpt_num_tensors(b));
    for (int i = 0; i < n; i++) {
        const qd_tensor_info *x = qd_ckpt_tensor(a, i), *y = qd_ckpt_tensor(b, i);
        CHECK_STREQ(x->name, y->name);
        CHECK_EQ(x->dtype, y->dtype);
        CHECK_EQ(x->ndim, y->ndim);
        for (int k = 0; k < x->ndim; k++) CHECK_EQ(x->shape[k], y->shape[k]);
        CHECK_EQ(x->nbytes, y->nbytes);
        const void *px, *py;
        CHECK_EQ(qd_ckpt_raw(a, i, &px), QD_OK);
        CHECK_EQ(qd_ckpt_raw(b, i, &py), QD_OK);
        CHECK_MSG(memcmp(px, py, x->nbytes) == 0, "data of %s differs", x->name);
    }
}

/* Write tensors [lo, hi) of ck as one safetensors file (header padded to 8 bytes). */
static void write_shard(qd_checkpoint *ck, int lo, int hi, const char *path)
{
    size_t cap = 1 << 20, len = 0;
    char *js = malloc(cap);
    len += (size_t)snprintf(js + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t off = 0;
    for (int i = lo; i < hi; i++) {
        const qd_tensor_info *t = qd_ckpt_tensor(ck, i);
        len += (size_t)snprintf(js + len, cap - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t->name,
                                qd_dtype_name(t->dtype));
        for (int k = 0; k < t->ndim; k++)
            len += (size_t)snprintf(js + len, cap - len, "%s%" PRId64, k ? "," : "", t->shape[k]);
        len += (size_t)snprintf(js + len, cap - len, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off,
                                off + t->nbytes);
        off += t->nbytes;
    }
    js[len++] = '}';
    while ((len + 8) % 8) js[len++] = ' ';
    unsigned char *data = malloc(off ? off : 1);
    off = 0;
    for (int i = lo; i < hi; i++) {
        const void *p;
        qd_ckpt_raw(ck, i, &p);
        memcpy(data + off, p, qd_ckpt_tensor(ck, i)->nbytes);
        off += qd_ckpt_tensor(ck, i)->nbytes;
    }
    FILE *f = fopen(path, "wb");
    uint64_t n = len;
    unsigned char h[8];
    for (int i = 0; i < 8; i++) h[i] = (unsigned char)(n >> (8 * i));
    fwrite(h, 1, 8, f);
    fwrite(js, 1, len, f);
    fwrite(data, 1, off, f);
    fclose(f);
    free(js);
    free(data);
}

static void test_sharded(qd_checkpoint *single)
{
    char *dir = st_mkdtemp("shards");
    int n = qd_ckpt_num_tensors(single), half = n / 2;
    char *p1 = st_path(dir, "model-00001-of-00002.safetensors");
    char *p2 = st_path(dir, "model-00002-of-00002.safetensors");
    write_shard(single, 0, half, p1);
    write_shard(single, half, n, p2);
    char *ip = st_path(dir, "model.safetensors.index.json");
    FILE *f = fopen(ip, "w");
    fprintf(f, "{\"metadata\":{\"total_size\":0},\"weight_map\":{");
    for (int i = n - 1; i >= 0; i--) /* reverse order: the reader must sort */
        fprintf(f, "%s\"%s\":\"model-0000%d-of-00002.safetensors\"", i == n - 1 ? "" : ",",
                qd_ckpt_tensor(single, i)->name, i < half ? 1 : 2);
    fprintf(f, "}}\n");
    fclose(f);

    for (int via = 0; via < 2; via++) { /* the index itself, then the directory */
        qd_checkpoint *sh = NULL;
        int rc = qd_ckpt_open(via ? dir : ip, &sh);
        CHECK_MSG(rc == QD_OK, "%s", qd_errmsg());
        if (rc) continue;
        CHECK_EQ(qd_ckpt_num_files(sh), 2);
        CHECK_STREQ(qd_ckpt_file(sh, 0)->path, p1);
        CHECK_STREQ(qd_ckpt_file(sh, 1)->path, p2);
        CHECK_STREQ(qd_ckpt_dir(sh), dir);
        CHECK_STREQ(qd_ckpt_file(sh, 0)->metadata_json, "{\"format\":\"pt\"}");
        check_same(single, sh);
        check_values(sh);
        int last = qd_ckpt_find(sh, qd_ckpt_tensor(single, n - 1)->name);
        CHECK_EQ(qd_ckpt_tensor(sh, last)->file_index, 1);
        CHECK_EQ(qd_ckpt_tensor(sh, 0)->file_index, 0);
        qd_ckpt_close(sh);
    }
    free(p1);
    free(p2);
    free(ip);
    st_rmtree(dir);
    free(dir);
}

int main(void)
{
    char dir[1024], path[1100];
    snprintf(dir, sizeof dir, "%s/vit-mnist-tiny", qd_test_models_dir());
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    qd_checkpoint *ck = NULL;
    int rc = qd_ckpt_open(path, &ck);
    CHECK_MSG(rc == QD_OK, "%s", qd_errmsg());
    if (rc) QD_TEST_MAIN_END();

    CHECK_EQ(qd_ckpt_num_files(ck), 1);
    CHECK_STREQ(qd_ckpt_dir(ck), dir);
    const qd_st_file *f = qd_ckpt_file(ck, 0);
    CHECK_EQ(f->size, 2008352);
    CHECK_EQ(f->header_len, 9456);
    char h[65];
    hex(f->header_sha256, 32, h);
    CHECK_STREQ(h, k_sha256);
    CHECK_CONTAINS(f->metadata_json, "\"format\":\"pt\"");
    CHECK_CONTAINS(f->metadata_json, "vit-mnist-explorations@325a984b");

    CHECK_EQ(qd_ckpt_num_tensors(ck), 86);
    uint64_t params = 0, bytes = 0;
    int nquant = 0;
    for (int i = 0; i < qd_ckpt_num_tensors(ck); i++) {
        const qd_tensor_info *t = qd_ckpt_tensor(ck, i);
        params += t->numel;
        bytes += t->nbytes;
        CHECK_EQ(t->dtype, QD_DT_F32);
        CHECK(t->float_like);
        if (i) CHECK_LT(strcmp(qd_ckpt_tensor(ck, i - 1)->name, t->name), 0);
        nquant += qd_shard_default_quantizable(t);
    }
    CHECK_EQ(params, 499722);
    CHECK_EQ(bytes, 4 * 499722);
    CHECK_EQ(nquant, 36); /* 6 blocks x (q, k, v, attn out, intermediate, output) */
    CHECK_STREQ(qd_ckpt_tensor(ck, 0)->name, "classifier.bias");
    CHECK_STREQ(qd_ckpt_tensor(ck, 85)->name, "vit.layernorm.weight");
    CHECK_EQ(qd_ckpt_tensor(ck, 0)->offset, 8 + 9456);

    int i = qd_ckpt_find(ck, "vit.embeddings.patch_embeddings.projection.weight");
    CHECK_GE(i, 0);
    const qd_tensor_info *t = qd_ckpt_tensor(ck, i);
    CHECK_EQ(t->ndim, 4);
    CHECK_EQ(t->shape[0], 64);
    CHECK_EQ(t->shape[1], 1);
    CHECK_EQ(t->shape[2], 4);
    CHECK_EQ(t->shape[3], 4);
    CHECK_EQ(t->offset, 8 + 9456 + 3112);
    CHECK_EQ(qd_shard_default_quantizable(t), 0);
    i = qd_ckpt_find(ck, "vit.embeddings.position_embeddings");
    CHECK_EQ(qd_ckpt_tensor(ck, i)->ndim, 3);
    CHECK_EQ(qd_ckpt_tensor(ck, i)->shape[1], 50);
    i = qd_ckpt_find(ck, "vit.encoder.layer.0.attention.output.dense.weight");
    CHECK_EQ(qd_ckpt_tensor(ck, i)->shape[0], 64);
    CHECK_EQ(qd_ckpt_tensor(ck, i)->shape[1], 256);
    CHECK_EQ(qd_shard_default_quantizable(qd_ckpt_tensor(ck, i)), 1);
    CHECK_EQ(qd_ckpt_find(ck, "vit.encoder.layer.0.attention.attention.query.bias"), -1);
    CHECK_EQ(qd_ckpt_find(ck, ""), -1);
    CHECK_EQ(qd_ckpt_find(ck, "zzz"), -1);
    check_values(ck);

    /* rows [100, 103) of a [256, 64] weight, and bounds */
    i = qd_ckpt_find(ck, "vit.encoder.layer.3.attention.attention.query.weight");
    float rows[3 * 64];
    CHECK_EQ(qd_ckpt_read_rows_f32(ck, i, 100, 3, rows), QD_OK);
    CHECK_EQ(f_bits(rows[7]), 0x3d79a4ffu); /* element 100*64+7 */
    const float *full;
    int owned;
    CHECK_EQ(qd_ckpt_read_f32(ck, i, &full, &owned), QD_OK);
    CHECK(memcmp(rows, full + 100 * 64, sizeof rows) == 0);
    CHECK_EQ(qd_ckpt_read_rows_f32(ck, i, 255, 1, rows), QD_OK);
    CHECK(memcmp(rows, full + 255 * 64, 64 * sizeof(float)) == 0);
    CHECK_EQ(qd_ckpt_read_rows_f32(ck, i, 256, 0, rows), QD_OK);
    CHECK_EQ(qd_ckpt_read_rows_f32(ck, i, 255, 2, rows), QD_EINVAL);
    CHECK_CONTAINS(qd_errmsg(), "query.weight");
    CHECK_EQ(qd_ckpt_read_rows_f32(ck, i, -1, 1, rows), QD_EINVAL);

    /* the directory opens the same file */
    qd_checkpoint *ck2 = NULL;
    CHECK_EQ(qd_ckpt_open(dir, &ck2), QD_OK);
    if (ck2) {
        CHECK_STREQ(qd_ckpt_file(ck2, 0)->path, path);
        check_same(ck, ck2);
        qd_ckpt_close(ck2);
    }

    test_sharded(ck);
    qd_ckpt_close(ck);
    QD_TEST_MAIN_END();
}
