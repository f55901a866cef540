/* The engine's thread pool (runtime/workers.h). */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "common/qd_common.h"
#include "runtime/workers.h"

/* spins of a worker on the region counter before it sleeps: about a millisecond, longer than the
 * gap between two regions of a forward pass, far shorter than the gap between two requests */
#define SPINS 200000

struct qd_workers {
    int threads;
    pthread_t *tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint_fast64_t gen; /* region number, bumped to start one */
    atomic_int_fast64_t next; /* next task index of the region */
    atomic_int pending;       /* workers still inside the region */
    atomic_int quit;
    int each; /* the region runs task(arg, id, id) once on every thread */
    int64_t n;
    qd_workers_task task;
    void *arg;
};

typedef struct {
    qd_workers *p;
    int id;
} worker_arg;

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void run_tasks(qd_workers *p, int id)
{
    if (p->each) {
        p->task(p->arg, id, id);
        return;
    }
    for (;;) {
        const int64_t i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (i >= p->n) break;
        p->task(p->arg, i, id);
    }
}

static void *worker(void *v)
{
    worker_arg wa = *(worker_arg *)v;
    free(v);
    qd_workers *p = wa.p;
    uint64_t seen = 0;
    for (;;) {
        uint64_t g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen && !atomic_load(&p->quit)) {
            if (++spins < SPINS) {
                /* every 64th turn gives the core away: on a machine with more runnable threads
                 * than cores, the spinner would otherwise hold the slice the region's other
                 * threads need */
                if (spins % 64 == 0)
                    sched_yield();
                else
                    cpu_relax();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->quit)) pthread_cond_wait(&p->cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->quit)) return NULL;
        seen = g;
        run_tasks(p, wa.id);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
    }
}

int qd_workers_create(int threads, qd_workers **out)
{
    *out = NULL;
    if (threads < 1 || threads > 256) return qd_err_set(QD_EINVAL, "threads must be in [1, 256], got %d", threads);
    qd_workers *p = calloc(1, sizeof *p);
    if (!p) return qd_err_set(QD_ENOMEM, "thread pool: out of memory");
    p->threads = threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    atomic_init(&p->gen, 0);
    atomic_init(&p->next, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->quit, 0);
    p->tid = calloc((size_t)threads, sizeof *p->tid);
    if (!p->tid) {
        qd_workers_free(p);
        return qd_err_set(QD_ENOMEM, "thread pool: out of memory");
    }
    for (int i = 1; i < threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (wa) wa->p = p, wa->id = i;
        if (!wa || pthread_create(&p->tid[i], NULL, worker, wa) != 0) {
            free(wa);
            p->threads = i; /* the ones started so far are joined */
            qd_workers_free(p);
            return qd_err_set(QD_ENOMEM, "thread pool: cannot start thread %d of %d", i, threads);
        }
    }
    *out = p;
    return QD_OK;
}

void qd_workers_free(qd_workers *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->threads; i++)
        if (p->tid) pthread_join(p->tid[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->tid);
    free(p);
}

int qd_workers_threads(const qd_workers *p) { return p->threads; }

static void region(qd_workers *p, int64_t n, int each, qd_workers_task task, void *arg)
{
    p->n = n;
    p->each = each;
    p->task = task;
    p->arg = arg;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->pending, p->threads - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    run_tasks(p, 0);
    for (int spins = 0; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; spins++) {
        if (spins % 64 == 63)
            sched_yield(); /* a worker not yet scheduled gets the core (oversubscribed machines) */
        else
            cpu_relax();
    }
}

void qd_workers_run(qd_workers *p, int64_t n, qd_workers_task task, void *arg)
{
    if (n <= 0) return;
    if (p->threads == 1 || n == 1) {
        for (int64_t i = 0; i < n; i++) task(arg, i, 0);
        return;
    }
    region(p, n, 0, task, arg);
}

void qd_workers_run_each(qd_workers *p, qd_workers_task task, void *arg)
{
    if (p->threads == 1) {
        task(arg, 0, 0);
        return;
    }
    region(p, p->threads, 1, task, arg);
}
