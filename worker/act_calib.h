/* worker/act_calib.h — static activation calibration over the ranks of a communicator: the FP32
 * forward pass over the calibration samples with taps at every tensor integer-only inference
 * quantizes (model/model.h QD_TAP_*), then a range, scale and zero point per tensor
 * (quant/actq.h).
 *
 * Data parallel, as worker/calib_run.h: the samples are cut into global micro-batches and rank r
 * runs micro-batches r, r + p, ... A first pass takes the minimum and maximum of every tensor
 * (an exact element-wise maximum of -min and max over the ranks); a second fills histograms over
 * the agreed ranges (exact int64 sums) when the range method needs them. A sample's activations do not depend on its batch
 * (model/README.md), so the record is the same bits for any number of ranks.
 *
 * The inputs of the Linears (QD_TAP_QKV_IN, MLP_IN, ACT) also get per-channel ranges in the first
 * pass: channels far larger than the median channel become static outlier channels with their own
 * range (quant/actq.h), and the tensor's range, histogram and scale describe the other channels. */
#ifndef QD_ACT_CALIB_H
#define QD_ACT_CALIB_H

#include <mpi.h>

#include "model/calib_data.h"
#include "model/model.h"
#include "quant/actq.h"
#include "worker/job.h"

#define QD_ACT_OUTLIERS_MAX 32 /* outlier channels per tensor at most (runtime/intmodel.h QD_IOUT_MAX) */

typedef struct {
    qd_actq_method method;
    double percentile; /* for QD_ACTQ_PERCENTILE, in (50, 100] */
    int bits;          /* 2..8 */
    int microbatch;    /* samples per forward call (default 8) */
    double outliers;   /* static outlier channels of the Linear inputs: absmax above this times
                          the median channel's (0: none; quant/actq.h qd_actq_outliers) */
    int quiet;         /* no progress lines on rank 0 */
} qd_act_calib_opts;

/* Collective over comm; every rank returns the same status and the same record. */
int qd_act_calibrate(MPI_Comm comm, const qd_model *m, qd_calib_data *data, const qd_act_calib_opts *o, qd_actrec *out);

/* The job's step (cfg->act_static): opens the model (config and weights) and the calibration
 * samples as the job's options say, calibrates, and fills out (with its calibration JSON). */
int qd_act_job_run(const qd_job_config *cfg, MPI_Comm comm, qd_actrec *out);

#endif
