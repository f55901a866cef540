/* tests/reference/bert_dir.h — where tests and benchmarks find the real BERT checkpoint and its
 * reference outputs.
 *
 * The checkpoint (all-MiniLM-L6-v2, fetched by deploy/fetch-models.sh into a cache outside the
 * repository) is looked up in this order: $QD_BERT_DIR, $QD_CACHE/models/all-MiniLM-L6-v2,
 * $HOME/.cache/qdist/models/all-MiniLM-L6-v2 (tests/reference/bert_dir.sh does the same). A
 * directory counts when it holds config.json and model.safetensors. When there is none a test
 * prints why and exits QD_TEST_SKIP (77), which ctest reports as skipped with
 * set_tests_properties(... SKIP_RETURN_CODE 77).
 *
 * The reference outputs (tests/reference/bert-all-MiniLM-L6-v2-reference.safetensors, committed;
 * see tests/reference/README.md) are always present.
 */
#ifndef QD_TEST_BERT_DIR_H
#define QD_TEST_BERT_DIR_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define QD_TEST_SKIP       77
#define QD_BERT_MODEL_NAME "all-MiniLM-L6-v2"

static inline int qd_test_bert_dir_ok_(const char *d)
{
    char p[4096];
    struct stat st;
    if (!d || !*d) return 0;
    snprintf(p, sizeof p, "%s/config.json", d);
    if (stat(p, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* The checkpoint directory, or NULL when none is found. The string lives until the next call. */
static inline const char *qd_test_bert_dir(void)
{
    static char buf[4096];
    const char *e = getenv("QD_BERT_DIR");
    if (qd_test_bert_dir_ok_(e)) return e;
    e = getenv("QD_CACHE");
    if (e && *e) {
        snprintf(buf, sizeof buf, "%s/models/" QD_BERT_MODEL_NAME, e);
        if (qd_test_bert_dir_ok_(buf)) return buf;
    }
    e = getenv("HOME");
    if (e && *e) {
        snprintf(buf, sizeof buf, "%s/.cache/qdist/models/" QD_BERT_MODEL_NAME, e);
        if (qd_test_bert_dir_ok_(buf)) return buf;
    }
    return NULL;
}

/* The checkpoint directory, or exit(QD_TEST_SKIP) with a message naming `test`. */
static inline const char *qd_test_bert_dir_or_skip(const char *test)
{
    const char *d = qd_test_bert_dir();
    if (!d) {
        printf("%s: SKIPPED: no BERT checkpoint (run deploy/fetch-models.sh or set QD_BERT_DIR)\n", test);
        exit(QD_TEST_SKIP);
    }
    return d;
}

/* Path of the committed reference outputs (the source tree is known to every test). */
static inline const char *qd_test_bert_reference(void)
{
    static char buf[4096];
#ifdef QD_TEST_SOURCE_DIR
    const char *src = QD_TEST_SOURCE_DIR;
#else
    const char *src = ".";
#endif
    const char *e = getenv("QD_SOURCE_DIR");
    if (e && *e) src = e;
    snprintf(buf, sizeof buf, "%s/tests/reference/bert-" QD_BERT_MODEL_NAME "-reference.safetensors", src);
    return buf;
}

#endif
