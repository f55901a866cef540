/* The real BERT checkpoint in torch.save's format: tests/reference/torch_format.py (checked byte
 * for byte against torch by make_torch_fixture.py) converts its model.safetensors into a
 * pytorch_model.bin; both are opened with qd_ckpt_open (as directories, like a Hugging Face
 * checkout of either kind) and must hold the same tensors, bit for bit, F32 zero-copy in both.
 * Exits 77 (skipped) without the checkpoint or without python3. */
#include <sys/wait.h>

#include "qd_test.h"
#include "reference/bert_dir.h"
#include "shard/safetensors.h"
#include "shard/st_testutil.h"

int main(void)
{
    const char *dir = qd_test_bert_dir_or_skip("test_torch_real_bert");
    char *tmp = st_mkdtemp("torchbert");
    char cmd[5 * 4096 + 256];
    snprintf(cmd, sizeof cmd,
             "python3 '%s/tests/reference/torch_format.py' "
             "'%s/model.safetensors' '%s/pytorch_model.bin' && cp '%s/config.json' '%s/'",
             QD_TEST_SOURCE_DIR, dir, tmp, dir, tmp);
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) == 127) {
        printf("test_torch_real_bert: SKIPPED: python3 is not available\n");
        st_rmtree(tmp);
        return QD_TEST_SKIP;
    }
    CHECK_EQ(WEXITSTATUS(st), 0);

    qd_checkpoint *a = NULL, *b = NULL;
    int rc = qd_ckpt_open(dir, &a);
    CHECK_MSG(rc == QD_OK, "%s", qd_errmsg());
    rc = qd_ckpt_open(tmp, &b);
    CHECK_MSG(rc == QD_OK, "%s", qd_errmsg());
    if (a && b) {
        CHECK_EQ(qd_ckpt_file(a, 0)->format, QD_FMT_SAFETENSORS);
        CHECK_EQ(qd_ckpt_file(b, 0)->format, QD_FMT_TORCH_ZIP);
        CHECK_CONTAINS(qd_ckpt_file(b, 0)->path, "pytorch_model.bin");
        CHECK_CONTAINS(qd_ckpt_file(b, 0)->metadata_json, "\"archive\":\"pytorch_model\"");
        CHECK_EQ(qd_ckpt_num_tensors(a), qd_ckpt_num_tensors(b));
        int n = qd_ckpt_num_tensors(a) < qd_ckpt_num_tensors(b) ? qd_ckpt_num_tensors(a) : qd_ckpt_num_tensors(b);
        uint64_t bytes = 0;
        int same = 0;
        for (int i = 0; i < n; i++) {
            const qd_tensor_info *x = qd_ckpt_tensor(a, i), *y = qd_ckpt_tensor(b, i);
            CHECK_STREQ(x->name, y->name);
            CHECK_EQ(x->dtype, y->dtype);
            CHECK_EQ(x->ndim, y->ndim);
            for (int d = 0; d < x->ndim && d < y->ndim; d++) CHECK_EQ(x->shape[d], y->shape[d]);
            CHECK_EQ(x->nbytes, y->nbytes);
            const void *px = NULL, *py = NULL;
            CHECK_EQ(qd_ckpt_raw(a, i, &px), QD_OK);
            CHECK_EQ(qd_ckpt_raw(b, i, &py), QD_OK);
            if (px && py && x->nbytes == y->nbytes) {
                int eq = !memcmp(px, py, (size_t)x->nbytes);
                CHECK_MSG(eq, "tensor '%s' differs", x->name);
                same += eq;
                bytes += x->nbytes;
            }
            if (y->dtype == QD_DT_F32) {
                const float *f;
                int owned = 1;
                CHECK_EQ(qd_ckpt_read_f32(b, i, &f, &owned), QD_OK);
                CHECK_EQ(owned, 0);
            }
        }
        printf("%d of %d tensors identical (%llu bytes) in %s and %s/pytorch_model.bin\n", same, n,
               (unsigned long long)bytes, dir, tmp);
        CHECK_EQ(n, 104);
    }
    qd_ckpt_close(a);
    qd_ckpt_close(b);
    st_rmtree(tmp);
    free(tmp);
    QD_TEST_MAIN_END();
}
