/* The model file's one owner (collective/h5model.h), on 1 and 2 ranks:
 *   - every kind of record (quantized 8-bit symmetric per channel, 3-bit asymmetric groups with
 *     act-order g_idx and padding bits, 4-bit asymmetric per tensor, 2-bit K-means codebooks in
 *     groups; float 2-D, 1-D and 0-d; raw bytes) written collectively, each rank its own rows, then read back equal, dequantized as
 *     quant/'s reference does;
 *   - the table of the code (qd_h5m_fields) equals the tables of docs/FORMAT.md (names, places,
 *     types, the tensor kinds that carry them), and the file written holds every name of the table
 *     and nothing else, each with the documented type (walked with HDF5 itself), so the spec and
 *     the writer cannot drift apart;
 *   - an unfinished file: refused by a plain open, read by a resuming one, whose declaration finds
 *     the completion marks. */
#include <hdf5.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collective/collective.h"
#include "collective/h5model.h"
#include "qd_test.h"
#include "quant/prune.h"

enum { R8 = 5, C8 = 7, R3 = 6, C3 = 10, G3 = 4, RT = 3, CT = 9, RN = 4, CN = 8 };

static int rank_, size_;

/* rows [r0, r1) of `rows` that this rank writes */
static void my_rows(int64_t rows, int64_t *r0, int64_t *r1)
{
    *r0 = rows * rank_ / size_;
    *r1 = rows * (rank_ + 1) / size_;
}

typedef struct {
    uint8_t q8[R8 * C8], q3[R3 * 4], qt[RT * 5]; /* packed: 3-bit rows of 10 codes take 4 bytes */
    float s8[R8], s3[R3 * 3], st[RT];
    int32_t z3[R3 * 3], zt[RT], g3[C3];
    float f2[4 * 3], f1[5], f0[1];
    uint8_t raw[16];
    uint8_t m3[R3 * 2], m2[4]; /* masks: 10 columns in 2 bytes, 3 in 1 */
    float sm8[C8];             /* SmoothQuant factors of the 8-bit record */
    uint8_t qk[R3 * 3];        /* 2-bit codes: 10 columns in 3 bytes */
    float cbk[R3 * 3 * 4];     /* [R3][3 groups of G3][4 levels], ascending */
    /* pruned records are written from dense rows: codes (pruned at the zero point), floats
     * (pruned 0) and masks unpacked */
    uint8_t c3[R3 * C3], u3[R3 * C3], u2[4 * 3];
    /* 2:4, 8-bit symmetric: codes, the kept positions written, and those read back (row 0's
     * group 1 keeps one weight; its spare slot is the group's first pruned position) */
    uint8_t cn[RN * CN], un[RN * CN], unr[RN * CN], qn[RN * CN];
    float sn[RN];
} payload;

static void fill(payload *p)
{
    for (int i = 0; i < R8 * C8; i++) p->q8[i] = (uint8_t)(i * 37 + 11);
    for (int r = 0; r < R3; r++) {
        uint8_t codes[C3];
        for (int c = 0; c < C3; c++) codes[c] = (uint8_t)((r * 3 + c * 5) % 8);
        qd_pack_row(codes, C3, 3, p->q3 + r * 4);
    }
    for (int r = 0; r < RT; r++) {
        uint8_t codes[CT];
        for (int c = 0; c < CT; c++) codes[c] = (uint8_t)((r + c) % 16);
        qd_pack_row(codes, CT, 4, p->qt + r * 5);
    }
    for (int i = 0; i < R8; i++) p->s8[i] = 0.01f * (float)(i + 1);
    for (int i = 0; i < R3 * 3; i++) {
        p->s3[i] = 0.5f / (float)(i + 1);
        p->z3[i] = i % 8;
    }
    for (int i = 0; i < RT; i++) {
        p->st[i] = 0.3125f; /* per tensor: the same on every row; a float16 number (stored as float16) */
        p->zt[i] = 7;
    }
    for (int c = 0; c < C3; c++) p->g3[c] = (c * 7) % 3;
    for (int i = 0; i < 12; i++) p->f2[i] = (float)i - 5.5f;
    for (int i = 0; i < 5; i++) p->f1[i] = 1.0f / (float)(i + 1);
    p->f0[0] = 3.25f;
    for (int i = 0; i < 16; i++) p->raw[i] = (uint8_t)(255 - i);
    /* 0.5 of 10 columns: at most 5 kept a row (every other column, row 5 one fewer) */
    for (int r = 0; r < R3; r++)
        for (int c = 0; c < C3; c++) p->u3[r * C3 + c] = (uint8_t)((r + c) % 2 == 0 && !(r == 5 && c == 9));
    qd_mask_pack(p->u3, R3, C3, p->m3);
    for (int r = 0; r < R3; r++) { /* pruned: the zero point of the column's group */
        uint8_t codes[C3];
        for (int c = 0; c < C3; c++)
            codes[c] = p->u3[r * C3 + c] ? (uint8_t)((r * 3 + c * 5) % 8) : (uint8_t)p->z3[r * 3 + p->g3[c]];
        memcpy(p->c3 + r * C3, codes, C3);
        qd_pack_row(codes, C3, 3, p->q3 + r * 4);
    }
    for (int r = 0; r < 4; r++) p->m2[r] = (uint8_t)(r & 3); /* 0.5 of 3 columns: at most 2 kept */
    for (int c = 0; c < C8; c++) p->sm8[c] = 0.5f + 0.25f * (float)c;
    qd_mask_unpack(p->m2, 4, 3, p->u2);
    for (int i = 0; i < 12; i++)
        if (!p->u2[i]) p->f2[i] = 0.0f;
    for (int r = 0; r < RN; r++) {
        p->sn[r] = 0.125f;
        for (int c = 0; c < CN; c++) {
            const int j = c % 4, keep = j == r % 4 || j == (r + 1) % 4;
            p->un[r * CN + c] = (uint8_t)(keep && !(r == 0 && c == 4));
            p->unr[r * CN + c] = (uint8_t)keep;
            p->cn[r * CN + c] = p->un[r * CN + c] ? (uint8_t)(100 + r * CN + c) : 128;
        }
    }
    memcpy(p->qn, p->cn, sizeof p->qn);
    for (int r = 0; r < R3; r++) {
        uint8_t codes[C3];
        for (int c = 0; c < C3; c++) codes[c] = (uint8_t)((r + 3 * c) % 4);
        qd_pack_row(codes, C3, 2, p->qk + r * 3);
    }
    for (int i = 0; i < R3 * 3 * 4; i++) p->cbk[i] = (float)(i / 4) * 0.5f + (float)(i % 4) * 0.125f - 1.0f;
}

/* A static activation record of three tensors, the second with two outlier channels. */
static void act_fill(qd_actrec *a)
{
    qd_actrec_alloc(a, 3);
    const char *names[3] = {"input", "layer.0.qkv_in", "layer.0.probs"};
    for (int i = 0; i < 3; i++) {
        snprintf(a->name[i], sizeof a->name[i], "%s", names[i]);
        a->min[i] = -1.5f * (float)(i + 1);
        a->max[i] = 2.0f * (float)(i + 1);
        a->lo[i] = a->min[i];
        a->hi[i] = a->max[i];
        a->scale[i] = (a->hi[i] - a->lo[i]) / 255.0f;
        a->zero_point[i] = -128 + 3 * i;
        a->count[i] = 1000 + i;
    }
    a->bits = 8;
    a->method = QD_ACTQ_PERCENTILE;
    a->percentile = 99.9;
    a->outlier_threshold = 4;
    a->calibration = qd_xstrdup("{\"data\":\"x\",\"nsamples\":2}");
    free(a->out_ch);
    a->out_ch = calloc(2, sizeof(int32_t));
    a->out_ch[0] = 2;
    a->out_ch[1] = 5;
    a->out_off[0] = 0;
    a->out_off[1] = 0;
    a->out_off[2] = 2;
    a->out_off[3] = 2;
    a->out_shift[1] = 3;
    a->out_zp[1] = -7;
    a->out_lo[1] = -20;
    a->out_hi[1] = 30;
}

/* Writes the file; with `finish` 0 stops after marking only the first record complete. */
static void write_file(const char *out, const payload *p, int finish)
{
    const qd_h5m_header h = {.arch = "vit",
                             .model_config = "{\"model_type\":\"vit\"}",
                             .quant_config = "{\"method\":\"rtn\"}",
                             .source = "{\"name\":\"test\"}",
                             .calibration = "{\"method\":\"none\"}"};
    qd_h5m_writer *w = NULL;
    CHECK_EQ(qd_h5m_create(MPI_COMM_WORLD, out, &h, 0, &w), QD_OK);
    if (!w) return;
    qd_actrec act;
    act_fill(&act);
    qd_h5m_write_activations(w, &act);
    qd_actrec_free(&act);
    qd_h5m_record r;
    const qd_qscheme s8 = {8, 1, QD_GRAN_CHANNEL, 128, 0}, s3 = {3, 0, QD_GRAN_GROUP, G3, 0},
                     st = {4, 0, QD_GRAN_TENSOR, 0, 1};
    const int64_t sh2[2] = {4, 3}, sh1[1] = {5}, sh0[1] = {0}, shr[1] = {2};
    int ti[9];
    qd_h5m_record_quantized(&r, "enc.layer.0.q8.weight", R8, C8, "F32", "rtn", &s8, 0);
    CHECK_EQ(qd_h5m_record_add(&r, QD_H5M_SMOOTH), QD_OK);
    ti[0] = qd_h5m_declare(w, &r);
    qd_h5m_record_quantized(&r, "enc.layer.0.q3.weight", R3, C3, "BF16", "gptq", &s3, 1);
    CHECK(qd_h5m_record_sparsity(&r, "2:4", "sparsegpt", 0) != QD_OK); /* 10 columns are not groups of 4 */
    CHECK_EQ(qd_h5m_record_sparsity(&r, "0.5", "sparsegpt", 0), QD_OK);
    CHECK(qd_h5m_record_has(&r, QD_H5M_G_IDX) && qd_h5m_record_has(&r, QD_H5M_ZEROS) &&
          qd_h5m_record_has(&r, QD_H5M_MASK) && qd_h5m_record_has(&r, QD_H5M_NZ_QWEIGHT) &&
          !qd_h5m_record_has(&r, QD_H5M_QWEIGHT) && r.nz_slots == 5);
    ti[1] = qd_h5m_declare(w, &r);
    qd_h5m_record_quantized(&r, "head.weight", RT, CT, "F16", "rtn", &st, 0);
    ti[2] = qd_h5m_declare(w, &r);
    qd_h5m_record_float(&r, "norm.weight2d", 2, sh2, "F16");
    qd_h5m_record_sparsity(&r, "0.5", "magnitude", 0);
    ti[3] = qd_h5m_declare(w, &r);
    qd_h5m_record_float(&r, "norm.bias", 1, sh1, "F32");
    ti[4] = qd_h5m_declare(w, &r);
    qd_h5m_record_float(&r, "scalar", 0, sh0, "F32");
    ti[5] = qd_h5m_declare(w, &r);
    qd_h5m_record_raw(&r, "position_ids", 1, shr, "I64", 16);
    ti[6] = qd_h5m_declare(w, &r);
    CHECK(qd_h5m_record_add(&r, QD_H5M_SCALES) != QD_OK); /* not a dataset of raw records */
    const qd_qscheme sk = {2, 1, QD_GRAN_GROUP, G3, 0};
    qd_h5m_record_quantized(&r, "head.kmeans.weight", R3, C3, "F32", "kmeans", &sk, 0);
    CHECK(qd_h5m_record_has(&r, QD_H5M_CODEBOOK) && !qd_h5m_record_has(&r, QD_H5M_SCALES));
    ti[7] = qd_h5m_declare(w, &r);
    qd_h5m_record_quantized(&r, "enc.layer.0.nm.weight", RN, CN, "F32", "gptq", &s8, 0);
    CHECK_EQ(qd_h5m_record_sparsity(&r, "2:4", "sparsegpt", 128), QD_OK);
    CHECK(qd_h5m_record_has(&r, QD_H5M_NM_INDEX) && !qd_h5m_record_has(&r, QD_H5M_MASK) && r.nz_slots == 4);
    ti[8] = qd_h5m_declare(w, &r);
    int64_t a, b;
    my_rows(R8, &a, &b);
    qd_h5m_write_rows(w, ti[0], QD_H5M_QWEIGHT, a, b - a, p->q8 + a * C8);
    qd_h5m_write_rows(w, ti[0], QD_H5M_SCALES, a, b - a, p->s8 + a);
    my_rows(R3, &a, &b);
    CHECK_EQ(qd_h5m_write_pruned_rows(w, ti[1], a, b - a, p->c3 + a * C3, p->u3 + a * C3), QD_OK);
    qd_h5m_write_rows(w, ti[1], QD_H5M_SCALES, a, b - a, p->s3 + a * 3);
    qd_h5m_write_rows(w, ti[1], QD_H5M_ZEROS, a, b - a, p->z3 + a * 3);
    if (rank_ == 0) qd_h5m_write_rows(w, ti[1], QD_H5M_G_IDX, 0, C3, p->g3);
    if (rank_ == 0) qd_h5m_write_rows(w, ti[0], QD_H5M_SMOOTH, 0, C8, p->sm8);
    my_rows(RT, &a, &b);
    qd_h5m_write_rows(w, ti[2], QD_H5M_QWEIGHT, a, b - a, p->qt + a * 5);
    qd_h5m_write_rows(w, ti[2], QD_H5M_SCALES, a, b - a, p->st + a);
    qd_h5m_write_rows(w, ti[2], QD_H5M_ZEROS, a, b - a, p->zt + a);
    my_rows(R3, &a, &b);
    qd_h5m_write_rows(w, ti[7], QD_H5M_QWEIGHT, a, b - a, p->qk + a * 3);
    qd_h5m_write_rows(w, ti[7], QD_H5M_CODEBOOK, a, b - a, p->cbk + a * 12);
    my_rows(4, &a, &b);
    CHECK_EQ(qd_h5m_write_pruned_rows(w, ti[3], a, b - a, p->f2 + a * 3, p->u2 + a * 3), QD_OK);
    my_rows(RN, &a, &b);
    CHECK_EQ(qd_h5m_write_pruned_rows(w, ti[8], a, b - a, p->cn + a * CN, p->un + a * CN), QD_OK);
    qd_h5m_write_rows(w, ti[8], QD_H5M_SCALES, a, b - a, p->sn + a);
    if (rank_ == size_ - 1) {
        qd_h5m_write_rows(w, ti[4], QD_H5M_DATA, 0, 5, p->f1);
        qd_h5m_write_rows(w, ti[5], QD_H5M_DATA, 0, 1, p->f0);
        qd_h5m_write_rows(w, ti[6], QD_H5M_RAW, 0, 16, p->raw);
    }
    qd_h5m_flush(w);
    const double m[4] = {0.01, 1e-5, 0.02, 40.0};
    for (int i = 0; i < (finish ? 9 : 1); i++) qd_h5m_mark_complete(w, ti[i], i < 3 || i >= 7 ? m : NULL);
    if (!finish) {
        qd_h5m_abandon(w);
        return;
    }
    const qd_h5m_run run = {.created = "2024-01-01T00:00:00Z", .shard = "rows", .ranks = size_, .seconds = 1.5};
    CHECK_EQ(qd_h5m_finish(w, &run), QD_OK);
}

static void read_back(const char *path, const payload *p)
{
    qd_h5m *f = NULL;
    int rc = qd_h5m_open(path, NULL, &f);
    CHECK_MSG(rc == QD_OK, "%s", qd_errmsg());
    if (!f) return;
    CHECK_EQ(qd_h5m_num_tensors(f), 9);
    CHECK_EQ(qd_h5m_info_of(f)->format_version, QD_H5M_FORMAT_VERSION);
    CHECK_STREQ(qd_h5m_info_of(f)->status, QD_H5M_STATUS_COMPLETE);
    CHECK_STREQ(qd_h5m_info_of(f)->arch, "vit");
    int i8 = qd_h5m_find(f, "enc.layer.0.q8.weight"), i3 = qd_h5m_find(f, "enc.layer.0.q3.weight"),
        it = qd_h5m_find(f, "head.weight");
    CHECK(i8 >= 0 && i3 >= 0 && it >= 0);
    if (i8 < 0 || i3 < 0 || it < 0) {
        qd_h5m_close(f);
        return;
    }
    const qd_h5m_record *r3 = qd_h5m_tensor(f, i3);
    CHECK_EQ(r3->bits, 3);
    CHECK_EQ(r3->ngroups, 3);
    CHECK_EQ(r3->group_size, G3);
    CHECK(r3->act_order && !r3->sym && r3->complete && r3->has_metrics);
    CHECK_STREQ(r3->method, "gptq");
    CHECK_STREQ(r3->orig_dtype, "BF16");
    CHECK_NEAR(r3->metrics[3], 40.0, 0);
    qd_h5m_values v;
    CHECK_EQ(qd_h5m_read(f, i3, &v), QD_OK);
    CHECK(!memcmp(v.qweight, p->q3, sizeof p->q3) && !memcmp(v.scales, p->s3, sizeof p->s3) &&
          !memcmp(v.zeros, p->z3, sizeof p->z3) && !memcmp(v.g_idx, p->g3, sizeof p->g3));
    CHECK(v.mask && !memcmp(v.mask, p->m3, sizeof p->m3));
    CHECK_STREQ(r3->sparsity, "0.5");
    CHECK_EQ(r3->nz_slots, 5);
    CHECK_STREQ(r3->prune_method, "sparsegpt");
    /* dequantized as the reference does */
    float got[R3 * C3], want[R3 * C3];
    uint8_t codes[R3 * C3];
    qd_h5m_dequantize(r3, &v, got);
    qd_unpack_matrix(p->q3, R3, C3, 3, codes);
    qd_qparams qp = {R3, C3, 3, G3, 3, 0, QD_GRAN_GROUP, (float *)p->s3, (int32_t *)p->z3};
    qd_dequantize(codes, &qp, p->g3, want);
    CHECK(!memcmp(got, want, sizeof got));
    qd_h5m_values_free(&v);
    CHECK_EQ(qd_h5m_read(f, i8, &v), QD_OK);
    CHECK(!memcmp(v.qweight, p->q8, sizeof p->q8) && !memcmp(v.scales, p->s8, sizeof p->s8) && !v.g_idx);
    CHECK(v.zeros && v.zeros[0] == 128 && v.zeros[R8 - 1] == 128); /* symmetric: 2^(bits-1) */
    qd_h5m_values_free(&v);
    CHECK_EQ(qd_h5m_tensor(f, it)->gran, QD_GRAN_TENSOR);
    CHECK_EQ(qd_h5m_tensor(f, it)->group_size, -1);
    CHECK_EQ(qd_h5m_read(f, it, &v), QD_OK);
    CHECK(!memcmp(v.qweight, p->qt, sizeof p->qt) && !memcmp(v.zeros, p->zt, sizeof p->zt));
    CHECK(qd_h5m_tensor(f, it)->scales_f16 && !qd_h5m_tensor(f, i8)->scales_f16);
    CHECK(v.scales && !memcmp(v.scales, p->st, sizeof p->st)); /* float16 on disk, the same floats back */
    CHECK_EQ(qd_h5m_record_bytes(qd_h5m_tensor(f, it)),
             (int64_t)(RT * 5 + RT * 2 + RT * 4)); /* codes, float16 scales, zeros */
    qd_h5m_values_free(&v);
    /* codebooks: W[r][c] = codebook[r][c / G][q], by hand */
    const int ik = qd_h5m_find(f, "head.kmeans.weight");
    CHECK(ik >= 0);
    if (ik >= 0) {
        const qd_h5m_record *rk = qd_h5m_tensor(f, ik);
        CHECK(qd_h5m_is_codebook(rk) && rk->sym && rk->ngroups == 3 && rk->bits == 2);
        CHECK_EQ(qd_h5m_read(f, ik, &v), QD_OK);
        CHECK(v.codebook && !v.scales && !memcmp(v.codebook, p->cbk, sizeof p->cbk) &&
              !memcmp(v.qweight, p->qk, sizeof p->qk));
        float wk[R3 * C3];
        qd_h5m_dequantize(rk, &v, wk);
        long bad = 0;
        for (int r = 0; r < R3; r++)
            for (int c = 0; c < C3; c++) {
                const int q = (r + 3 * c) % 4, g = c / G3;
                bad += wk[r * C3 + c] != (float)(r * 3 + g) * 0.5f + (float)q * 0.125f - 1.0f;
            }
        CHECK_EQ(bad, 0);
        qd_h5m_values_free(&v);
    }
    int i2 = qd_h5m_find(f, "norm.weight2d"), i1 = qd_h5m_find(f, "norm.bias"), i0 = qd_h5m_find(f, "scalar"),
        ir = qd_h5m_find(f, "position_ids");
    CHECK_EQ(qd_h5m_read(f, i2, &v), QD_OK);
    CHECK(qd_h5m_tensor(f, i2)->ndim == 2 && !memcmp(v.data, p->f2, sizeof p->f2));
    CHECK(v.mask && !memcmp(v.mask, p->m2, sizeof p->m2));
    qd_h5m_values_free(&v);
    CHECK_EQ(qd_h5m_read(f, i1, &v), QD_OK);
    CHECK(qd_h5m_tensor(f, i1)->ndim == 1 && !memcmp(v.data, p->f1, sizeof p->f1));
    qd_h5m_values_free(&v);
    CHECK_EQ(qd_h5m_read(f, i0, &v), QD_OK);
    CHECK(qd_h5m_tensor(f, i0)->zero_d && qd_h5m_numel(qd_h5m_tensor(f, i0)) == 1 && v.data[0] == 3.25f);
    qd_h5m_values_free(&v);
    /* 2:4: the kept codes and their positions read back dense, the spare slot as kept */
    int in = qd_h5m_find(f, "enc.layer.0.nm.weight");
    CHECK_EQ(qd_h5m_read(f, in, &v), QD_OK);
    uint8_t mn[RN];
    qd_mask_pack(p->unr, RN, CN, mn);
    CHECK(v.qweight && !memcmp(v.qweight, p->qn, sizeof p->qn) && !memcmp(v.mask, mn, sizeof mn));
    CHECK(qd_h5m_tensor(f, in)->nm_n == 2 && qd_h5m_tensor(f, in)->nm_m == 4);
    qd_h5m_values_free(&v);
    CHECK_EQ(qd_h5m_read(f, ir, &v), QD_OK);
    CHECK(qd_h5m_tensor(f, ir)->raw_bytes == 16 && !memcmp(v.raw, p->raw, 16));
    CHECK_STREQ(qd_h5m_tensor(f, ir)->orig_dtype, "I64");
    qd_h5m_values_free(&v);
    /* a dataset by name, as a method's own record would be read */
    void *vals = NULL;
    int64_t n = 0;
    CHECK_EQ(qd_h5m_read_field(f, i3, QD_H5M_G_IDX, &vals, &n), QD_OK);
    CHECK(n == C3 && vals && !memcmp(vals, p->g3, sizeof p->g3));
    free(vals);
    CHECK(qd_h5m_read_field(f, i8, QD_H5M_ZEROS, &vals, &n) != QD_OK); /* symmetric: none */
    /* an optional dataset: where written it reads back, elsewhere it is absent */
    CHECK(qd_h5m_record_has(qd_h5m_tensor(f, i8), QD_H5M_SMOOTH) &&
          !qd_h5m_record_has(qd_h5m_tensor(f, i3), QD_H5M_SMOOTH));
    CHECK_EQ(qd_h5m_read_field(f, i8, QD_H5M_SMOOTH, &vals, &n), QD_OK);
    CHECK(n == C8 && vals && !memcmp(vals, p->sm8, sizeof p->sm8));
    free(vals);
    /* the static activation record, field by field */
    qd_actrec aw, ag;
    act_fill(&aw);
    CHECK_MSG(qd_h5m_read_activations(f, &ag) == QD_OK, "%s", qd_errmsg());
    CHECK_EQ(ag.n, 3);
    if (ag.n == 3) {
        for (int i = 0; i < 3; i++) CHECK_STREQ(ag.name[i], aw.name[i]);
        CHECK(!memcmp(ag.scale, aw.scale, 3 * sizeof(float)) && !memcmp(ag.lo, aw.lo, 3 * sizeof(float)) &&
              !memcmp(ag.hi, aw.hi, 3 * sizeof(float)) && !memcmp(ag.min, aw.min, 3 * sizeof(float)) &&
              !memcmp(ag.max, aw.max, 3 * sizeof(float)) &&
              !memcmp(ag.zero_point, aw.zero_point, 3 * sizeof(int32_t)) &&
              !memcmp(ag.count, aw.count, 3 * sizeof(int64_t)));
        CHECK(!memcmp(ag.out_off, aw.out_off, 4 * sizeof(int32_t)) && ag.out_ch[0] == 2 && ag.out_ch[1] == 5);
        CHECK(ag.out_shift[1] == 3 && ag.out_zp[1] == -7 && ag.out_lo[1] == -20 && ag.out_hi[1] == 30);
        CHECK(ag.bits == 8 && ag.method == QD_ACTQ_PERCENTILE && ag.percentile == 99.9 && ag.outlier_threshold == 4);
        CHECK_STREQ(ag.calibration, aw.calibration);
    }
    qd_actrec_free(&ag);
    qd_actrec_free(&aw);
    qd_h5m_close(f);
}

/* ---- docs/FORMAT.md's tables ------------------------------------------------------------------ */

typedef struct {
    char name[64];
    qd_h5m_place place;
    char type[32]; /* base type name */
    int vector;
    unsigned kinds;
    int seen; /* in the file written */
} doc_field;

/* "all", or kind names separated by ", " */
static int parse_kinds(const char *s, unsigned *k)
{
    *k = 0;
    if (!strcmp(s, "all")) {
        *k = QD_H5M_KALL;
        return 1;
    }
    char buf[64];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        int found = 0;
        for (int i = 0; i < QD_H5M_NKINDS_; i++)
            if (!strcmp(t, qd_h5m_kind_name((qd_h5m_kind)i))) {
                *k |= QD_H5M_K(i);
                found = 1;
            }
        if (!found) return 0;
    }
    return *k != 0;
}

/* cells of a markdown table row, trimmed */
static int cells(char *line, char **c, int cap)
{
    int n = 0;
    char *p = strchr(line, '|');
    while (p && n < cap) {
        char *q = strchr(p + 1, '|');
        if (!q) break;
        *q = 0;
        char *a = p + 1;
        while (*a == ' ') a++;
        char *e = a + strlen(a);
        while (e > a && e[-1] == ' ') *--e = 0;
        c[n++] = a;
        p = q;
    }
    return n;
}

static int read_doc(doc_field *d, int cap)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/docs/FORMAT.md", QD_TEST_SOURCE_DIR);
    FILE *fp = fopen(path, "r");
    CHECK_MSG(fp != NULL, "cannot read %s", path);
    if (!fp) return 0;
    char line[4096];
    int n = 0, place = -1;
    while (fgets(line, sizeof line, fp)) {
        char *c[8];
        if (line[0] != '|') {
            place = -1;
            continue;
        }
        int k = cells(line, c, 8);
        if (k < 2) continue;
        if (!strcmp(c[0], "root attribute"))
            place = QD_H5M_ROOT_ATTR;
        else if (!strcmp(c[0], "/run attribute"))
            place = QD_H5M_RUN_ATTR;
        else if (!strcmp(c[0], "tensor attribute"))
            place = QD_H5M_TENSOR_ATTR;
        else if (!strcmp(c[0], "dataset"))
            place = QD_H5M_TENSOR_DATASET;
        else if (!strcmp(c[0], "/activations attribute"))
            place = QD_H5M_ACT_ATTR;
        if (place < 0 || c[0][0] != '`' || n == cap) continue;
        doc_field *f = &d[n++];
        memset(f, 0, sizeof *f);
        f->place = (qd_h5m_place)place;
        snprintf(f->name, sizeof f->name, "%.*s", (int)strlen(c[0]) - 2, c[0] + 1);
        snprintf(f->type, sizeof f->type, "%s", c[1]);
        char *br = strchr(f->type, '[');
        if (br) {
            *br = 0;
            f->vector = 1;
        }
        if (place == QD_H5M_TENSOR_ATTR || place == QD_H5M_TENSOR_DATASET)
            CHECK_MSG(k >= 3 && parse_kinds(c[2], &f->kinds), "docs/FORMAT.md: '%s': tensors column '%s'", f->name,
                      k >= 3 ? c[2] : "");
    }
    fclose(fp);
    return n;
}

static doc_field *doc_find(doc_field *d, int n, qd_h5m_place place, const char *name)
{
    for (int i = 0; i < n; i++)
        if (d[i].place == place && !strcmp(d[i].name, name)) return &d[i];
    return NULL;
}

static void check_doc_vs_table(doc_field *d, int nd)
{
    int nf;
    const qd_h5m_field *fs = qd_h5m_fields(&nf);
    CHECK_EQ(nd, nf);
    for (int i = 0; i < nf; i++) {
        doc_field *x = doc_find(d, nd, fs[i].place, fs[i].name);
        CHECK_MSG(x != NULL, "'%s' (place %d) is in collective/h5model.c's table but not in docs/FORMAT.md", fs[i].name,
                  fs[i].place);
        if (!x) continue;
        CHECK_MSG(!strcmp(x->type, qd_h5m_type_name(fs[i].type)) && x->vector == fs[i].vector,
                  "'%s': docs/FORMAT.md says %s%s, the code writes %s%s", fs[i].name, x->type, x->vector ? "[...]" : "",
                  qd_h5m_type_name(fs[i].type), fs[i].vector ? "[...]" : "");
        if (fs[i].place == QD_H5M_TENSOR_ATTR || fs[i].place == QD_H5M_TENSOR_DATASET)
            CHECK_MSG(x->kinds == fs[i].kinds, "'%s': tensors column differs from the code's kinds", fs[i].name);
    }
    for (int i = 0; i < nd; i++)
        CHECK_MSG(qd_h5m_field_find(d[i].place, d[i].name) >= 0,
                  "'%s' (place %d) is in docs/FORMAT.md but the code does not know it", d[i].name, d[i].place);
}

/* ---- the file, walked with HDF5 itself --------------------------------------------------------- */

typedef struct {
    doc_field *d;
    int nd;
    qd_h5m_place place;
    const char *where;
} walk_ctx;

static const char *h5_type_name(hid_t t)
{
    H5T_class_t c = H5Tget_class(t);
    size_t s = H5Tget_size(t);
    if (c == H5T_STRING) return "string";
    if (c == H5T_FLOAT) return s == 8 ? "float64" : s == 4 ? "float32" : s == 2 ? "float16" : "float?";
    if (c == H5T_INTEGER) {
        int sg = H5Tget_sign(t) == H5T_SGN_2;
        return s == 8 && sg ? "int64" : s == 4 && sg ? "int32" : s == 1 && !sg ? "uint8" : "int?";
    }
    return "?";
}

static void seen(walk_ctx *w, const char *name, hid_t type)
{
    doc_field *x = doc_find(w->d, w->nd, w->place, name);
    CHECK_MSG(x != NULL, "%s: '%s' is written but not documented in docs/FORMAT.md", w->where, name);
    if (!x) return;
    x->seen = 1;
    /* scales: float32, or float16 where documented as such (--scales float16) */
    const int half = !strcmp(name, QD_H5M_SCALES) && !strcmp(h5_type_name(type), "float16");
    CHECK_MSG(half || !strcmp(x->type, h5_type_name(type)), "%s: '%s' is written as %s, documented as %s", w->where,
              name, h5_type_name(type), x->type);
}

static herr_t on_attr(hid_t loc, const char *name, const H5A_info_t *ai, void *op)
{
    (void)ai;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT), t = H5Aget_type(a);
    seen(op, name, t);
    H5Tclose(t);
    H5Aclose(a);
    return 0;
}

static herr_t on_dset(hid_t g, const char *name, const H5L_info_t *li, void *op)
{
    (void)li;
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT), t = H5Dget_type(d);
    seen(op, name, t);
    H5Tclose(t);
    H5Dclose(d);
    return 0;
}

static herr_t on_tensor(hid_t tg, const char *name, const H5L_info_t *li, void *op)
{
    (void)li;
    walk_ctx *w = op;
    hid_t g = H5Gopen2(tg, name, H5P_DEFAULT);
    walk_ctx a = {w->d, w->nd, QD_H5M_TENSOR_ATTR, name}, b = {w->d, w->nd, QD_H5M_TENSOR_DATASET, name};
    H5Aiterate2(g, H5_INDEX_NAME, H5_ITER_INC, NULL, on_attr, &a);
    H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, on_dset, &b);
    H5Gclose(g);
    return 0;
}

static void walk_file(const char *path, doc_field *d, int nd)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK(f >= 0);
    if (f < 0) return;
    walk_ctx root = {d, nd, QD_H5M_ROOT_ATTR, "/"}, run = {d, nd, QD_H5M_RUN_ATTR, "/run"},
             ts = {d, nd, QD_H5M_TENSOR_ATTR, "/tensors"}, act = {d, nd, QD_H5M_ACT_ATTR, "/activations"};
    H5Aiterate2(f, H5_INDEX_NAME, H5_ITER_INC, NULL, on_attr, &root);
    hid_t g = H5Gopen2(f, QD_H5M_RUN, H5P_DEFAULT);
    H5Aiterate2(g, H5_INDEX_NAME, H5_ITER_INC, NULL, on_attr, &run);
    H5Gclose(g);
    g = H5Gopen2(f, QD_H5M_TENSORS, H5P_DEFAULT);
    H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, on_tensor, &ts);
    H5Gclose(g);
    g = H5Gopen2(f, QD_H5M_ACTIVATIONS, H5P_DEFAULT);
    H5Aiterate2(g, H5_INDEX_NAME, H5_ITER_INC, NULL, on_attr, &act);
    H5Gclose(g);
    H5Fclose(f);
    for (int i = 0; i < nd; i++)
        CHECK_MSG(d[i].seen, "'%s' is documented but the file written with every kind of record lacks it", d[i].name);
}

/* A new file of an unknown architecture with empty JSON attributes. */
static qd_h5m_writer *create_plain(const char *out)
{
    const qd_h5m_header h = {.arch = "unknown",
                             .model_config = "{}",
                             .quant_config = "{}",
                             .source = "{}",
                             .calibration = "{\"method\":\"none\"}"};
    qd_h5m_writer *w = NULL;
    CHECK_EQ(qd_h5m_create(MPI_COMM_WORLD, out, &h, 0, &w), QD_OK);
    return w;
}

/* Codes beyond a row's columns (the unused high bits of its last byte set): refused by a strict
 * open, listed by a lenient one. */
static void padding_bits(const char *out, const payload *p)
{
    qd_h5m_writer *w = create_plain(out);
    if (!w) return;
    qd_h5m_record r;
    const qd_qscheme s3 = {3, 0, QD_GRAN_GROUP, G3, 0};
    qd_h5m_record_quantized(&r, "w", R3, C3, "F32", "rtn", &s3, 0);
    int ti = qd_h5m_declare(w, &r);
    uint8_t q[R3 * 4];
    memcpy(q, p->q3, sizeof q);
    q[2 * 4 + 3] |= 0x80; /* row 2: 30 bits of codes, bit 31 set */
    if (rank_ == 0) {
        qd_h5m_write_rows(w, ti, QD_H5M_QWEIGHT, 0, R3, q);
        qd_h5m_write_rows(w, ti, QD_H5M_SCALES, 0, R3, p->s3);
        qd_h5m_write_rows(w, ti, QD_H5M_ZEROS, 0, R3, p->z3);
    }
    const double m[4] = {0};
    qd_h5m_mark_complete(w, ti, m);
    const qd_h5m_run run = {.created = "x", .shard = "rows", .ranks = size_};
    CHECK_EQ(qd_h5m_finish(w, &run), QD_OK);
    if (rank_ != 0) return;
    qd_h5m *f = NULL;
    CHECK_EQ(qd_h5m_open(out, NULL, &f), QD_EFORMAT);
    CHECK_CONTAINS(qd_errmsg(), "tensor 'w': dataset 'qweight': row 2: bits beyond its 10 codes are set");
    const qd_h5m_open_opts o = {.flags = QD_H5M_LENIENT};
    CHECK_EQ(qd_h5m_open(out, &o, &f), QD_OK);
    if (!f) return;
    CHECK_EQ(qd_h5m_num_problems(f), 1);
    CHECK_STREQ(qd_h5m_problem_at(f, 0)->tensor, "w");
    CHECK(!qd_h5m_tensor(f, 0)->complete);
    qd_actrec a;
    CHECK_EQ(qd_h5m_read_activations(f, &a), QD_ENOTFOUND); /* written without --activations static */
    CHECK_CONTAINS(qd_errmsg(), "no static activation scales");
    qd_h5m_close(f);
    remove(out);
}

/* A damaged /activations record (one scale NaN, or outlier channels not increasing): refused by
 * a strict open naming the group, the tensor and the value. */
static void act_damaged(const char *out, int what)
{
    qd_h5m_writer *w = create_plain(out);
    if (!w) return;
    qd_actrec a;
    act_fill(&a);
    if (what == 0)
        a.scale[2] = NAN;
    else
        a.out_ch[1] = 1;
    qd_h5m_write_activations(w, &a);
    qd_actrec_free(&a);
    const qd_h5m_run run = {.created = "x", .shard = "rows", .ranks = size_};
    CHECK_EQ(qd_h5m_finish(w, &run), QD_OK);
    if (rank_ != 0) return;
    qd_h5m *f = NULL;
    CHECK_EQ(qd_h5m_open(out, NULL, &f), what == 0 ? QD_ENONFINITE : QD_EFORMAT);
    CHECK_CONTAINS(qd_errmsg(), what == 0
                                    ? "/activations: tensor 'layer.0.probs' has scale nan"
                                    : "/activations: tensor 'layer.0.qkv_in': outlier channels are not increasing");
    remove(out);
}

int main(int argc, char **argv)
{
    MPI_Comm world = qd_coll_init(&argc, &argv);
    rank_ = qd_coll_rank(world);
    size_ = qd_coll_size(world);
    char out[256], partial[300];
    snprintf(out, sizeof out, "test_h5model_np%d.h5", size_);
    snprintf(partial, sizeof partial, "%s.partial", out);
    payload p;
    fill(&p);
    if (rank_ == 0) remove(out);
    qd_coll_barrier(world);
    write_file(out, &p, 1);
    if (rank_ == 0) {
        read_back(out, &p);
        doc_field d[96];
        int nd = read_doc(d, 96);
        CHECK_GE(nd, 30);
        check_doc_vs_table(d, nd);
        walk_file(out, d, nd);
    }
    padding_bits(out, &p);
    act_damaged(out, 0);
    act_damaged(out, 1);
    /* unfinished: refused, unless resuming; the resumed declaration sees the first record done */
    write_file(out, &p, 0);
    if (rank_ == 0) {
        qd_h5m *f = NULL;
        CHECK_EQ(qd_h5m_open(partial, NULL, &f), QD_EFORMAT);
        CHECK_CONTAINS(qd_errmsg(), "status is ''");
        const qd_h5m_open_opts o = {.flags = QD_H5M_PARTIAL};
        CHECK_MSG(qd_h5m_open(partial, &o, &f) == QD_OK, "%s", qd_errmsg());
        if (f) {
            CHECK(qd_h5m_tensor(f, qd_h5m_find(f, "enc.layer.0.q8.weight"))->complete);
            CHECK(!qd_h5m_tensor(f, qd_h5m_find(f, "head.weight"))->complete);
            qd_h5m_close(f);
        }
    }
    const qd_h5m_header h = {.arch = "vit",
                             .model_config = "{\"model_type\":\"vit\"}",
                             .quant_config = "{\"method\":\"gptq\"}",
                             .source = "{\"name\":\"test\"}",
                             .calibration = "{\"method\":\"none\"}"};
    qd_h5m_writer *w = NULL;
    CHECK_EQ(qd_h5m_create(world, out, &h, 1, &w), QD_EMISMATCH); /* other settings: refused */
    CHECK_CONTAINS(qd_errmsg(), "written with other settings");
    if (rank_ == 0) remove(partial);
    if (rank_ == 0) remove(out);
    int local = qd_test_failures_;
    qd_coll_allreduce_ints(world, &local, 1, QD_COLL_SUM);
    qd_coll_finalize();
    if (rank_ == 0) return qd_test_report(__FILE__) ? 1 : (local ? 1 : 0);
    return local ? 1 : 0;
}
