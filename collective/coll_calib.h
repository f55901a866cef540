/* collective/coll_calib.h — what the calibrated phase exchanges beyond collective.h's
 * all-reductions: a layer's statistics summed onto the one rank that quantizes it, and handed on
 * to the few others that share its rows, so a rank that quantizes none of a layer's rows never
 * holds the layer's sums or its Hessian. Integer sums are exact, so a reduction to one rank gives
 * the bits an all-reduction gives, for any number of ranks. */
#ifndef QD_COLL_CALIB_H
#define QD_COLL_CALIB_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

/* The exact sum over comm of every rank's v [n], on root only (in place there); the others' v
 * are unchanged and may be freed afterwards. Collective over comm. */
void qd_coll_reduce_i64(MPI_Comm comm, int64_t *v, int64_t n, int root);
/* root's `bytes` bytes of buf to the ranks r with member[r] != 0 (root's own entry ignored);
 * ranks that are not members take no part (and do not wait). Called by root and the members. */
void qd_coll_share(MPI_Comm comm, void *buf, size_t bytes, int root, const uint8_t *member);

#endif
