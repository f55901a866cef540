/* Error codes, messages and helpers of common/. */
#include "common/qd_common.h"
#include "qd_test.h"

static int fails_with_detail(const char *path)
{
    return qd_err_set(QD_EFORMAT, "%s: header length %d exceeds file size", path, 99);
}

int main(void)
{
    CHECK_STREQ(qd_strerror(QD_OK), "success");
    CHECK_STREQ(qd_strerror(QD_EFORMAT), "malformed file");
    CHECK_STREQ(qd_strerror(12345), "unknown error");
    CHECK_STREQ(qd_errname(QD_ENONFINITE), "QD_ENONFINITE");
    /* every code has a distinct, non-empty text */
    int codes[] = {
#define X(name, val, msg) val,
        QD_ERRNO_MAP(X)
#undef X
    };
    for (size_t i = 0; i < QD_ARRAY_LEN(codes); i++) {
        CHECK(codes[i] <= 0);
        CHECK(strcmp(qd_strerror(codes[i]), "unknown error") != 0);
        for (size_t j = 0; j < i; j++) CHECK_NE(codes[i], codes[j]);
    }
    CHECK_EQ(fails_with_detail("a.safetensors"), QD_EFORMAT);
    CHECK_STREQ(qd_errmsg(), "a.safetensors: header length 99 exceeds file size");
    CHECK_EQ(qd_errcode(), QD_EFORMAT);
    qd_err_wrap(QD_EFORMAT, "loading %s", "model");
    CHECK_STREQ(qd_errmsg(), "loading model: a.safetensors: header length 99 exceeds file size");
    qd_err_clear();
    CHECK_STREQ(qd_errmsg(), "");

    uint64_t out = 0;
    CHECK_EQ(qd_mul_overflow(1ull << 32, 1ull << 31, &out), 0);
    CHECK(out == (1ull << 63));
    CHECK_EQ(qd_mul_overflow(1ull << 32, 1ull << 32, &out), -1);
    QD_TEST_MAIN_END();
}
