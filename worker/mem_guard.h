/* worker/mem_guard.h — the memory a rank can have, so that a job whose estimate does not fit
 * stops before it starts (with the options that fit) instead of being killed by the kernel half
 * way. Reads /proc/meminfo and the cgroup (v2, else v1) of the process; no MPI. */
#ifndef QD_MEM_GUARD_H
#define QD_MEM_GUARD_H

#include <stddef.h>

/* The bytes one of `local_ranks` ranks on this host can use: the least of MemAvailable and the
 * cgroup's room (limit - usage), shared by local_ranks, and mem_per_rank when > 0. `source`
 * says which figure decided (for messages). 0 when nothing could be read (no limit known). */
double qd_mem_rank_limit(double mem_per_rank, int local_ranks, char *source, size_t cap);

/* This process's memory now: resident (VmRSS), its high-water mark (VmHWM), and the heap's
 * bytes in use and held by the allocator (in use + free but not returned); -1 where unknown. */
typedef struct {
    double rss, hwm, heap_used, heap_held;
} qd_mem_now;
void qd_mem_probe(qd_mem_now *m);

/* Gives the heap's free pages back to the system (glibc's malloc_trim): freed blocks of a size
 * under the allocator's mmap threshold stay mapped otherwise, and a long job's resident memory
 * grows with each block's temporaries. No effect where the allocator has no such call. */
void qd_mem_trim(void);

#endif
