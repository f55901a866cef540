/* worker/mem_guard.c — the memory a rank can have (see mem_guard.h). */
#include "worker/mem_guard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

/* A number of bytes from a one-line file ("max" and unreadable files: -1). */
static double read_bytes(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[64] = "";
    const int ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    if (!ok || !strncmp(line, "max", 3)) return -1;
    char *end;
    const double v = strtod(line, &end);
    return end == line ? -1 : v;
}

static double mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return -1;
    char line[160];
    double kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1) break;
    fclose(f);
    return kb < 0 ? -1 : kb * 1024.0;
}

/* The cgroup's room: limit - usage, or -1 when there is no limit. */
static double cgroup_room(double *limit)
{
    *limit = -1;
    FILE *f = fopen("/proc/self/cgroup", "r");
    char line[1024], dir[1200] = "", p[1400];
    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (!strncmp(line, "0::", 3)) { /* cgroup v2 */
            snprintf(dir, sizeof dir, "/sys/fs/cgroup%s", line + 3);
            break;
        }
    }
    if (f) fclose(f);
    double lim = -1, use = -1;
    if (dir[0]) {
        snprintf(p, sizeof p, "%s/memory.max", dir);
        lim = read_bytes(p);
        snprintf(p, sizeof p, "%s/memory.current", dir);
        use = read_bytes(p);
    }
    if (lim < 0) { /* cgroup v1 */
        lim = read_bytes("/sys/fs/cgroup/memory/memory.limit_in_bytes");
        use = read_bytes("/sys/fs/cgroup/memory/memory.usage_in_bytes");
        if (lim > 1e18) lim = -1; /* "no limit" is a huge number there */
    }
    if (lim < 0) return -1;
    *limit = lim;
    return use >= 0 ? lim - use : lim;
}

double qd_mem_rank_limit(double mem_per_rank, int local_ranks, char *source, size_t cap)
{
    if (local_ranks < 1) local_ranks = 1;
    double best = -1, lim;
    snprintf(source, cap, "nothing known");
    const double avail = mem_available(), room = cgroup_room(&lim);
    if (avail > 0) {
        best = avail / local_ranks;
        snprintf(source, cap, "MemAvailable %.0f MB over %d rank%s on this host", avail * 1e-6, local_ranks,
                 local_ranks == 1 ? "" : "s");
    }
    if (room > 0 && (best < 0 || room / local_ranks < best)) {
        best = room / local_ranks;
        snprintf(source, cap, "the cgroup's %.0f MB free of its %.0f MB limit over %d rank%s on this host", room * 1e-6,
                 lim * 1e-6, local_ranks, local_ranks == 1 ? "" : "s");
    }
    if (mem_per_rank > 0 && (best < 0 || mem_per_rank < best)) {
        best = mem_per_rank;
        snprintf(source, cap, "--mem-per-rank %.0f MB", mem_per_rank * 1e-6);
    }
    return best < 0 ? 0 : best;
}

void qd_mem_probe(qd_mem_now *m)
{
    m->rss = m->hwm = m->heap_used = m->heap_held = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (f) {
        char line[160];
        double kb;
        while (fgets(line, sizeof line, f)) {
            if (sscanf(line, "VmRSS: %lf kB", &kb) == 1) m->rss = kb * 1024.0;
            if (sscanf(line, "VmHWM: %lf kB", &kb) == 1) m->hwm = kb * 1024.0;
        }
        fclose(f);
    }
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    const struct mallinfo2 mi = mallinfo2();
    m->heap_used = (double)mi.uordblks + (double)mi.hblkhd;
    m->heap_held = (double)mi.arena + (double)mi.hblkhd;
#endif
}

void qd_mem_trim(void)
{
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}
