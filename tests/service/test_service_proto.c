/* The service's request layer without sockets: endpoint and path confinement rules, job
 * validation. */
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coordinator/service_proto.h"
#include "qd_test.h"

static qd_svc_err validate(const char *json, const char *root, char *msg)
{
    cJSON *j = cJSON_Parse(json);
    const char *roots[1] = {root};
    qd_svc_err e = qd_svc_validate_job(j, roots, 1, msg, 512);
    cJSON_Delete(j);
    return e;
}

int main(void)
{
    CHECK(qd_svc_endpoint_is_loopback("tcp://127.0.0.1:5555"));
    CHECK(qd_svc_endpoint_is_loopback("tcp://127.100.0.2:1"));
    CHECK(qd_svc_endpoint_is_loopback("tcp://localhost:5555"));
    CHECK(qd_svc_endpoint_is_loopback("tcp://[::1]:5555"));
    CHECK(qd_svc_endpoint_is_loopback("ipc:///tmp/q.sock"));
    CHECK(!qd_svc_endpoint_is_loopback("tcp://0.0.0.0:5555"));
    CHECK(!qd_svc_endpoint_is_loopback("tcp://*:5555"));
    CHECK(!qd_svc_endpoint_is_loopback("tcp://10.0.0.1:5555"));
    CHECK(!qd_svc_endpoint_is_loopback("tcp://127.0.0.1.evil.com:5555"));
    CHECK(!qd_svc_endpoint_is_loopback("tcp://eth0:5555"));

    CHECK(qd_svc_path_within("/a/b", "/a"));
    CHECK(qd_svc_path_within("/a", "/a"));
    CHECK(!qd_svc_path_within("/ab", "/a"));
    CHECK(!qd_svc_path_within("/b", "/a"));
    CHECK(qd_svc_path_within("/x", "/"));

    /* a sandbox: root/model (dir), root/out/, root/link -> /etc, outside/ */
    char tmpl[] = "/tmp/qd-svc-XXXXXX";
    char *base = mkdtemp(tmpl);
    CHECK(base != NULL);
    char root[PATH_MAX], p[PATH_MAX + 64], q[3 * PATH_MAX], msg[512], js[4 * PATH_MAX];
    snprintf(root, sizeof root, "%s/root", base);
    mkdir(root, 0755);
    snprintf(p, sizeof p, "%s/model", root);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/outside", base);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/link", root);
    CHECK_EQ(symlink("/etc", p), 0);
    snprintf(p, sizeof p, "%s/exists.h5", root);
    FILE *f = fopen(p, "w");
    fclose(f);
    snprintf(p, sizeof p, "%s/outlink.h5", root);
    CHECK_EQ(symlink("/tmp/elsewhere.h5", p), 0);

    snprintf(js, sizeof js, "{\"model\":\"%s/model\",\"out\":\"%s/new.h5\"}", root, root);
    CHECK_EQ(validate(js, root, msg), QD_SVC_OK);
    /* resolved paths replace the given ones */
    cJSON *j = cJSON_Parse(js);
    const char *roots[1] = {root};
    snprintf(q, sizeof q, "{\"model\":\"%s/model/../model\",\"out\":\"%s/./new.h5\"}", root, root);
    cJSON_Delete(j);
    j = cJSON_Parse(q);
    CHECK_EQ(qd_svc_validate_job(j, roots, 1, msg, sizeof msg), QD_SVC_OK);
    snprintf(p, sizeof p, "%s/model", root);
    CHECK_STREQ(cJSON_GetObjectItem(j, "model")->valuestring, p);
    cJSON_Delete(j);

    snprintf(js, sizeof js, "{\"model\":\"%s/../outside\",\"out\":\"%s/new.h5\"}", root, root);
    CHECK_EQ(validate(js, root, msg), QD_SVC_PATH_NOT_ALLOWED);
    CHECK_CONTAINS(msg, "outside the allowed");
    snprintf(js, sizeof js, "{\"model\":\"%s/link\",\"out\":\"%s/new.h5\"}", root, root);
    CHECK_EQ(validate(js, root, msg), QD_SVC_PATH_NOT_ALLOWED); /* symlink escape */
    snprintf(js, sizeof js, "{\"model\":\"%s/model\",\"out\":\"%s/link/x.h5\"}", root, root);
    CHECK_EQ(validate(js, root, msg), QD_SVC_PATH_NOT_ALLOWED);
    snprintf(js, sizeof js, "{\"model\":\"%s/model\",\"out\":\"%s/outlink.h5\"}", root, root);
    CHECK_EQ(validate(js, root, msg), QD_SVC_PATH_NOT_ALLOWED);
    snprintf(js, sizeof js, "{\"model\":\"%s/model\",\"out\":\"%s/exists.h5\"}", root, root);
    CHECK_EQ(validate(js, root, msg), QD_SVC_EXISTS);
    CHECK_CONTAINS(msg, "overwrite");
    snprintf(js, sizeof js, "{\"model\":\"%s/model\",\"out\":\"%s/exists.h5\",\"overwrite\":true}", root, root);
    CHECK_EQ(validate(js, root, msg), QD_SVC_OK);
    snprintf(js, sizeof js, "{\"model\":\"%s/model\",\"out\":\"%s/x.h5\",\"overwrite\":\"yes\"}", root, root);
    CHECK_EQ(validate(js, root, msg), QD_SVC_BAD_TYPE);
    snprintf(js, sizeof js, "{\"out\":\"%s/new.h5\"}", root);
    CHECK_EQ(validate(js, root, msg), QD_SVC_MISSING_FIELD);
    CHECK_CONTAINS(msg, "'model'");
    snprintf(js, sizeof js, "{\"model\":\"%s/model\"}", root);
    CHECK_EQ(validate(js, root, msg), QD_SVC_MISSING_FIELD);
    snprintf(js, sizeof js, "{\"model\":7,\"out\":\"%s/new.h5\"}", root);
    CHECK_EQ(validate(js, root, msg), QD_SVC_BAD_TYPE);
    snprintf(js, sizeof js, "{\"model\":\"%s/nope\",\"out\":\"%s/new.h5\"}", root, root);
    CHECK_EQ(validate(js, root, msg), QD_SVC_NOT_FOUND);
    snprintf(js, sizeof js, "{\"model\":\"%s/model\",\"out\":\"%s/nodir/new.h5\"}", root, root);
    CHECK_EQ(validate(js, root, msg), QD_SVC_NOT_FOUND);
    snprintf(js, sizeof js, "{\"model\":\"%s/model\",\"out\":\"%s/..\"}", root, root);
    CHECK_EQ(validate(js, root, msg), QD_SVC_BAD_REQUEST);
    CHECK_EQ(validate("[1,2]", root, msg), QD_SVC_BAD_TYPE);
    /* out through `..` out of the root */
    snprintf(js, sizeof js, "{\"model\":\"%s/model\",\"out\":\"%s/model/../../outside/x.h5\"}", root, root);
    CHECK_EQ(validate(js, root, msg), QD_SVC_PATH_NOT_ALLOWED);
    /* the calibration file is a path too: inside the roots, resolved, existing */
    snprintf(p, sizeof p, "%s/calib.txt", root);
    f = fopen(p, "w");
    fclose(f);
    snprintf(js, sizeof js, "{\"model\":\"%s/model\",\"out\":\"%s/new.h5\",\"calib\":\"%s/model/../calib.txt\"}", root,
             root, root);
    j = cJSON_Parse(js);
    CHECK_EQ(qd_svc_validate_job(j, roots, 1, msg, sizeof msg), QD_SVC_OK);
    CHECK_STREQ(cJSON_GetObjectItem(j, "calib")->valuestring, p);
    cJSON_Delete(j);
    snprintf(js, sizeof js, "{\"model\":\"%s/model\",\"out\":\"%s/new.h5\",\"calib\":\"/etc/passwd\"}", root, root);
    CHECK_EQ(validate(js, root, msg), QD_SVC_PATH_NOT_ALLOWED);
    CHECK_CONTAINS(msg, "calib");
    snprintf(js, sizeof js, "{\"model\":\"%s/model\",\"out\":\"%s/new.h5\",\"calib\":\"%s/link/passwd\"}", root, root,
             root);
    CHECK_EQ(validate(js, root, msg), QD_SVC_PATH_NOT_ALLOWED); /* through a symbolic link */
    snprintf(js, sizeof js, "{\"model\":\"%s/model\",\"out\":\"%s/new.h5\",\"calib\":\"%s/../outside\"}", root, root,
             root);
    CHECK_EQ(validate(js, root, msg), QD_SVC_PATH_NOT_ALLOWED);
    snprintf(js, sizeof js, "{\"model\":\"%s/model\",\"out\":\"%s/new.h5\",\"calib\":\"%s/none.txt\"}", root, root,
             root);
    CHECK_EQ(validate(js, root, msg), QD_SVC_NOT_FOUND);
    /* accepted, then its output directory becomes a symbolic link out of the root: the check
     * when the job starts refuses it */
    snprintf(p, sizeof p, "%s/outdir", root);
    mkdir(p, 0755);
    snprintf(js, sizeof js, "{\"model\":\"%s/model\",\"out\":\"%s/outdir/x.h5\"}", root, root);
    j = cJSON_Parse(js);
    CHECK_EQ(qd_svc_validate_job(j, roots, 1, msg, sizeof msg), QD_SVC_OK);
    CHECK_EQ(rmdir(p), 0);
    snprintf(q, sizeof q, "%s/outside", base);
    CHECK_EQ(symlink(q, p), 0);
    CHECK_EQ(qd_svc_confine_job(j, roots, 1, msg, sizeof msg), QD_SVC_PATH_NOT_ALLOWED);
    CHECK_CONTAINS(msg, "outside the allowed");
    cJSON_Delete(j);

    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf %s", base);
    CHECK_EQ(system(cmd), 0);
    QD_TEST_MAIN_END();
}
