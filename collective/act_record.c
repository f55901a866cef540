/* collective/act_record.c — static activation scales across ranks and in the file (see act_record.h). */
#include "collective/act_record.h"

#include <stdlib.h>
#include <string.h>

#include "collective/h5_read.h"
#include "common/qd_common.h"

#define NAME_LEN 48

void qd_coll_actstats_minmax(MPI_Comm comm, qd_actq_stats *st, int n)
{
    float *v = qd_xmalloc((size_t)(n > 0 ? n : 1) * 2 * sizeof(float));
    for (int i = 0; i < n; i++) {
        v[i] = st[i].min;
        v[n + i] = -st[i].max;
    }
    /* one reduction: max of -max is -(the max), min of min is the min */
    QD_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, v, 2 * n, MPI_FLOAT, MPI_MIN, comm));
    for (int i = 0; i < n; i++) {
        st[i].min = v[i];
        st[i].max = -v[n + i];
    }
    free(v);
}

void qd_coll_actstats_sum(MPI_Comm comm, qd_actq_stats *st, int n)
{
    for (int i = 0; i < n; i++) {
        QD_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &st[i].count, 1, MPI_INT64_T, MPI_SUM, comm));
        if (st[i].hist) QD_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, st[i].hist, QD_ACTQ_BINS, MPI_INT64_T, MPI_SUM, comm));
    }
}

/* ---- writer ----------------------------------------------------------------------------- */

static void attr(hid_t g, const char *name, hid_t ftype, hid_t mtype, int n, const void *data)
{
    hsize_t d = (hsize_t)(n > 0 ? n : 1);
    hid_t sp = QD_H5_CHECK(n == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &d, NULL));
    hid_t a = QD_H5_CHECK(H5Acreate2(g, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT));
    QD_H5_CHECK(H5Awrite(a, mtype, data));
    QD_H5_CHECK(H5Aclose(a));
    QD_H5_CHECK(H5Sclose(sp));
}

static void attr1d(hid_t g, const char *name, hid_t ft, hid_t mt, hsize_t n, const void *data)
{
    hid_t sp = QD_H5_CHECK(H5Screate_simple(1, &n, NULL));
    hid_t a = QD_H5_CHECK(H5Acreate2(g, name, ft, sp, H5P_DEFAULT, H5P_DEFAULT));
    QD_H5_CHECK(H5Awrite(a, mt, data));
    QD_H5_CHECK(H5Aclose(a));
    QD_H5_CHECK(H5Sclose(sp));
}

static void attr_text(hid_t g, const char *name, const char *val)
{
    hid_t t = QD_H5_CHECK(H5Tcopy(H5T_C_S1));
    QD_H5_CHECK(H5Tset_size(t, strlen(val) + 1));
    attr(g, name, t, t, 1, val);
    QD_H5_CHECK(H5Tclose(t));
}

void qd_coll_actrec_write(hid_t file, const qd_actrec *r)
{
    hid_t g = QD_H5_CHECK(H5Gcreate2(file, "activations", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    attr_text(g, "format", "static-activations");
    attr_text(g, "scheme", "asymmetric");
    attr_text(g, "calib", qd_actq_method_name(r->method));
    attr_text(g, "calibration", r->calibration ? r->calibration : "{}");
    int64_t bits = r->bits;
    attr(g, "bits", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &bits);
    attr(g, "percentile", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &r->percentile);
    /* per tensor: one-dimensional even for a single tensor */
    const int n = r->n;
    hsize_t d = (hsize_t)n;
    hid_t st = QD_H5_CHECK(H5Tcopy(H5T_C_S1));
    QD_H5_CHECK(H5Tset_size(st, NAME_LEN));
    struct {
        const char *name;
        hid_t ft, mt;
        const void *p;
    } arr[] = {{"names", st, st, r->name},
               {"scale", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, r->scale},
               {"zero_point", H5T_STD_I32LE, H5T_NATIVE_INT32, r->zero_point},
               {"lo", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, r->lo},
               {"hi", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, r->hi},
               {"min", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, r->min},
               {"max", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, r->max},
               {"count", H5T_STD_I64LE, H5T_NATIVE_INT64, r->count}};
    for (size_t i = 0; i < QD_ARRAY_LEN(arr); i++) attr1d(g, arr[i].name, arr[i].ft, arr[i].mt, d, arr[i].p);
    QD_H5_CHECK(H5Tclose(st));
    /* static outlier channels: offsets into one list of channel indices */
    attr(g, "outlier_threshold", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &r->outlier_threshold);
    struct {
        const char *name;
        hid_t ft, mt;
        const void *p;
        int count;
    } oarr[] = {{"outlier_offsets", H5T_STD_I32LE, H5T_NATIVE_INT32, r->out_off, n + 1},
                {"outlier_channels", H5T_STD_I32LE, H5T_NATIVE_INT32, r->out_ch, r->out_off[n]},
                {"outlier_shift", H5T_STD_I32LE, H5T_NATIVE_INT32, r->out_shift, n},
                {"outlier_zero_point", H5T_STD_I32LE, H5T_NATIVE_INT32, r->out_zp, n},
                {"outlier_lo", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, r->out_lo, n},
                {"outlier_hi", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, r->out_hi, n}};
    for (size_t i = 0; i < QD_ARRAY_LEN(oarr); i++) /* no outlier channels anywhere: no list */
        if (oarr[i].count > 0) attr1d(g, oarr[i].name, oarr[i].ft, oarr[i].mt, (hsize_t)oarr[i].count, oarr[i].p);
    QD_H5_CHECK(H5Gclose(g));
}

/* ---- reader ----------------------------------------------------------------------------- */

static int read_arr(hid_t g, const char *path, const char *name, hid_t mt, int n, void *out)
{
    if (H5Aexists(g, name) <= 0) return qd_err_set(QD_EFORMAT, "%s: /activations has no attribute '%s'", path, name);
    hid_t a = H5Aopen(g, name, H5P_DEFAULT), sp = H5Aget_space(a);
    hssize_t k = H5Sget_simple_extent_npoints(sp);
    int rc = k == n && H5Aread(a, mt, out) >= 0
                 ? QD_OK
                 : qd_err_set(QD_EFORMAT, "%s: /activations attribute '%s' has %lld values, expected %d", path, name,
                              (long long)k, n);
    H5Sclose(sp);
    H5Aclose(a);
    return rc;
}

int qd_actrec_read(const char *path, qd_actrec *r)
{
    memset(r, 0, sizeof *r);
    H5E_auto2_t efn;
    void *edata;
    H5Eget_auto2(H5E_DEFAULT, &efn, &edata);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    int rc = QD_OK;
    hid_t g = -1;
    if (f < 0)
        rc = qd_err_set(QD_EFORMAT, "%s: not an HDF5 file (or unreadable)", path);
    else if (H5Lexists(f, "activations", H5P_DEFAULT) <= 0)
        rc = qd_err_set(QD_ENOTFOUND,
                        "%s: no static activation scales (quantize with --activations static --calib DATA)", path);
    else if ((g = H5Gopen2(f, "activations", H5P_DEFAULT)) < 0)
        rc = qd_err_set(QD_EFORMAT, "%s: /activations cannot be opened", path);
    char *fmt = rc ? NULL : qd_h5_attr_text(g, "format");
    if (!rc && (!fmt || strcmp(fmt, "static-activations")))
        rc = qd_err_set(QD_EFORMAT, "%s: /activations: format is not \"static-activations\"", path);
    free(fmt);
    if (!rc) {
        int n = 0;
        if (H5Aexists(g, "names") > 0) {
            hid_t a = H5Aopen(g, "names", H5P_DEFAULT), sp = H5Aget_space(a);
            n = (int)H5Sget_simple_extent_npoints(sp);
            H5Sclose(sp);
            H5Aclose(a);
        }
        if (n <= 0) rc = qd_err_set(QD_EFORMAT, "%s: /activations lists no tensors", path);
        if (!rc) {
            qd_actrec_alloc(r, n);
            hid_t st = H5Tcopy(H5T_C_S1);
            H5Tset_size(st, NAME_LEN);
            rc = read_arr(g, path, "names", st, n, r->name);
            H5Tclose(st);
            for (int i = 0; !rc && i < n; i++) r->name[i][NAME_LEN - 1] = 0;
            if (!rc) rc = read_arr(g, path, "scale", H5T_NATIVE_FLOAT, n, r->scale);
            if (!rc) rc = read_arr(g, path, "zero_point", H5T_NATIVE_INT32, n, r->zero_point);
            if (!rc) rc = read_arr(g, path, "lo", H5T_NATIVE_FLOAT, n, r->lo);
            if (!rc) rc = read_arr(g, path, "hi", H5T_NATIVE_FLOAT, n, r->hi);
            if (!rc) rc = read_arr(g, path, "min", H5T_NATIVE_FLOAT, n, r->min);
            if (!rc) rc = read_arr(g, path, "max", H5T_NATIVE_FLOAT, n, r->max);
            if (!rc) rc = read_arr(g, path, "count", H5T_NATIVE_INT64, n, r->count);
            r->bits = (int)qd_h5_attr_int(g, "bits", 8);
            char *m = qd_h5_attr_text(g, "calib");
            if (!rc && (!m || qd_actq_method_from_name(m, &r->method)))
                rc = qd_err_set(QD_EFORMAT, "%s: /activations: unknown calib '%s'", path, m ? m : "");
            free(m);
            r->calibration = qd_h5_attr_text(g, "calibration");
            if (H5Aexists(g, "percentile") > 0) {
                hid_t a = H5Aopen(g, "percentile", H5P_DEFAULT);
                H5Aread(a, H5T_NATIVE_DOUBLE, &r->percentile);
                H5Aclose(a);
            }
            if (H5Aexists(g, "outlier_threshold") > 0) {
                hid_t a = H5Aopen(g, "outlier_threshold", H5P_DEFAULT);
                H5Aread(a, H5T_NATIVE_DOUBLE, &r->outlier_threshold);
                H5Aclose(a);
            }
            if (!rc && H5Aexists(g, "outlier_offsets") > 0) {
                rc = read_arr(g, path, "outlier_offsets", H5T_NATIVE_INT32, n + 1, r->out_off);
                for (int i = 0; !rc && i < n; i++)
                    if (r->out_off[i] < 0 || r->out_off[i + 1] < r->out_off[i] ||
                        r->out_off[i + 1] - r->out_off[i] > 64)
                        rc = qd_err_set(QD_EFORMAT, "%s: /activations: outlier_offsets are not increasing", path);
                const int tot = rc ? 0 : r->out_off[n];
                if (!rc && tot > 0) {
                    free(r->out_ch);
                    r->out_ch = qd_xcalloc((size_t)tot, sizeof(int32_t));
                    rc = read_arr(g, path, "outlier_channels", H5T_NATIVE_INT32, tot, r->out_ch);
                }
                if (!rc) rc = read_arr(g, path, "outlier_shift", H5T_NATIVE_INT32, n, r->out_shift);
                if (!rc) rc = read_arr(g, path, "outlier_zero_point", H5T_NATIVE_INT32, n, r->out_zp);
                if (!rc) rc = read_arr(g, path, "outlier_lo", H5T_NATIVE_FLOAT, n, r->out_lo);
                if (!rc) rc = read_arr(g, path, "outlier_hi", H5T_NATIVE_FLOAT, n, r->out_hi);
                for (int i = 0; !rc && i < n; i++)
                    if (r->out_off[i + 1] > r->out_off[i] && (r->out_shift[i] < 1 || r->out_shift[i] > 24))
                        rc = qd_err_set(QD_EFORMAT, "%s: /activations: tensor '%s' has outlier shift %d", path,
                                        r->name[i], r->out_shift[i]);
            }
            for (int i = 0; !rc && i < n; i++)
                if (!(r->scale[i] > 0) || !(r->scale[i] < 3.4e38f) || r->zero_point[i] < -32768 ||
                    r->zero_point[i] > 32767)
                    rc = qd_err_set(QD_EFORMAT, "%s: /activations: tensor '%s' has scale %g and zero point %d", path,
                                    r->name[i], r->scale[i], r->zero_point[i]);
        }
    }
    if (g >= 0) H5Gclose(g);
    if (f >= 0) H5Fclose(f);
    H5Eset_auto2(H5E_DEFAULT, efn, edata);
    if (rc) qd_actrec_free(r);
    return rc;
}
