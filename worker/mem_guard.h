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

#endif
