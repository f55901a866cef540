/* shard/cost.h — the time model of a calibrated job: the wall time of `qdist quantize` with a
 * calibrated method as a sum of its phases, each a few per-unit costs times the work the job
 * holds, fitted by least squares from measured runs (the phases every job prints). `qdist plan`
 * predicts with it for other rank and node counts, network bandwidths and file systems.
 *
 *   P ranks on N nodes of C cores, cores = min(P, N·C), over = P / cores (>= 1: ranks that
 *   share a core take turns on the work each of them repeats):
 *   read     = c_read · bytes_in · over                   every rank reads the blocks it calibrates
 *   forward  = c_fwd · fwd_work / cores + c_blk · blocks   calibration passes, split by samples
 *   reduce   = reduce_bytes · 2(P−1)/P · c_byte            ring all-reduce of the statistics
 *              + c_lat · reductions · ⌈log2 P⌉
 *   quantize = c_q · max(span(P), work(P) / cores)         the busiest rank's share of each block,
 *                                                          or all ranks' work on the cores
 *   gather   = c_dq · qparams · over                       every rank dequantizes every block
 *              + c_gbyte · qparams·(P−1)/P                 and gathers the others' results
 *   write    = c_w0 + out_bytes · c_wbyte                 the file (open, plan, pieces, close)
 *
 * The work terms come from the checkpoint and the options (coordinator/cmd_plan.c); the
 * coefficients from runs (qd_cost_fit) or this machine's default (qd_cost_model_default). The
 * model is plain arithmetic on a table, so it is tested without files (tests/shard/test_cost.c). */
#ifndef QD_COST_H
#define QD_COST_H

enum {
    QD_COST_READ = 0,
    QD_COST_FORWARD,
    QD_COST_REDUCE,
    QD_COST_QUANTIZE,
    QD_COST_GATHER,
    QD_COST_WRITE,
    QD_COST_NPHASES
};

/* the coefficients, in the order of the formulas above */
enum { QD_COST_NCOEF = 10 };
extern const char *const qd_cost_phase_names[QD_COST_NPHASES]; /* "read", "forward", ... */
extern const char *const qd_cost_coef_names[QD_COST_NCOEF];    /* "read_s_per_byte", ... */

/* One job: where it runs and the work it holds. */
typedef struct {
    int ranks, nodes, cores; /* cores per node */
    double bytes_in;         /* checkpoint bytes read (the calibrated blocks' and the rest) */
    double fwd_work;         /* tokens × (3·Σ in·out over the Linears + Σ in² over the input groups) */
    double reduce_bytes;     /* statistics all-reduced per rank (Σ in·4 + in²·8 over the groups) */
    double reductions;       /* all-reduce calls (two per calibrated block) */
    double quant_total;      /* Σ over blocks of all ranks' method work at this rank count */
    double quant_span;       /* Σ over blocks of the busiest rank's method work at this rank count */
    double qparams;          /* parameters quantized */
    double out_bytes;        /* bytes of the output file */
} qd_cost_job;

typedef struct {
    double c[QD_COST_NCOEF];
} qd_cost_model;

/* What a prediction may change: 0 keeps the fitted value. net_gbps: the network between nodes
 * (GB/s = 8 Gbit/s), the bandwidth of the reduction and the gather when nodes > 1 (instead of the
 * fitted one, measured on one node); net_latency_us: the larger of it and the fitted latency;
 * fs_mbps: the file system's write (and, across nodes, read) throughput. */
typedef struct {
    double net_gbps, net_latency_us, fs_mbps;
} qd_cost_env;

/* Predicts every phase (t may be NULL) and returns the wall time in seconds. */
double qd_cost_predict(const qd_cost_model *m, const qd_cost_job *j, const qd_cost_env *env, double t[QD_COST_NPHASES]);

/* The busiest rank's cost of one block of n tensors, the way the calibrated job plans it
 * (worker/calib_job.h qd_calib_plan_block). Tensor i has fixed[i] (GPTQ's factorization of its
 * input's statistics: done once per input group[i], on one rank, the first tensor's figure) and
 * share[i] for its rows. At least as many groups as ranks: whole groups, longest first, to the
 * least loaded rank; fewer: each group one rank and the other ranks one by one to the group with
 * the most work per rank, which divides its rows over its ranks (its first rank factorizes and
 * sends the others the factor). *work (may be NULL): what all ranks do together. */
double qd_cost_block_span(const double *fixed, const double *share, const int *group, int n, int ranks, double *work);

/* Least squares per phase (LAPACK's dgels on scaled columns; a coefficient that comes out
 * negative is dropped and the phase refitted, so each stays a cost). measured[r][phase]: run r's
 * seconds. rms[phase] (may be NULL): the fit's root-mean-square residual. 0, or -1 with
 * qd_errmsg() set when there are no runs. */
int qd_cost_fit(const qd_cost_job *jobs, const double (*measured)[QD_COST_NPHASES], int n, qd_cost_model *out,
                double rms[QD_COST_NPHASES]);

/* The model measured on the development machine (2 cores, shared; docs/scaling.md). */
void qd_cost_model_default(qd_cost_model *m);

/* The model as JSON ({"coefficients": {name: value, ...}, ...}); read: 0, or a negative code
 * naming the file and the key. write: 0 or -1 (qd_errmsg set). */
int qd_cost_model_read(const char *path, qd_cost_model *m);
int qd_cost_model_write(const char *path, const qd_cost_model *m, int runs, const double rms[QD_COST_NPHASES]);

/* One measured run as a JSON line (the job's work and its phases' seconds, and the wall time):
 * what `qdist plan --record` prints and `qdist plan --fit` reads. */
char *qd_cost_record_json(const qd_cost_job *j, const double measured[QD_COST_NPHASES], double wall);
/* Reads every record of a file (one JSON object per line, or an array); appends to the growing
 * arrays. 0, or a negative code naming the file and line. */
int qd_cost_records_read(const char *path, qd_cost_job **jobs, double (**measured)[QD_COST_NPHASES], double **wall,
                         int *n);

#endif
