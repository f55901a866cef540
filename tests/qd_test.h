/* qd_test.h — assertion macros for qdist's unit tests. Each test is its own executable; the
 * exit code is the number of failed checks (0 = pass). Checks keep running after a failure and
 * print both sides, e.g.  test_pack.c:42: CHECK_EQ(a, b) failed: 3 != 4  */
#ifndef QD_TEST_H
#define QD_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int qd_test_failures_ = 0;
static int qd_test_checks_ = 0;

#define QT_FAIL_(...)                                   \
    do {                                                \
        qd_test_failures_++;                            \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__); \
        fprintf(stderr, __VA_ARGS__);                   \
        fputc('\n', stderr);                            \
    } while (0)

#define CHECK(cond)                                       \
    do {                                                  \
        qd_test_checks_++;                                \
        if (!(cond)) QT_FAIL_("CHECK(%s) failed", #cond); \
    } while (0)
#define CHECK_MSG(cond, ...)                     \
    do {                                         \
        qd_test_checks_++;                       \
        if (!(cond)) {                           \
            QT_FAIL_("CHECK(%s) failed", #cond); \
            fprintf(stderr, "    ");             \
            fprintf(stderr, __VA_ARGS__);        \
            fputc('\n', stderr);                 \
        }                                        \
    } while (0)
#define QT_CMP_INT_(a, op, b)                                                                       \
    do {                                                                                            \
        long long qa_ = (long long)(a), qb_ = (long long)(b);                                       \
        qd_test_checks_++;                                                                          \
        if (!(qa_ op qb_)) QT_FAIL_("CHECK(%s %s %s) failed: %lld vs %lld", #a, #op, #b, qa_, qb_); \
    } while (0)
#define CHECK_EQ(a, b) QT_CMP_INT_(a, ==, b)
#define CHECK_NE(a, b) QT_CMP_INT_(a, !=, b)
#define CHECK_LT(a, b) QT_CMP_INT_(a, <, b)
#define CHECK_LE(a, b) QT_CMP_INT_(a, <=, b)
#define CHECK_GT(a, b) QT_CMP_INT_(a, >, b)
#define CHECK_GE(a, b) QT_CMP_INT_(a, >=, b)
/* |a - b| <= tol */
#define CHECK_NEAR(a, b, tol)                                                                                  \
    do {                                                                                                       \
        double qa_ = (double)(a), qb_ = (double)(b), qt_ = (double)(tol);                                      \
        qd_test_checks_++;                                                                                     \
        if (!(fabs(qa_ - qb_) <= qt_))                                                                         \
            QT_FAIL_("CHECK_NEAR(%s, %s, %s) failed: %.9g vs %.9g (diff %.3g > %.3g)", #a, #b, #tol, qa_, qb_, \
                     fabs(qa_ - qb_), qt_);                                                                    \
    } while (0)
#define CHECK_DBL_LE(a, b)                                                                     \
    do {                                                                                       \
        double qa_ = (double)(a), qb_ = (double)(b);                                           \
        qd_test_checks_++;                                                                     \
        if (!(qa_ <= qb_)) QT_FAIL_("CHECK(%s <= %s) failed: %.9g vs %.9g", #a, #b, qa_, qb_); \
    } while (0)
#define CHECK_DBL_LT(a, b)                                                                   \
    do {                                                                                     \
        double qa_ = (double)(a), qb_ = (double)(b);                                         \
        qd_test_checks_++;                                                                   \
        if (!(qa_ < qb_)) QT_FAIL_("CHECK(%s < %s) failed: %.9g vs %.9g", #a, #b, qa_, qb_); \
    } while (0)
#define CHECK_STREQ(a, b)                                                                          \
    do {                                                                                           \
        const char *qa_ = (a), *qb_ = (b);                                                         \
        qd_test_checks_++;                                                                         \
        if (!qa_ || !qb_ || strcmp(qa_, qb_) != 0)                                                 \
            QT_FAIL_("CHECK_STREQ(%s, %s) failed: \"%s\" vs \"%s\"", #a, #b, qa_ ? qa_ : "(null)", \
                     qb_ ? qb_ : "(null)");                                                        \
    } while (0)
/* haystack contains needle */
#define CHECK_CONTAINS(hay, needle)                                                                             \
    do {                                                                                                        \
        const char *qa_ = (hay), *qb_ = (needle);                                                               \
        qd_test_checks_++;                                                                                      \
        if (!qa_ || !qb_ || !strstr(qa_, qb_))                                                                  \
            QT_FAIL_("CHECK_CONTAINS(%s, %s) failed: \"%s\" lacks \"%s\"", #hay, #needle, qa_ ? qa_ : "(null)", \
                     qb_ ? qb_ : "(null)");                                                                     \
    } while (0)

/* Path of ../shared/models relative to the source tree (set by CMake), overridable by
 * $QD_MODELS_DIR. */
static inline const char *qd_test_models_dir(void)
{
    const char *e = getenv("QD_MODELS_DIR");
    if (e && *e) return e;
#ifdef QD_TEST_MODELS_DIR
    return QD_TEST_MODELS_DIR;
#else
    return "../shared/models";
#endif
}

static inline int qd_test_report(const char *name)
{
    if (qd_test_failures_)
        fprintf(stderr, "%s: %d of %d checks FAILED\n", name, qd_test_failures_, qd_test_checks_);
    else
        printf("%s: all %d checks passed\n", name, qd_test_checks_);
    return qd_test_failures_ > 255 ? 255 : qd_test_failures_;
}

#define QD_TEST_MAIN_END() return qd_test_report(__FILE__)

/* A uniform double in [0, 1) from a xorshift64 state (reproducible test data; *state != 0). */
static inline double qd_test_urand(unsigned long long *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return (double)(*state >> 11) / 9007199254740992.0;
}

#endif
