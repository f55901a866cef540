/* The torch.save (pytorch_model.bin) reader: real torch fixtures (tests/reference/torch/, made by
 * tests/reference/make_torch_fixture.py with torch 2.15.0) read through qd_ckpt_open and compared
 * value for value with the same tensors in safetensors; then hostile archives and pickles built
 * here byte by byte (a GLOBAL of os.system, unknown opcodes, lying sizes, truncation, compressed
 * entries, ...) must each be refused with a clear error, and every truncation and single-byte
 * corruption of a real file must fail cleanly or parse (never crash: run under ASan+UBSan). */
#include <stdint.h>

#include "qd_test.h"
#include "shard/safetensors.h"
#include "shard/st_testutil.h"

static char g_fix[4096];
static char *g_dir;

static const char *fixture(const char *name)
{
    snprintf(g_fix, sizeof g_fix, "%s/tests/reference/torch/%s", QD_TEST_SOURCE_DIR, name);
    return g_fix;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(99);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) exit(99);
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* ---- byte buffers, pickles and stored zips ------------------------------------------------- */

typedef struct {
    unsigned char *p;
    size_t n, cap;
} bb;

static void bb_put(bb *b, const void *x, size_t n)
{
    if (!n) return;
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, x, n);
    b->n += n;
}
static void bb_s(bb *b, const char *s) { bb_put(b, s, strlen(s)); }
static void bb_u8(bb *b, unsigned v)
{
    unsigned char c = (unsigned char)v;
    bb_put(b, &c, 1);
}
static void bb_le(bb *b, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) bb_u8(b, (unsigned)(v >> (8 * i)) & 0xFF);
}
static void pk_str(bb *b, const char *s)
{
    bb_u8(b, 'X');
    bb_le(b, strlen(s), 4);
    bb_s(b, s);
}
static void pk_int(bb *b, int32_t v)
{
    bb_u8(b, 'J');
    bb_le(b, (uint32_t)v, 4);
}
static void pk_global(bb *b, const char *mod, const char *name)
{
    bb_u8(b, 'c');
    bb_s(b, mod);
    bb_u8(b, '\n');
    bb_s(b, name);
    bb_u8(b, '\n');
}

/* One tensor entry `key: _rebuild_tensor_v2(pid(storage_type, skey, numel), off, size, stride)`
 * appended inside an open MARK ... SETITEMS. */
static void pk_tensor(bb *b, const char *key, const char *stype, const char *skey, int numel, int off, int ndim,
                      const int *size, const int *stride)
{
    pk_str(b, key);
    pk_global(b, "torch._utils", "_rebuild_tensor_v2");
    bb_u8(b, '('); /* args */
    bb_u8(b, '('); /* persistent id */
    pk_str(b, "storage");
    pk_global(b, "torch", stype);
    pk_str(b, skey);
    pk_str(b, "cpu");
    pk_int(b, numel);
    bb_u8(b, 't');
    bb_u8(b, 'Q');
    pk_int(b, off);
    bb_u8(b, '(');
    for (int d = 0; d < ndim; d++) pk_int(b, size[d]);
    bb_u8(b, 't');
    bb_u8(b, '(');
    for (int d = 0; d < ndim; d++) pk_int(b, stride[d]);
    bb_u8(b, 't');
    bb_u8(b, 0x89); /* requires_grad False */
    pk_global(b, "collections", "OrderedDict");
    bb_u8(b, ')');
    bb_u8(b, 'R'); /* backward hooks */
    bb_u8(b, 't');
    bb_u8(b, 'R');
}

static void pk_begin(bb *b)
{
    bb_u8(b, 0x80);
    bb_u8(b, 2);
    pk_global(b, "collections", "OrderedDict");
    bb_u8(b, ')');
    bb_u8(b, 'R');
    bb_u8(b, '(');
}
static void pk_end(bb *b) { bb_s(b, "u."); }

static uint32_t crc32_ref(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xFFFFFFFFu;
}

typedef struct {
    const char *name;
    const void *data;
    size_t len;
    unsigned method; /* 0 stored; anything else is only written in the header */
    int bad_crc;
} zent;

/* A zip archive of the entries (no alignment padding, classic end record). */
static bb zip_of(const zent *e, int n)
{
    bb z = {0}, cd = {0};
    for (int i = 0; i < n; i++) {
        uint32_t crc = crc32_ref(e[i].data, e[i].len) ^ (e[i].bad_crc ? 1u : 0u);
        size_t off = z.n, nl = strlen(e[i].name);
        bb_le(&z, 0x04034B50u, 4);
        bb_le(&z, 20, 2);
        bb_le(&z, 0, 2);
        bb_le(&z, e[i].method, 2);
        bb_le(&z, 0, 4);
        bb_le(&z, crc, 4);
        bb_le(&z, e[i].len, 4);
        bb_le(&z, e[i].len, 4);
        bb_le(&z, nl, 2);
        bb_le(&z, 0, 2);
        bb_s(&z, e[i].name);
        bb_put(&z, e[i].data, e[i].len);
        bb_le(&cd, 0x02014B50u, 4);
        bb_le(&cd, 20, 2);
        bb_le(&cd, 20, 2);
        bb_le(&cd, 0, 2);
        bb_le(&cd, e[i].method, 2);
        bb_le(&cd, 0, 4);
        bb_le(&cd, crc, 4);
        bb_le(&cd, e[i].len, 4);
        bb_le(&cd, e[i].len, 4);
        bb_le(&cd, nl, 2);
        bb_le(&cd, 0, 2);
        bb_le(&cd, 0, 2);
        bb_le(&cd, 0, 2);
        bb_le(&cd, 0, 2);
        bb_le(&cd, 0, 4);
        bb_le(&cd, off, 4);
        bb_s(&cd, e[i].name);
    }
    size_t cd_off = z.n;
    bb_put(&z, cd.p, cd.n);
    bb_le(&z, 0x06054B50u, 4);
    bb_le(&z, 0, 2);
    bb_le(&z, 0, 2);
    bb_le(&z, (uint64_t)n, 2);
    bb_le(&z, (uint64_t)n, 2);
    bb_le(&z, cd.n, 4);
    bb_le(&z, cd_off, 4);
    bb_le(&z, 0, 2);
    free(cd.p);
    return z;
}

static const float two[2] = {1.5f, -2.0f};

/* archive/data.pkl = pkl, archive/data/0 = `two` (8 bytes), archive/version */
static bb archive_of(const bb *pkl, unsigned method, int bad_crc)
{
    zent e[] = {{"archive/data.pkl", pkl->p, pkl->n, method, bad_crc},
                {"archive/data/0", two, sizeof two, 0, 0},
                {"archive/version", "3\n", 2, 0, 0}};
    return zip_of(e, 3);
}

/* Parse from memory and expect `code` with every `want` substring in the message. */
#define EXPECT_PT(buf, len, code, ...)                                                                \
    do {                                                                                              \
        qd_tensor_info *t_ = NULL;                                                                    \
        int nt_ = -1;                                                                                 \
        qd_err_clear();                                                                               \
        int rc_ = qd_pt_parse("hostile.bin", (buf), (len), &t_, &nt_, NULL, NULL, NULL);              \
        CHECK_EQ(rc_, (code));                                                                        \
        CHECK(t_ == NULL && nt_ == 0);                                                                \
        const char *w_[] = {"hostile.bin", __VA_ARGS__};                                              \
        for (size_t i_ = 0; i_ < sizeof w_ / sizeof w_[0]; i_++) CHECK_CONTAINS(qd_errmsg(), w_[i_]); \
        if (rc_ == QD_OK)                                                                             \
            qd_st_free_tensors(t_, nt_);                                                              \
        else                                                                                          \
            printf("  ok (%s): %s\n", qd_errname(rc_), qd_errmsg());                                  \
    } while (0)

static void expect_pickle(const bb *pkl, int code, const char *want)
{
    bb z = archive_of(pkl, 0, 0);
    EXPECT_PT(z.p, z.n, code, want);
    free(z.p);
}

/* ---- the real torch fixtures --------------------------------------------------------------- */

static void test_tiny(void)
{
    qd_checkpoint *ck = NULL, *ex = NULL;
    int rc = qd_ckpt_open(fixture("tiny.bin"), &ck);
    CHECK_MSG(rc == QD_OK, "%s", qd_errmsg());
    rc = qd_ckpt_open(fixture("tiny-expected.safetensors"), &ex);
    CHECK_MSG(rc == QD_OK, "%s", qd_errmsg());
    if (!ck || !ex) return;
    const qd_st_file *f = qd_ckpt_file(ck, 0);
    CHECK_EQ(f->format, QD_FMT_TORCH_ZIP);
    CHECK_EQ(qd_ckpt_file(ex, 0)->format, QD_FMT_SAFETENSORS);
    CHECK_CONTAINS(f->metadata_json, "\"format\":\"torch-zip\"");
    CHECK_CONTAINS(f->metadata_json, "\"archive\":\"tiny\"");
    CHECK_CONTAINS(f->metadata_json, "\"version\":\"3\"");
    CHECK_GT(f->header_len, 100);
    CHECK_EQ(qd_ckpt_num_tensors(ck), 17);
    CHECK_EQ(qd_ckpt_num_tensors(ck), qd_ckpt_num_tensors(ex));
    for (int i = 0; i < qd_ckpt_num_tensors(ck) && i < qd_ckpt_num_tensors(ex); i++) {
        const qd_tensor_info *a = qd_ckpt_tensor(ck, i), *b = qd_ckpt_tensor(ex, i);
        CHECK_STREQ(a->name, b->name);
        CHECK_MSG(a->dtype == b->dtype, "%s: %s vs %s", a->name, qd_dtype_name(a->dtype), qd_dtype_name(b->dtype));
        CHECK_EQ(a->ndim, b->ndim);
        for (int d = 0; d < a->ndim && d < b->ndim; d++) CHECK_EQ(a->shape[d], b->shape[d]);
        CHECK_EQ(a->numel, b->numel);
        CHECK_EQ(a->nbytes, b->nbytes);
        CHECK_EQ(a->float_like, b->float_like);
        const void *pa = NULL, *pb = NULL;
        CHECK_EQ(qd_ckpt_raw(ck, i, &pa), QD_OK);
        CHECK_EQ(qd_ckpt_raw(ex, i, &pb), QD_OK);
        if (pa && pb && a->nbytes == b->nbytes)
            CHECK_MSG(!memcmp(pa, pb, (size_t)a->nbytes), "%s: bytes differ", a->name);
        if (a->float_like) { /* the same F32 values through the conversion path */
            const float *fa, *fb;
            int oa, ob;
            CHECK_EQ(qd_ckpt_read_f32(ck, i, &fa, &oa), QD_OK);
            CHECK_EQ(qd_ckpt_read_f32(ex, i, &fb, &ob), QD_OK);
            CHECK_EQ(oa, a->dtype != QD_DT_F32); /* F32: zero-copy (64-byte aligned entries) */
            if (a->numel) CHECK(!memcmp(fa, fb, (size_t)a->numel * sizeof(float)));
            if (oa) free((void *)fa);
            if (ob) free((void *)fb);
        }
    }
    /* the row view shares layer.weight's storage: same bytes, 6 floats further */
    int w = qd_ckpt_find(ck, "layer.weight"), r = qd_ckpt_find(ck, "layer.weight_row2");
    CHECK(w >= 0 && r >= 0);
    if (w >= 0 && r >= 0) CHECK_EQ(qd_ckpt_tensor(ck, r)->offset, qd_ckpt_tensor(ck, w)->offset + 6 * 4);
    int sc = qd_ckpt_find(ck, "scalar"), em = qd_ckpt_find(ck, "empty");
    CHECK(sc >= 0 && em >= 0);
    if (sc >= 0) {
        CHECK_EQ(qd_ckpt_tensor(ck, sc)->ndim, 0);
        CHECK_EQ(qd_ckpt_tensor(ck, sc)->numel, 1);
        float v = 0;
        CHECK_EQ(qd_ckpt_read_rows_f32(ck, sc, 0, 1, &v), QD_OK);
        CHECK(v == 3.5f);
    }
    if (em >= 0) CHECK_EQ(qd_ckpt_tensor(ck, em)->numel, 0);
    int c = qd_ckpt_find(ck, "cube");
    if (c >= 0) {
        float rows[12];
        CHECK_EQ(qd_ckpt_read_rows_f32(ck, c, 1, 1, rows), QD_OK);
        for (int k = 0; k < 12; k++) CHECK(rows[k] == (float)(12 + k) / 8);
    }
    qd_ckpt_close(ck);
    qd_ckpt_close(ex);

    /* a directory holding pytorch_model.bin */
    char cmd[8192];
    char *sub = st_path(g_dir, "hfdir");
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s' '%s/pytorch_model.bin'", sub, fixture("tiny.bin"), sub);
    CHECK_EQ(system(cmd), 0);
    ck = NULL;
    rc = qd_ckpt_open(sub, &ck);
    CHECK_MSG(rc == QD_OK, "%s", qd_errmsg());
    if (ck) {
        CHECK_EQ(qd_ckpt_num_tensors(ck), 17);
        CHECK_STREQ(qd_ckpt_dir(ck), sub);
        qd_ckpt_close(ck);
    }
    /* a sharded torch checkpoint: pytorch_model.bin.index.json mapping every tensor of the file
     * (renamed shard-1.bin) to it; then an index that forgets one */
    snprintf(cmd, sizeof cmd, "mv '%s/pytorch_model.bin' '%s/shard-1.bin'", sub, sub);
    CHECK_EQ(system(cmd), 0);
    static const char *names[] = {"bf16",
                                  "cube",
                                  "double",
                                  "empty",
                                  "grad",
                                  "half",
                                  "i16",
                                  "i32",
                                  "i8",
                                  "ids",
                                  "layer.bias",
                                  "layer.weight",
                                  "layer.weight_row2",
                                  "mask",
                                  "param",
                                  "scalar",
                                  "u8"};
    for (int drop = 0; drop < 2; drop++) {
        bb js = {0};
        bb_s(&js, "{\"weight_map\":{");
        for (int i = drop; i < 17; i++) {
            bb_s(&js, i > drop ? ",\"" : "\"");
            bb_s(&js, names[i]);
            bb_s(&js, "\":\"shard-1.bin\"");
        }
        bb_s(&js, "}}");
        char *ip = st_path(sub, "pytorch_model.bin.index.json");
        st_write_bytes(ip, js.p, js.n);
        free(js.p);
        ck = NULL;
        rc = qd_ckpt_open(sub, &ck);
        if (!drop) {
            CHECK_MSG(rc == QD_OK, "%s", qd_errmsg());
            if (ck) CHECK_EQ(qd_ckpt_num_tensors(ck), 17);
        } else { /* refused like any inconsistent safetensors index */
            CHECK_EQ(rc, QD_EFORMAT);
            CHECK_CONTAINS(qd_errmsg(), "tensor 'bf16': in shard 'shard-1.bin' but not in the index");
            printf("  ok: %s\n", qd_errmsg());
        }
        if (ck) qd_ckpt_close(ck);
        free(ip);
    }
    free(sub);
}

static void expect_file_fail(const char *path, int code, const char *w1, const char *w2)
{
    qd_checkpoint *ck = NULL;
    qd_err_clear();
    int rc = qd_ckpt_open(path, &ck);
    CHECK_EQ(rc, code);
    CHECK(ck == NULL);
    CHECK_CONTAINS(qd_errmsg(), path);
    if (w1) CHECK_CONTAINS(qd_errmsg(), w1);
    if (w2) CHECK_CONTAINS(qd_errmsg(), w2);
    printf("  ok (%s): %s\n", qd_errname(rc), qd_errmsg());
    if (ck) qd_ckpt_close(ck);
}

static void test_sniff(void)
{
    static const unsigned char st_like[] = {'P', 'K', 3, 4, 0, 0, 0, 0, '{', '"'};
    static const unsigned char torch_like[] = {'P', 'K', 3, 4, 0, 0, 8, 8, 0, 0};
    static const unsigned char legacy[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                           0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e};
    CHECK_EQ(qd_pt_sniff(st_like, sizeof st_like), QD_PT_NONE);
    CHECK_EQ(qd_pt_sniff(torch_like, sizeof torch_like), QD_PT_ZIP);
    CHECK_EQ(qd_pt_sniff((const unsigned char *)"PK\5\6", 4), QD_PT_ZIP);
    CHECK_EQ(qd_pt_sniff(legacy, sizeof legacy), QD_PT_LEGACY);
    CHECK_EQ(qd_pt_sniff(legacy, 13), QD_PT_NONE);
    CHECK_EQ(qd_pt_sniff((const unsigned char *)"PK", 2), QD_PT_NONE);
}

static void test_real_rejects(void)
{
    expect_file_fail(fixture("noncontig.bin"), QD_EUNSUPPORTED, "'transposed'", "non-contiguous");
    expect_file_fail(fixture("legacy.bin"), QD_EUNSUPPORTED, "legacy", "unsupported");
}

/* ---- hostile pickles ----------------------------------------------------------------------- */

static void test_hostile_pickles(void)
{
    bb p = {0};
    /* a valid one first: the builder makes what the reader accepts */
    pk_begin(&p);
    pk_tensor(&p, "w", "FloatStorage", "0", 2, 0, 1, (int[]){2}, (int[]){1});
    pk_end(&p);
    bb z = archive_of(&p, 0, 0);
    qd_tensor_info *t = NULL;
    int nt = 0;
    int rc = qd_pt_parse("ok.bin", z.p, z.n, &t, &nt, NULL, NULL, NULL);
    CHECK_MSG(rc == QD_OK, "%s", qd_errmsg());
    if (rc == QD_OK) {
        CHECK_EQ(nt, 1);
        CHECK_STREQ(t[0].name, "w");
        CHECK_EQ(t[0].dtype, QD_DT_F32);
        CHECK_EQ(t[0].numel, 2);
        float v[2];
        memcpy(v, z.p + t[0].offset, 8);
        CHECK(v[0] == 1.5f && v[1] == -2.0f);
        qd_st_free_tensors(t, nt);
    }
    /* the same archive through qd_ckpt_open: errors name the file */
    char *okp = st_path(g_dir, "ok.bin");
    st_write_bytes(okp, z.p, z.n);
    qd_checkpoint *ck = NULL;
    CHECK_EQ(qd_ckpt_open(okp, &ck), QD_OK);
    if (ck) qd_ckpt_close(ck);
    free(okp);

    /* os.system("echo pwned"): the classic pickle attack */
    p.n = 0;
    bb_s(&p, "\x80\x02");
    pk_global(&p, "os", "system");
    pk_str(&p, "echo pwned");
    bb_s(&p, "\x85R.");
    expect_pickle(&p, QD_EPERM, "GLOBAL 'os.system' is not allowed");
    char *evil = st_path(g_dir, "pytorch_model.bin");
    bb ez = archive_of(&p, 0, 0);
    st_write_bytes(evil, ez.p, ez.n);
    free(ez.p);
    expect_file_fail(evil, QD_EPERM, "os.system", "data.pkl offset 2");
    /* ... hidden inside a valid state dict, as the value of a key */
    p.n = 0;
    pk_begin(&p);
    pk_tensor(&p, "w", "FloatStorage", "0", 2, 0, 1, (int[]){2}, (int[]){1});
    pk_str(&p, "x");
    pk_global(&p, "builtins", "eval");
    pk_str(&p, "1");
    bb_s(&p, "\x85R");
    pk_end(&p);
    expect_pickle(&p, QD_EPERM, "builtins.eval");
    /* ... and through STACK_GLOBAL (protocol 4) */
    p.n = 0;
    bb_s(&p, "\x80\x04");
    bb_u8(&p, 0x8c);
    bb_u8(&p, 5);
    bb_s(&p, "posix");
    bb_u8(&p, 0x8c);
    bb_u8(&p, 6);
    bb_s(&p, "system");
    bb_u8(&p, 0x93);
    bb_s(&p, ").");
    expect_pickle(&p, QD_EPERM, "posix.system");
    /* a storage type called: REDUCE of torch.FloatStorage */
    p.n = 0;
    bb_s(&p, "\x80\x02");
    pk_global(&p, "torch", "FloatStorage");
    bb_s(&p, ")R.");
    expect_pickle(&p, QD_EPERM, "REDUCE of torch.F32");
    /* OrderedDict with arguments (would build from an iterable) */
    p.n = 0;
    bb_s(&p, "\x80\x02");
    pk_global(&p, "collections", "OrderedDict");
    bb_s(&p, "]\x85R.");
    expect_pickle(&p, QD_EPERM, "OrderedDict() with arguments");
    /* unknown opcode */
    p.n = 0;
    bb_s(&p, "\x80\x02}\xff.");
    expect_pickle(&p, QD_EPERM, "opcode 0xff is not allowed");
    /* known but not allowed: INST, OBJ, NEWOBJ, EXT1, PERSID (text), GET (text) */
    const char *banned[] = {"i", "o", "\x81", "\x82", "P", "g", "S", "I", "\x92", "\x96"};
    for (size_t k = 0; k < sizeof banned / sizeof banned[0]; k++) {
        p.n = 0;
        bb_s(&p, "\x80\x02(");
        bb_u8(&p, (unsigned char)banned[k][0]);
        bb_s(&p, "builtins\nexec\n.");
        char want[32];
        snprintf(want, sizeof want, "opcode 0x%02x", (unsigned char)banned[k][0]);
        expect_pickle(&p, QD_EPERM, want);
    }
    /* protocol 5 */
    p.n = 0;
    bb_s(&p, "\x80\x05}.");
    expect_pickle(&p, QD_EUNSUPPORTED, "pickle protocol 5");
    /* truncated pickle: no STOP; a string running past the end */
    p.n = 0;
    pk_begin(&p);
    expect_pickle(&p, QD_EFORMAT, "no STOP");
    p.n = 0;
    bb_s(&p, "\x80\x02X");
    bb_le(&p, 0xffff, 4);
    bb_s(&p, "ab");
    expect_pickle(&p, QD_EFORMAT, "truncated");
    /* stack underflow, STOP with leftovers, memo abuse */
    p.n = 0;
    bb_s(&p, "\x80\x02R.");
    expect_pickle(&p, QD_EFORMAT, "stack underflow");
    p.n = 0;
    bb_s(&p, "\x80\x02}}.");
    expect_pickle(&p, QD_EFORMAT, "values left on the stack");
    p.n = 0;
    bb_s(&p, "\x80\x02}r\xff\xff\xff\x7f.");
    expect_pickle(&p, QD_EFORMAT, "memo index 2147483647 too large");
    p.n = 0;
    bb_s(&p, "\x80\x02h\x05.");
    expect_pickle(&p, QD_EFORMAT, "memo index 5 was never stored");
    /* not a dict; a nested checkpoint; a non-tensor value; a duplicate key */
    p.n = 0;
    bb_s(&p, "\x80\x02].");
    expect_pickle(&p, QD_EFORMAT, "no dict");
    p.n = 0;
    bb_s(&p, "\x80\x02}(");
    pk_str(&p, "model");
    bb_s(&p, "}(");
    pk_tensor(&p, "w", "FloatStorage", "0", 2, 0, 1, (int[]){2}, (int[]){1});
    bb_s(&p, "uu.");
    expect_pickle(&p, QD_EFORMAT, "'model' holds a dict: a nested checkpoint");
    p.n = 0;
    bb_s(&p, "\x80\x02}(");
    pk_str(&p, "step");
    pk_int(&p, 5);
    bb_s(&p, "u.");
    expect_pickle(&p, QD_EFORMAT, "'step' is not a tensor");
    p.n = 0;
    pk_begin(&p);
    pk_tensor(&p, "w", "FloatStorage", "0", 2, 0, 1, (int[]){2}, (int[]){1});
    pk_tensor(&p, "w", "FloatStorage", "0", 2, 1, 1, (int[]){1}, (int[]){1});
    pk_end(&p);
    expect_pickle(&p, QD_EFORMAT, "tensor 'w': listed twice");

    /* lying sizes: the persistent id says 100 floats, the entry holds 2 */
    p.n = 0;
    pk_begin(&p);
    pk_tensor(&p, "w", "FloatStorage", "0", 100, 0, 1, (int[]){100}, (int[]){1});
    pk_end(&p);
    expect_pickle(&p, QD_EFORMAT, "declares 100 x F32 = 400 bytes but its entry holds 8 bytes");
    /* the tensor runs past its storage; a negative offset; a negative size */
    p.n = 0;
    pk_begin(&p);
    pk_tensor(&p, "w", "FloatStorage", "0", 2, 1, 1, (int[]){2}, (int[]){1});
    pk_end(&p);
    expect_pickle(&p, QD_EFORMAT, "tensor 'w': 2 elements at offset 1 run past its storage");
    p.n = 0;
    pk_begin(&p);
    pk_tensor(&p, "w", "FloatStorage", "0", 2, -1, 1, (int[]){1}, (int[]){1});
    pk_end(&p);
    expect_pickle(&p, QD_EFORMAT, "offset -1");
    p.n = 0;
    pk_begin(&p);
    pk_tensor(&p, "w", "FloatStorage", "0", 2, 0, 2, (int[]){-2, -1}, (int[]){1, 1});
    pk_end(&p);
    expect_pickle(&p, QD_EFORMAT, "negative size");
    /* huge sizes whose product overflows */
    p.n = 0;
    pk_begin(&p);
    pk_tensor(&p, "w", "FloatStorage", "0", 2, 0, 3, (int[]){0x7fffffff, 0x7fffffff, 0x7fffffff}, (int[]){1, 1, 1});
    pk_end(&p);
    expect_pickle(&p, QD_EFORMAT, "overflows");
    /* the same storage declared with two types */
    p.n = 0;
    pk_begin(&p);
    pk_tensor(&p, "a", "FloatStorage", "0", 2, 0, 1, (int[]){2}, (int[]){1});
    pk_tensor(&p, "b", "IntStorage", "0", 2, 0, 1, (int[]){2}, (int[]){1});
    pk_end(&p);
    expect_pickle(&p, QD_EFORMAT, "storage '0' declared again as I32");
    /* a storage without an entry; a key that is a path */
    p.n = 0;
    pk_begin(&p);
    pk_tensor(&p, "w", "FloatStorage", "7", 2, 0, 1, (int[]){2}, (int[]){1});
    pk_end(&p);
    expect_pickle(&p, QD_EFORMAT, "no entry 'archive/data/7'");
    p.n = 0;
    pk_begin(&p);
    pk_tensor(&p, "w", "FloatStorage", "../data.pkl", 2, 0, 1, (int[]){2}, (int[]){1});
    pk_end(&p);
    expect_pickle(&p, QD_EFORMAT, "not a plain name");
    /* non-contiguous strides, 9 dimensions */
    p.n = 0;
    pk_begin(&p);
    pk_tensor(&p, "w", "FloatStorage", "0", 2, 0, 2, (int[]){2, 1}, (int[]){2, 1});
    pk_tensor(&p, "t", "FloatStorage", "0", 2, 0, 2, (int[]){1, 2}, (int[]){1, 1});
    pk_end(&p);
    expect_pickle(&p, QD_EUNSUPPORTED, "tensor 'w': non-contiguous strides (2,1) for size (2,1)");
    p.n = 0;
    pk_begin(&p);
    pk_tensor(&p, "w", "FloatStorage", "0", 2, 0, 9, (int[]){1, 1, 1, 1, 1, 1, 1, 1, 2},
              (int[]){1, 1, 1, 1, 1, 1, 1, 1, 1});
    pk_end(&p);
    expect_pickle(&p, QD_EFORMAT, "at most 8 dims");
    /* hooks that are not empty: a backward hook would be code */
    p.n = 0;
    pk_begin(&p);
    {
        size_t at = p.n;
        pk_tensor(&p, "w", "FloatStorage", "0", 2, 0, 1, (int[]){2}, (int[]){1});
        /* replace the empty hooks "cOrderedDict..)R" by a dict with one item */
        const char *h = "ccollections\nOrderedDict\n)R";
        unsigned char *q = NULL;
        for (size_t i = at; i + strlen(h) <= p.n; i++)
            if (!memcmp(p.p + i, h, strlen(h))) q = p.p + i;
        CHECK(q != NULL);
        if (q) {
            size_t tail = (size_t)(p.p + p.n - (q + strlen(h)));
            unsigned char *rest = malloc(tail);
            memcpy(rest, q + strlen(h), tail);
            p.n = (size_t)(q - p.p);
            bb_s(&p, "}(");
            pk_str(&p, "k");
            pk_int(&p, 1);
            bb_u8(&p, 'u');
            bb_put(&p, rest, tail);
            free(rest);
        }
    }
    pk_end(&p);
    expect_pickle(&p, QD_EFORMAT, "empty hooks");
    free(p.p);
    free(z.p);
    free(evil);
}

/* ---- hostile archives ---------------------------------------------------------------------- */

static void test_hostile_zips(void)
{
    bb p = {0};
    pk_begin(&p);
    pk_tensor(&p, "w", "FloatStorage", "0", 2, 0, 1, (int[]){2}, (int[]){1});
    pk_end(&p);

    /* compressed data.pkl */
    bb z = archive_of(&p, 8, 0);
    EXPECT_PT(z.p, z.n, QD_EUNSUPPORTED, "'archive/data.pkl' is compressed (method 8)");
    free(z.p);
    /* CRC mismatch in data.pkl */
    z = archive_of(&p, 0, 1);
    EXPECT_PT(z.p, z.n, QD_EFORMAT, "CRC-32");
    free(z.p);
    /* encrypted flag */
    z = archive_of(&p, 0, 0);
    size_t cd = 0;
    for (size_t i = z.n - 22; i-- > 0;)
        if (!memcmp(z.p + i, "PK\1\2", 4)) cd = i; /* the first central entry */
    bb z2 = {0};
    bb_put(&z2, z.p, z.n);
    z2.p[cd + 8] = 1;
    EXPECT_PT(z2.p, z2.n, QD_EUNSUPPORTED, "encrypted");
    /* lying entry size: data.pkl claims more bytes than the data area holds */
    memcpy(z2.p, z.p, z.n);
    z2.p[cd + 20] = z2.p[cd + 24] = 0xff;
    z2.p[cd + 21] = z2.p[cd + 25] = 0xff;
    EXPECT_PT(z2.p, z2.n, QD_EFORMAT, "run past the data area");
    /* compressed size != size for a stored entry */
    memcpy(z2.p, z.p, z.n);
    z2.p[cd + 20] ^= 1;
    EXPECT_PT(z2.p, z2.n, QD_EFORMAT, "compressed size");
    /* local header offset pointing nowhere */
    memcpy(z2.p, z.p, z.n);
    z2.p[cd + 42] = 0x10;
    EXPECT_PT(z2.p, z2.n, QD_EFORMAT, "no local header");
    /* central directory offset outside the file */
    memcpy(z2.p, z.p, z.n);
    z2.p[z2.n - 6] = 0xff;
    z2.p[z2.n - 5] = 0xff;
    EXPECT_PT(z2.p, z2.n, QD_EFORMAT, "outside the file");
    /* an entry count the directory cannot hold */
    memcpy(z2.p, z.p, z.n);
    z2.p[z2.n - 12] = z2.p[z2.n - 14] = 0x40;
    EXPECT_PT(z2.p, z2.n, QD_EFORMAT, "entries in a");
    /* zip64 markers without a zip64 record */
    memcpy(z2.p, z.p, z.n);
    memset(z2.p + z2.n - 6, 0xff, 4);
    EXPECT_PT(z2.p, z2.n, QD_EFORMAT, "zip64");
    free(z2.p);
    /* truncated: every prefix fails cleanly */
    for (size_t n = 0; n < z.n; n++) {
        qd_tensor_info *t = NULL;
        int nt = 0;
        int rc = qd_pt_parse("cut.bin", z.p, n, &t, &nt, NULL, NULL, NULL);
        CHECK_MSG(rc != QD_OK, "a %zu-byte prefix of a %zu-byte archive parsed", n, z.n);
        if (rc == QD_OK) qd_st_free_tensors(t, nt);
    }
    char *cut = st_path(g_dir, "cut.bin");
    st_write_bytes(cut, z.p, z.n - 30);
    expect_file_fail(cut, QD_EFORMAT, "end-of-central-directory", "truncated");
    free(cut);
    free(z.p);
    /* no data.pkl; entries outside a folder; duplicate entries; big-endian; empty archive */
    zent e1[] = {{"archive/data/0", two, 8, 0, 0}};
    z = zip_of(e1, 1);
    EXPECT_PT(z.p, z.n, QD_EFORMAT, "no 'archive/data.pkl' entry");
    free(z.p);
    zent e2[] = {{"data.pkl", p.p, p.n, 0, 0}};
    z = zip_of(e2, 1);
    EXPECT_PT(z.p, z.n, QD_EFORMAT, "not inside a folder");
    free(z.p);
    zent e3[] = {
        {"archive/data.pkl", p.p, p.n, 0, 0}, {"archive/data/0", two, 8, 0, 0}, {"archive/data/0", two, 8, 0, 0}};
    z = zip_of(e3, 3);
    EXPECT_PT(z.p, z.n, QD_EFORMAT, "'archive/data/0' appears twice");
    free(z.p);
    zent e4[] = {
        {"archive/data.pkl", p.p, p.n, 0, 0}, {"archive/data/0", two, 8, 0, 0}, {"archive/byteorder", "big", 3, 0, 0}};
    z = zip_of(e4, 3);
    EXPECT_PT(z.p, z.n, QD_EUNSUPPORTED, "byteorder 'big'");
    free(z.p);
    zent e5[] = {{"m/constants.pkl", "x", 1, 0, 0}, {"m/code/x.py", "x", 1, 0, 0}};
    z = zip_of(e5, 2);
    EXPECT_PT(z.p, z.n, QD_EUNSUPPORTED, "TorchScript");
    free(z.p);
    z = zip_of(NULL, 0);
    EXPECT_PT(z.p, z.n, QD_EFORMAT, "empty");
    char *empty = st_path(g_dir, "empty.bin");
    st_write_bytes(empty, z.p, z.n);
    expect_file_fail(empty, QD_EFORMAT, "empty", NULL);
    free(empty);
    free(z.p);
    free(p.p);
}

/* Every prefix and every single-byte corruption of the real fixture: an error or a parse, with
 * every tensor inside the buffer; never a crash or an out-of-bounds read (ASan). */
static void test_mutations(void)
{
    size_t len;
    unsigned char *orig = slurp(fixture("tiny.bin"), &len);
    unsigned char *buf = malloc(len);
    int ok = 0, failed = 0;
    for (size_t n = 0; n <= len; n++) {
        unsigned char *b = malloc(n ? n : 1); /* exact size: ASan sees any overread */
        memcpy(b, orig, n);
        qd_tensor_info *t = NULL;
        int nt = 0;
        int rc = qd_pt_parse("prefix.bin", b, n, &t, &nt, NULL, NULL, NULL);
        if (n < len)
            CHECK_MSG(rc != QD_OK, "prefix of %zu bytes parsed", n);
        else
            CHECK_EQ(rc, QD_OK);
        if (rc == QD_OK) qd_st_free_tensors(t, nt);
        free(b);
    }
    for (size_t i = 0; i < len; i++) {
        for (int flip = 0; flip < 2; flip++) {
            memcpy(buf, orig, len);
            buf[i] ^= flip ? 0xFF : 0x01;
            qd_tensor_info *t = NULL;
            int nt = 0;
            qd_err_clear();
            int rc = qd_pt_parse("flip.bin", buf, len, &t, &nt, NULL, NULL, NULL);
            if (rc == QD_OK) {
                ok++;
                for (int k = 0; k < nt; k++) CHECK(t[k].offset <= len && t[k].nbytes <= len - t[k].offset);
                qd_st_free_tensors(t, nt);
            } else {
                failed++;
                CHECK(rc < 0 && strstr(qd_errmsg(), "flip.bin") != NULL);
            }
        }
    }
    printf("  %zu prefixes refused; %zu corruptions: %d parsed (bytes the reader does not read or "
           "values), %d refused\n",
           len, 2 * len, ok, failed);
    CHECK_GT(failed, 0);
    free(buf);
    free(orig);

    /* The CRC of data.pkl stops most corruptions of the pickle above; here each byte of a valid
     * pickle is changed and the archive rebuilt with a matching CRC, so the pickle machine
     * itself meets the corruption. */
    bb p = {0};
    pk_begin(&p);
    pk_tensor(&p, "a", "FloatStorage", "0", 2, 0, 1, (int[]){2}, (int[]){1});
    pk_tensor(&p, "b", "FloatStorage", "0", 2, 1, 2, (int[]){1, 1}, (int[]){1, 1});
    pk_tensor(&p, "c", "IntStorage", "1", 2, 0, 0, (int[]){0}, (int[]){0});
    bb_s(&p, "u}("); /* then BUILD with a dict, like the state dict's _metadata */
    pk_str(&p, "x");
    pk_int(&p, 1);
    bb_s(&p, "ub.");
    {
        zent e[] = {
            {"archive/data.pkl", p.p, p.n, 0, 0}, {"archive/data/0", two, 8, 0, 0}, {"archive/data/1", two, 8, 0, 0}};
        bb z = zip_of(e, 3);
        qd_tensor_info *t = NULL;
        int nt = 0;
        int rc = qd_pt_parse("pkl.bin", z.p, z.n, &t, &nt, NULL, NULL, NULL);
        CHECK_MSG(rc == QD_OK, "%s", qd_errmsg());
        CHECK_EQ(nt, 3);
        if (rc == QD_OK) qd_st_free_tensors(t, nt);
        free(z.p);
    }
    unsigned char *pk = malloc(p.n);
    ok = failed = 0;
    for (size_t i = 0; i < p.n; i++) {
        for (unsigned v = 0; v < 256; v += 5) {
            memcpy(pk, p.p, p.n);
            pk[i] = (unsigned char)v;
            zent e[] = {{"archive/data.pkl", pk, p.n, 0, 0},
                        {"archive/data/0", two, 8, 0, 0},
                        {"archive/data/1", two, 8, 0, 0}};
            bb z = zip_of(e, 3);
            unsigned char *exact = malloc(z.n);
            memcpy(exact, z.p, z.n);
            qd_tensor_info *t = NULL;
            int nt = 0;
            int rc = qd_pt_parse("pkl.bin", exact, z.n, &t, &nt, NULL, NULL, NULL);
            if (rc == QD_OK) {
                ok++;
                for (int k = 0; k < nt; k++) CHECK(t[k].offset <= z.n && t[k].nbytes <= z.n - t[k].offset);
                qd_st_free_tensors(t, nt);
            } else {
                failed++;
            }
            free(exact);
            free(z.p);
        }
    }
    printf("  pickle of %zu bytes, 52 values per byte: %d parsed, %d refused\n", p.n, ok, failed);
    free(pk);
    free(p.p);
}

int main(void)
{
    g_dir = st_mkdtemp("torchfmt");
    test_sniff();
    test_tiny();
    test_real_rejects();
    test_hostile_pickles();
    test_hostile_zips();
    test_mutations();
    st_rmtree(g_dir);
    free(g_dir);
    QD_TEST_MAIN_END();
}
