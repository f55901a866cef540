/* coordinator/service_auth.h — who is asking: client keys of a CURVE service.
 *
 * With CURVE every client proves a key pair during the handshake. The service's ZAP handler (ZMQ
 * RFC 27, answered by the socket thread of rank 0) turns the client's public key into the
 * message's User-Id, which becomes the owner of the jobs that client submits: a client sees and
 * cancels its own jobs only. Keys listed as admins see and cancel every job, may shut the service
 * down and may subscribe to the events (events name every job's paths, so other clients may not).
 * An optional list of client keys refuses every other key at the handshake.
 *
 * Key files: one Z85 public key (40 characters, as `qdist keygen` writes PREFIX.pub) per line;
 * blank lines and lines starting with '#' are ignored.
 */
#ifndef QD_SERVICE_AUTH_H
#define QD_SERVICE_AUTH_H

#include <stddef.h>

#define QD_SVC_KEY_LEN 40 /* Z85 text of a 32-byte CURVE key */

typedef struct {
    char (*keys)[QD_SVC_KEY_LEN + 1];
    int n;
} qd_svc_keys;

/* Reads a key file into k (appending); QD_OK, or QD_EFORMAT / QD_EIO with a message naming the
 * file and line. */
int qd_svc_keys_read(qd_svc_keys *k, const char *path);
int qd_svc_keys_has(const qd_svc_keys *k, const char *z85);
void qd_svc_keys_free(qd_svc_keys *k);

typedef struct {
    qd_svc_keys clients; /* n == 0: any key may connect to the request socket */
    qd_svc_keys admins;
} qd_svc_auth;

/* The ZAP domains the service sets on its sockets. */
#define QD_SVC_ZAP_REQUESTS "qdist-requests"
#define QD_SVC_ZAP_EVENTS   "qdist-events"

/* The decision for one handshake: 1 to accept, 0 to refuse. The client's key (32 bytes) is
 * written as Z85 into user_id. */
int qd_svc_auth_decide(const qd_svc_auth *a, const char *domain, const char *mechanism, const unsigned char *key,
                       size_t key_len, char user_id[QD_SVC_KEY_LEN + 1]);

/* Answers one ZAP request waiting on the REP socket zap (non-blocking; nothing waiting is fine). */
void qd_svc_auth_serve(const qd_svc_auth *a, void *zap);

#endif /* QD_SERVICE_AUTH_H */
