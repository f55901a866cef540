/* Client keys of a CURVE service and its ZAP handler (service_auth.h). */
#include "coordinator/service_auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "common/qd_common.h"

#define MAX_KEYS 4096

static int is_z85(const char *s, size_t n)
{
    static const char alphabet[] =
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
    for (size_t i = 0; i < n; i++)
        if (!s[i] || !strchr(alphabet, s[i])) return 0;
    return 1;
}

int qd_svc_keys_read(qd_svc_keys *k, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return qd_err_set(QD_EIO, "%s: %s", path, strerror(errno));
    char line[256];
    int ln = 0, rc = QD_OK;
    while (rc == QD_OK && fgets(line, sizeof line, f)) {
        ln++;
        size_t n = strcspn(line, "\r\n");
        if (n == sizeof line - 1) {
            rc = qd_err_set(QD_EFORMAT, "%s:%d: line too long", path, ln);
            break;
        }
        line[n] = 0;
        const char *p = line + strspn(line, " \t");
        n = strlen(p);
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t')) n--;
        if (n == 0 || p[0] == '#') continue;
        if (n != QD_SVC_KEY_LEN || !is_z85(p, n))
            rc = qd_err_set(QD_EFORMAT, "%s:%d: expected a 40-character Z85 public key (qdist keygen's PREFIX.pub)",
                            path, ln);
        else if (k->n == MAX_KEYS)
            rc = qd_err_set(QD_EFORMAT, "%s: more than %d keys", path, MAX_KEYS);
        else {
            if (k->n % 64 == 0) {
                k->keys = realloc(k->keys, (size_t)(k->n + 64) * sizeof *k->keys);
                QD_ASSERT(k->keys);
            }
            memcpy(k->keys[k->n], p, QD_SVC_KEY_LEN);
            k->keys[k->n][QD_SVC_KEY_LEN] = 0;
            k->n++;
        }
    }
    fclose(f);
    return rc;
}

int qd_svc_keys_has(const qd_svc_keys *k, const char *z85)
{
    for (int i = 0; i < k->n; i++)
        if (!strcmp(k->keys[i], z85)) return 1;
    return 0;
}

void qd_svc_keys_free(qd_svc_keys *k)
{
    free(k->keys);
    k->keys = NULL;
    k->n = 0;
}

int qd_svc_auth_decide(const qd_svc_auth *a, const char *domain, const char *mechanism, const unsigned char *key,
                       size_t key_len, char user_id[QD_SVC_KEY_LEN + 1])
{
    user_id[0] = 0;
    if (strcmp(mechanism, "CURVE") || key_len != 32 || !zmq_z85_encode(user_id, key, 32)) return 0;
    int admin = qd_svc_keys_has(&a->admins, user_id);
    if (!strcmp(domain, QD_SVC_ZAP_EVENTS)) return admin;
    if (!strcmp(domain, QD_SVC_ZAP_REQUESTS))
        return admin || a->clients.n == 0 || qd_svc_keys_has(&a->clients, user_id);
    return 0;
}

/* ZAP request frames: version, request id, domain, address, identity, mechanism, credentials. */
void qd_svc_auth_serve(const qd_svc_auth *a, void *zap)
{
    zmq_msg_t f[8];
    int nf = 0, more = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, zap, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (nf < 8)
            f[nf++] = m;
        else
            zmq_msg_close(&m);
    }
    if (nf == 0) return;
    char domain[64] = "", mech[16] = "", user[QD_SVC_KEY_LEN + 1] = "";
    int ok = 0;
    if (nf >= 7) {
        snprintf(domain, sizeof domain, "%.*s", (int)zmq_msg_size(&f[2]), (const char *)zmq_msg_data(&f[2]));
        snprintf(mech, sizeof mech, "%.*s", (int)zmq_msg_size(&f[5]), (const char *)zmq_msg_data(&f[5]));
        ok = qd_svc_auth_decide(a, domain, mech, zmq_msg_data(&f[6]), zmq_msg_size(&f[6]), user);
    }
    /* reply: version, request id, status code, status text, user id, metadata */
    zmq_send(zap, "1.0", 3, ZMQ_SNDMORE);
    if (nf >= 2)
        zmq_send(zap, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), ZMQ_SNDMORE);
    else
        zmq_send(zap, "", 0, ZMQ_SNDMORE);
    zmq_send(zap, ok ? "200" : "400", 3, ZMQ_SNDMORE);
    const char *text = ok ? "OK" : "key not allowed";
    zmq_send(zap, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(zap, ok ? user : "", ok ? strlen(user) : 0, ZMQ_SNDMORE);
    zmq_send(zap, "", 0, 0);
    for (int i = 0; i < nf; i++) zmq_msg_close(&f[i]);
}
