/* worker/methods.c — the table of methods (see method.h). */
#include <string.h>

#include "shard/plan.h"
#include "worker/method.h"

static const qd_method_def *const k_methods[QD_METHOD_COUNT_] = {
#define QD_METHOD_ENTRY_(id, name) &qd_method_##name,
    QD_METHODS(QD_METHOD_ENTRY_)
#undef QD_METHOD_ENTRY_
};

const qd_method_def *qd_method_get(qd_method m)
{
    QD_ASSERT(m >= 0 && m < QD_METHOD_COUNT_);
    return k_methods[m];
}

const char *qd_method_name(qd_method m) { return m >= 0 && m < QD_METHOD_COUNT_ ? k_methods[m]->name : "unknown"; }

int qd_method_from_name(const char *s, qd_method *out)
{
    for (int m = 0; m < QD_METHOD_COUNT_; m++)
        if (!strcmp(s, k_methods[m]->name)) {
            *out = (qd_method)m;
            return 0;
        }
    return -1;
}

void qd_method_default_opts(qd_method_opts *o)
{
    memset(o, 0, sizeof *o);
    o->scheme = (qd_qscheme){.bits = 8, .sym = 1, .gran = QD_GRAN_CHANNEL, .group_size = 128};
    qd_gptq_default_opts(&o->gptq);
    qd_adaround_default_opts(&o->ada);
    o->prune = -1;
    o->km = (qd_kmeans_opts){.bits = 8, .per_row = 1, .max_iters = 50, .seed = 0, .init = QD_KMEANS_PLUSPLUS};
}

int qd_method_calibrated(qd_method m)
{
    qd_method_opts o;
    qd_method_default_opts(&o);
    return qd_method_get(m)->needs(&o) != QD_NEEDS_NOTHING;
}

double qd_method_cost(qd_method m, int64_t rows, int64_t cols, const qd_method_opts *o)
{
    qd_method_opts d;
    if (!o) {
        qd_method_default_opts(&d);
        o = &d;
    }
    return qd_method_get(m)->cost(rows, cols, o);
}

int64_t qd_scheme_group_cols(const qd_qscheme *s, int64_t cols)
{
    return s->gran == QD_GRAN_GROUP && s->group_size < cols ? s->group_size : cols;
}

int64_t qd_method_codebook_row(qd_method m, const qd_qscheme *s, int64_t cols)
{
    if (!qd_method_get(m)->codebook) return 0;
    return qd_kmeans_ngroups(cols, qd_scheme_group_cols(s, cols)) << s->bits;
}
