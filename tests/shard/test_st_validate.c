/* Strict validation of safetensors files and sharded checkpoints: one crafted bad file per rule,
 * each expecting its specific QD_E* code and a message that names the file and the tensor. Also
 * the valid edge cases (padding, zero-sized and scalar tensors, other dtypes). */
#include "qd_test.h"
#include "shard/safetensors.h"
#include "st_testutil.h"

static char *g_dir;
static int g_seq;

/* Open `path`, expect `code`, and a message containing the file path and `tensor` (if any). */
#define EXPECT_FAIL(path, code, tensor)                                            \
    do {                                                                           \
        qd_checkpoint *ck_ = NULL;                                                 \
        qd_err_clear();                                                            \
        int rc_ = qd_ckpt_open((path), &ck_);                                      \
        CHECK_EQ(rc_, (code));                                                     \
        CHECK(ck_ == NULL);                                                        \
        CHECK_CONTAINS(qd_errmsg(), (path));                                       \
        if ((tensor) != NULL) CHECK_CONTAINS(qd_errmsg(), (const char *)(tensor)); \
        if (rc_ == QD_OK)                                                          \
            qd_ckpt_close(ck_);                                                    \
        else                                                                       \
            printf("  ok (%s): %s\n", qd_errname(rc_), qd_errmsg());               \
    } while (0)

/* a bad single file with a proper length prefix */
static char *mk(const char *json, size_t data_len)
{
    char name[64];
    snprintf(name, sizeof name, "case%03d.safetensors", g_seq++);
    return st_write(g_dir, name, json, NULL, data_len);
}

static void bad(const char *json, size_t data_len, int code, const char *tensor)
{
    char *p = mk(json, data_len);
    EXPECT_FAIL(p, code, tensor);
    free(p);
}

static qd_checkpoint *good(const char *json, const void *data, size_t data_len)
{
    char name[64];
    snprintf(name, sizeof name, "good%03d.safetensors", g_seq++);
    char *p = st_write(g_dir, name, json, data, data_len);
    qd_checkpoint *ck = NULL;
    int rc = qd_ckpt_open(p, &ck);
    CHECK_MSG(rc == QD_OK, "%s: %s", json, qd_errmsg());
    free(p);
    return ck;
}

#define E(dt, shape, b, e) "{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

static void test_file_rules(void)
{
    char *p;
    /* truncated: fewer than 8 bytes */
    p = st_path(g_dir, "short.safetensors");
    st_write_bytes(p, "\x10\x00\x00", 3);
    EXPECT_FAIL(p, QD_EFORMAT, "truncated");
    free(p);
    /* empty file */
    p = st_path(g_dir, "empty.safetensors");
    st_write_bytes(p, "", 0);
    EXPECT_FAIL(p, QD_EFORMAT, "truncated");
    free(p);
    /* header length larger than the file */
    p = st_write_raw(g_dir, "hlen_big.safetensors", 4096, "{}", 2, NULL, 0);
    EXPECT_FAIL(p, QD_EFORMAT, "larger than the file");
    free(p);
    /* header length over 100 MiB (file is small) */
    p = st_write_raw(g_dir, "hlen_huge.safetensors", (uint64_t)200 << 20, "{}", 2, NULL, 0);
    EXPECT_FAIL(p, QD_EFORMAT, "MiB limit");
    free(p);
    p = st_write_raw(g_dir, "hlen_max.safetensors", UINT64_MAX, "{}", 2, NULL, 0);
    EXPECT_FAIL(p, QD_EFORMAT, "MiB limit");
    free(p);
    /* invalid JSON, not an object, trailing garbage, not UTF-8, NUL inside */
    bad("{\"a\": ", 0, QD_EFORMAT, "not valid JSON");
    bad("{\"a\":" E("F32", "[1]", 0, 4) ",}", 4, QD_EFORMAT, "not valid JSON");
    bad("[1, 2]", 0, QD_EFORMAT, "start with '{'");
    bad("  {}", 0, QD_EFORMAT, "start with '{'");
    bad("{} x", 0, QD_EFORMAT, "trailing bytes");
    bad("{}{}", 0, QD_EFORMAT, "trailing bytes");
    bad("{\"a\xff\":" E("F32", "[1]", 0, 4) "}", 4, QD_EFORMAT, "UTF-8");
    bad("{\"a\xc0\x80\":" E("F32", "[1]", 0, 4) "}", 4, QD_EFORMAT, "UTF-8");     /* overlong */
    bad("{\"a\xed\xa0\x80\":" E("F32", "[1]", 0, 4) "}", 4, QD_EFORMAT, "UTF-8"); /* surrogate */
    p = st_write_raw(g_dir, "nul.safetensors", 3, "{}\0", 3, NULL, 0);
    EXPECT_FAIL(p, QD_EFORMAT, "trailing bytes");
    free(p);
    /* metadata must be a string->string map, once */
    bad("{\"__metadata__\":[1]}", 0, QD_EFORMAT, "__metadata__");
    bad("{\"__metadata__\":{\"n\":1}}", 0, QD_EFORMAT, "'n'");
    bad("{\"__metadata__\":{},\"__metadata__\":{}}", 0, QD_EFORMAT, "duplicate \"__metadata__\"");

    /* missing / ill-typed fields */
    bad("{\"w\":5}", 0, QD_EFORMAT, "'w'");
    bad("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, QD_EFORMAT, "'w': missing \"dtype\"");
    bad("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, QD_EFORMAT, "'w': missing \"shape\"");
    bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, QD_EFORMAT, "'w': missing \"data_offsets\"");
    bad("{\"w\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, QD_EFORMAT, "'w': \"dtype\" is not");
    bad("{\"w\":" E("F32", "4", 0, 4) "}", 4, QD_EFORMAT, "'w': \"shape\" is not an array");
    bad("{\"w\":" E("F32", "[-1]", 0, 4) "}", 4, QD_EFORMAT, "'w': shape[0]");
    bad("{\"w\":" E("F32", "[1.5]", 0, 4) "}", 4, QD_EFORMAT, "'w': shape[0]");
    bad("{\"w\":" E("F32", "[1,\"2\"]", 0, 8) "}", 8, QD_EFORMAT, "'w': shape[1]");
    bad("{\"w\":" E("F32", "[1,1,1,1,1,1,1,1,1]", 0, 4) "}", 4, QD_EFORMAT, "'w': 9 dimensions");
    bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, QD_EFORMAT, "'w': \"data_offsets\"");
    bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4, QD_EFORMAT, "'w': \"data_offsets\"");
    bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",4]}}", 4, QD_EFORMAT, "'w': \"data_offsets\"");
    bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{\"a\":0}}}", 4, QD_EFORMAT, "'w': \"data_offsets\"");
    bad("{\"w\":" E("F32", "[1]", -4, 0) "}", 4, QD_EFORMAT, "'w': \"data_offsets\"");
    bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"dtype\":\"F16\",\"data_offsets\":[0,4]}}", 4, QD_EFORMAT,
        "'w': \"dtype\" given 2 times");
    /* unknown dtype */
    bad("{\"w\":" E("F8_E4M3", "[1]", 0, 1) "}", 1, QD_EDTYPE, "'w': unknown dtype \"F8_E4M3\"");
    bad("{\"w\":" E("f32", "[1]", 0, 4) "}", 4, QD_EDTYPE, "'w'");
    /* shape product overflow (numel and bytes) */
    bad("{\"w\":" E("F32", "[4294967296,4294967296,16]", 0, 4) "}", 4, QD_EFORMAT, "'w': shape product overflows");
    bad("{\"w\":" E("F32", "[2147483648,4294967296]", 0, 4) "}", 4, QD_EFORMAT, "'w': byte size overflows");
    /* byte span != numel * dtype size; end before begin */
    bad("{\"w\":" E("F32", "[2]", 0, 4) "}", 4, QD_EFORMAT, "'w': data_offsets [0, 4] span 4 bytes");
    bad("{\"w\":" E("F16", "[2]", 0, 8) "}", 8, QD_EFORMAT, "'w'");
    bad("{\"w\":" E("F32", "[0]", 4, 0) "}", 4, QD_EFORMAT, "'w': data_offsets [4, 0] end before begin");
    /* offsets outside the data region (a truncated file) */
    bad("{\"w\":" E("F32", "[4]", 0, 16) "}", 8, QD_EFORMAT, "'w': data_offsets [0, 16] outside the data region");
    bad("{\"a\":" E("F32", "[1]", 0, 4) ",\"w\":" E("F32", "[1]", 4, 8) "}", 6, QD_EFORMAT, "'w'");
    /* overlapping tensors */
    bad("{\"a\":" E("F32", "[2]", 0, 8) ",\"b\":" E("F32", "[2]", 4, 12) "}", 12, QD_EFORMAT,
        "'b': data [4, 12] overlaps tensor 'a'");
    bad("{\"a\":" E("F32", "[2]", 0, 8) ",\"b\":" E("F32", "[2]", 0, 8) "}", 8, QD_EFORMAT, "overlaps");
    /* holes: between tensors, before the first, after the last */
    bad("{\"a\":" E("F32", "[1]", 0, 4) ",\"b\":" E("F32", "[1]", 8, 12) "}", 12, QD_EFORMAT,
        "'b': hole in the data region: bytes [4, 8)");
    bad("{\"b\":" E("F32", "[1]", 4, 8) "}", 8, QD_EFORMAT, "'b': hole in the data region: bytes [0, 4)");
    bad("{\"a\":" E("F32", "[1]", 0, 4) "}", 8, QD_EFORMAT, "'a': hole in the data region: bytes [4, 8)");
    bad("{}", 4, QD_EFORMAT, "hole in the data region");
    /* duplicate names (cJSON keeps both keys) */
    bad("{\"a\":" E("F32", "[1]", 0, 4) ",\"a\":" E("F32", "[1]", 4, 8) "}", 8, QD_EFORMAT, "'a': duplicate name");
    /* not a file */
    EXPECT_FAIL("/nonexistent/dir/model.safetensors", QD_ENOENT, NULL);
    char *sub = st_path(g_dir, "emptydir");
    mkdir(sub, 0700);
    EXPECT_FAIL(sub, QD_ENOENT, "neither");
    free(sub);
}

static void test_valid_edges(void)
{
    /* header padded with trailing spaces; metadata kept */
    qd_checkpoint *ck = good("{\"__metadata__\":{\"k\":\"v\"},\"w\":" E("F32", "[2]", 0, 8) "}       ",
                             (const float[]){1.5f, -2.0f}, 8);
    if (ck) {
        CHECK_STREQ(qd_ckpt_file(ck, 0)->metadata_json, "{\"k\":\"v\"}");
        CHECK_EQ(qd_ckpt_tensor(ck, 0)->offset, 8 + qd_ckpt_file(ck, 0)->header_len);
        float r[2];
        CHECK_EQ(qd_ckpt_read_rows_f32(ck, 0, 0, 2, r), QD_OK);
        CHECK_EQ(r[0], 1.5f);
        CHECK_EQ(r[1], -2.0f);
        qd_ckpt_close(ck);
    }
    /* empty checkpoint */
    ck = good("{}", NULL, 0);
    if (ck) {
        CHECK_EQ(qd_ckpt_num_tensors(ck), 0);
        CHECK(qd_ckpt_file(ck, 0)->metadata_json == NULL);
        qd_ckpt_close(ck);
    }
    /* zero-sized tensors anywhere on the chain, a scalar, every dtype */
    unsigned char data[64] = {0};
    uint16_t h[3] = {0x3c00, 0xc000, 0x0001}; /* F16 1, -2, 2^-24 */
    uint16_t b[2] = {0x3f80, 0x4049};         /* BF16 1, 3.140625 */
    double d = 0.1;                           /* F64 */
    int32_t i32[2] = {7, -7};
    memcpy(data, h, 6);
    memcpy(data + 6, b, 4);
    memcpy(data + 10, &d, 8);
    memcpy(data + 18, i32, 8);
    data[26] = 1;
    ck = good(
        "{\"h\":" E("F16", "[3,1]", 0, 6) ",\"z0\":" E("F32", "[0]", 0, 0) ",\"b\":" E(
            "BF16", "[2]", 6,
            10) ",\"d\":" E("F64", "[]", 10,
                            18) ",\"i\":" E("I32", "[2]", 18,
                                            26) ",\"z1\":" E("I8", "[2,0,3]", 26,
                                                             26) ",\"t\":" E("BOOL", "[1]", 26,
                                                                             27) ",\"z2\":" E("U8", "[0]", 27, 27) "}",
        data, 27);
    if (ck) {
        CHECK_EQ(qd_ckpt_num_tensors(ck), 8);
        const char *order[] = {"b", "d", "h", "i", "t", "z0", "z1", "z2"};
        for (int k = 0; k < 8; k++) CHECK_STREQ(qd_ckpt_tensor(ck, k)->name, order[k]);
        const float *f;
        int owned;
        int ih = qd_ckpt_find(ck, "h");
        CHECK_EQ(qd_ckpt_read_f32(ck, ih, &f, &owned), QD_OK);
        CHECK_EQ(owned, 1);
        CHECK_EQ(f[0], 1.0f);
        CHECK_EQ(f[1], -2.0f);
        CHECK_EQ(f[2], 0x1p-24f);
        free((void *)f);
        float r[2];
        CHECK_EQ(qd_ckpt_read_rows_f32(ck, ih, 1, 2, r), QD_OK);
        CHECK_EQ(r[0], -2.0f);
        CHECK_EQ(r[1], 0x1p-24f);
        int ib = qd_ckpt_find(ck, "b");
        CHECK_EQ(qd_ckpt_read_f32(ck, ib, &f, &owned), QD_OK);
        CHECK_EQ(f[1], 3.140625f);
        free((void *)f);
        int id = qd_ckpt_find(ck, "d");
        CHECK_EQ(qd_ckpt_tensor(ck, id)->ndim, 0);
        CHECK_EQ(qd_ckpt_tensor(ck, id)->numel, 1);
        CHECK_EQ(qd_ckpt_read_f32(ck, id, &f, &owned), QD_OK);
        CHECK_EQ(owned, 1);
        CHECK_EQ(f[0], 0.1f);
        free((void *)f);
        CHECK_EQ(qd_ckpt_read_rows_f32(ck, id, 0, 1, r), QD_OK);
        CHECK_EQ(r[0], 0.1f);
        int ii = qd_ckpt_find(ck, "i");
        CHECK(!qd_ckpt_tensor(ck, ii)->float_like);
        CHECK_EQ(qd_ckpt_read_f32(ck, ii, &f, &owned), QD_EDTYPE);
        CHECK_CONTAINS(qd_errmsg(), "'i'");
        CHECK_EQ(qd_ckpt_read_rows_f32(ck, ii, 0, 1, r), QD_EDTYPE);
        const void *raw;
        CHECK_EQ(qd_ckpt_raw(ck, ii, &raw), QD_OK);
        int32_t iv[2];
        memcpy(iv, raw, sizeof iv); /* raw data need not be aligned */
        CHECK_EQ(iv[1], -7);
        CHECK_EQ(qd_ckpt_tensor(ck, qd_ckpt_find(ck, "z1"))->numel, 0);
        CHECK_EQ(qd_ckpt_read_f32(ck, qd_ckpt_find(ck, "z0"), &f, &owned), QD_OK);
        CHECK_EQ(qd_ckpt_tensor(ck, qd_ckpt_find(ck, "t"))->dtype, QD_DT_BOOL);
        qd_ckpt_close(ck);
    }
    /* unaligned F32 data (odd header length) is copied, not returned misaligned */
    float v[2] = {3.0f, 4.0f};
    ck = good("{\"w\":" E("F32", "[2]", 0, 8) "} ", v, 8);
    if (ck) {
        CHECK_EQ(qd_ckpt_file(ck, 0)->header_len % 4 != 0, 1);
        const float *f;
        int owned;
        CHECK_EQ(qd_ckpt_read_f32(ck, 0, &f, &owned), QD_OK);
        CHECK_EQ(owned, 1);
        CHECK_EQ(f[1], 4.0f);
        if (owned) free((void *)f);
        qd_ckpt_close(ck);
    }
}

/* an index in its own directory; shard files a.safetensors (tensors x, y) and b.safetensors (z) */
static char *mk_index(const char *tag, const char *weight_map_json, int write_b)
{
    char name[64];
    snprintf(name, sizeof name, "%s", tag);
    char *d = st_path(g_dir, name);
    mkdir(d, 0700);
    free(st_write(d, "a.safetensors", "{\"x\":" E("F32", "[1]", 0, 4) ",\"y\":" E("F32", "[1]", 4, 8) "}", NULL, 8));
    if (write_b) free(st_write(d, "b.safetensors", "{\"z\":" E("F32", "[1]", 0, 4) "}", NULL, 4));
    char *ip = st_path(d, "model.safetensors.index.json");
    st_write_bytes(ip, weight_map_json, strlen(weight_map_json));
    free(d);
    return ip;
}

static void test_index_rules(void)
{
    char *ip;
    ip =
        mk_index("ok", "{\"weight_map\":{\"z\":\"b.safetensors\",\"y\":\"a.safetensors\",\"x\":\"a.safetensors\"}}", 1);
    qd_checkpoint *ck = NULL;
    CHECK_EQ(qd_ckpt_open(ip, &ck), QD_OK);
    if (ck) {
        CHECK_EQ(qd_ckpt_num_tensors(ck), 3);
        CHECK_EQ(qd_ckpt_num_files(ck), 2);
        CHECK_EQ(qd_ckpt_tensor(ck, 2)->file_index, 1);
        CHECK_EQ(qd_ckpt_tensor(ck, 2)->offset, qd_ckpt_file(ck, 1)->header_len + 8);
        qd_ckpt_close(ck);
    }
    free(ip);
    /* the index names a shard that does not exist */
    ip = mk_index("missing",
                  "{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"b.safetensors\"}}", 0);
    EXPECT_FAIL(ip, QD_ENOENT, "'z': shard file");
    free(ip);
    /* a tensor of the index absent from its shard */
    ip = mk_index("absent",
                  "{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"b.safetensors\",\"q\":\"a."
                  "safetensors\"}}",
                  1);
    EXPECT_FAIL(ip, QD_EFORMAT, "'q': the index maps it to shard 'a.safetensors', which does not contain it");
    free(ip);
    /* a shard tensor the index does not list */
    ip = mk_index("unlisted", "{\"weight_map\":{\"x\":\"a.safetensors\",\"z\":\"b.safetensors\"}}", 1);
    EXPECT_FAIL(ip, QD_EFORMAT, "'y': in shard 'a.safetensors' but not in the index");
    free(ip);
    /* a tensor mapped to the wrong shard */
    ip = mk_index("wrong", "{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"b.safetensors\",\"z\":\"b.safetensors\"}}",
                  1);
    EXPECT_FAIL(ip, QD_EFORMAT, "'y': found in shard 'a.safetensors' but the index maps it to 'b.safetensors'");
    free(ip);
    /* duplicate key in weight_map, bad values, not JSON, no weight_map, escaping paths */
    ip = mk_index("dup", "{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"x\":\"a.safetensors\"}}",
                  0);
    EXPECT_FAIL(ip, QD_EFORMAT, "'x': listed twice");
    free(ip);
    ip = mk_index("badval", "{\"weight_map\":{\"x\":1}}", 0);
    EXPECT_FAIL(ip, QD_EFORMAT, "'x': weight_map value");
    free(ip);
    ip = mk_index("escape", "{\"weight_map\":{\"x\":\"../ok/a.safetensors\"}}", 0);
    EXPECT_FAIL(ip, QD_EFORMAT, "'x'");
    free(ip);
    ip = mk_index("abs", "{\"weight_map\":{\"x\":\"/etc/passwd\"}}", 0);
    EXPECT_FAIL(ip, QD_EFORMAT, "'x'");
    free(ip);
    ip = mk_index("notjson", "{\"weight_map\":", 0);
    EXPECT_FAIL(ip, QD_EFORMAT, "not valid JSON");
    free(ip);
    ip = mk_index("nomap", "{\"metadata\":{}}", 0);
    EXPECT_FAIL(ip, QD_EFORMAT, "weight_map");
    free(ip);
    ip = mk_index("emptymap", "{\"weight_map\":{}}", 0);
    EXPECT_FAIL(ip, QD_EFORMAT, "empty");
    free(ip);
    /* a bad shard: its own message names the shard and the tensor */
    char *d = st_path(g_dir, "badshard");
    mkdir(d, 0700);
    free(st_write(d, "a.safetensors", "{\"x\":" E("F32", "[2]", 0, 4) "}", NULL, 4));
    ip = st_path(d, "model.safetensors.index.json");
    st_write_bytes(ip, "{\"weight_map\":{\"x\":\"a.safetensors\"}}", 36);
    qd_checkpoint *c2 = NULL;
    CHECK_EQ(qd_ckpt_open(d, &c2), QD_EFORMAT); /* through the directory */
    CHECK_CONTAINS(qd_errmsg(), "badshard/a.safetensors: tensor 'x'");
    free(ip);
    free(d);
}

int main(void)
{
    g_dir = st_mkdtemp("stval");
    test_file_rules();
    test_valid_edges();
    test_index_rules();
    st_rmtree(g_dir);
    free(g_dir);
    QD_TEST_MAIN_END();
}
