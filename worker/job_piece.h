/* worker/job_piece.h — the write phase of one piece of a job (worker/job.c): rows of one tensor
 * quantized by its method (or taken from the calibrated phase's results, or copied as float or
 * raw bytes), packed and written to the model file by the rank that owns the piece, with the
 * error sums of its row blocks. Shared by the job's files only. */
#ifndef QD_JOB_PIECE_H
#define QD_JOB_PIECE_H

#include "collective/h5model.h"
#include "shard/plan.h"
#include "worker/calib_job.h"
#include "worker/job_spec.h"

/* A tensor of the job on every rank: what it is, its record in the file, its progress. */
typedef struct {
    qd_job_tensor j;
    int ti;  /* checkpoint tensor */
    int rec; /* its record in the model file (qd_h5m_declare) */
    qd_errsum blk[QD_JOB_MAX_BLOCKS];
    int pieces_total, pieces_done;
    int complete;              /* marked complete in the file (resumed) */
    int last_rank;             /* rank of its last piece */
    double m[QD_H5M_NMETRICS]; /* rel_fro, mse, max_abs, sqnr_db */
    double seconds;
    const qd_calib_result *cq; /* codes of a calibrated method, or NULL */
} qd_job_item;

/* One rank's report of one piece, exchanged at the end of a round. */
typedef struct {
    int piece; /* -1: none */
    int status;
    double seconds;                   /* wall time of the piece */
    double cpu;                       /* CPU time of the piece (user + system, this thread) */
    qd_errsum blk[QD_JOB_MAX_BLOCKS]; /* absolute block index of the tensor */
} qd_piece_rec;

/* The rows [*r0, *r1) of item it that piece p covers. */
void qd_job_piece_rows(const qd_job_item *it, const qd_plan_piece *p, int64_t *r0, int64_t *r1);

/* Quantizes (or copies) piece p of item it and writes it; error sums go to rec->blk. */
int qd_job_piece(const qd_job_config *cfg, qd_checkpoint *ck, qd_h5m_writer *w, qd_job_item *it, const qd_plan_piece *p,
                 qd_piece_rec *rec);

/* The metrics of a finished quantized tensor from its block sums, added in block order. */
void qd_job_item_metrics(qd_job_item *it, const qd_tensor_info *t);

#endif
