/* worker/smooth.h — SmoothQuant scale migration (Xiao et al. 2023) for a quantization job: per
 * input channel j of every Linear input group (the Linears reading the same input: query, key and
 * value share one),
 *     s_j = max|X_j|^alpha / max_{n, Linears of the group} |W[n][j]|^(1 - alpha)
 * from the per-channel absmax of the calibration inputs (the FP32 model on --calib samples) and of
 * the weights. The job quantizes W diag(s) and records s beside the codes (docs/FORMAT.md:
 * dataset `smooth`); inference divides the input columns by s before quantizing them (a multiply
 * fused into the activation quantizer), so channels with outlier activations are flattened and
 * every column stays in the int8 product. Channels with a zero on either side keep s = 1; s is
 * clamped to [1e-5, 1e5].
 *
 * The statistics are exact and order-free (a maximum), merged as a maximum over the ranks (qd_coll_max_floats): every rank computes
 * the same factors, whatever the number of ranks. Samples are shared out by micro-batch (rank r
 * runs micro-batches r, r + p, ...). */
#ifndef QD_WORKER_SMOOTH_H
#define QD_WORKER_SMOOTH_H

#include <mpi.h>

#include "shard/safetensors.h"
#include "worker/job.h"

/* factors[ti] = s (cols floats, malloc'd) for each checkpoint tensor ti that is a model Linear's
 * weight, NULL for the others (factors has qd_ckpt_num_tensors(ck) entries). Collective; every rank
 * returns the same status (errors name the file, the data or the tensor). */
int qd_smooth_factors(const qd_job_config *cfg, MPI_Comm comm, const qd_checkpoint *ck, float **factors);

#endif
