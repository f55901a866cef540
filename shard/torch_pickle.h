/* shard/torch_pickle.h — the restricted pickle machine of torch.save's data.pkl
 * (shard/torch_pickle.c), for shard/torch_zip.c. */
#ifndef QD_TORCH_PICKLE_H
#define QD_TORCH_PICKLE_H

#include <stddef.h>

#include "shard/safetensors.h"
#include "shard/zip_read.h"

/* The archive data.pkl belongs to: its entries sorted by qd_zip_cmp_entry and the folder they sit
 * in (storage <key> is the entry <prefix>/data/<key>). */
typedef struct {
    const char *fname; /* for messages */
    const qd_zip_entry *ent;
    int nent;
    const char *prefix; /* not NUL-terminated */
    size_t prefix_len;
} qd_pt_archive;

/* Runs data.pkl (pkl, plen bytes) and describes its state dict: *tensors (malloc'd, sorted by
 * name, offsets of their data in the archive's buffer) and *ntensors. Errors name the file, the
 * offset in data.pkl and the opcode, global or tensor: QD_EFORMAT, QD_EUNSUPPORTED (another
 * protocol, non-contiguous tensors), QD_EPERM (anything but a state dict), QD_ENOMEM. */
int qd_pt_unpickle(const qd_pt_archive *a, const unsigned char *pkl, size_t plen, qd_tensor_info **tensors,
                   int *ntensors);

#endif /* QD_TORCH_PICKLE_H */
