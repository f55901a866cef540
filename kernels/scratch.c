/* Per-thread scratch of the GEMM drivers (kernels/infer_isa.h): one pthread key whose destructor
 * frees a thread's buffers when it exits, so pool threads leave nothing behind. */
#include <pthread.h>
#include <stdlib.h>

#include "kernels/infer_isa.h"
#include "kernels/kernels.h"

typedef struct {
    void *p[QD_SCRATCH_SLOTS];
    size_t cap[QD_SCRATCH_SLOTS];
} scratch_set;

static pthread_key_t g_key;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *v)
{
    scratch_set *s = v;
    for (int i = 0; i < QD_SCRATCH_SLOTS; i++) free(s->p[i]);
    free(s);
}

static void make_key(void) { QD_ASSERT(pthread_key_create(&g_key, scratch_free) == 0); }

void *qd_kernels_scratch(int slot, size_t bytes)
{
    QD_ASSERT(slot >= 0 && slot < QD_SCRATCH_SLOTS);
    pthread_once(&g_once, make_key);
    scratch_set *s = pthread_getspecific(g_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        QD_ASSERT(s != NULL);
        QD_ASSERT(pthread_setspecific(g_key, s) == 0);
    }
    if (bytes > s->cap[slot]) {
        free(s->p[slot]);
        size_t n = (bytes + 4095) / 4096 * 4096;
        s->p[slot] = aligned_alloc(64, n);
        QD_ASSERT(s->p[slot] != NULL);
        s->cap[slot] = n;
    }
    return s->p[slot];
}
