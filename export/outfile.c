/* export/outfile.c — whole-or-nothing output files and directories (see outfile.h). */
#include "export/outfile.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/qd_common.h"

int qd_xout_open(qd_xout *o, const char *path)
{
    memset(o, 0, sizeof *o);
    snprintf(o->path, sizeof o->path, "%s", path);
    snprintf(o->tmp, sizeof o->tmp, "%s.partial-XXXXXX", path);
    int fd = mkstemp(o->tmp);
    if (fd < 0) {
        int e = errno;
        o->tmp[0] = 0;
        return qd_err_set(QD_EIO, "%s: cannot create the output file: %s", path, strerror(e));
    }
    fchmod(fd, 0644);
    o->f = fdopen(fd, "wb");
    if (!o->f) {
        int e = errno;
        close(fd);
        unlink(o->tmp);
        o->tmp[0] = 0;
        return qd_err_set(QD_EIO, "%s: %s", path, strerror(e));
    }
    return QD_OK;
}

void qd_xout_write(qd_xout *o, const void *p, size_t n)
{
    if (o->err || !n) return;
    if (fwrite(p, 1, n, o->f) != n) o->err = errno ? errno : EIO;
    o->bytes += (int64_t)n;
}

int qd_xout_commit(qd_xout *o)
{
    int e = o->err;
    if (fflush(o->f) != 0 && !e) e = errno;
    if (fsync(fileno(o->f)) != 0 && !e && errno != EINVAL) e = errno;
    if (fclose(o->f) != 0 && !e) e = errno;
    o->f = NULL;
    if (!e && rename(o->tmp, o->path) != 0) e = errno;
    if (e) {
        unlink(o->tmp);
        o->tmp[0] = 0;
        return qd_err_set(QD_EIO, "%s: writing failed: %s", o->path, strerror(e));
    }
    o->tmp[0] = 0;
    return QD_OK;
}

void qd_xout_abort(qd_xout *o)
{
    if (o->f) fclose(o->f);
    o->f = NULL;
    if (o->tmp[0]) unlink(o->tmp);
    o->tmp[0] = 0;
}

int qd_xout_dir_open(qd_xout_dir *d, const char *path)
{
    memset(d, 0, sizeof *d);
    size_t l = strlen(path);
    while (l > 1 && path[l - 1] == '/') l--;
    snprintf(d->path, sizeof d->path, "%.*s", (int)l, path);
    struct stat st;
    if (stat(d->path, &st) == 0 && !S_ISDIR(st.st_mode))
        return qd_err_set(QD_EEXIST, "%s: exists and is not a directory", d->path);
    snprintf(d->tmp, sizeof d->tmp, "%s.partial-XXXXXX", d->path);
    if (!mkdtemp(d->tmp)) {
        int e = errno;
        d->tmp[0] = 0;
        return qd_err_set(QD_EIO, "%s: cannot create the output directory: %s", d->path, strerror(e));
    }
    chmod(d->tmp, 0755);
    return QD_OK;
}

/* removes a directory holding only plain files */
static void rm_flat_dir(const char *dir)
{
    DIR *dp = opendir(dir);
    if (dp) {
        struct dirent *e;
        char p[4608];
        while ((e = readdir(dp)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
                unlink(p);
            }
        closedir(dp);
    }
    rmdir(dir);
}

int qd_xout_dir_commit(qd_xout_dir *d)
{
    struct stat st;
    if (stat(d->path, &st) != 0) {
        if (rename(d->tmp, d->path) != 0) {
            int e = errno;
            qd_xout_dir_abort(d);
            return qd_err_set(QD_EIO, "%s: cannot move the output into place: %s", d->path, strerror(e));
        }
        d->tmp[0] = 0;
        return QD_OK;
    }
    /* an existing directory keeps its other files; each of ours replaces its namesake whole */
    DIR *dp = opendir(d->tmp);
    int e = dp ? 0 : errno;
    struct dirent *ent;
    char from[4608], to[4608];
    while (!e && (ent = readdir(dp)))
        if (strcmp(ent->d_name, ".") && strcmp(ent->d_name, "..")) {
            snprintf(from, sizeof from, "%s/%s", d->tmp, ent->d_name);
            snprintf(to, sizeof to, "%s/%s", d->path, ent->d_name);
            if (rename(from, to) != 0) e = errno;
        }
    if (dp) closedir(dp);
    qd_xout_dir_abort(d);
    return e ? qd_err_set(QD_EIO, "%s: cannot move the output into place: %s", d->path, strerror(e)) : QD_OK;
}

void qd_xout_dir_abort(qd_xout_dir *d)
{
    if (d->tmp[0]) rm_flat_dir(d->tmp);
    d->tmp[0] = 0;
}
