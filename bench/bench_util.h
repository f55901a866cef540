/* bench/bench_util.h — what the benchmarks share: reproducible Gaussian data and the best-of timer.
 * One copy here instead of one per benchmark; the numbers they draw are unchanged. */
#ifndef QD_BENCH_UTIL_H
#define QD_BENCH_UTIL_H

#include <math.h>
#include <stdint.h>

#include "common/qd_common.h"

/* A normal draw of standard deviation `scale` (Box-Muller over a 64-bit LCG with state *s). */
static inline float qd_bench_nrand(uint64_t *s, double scale)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    double u = ((*s >> 11) + 1.0) / 9007199254740993.0;
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    double v = (*s >> 11) / 9007199254740992.0;
    return (float)(scale * sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

/* The best seconds of one `call` over at least min_s seconds: one warm-up call, then at least two
 * timed ones. */
#define QD_BENCH_BEST_TIME(call, min_s)              \
    ({                                               \
        call;                                        \
        double best_ = 1e30, t0_ = qd_now();         \
        int n_ = 0;                                  \
        while (n_ < 2 || qd_now() - t0_ < (min_s)) { \
            const double a_ = qd_now();              \
            call;                                    \
            const double t_ = qd_now() - a_;         \
            if (t_ < best_) best_ = t_;              \
            n_++;                                    \
        }                                            \
        best_;                                       \
    })

#endif /* QD_BENCH_UTIL_H */
