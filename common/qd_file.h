/* common/qd_file.h — the small file-system helpers every floor uses: joining paths, testing what a
 * path is, and reading a whole small file (a config, an index, a vocabulary) with errors that name
 * the file. One copy each, here, instead of one per module. */
#ifndef QD_FILE_H
#define QD_FILE_H

#include <stddef.h>

/* dir + "/" + name (no second '/' when dir ends with one), malloc'd; NULL when out of memory. */
char *qd_path_join(const char *dir, const char *name);
/* The folder part of a path, malloc'd: "." for a bare name, "/" for a name in the root; NULL when
 * out of memory. */
char *qd_path_dirname(const char *path);
/* 1 when s ends with suffix (case-sensitive). */
int qd_ends_with(const char *s, const char *suffix);
/* 1 when path is a folder / a regular file (links followed). */
int qd_is_dir(const char *path);
int qd_is_file(const char *path);

/* The whole of a regular file of at most `max` bytes into *buf (malloc'd, NUL-terminated; the NUL
 * is not counted in *len). `what` names the kind of file in the size error ("a vocabulary";
 * NULL: "a file"). Opening does not block on a FIFO. QD_OK, or with a message naming the path:
 * QD_ENOENT (no such file), QD_EIO (cannot open, not a regular file, read error), QD_EFORMAT
 * (larger than max), QD_ENOMEM. */
int qd_read_file(const char *path, size_t max, const char *what, char **buf, size_t *len);

#endif /* QD_FILE_H */
