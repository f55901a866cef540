/* shard/torch_zip.c — reads the state dicts that torch.save writes (pytorch_model.bin).
 *
 * The format (PyTorch >= 1.6, "zipfile serialization"; tests/reference/torch_format.py writes
 * it too and describes it): a zip archive whose entries sit under one folder <stem>/ —
 * <stem>/data.pkl, a protocol-2 pickle of an OrderedDict name -> tensor, and <stem>/data/<key>,
 * one entry per storage holding its raw little-endian elements. Each tensor is pickled as
 *     torch._utils._rebuild_tensor_v2(<persistent id>, storage_offset, size, stride,
 *                                     requires_grad, OrderedDict())
 * with the persistent id ('storage', torch.<Type>Storage, '<key>', '<location>', numel).
 *
 * The zip is parsed here rather than with libzip: torch.save stores every entry uncompressed
 * and 64-byte aligned so that storages can be mapped, and reading tensors zero-copy from the
 * mmapped file needs each entry's data offset, which libzip does not expose. Only what
 * torch.save writes is accepted: stored (method 0) unencrypted entries, zip64 when the classic
 * end record says so, one disk.
 *
 * The pickle is read by a RESTRICTED machine written for this format, not by an unpickler: it
 * knows only the opcodes that pickle emits for such a dict (protocols 2-4) and four kinds of
 * GLOBAL (collections.OrderedDict, torch._utils._rebuild_tensor_v2 and _rebuild_parameter,
 * torch.<Type>Storage), and it calls nothing: a REDUCE only builds a tensor description or an
 * empty dict. Anything else is an error naming the file, the offset in data.pkl and the opcode
 * or global. Every length, index and count is checked against the buffer before use.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shard/safetensors.h"

#define PT_MAX_ENTRIES (1 << 20)
#define PT_MAX_PICKLE  (16u << 20) /* a 1000-layer model's data.pkl is a few MB */
#define PT_MAX_STACK   (1 << 20)

/* ---- zip ----------------------------------------------------------------------------------- */

typedef struct {
    const char *name; /* points into the central directory (not NUL-terminated) */
    size_t name_len;
    uint64_t off; /* absolute offset of the entry's data */
    uint64_t size;
    uint32_t crc;
} pt_entry;

static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const unsigned char *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc32_ieee(const unsigned char *p, size_t n)
{
    pthread_once(&crc_once, crc_init);
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static int zfail(const char *fname, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int zfail(const char *fname, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return qd_err_set(QD_EFORMAT, "%s: not a valid torch.save zip archive: %s", fname, msg);
}

/* Read the central directory; entries point into buf. */
static int zip_entries(const char *fname, const unsigned char *buf, size_t len, pt_entry **out, int *nout)
{
    *out = NULL;
    *nout = 0;
    if (len < 22) return zfail(fname, "%zu bytes, shorter than a zip end record", len);
    /* the end record: last signature whose comment ends exactly at the end of the file */
    size_t eocd = SIZE_MAX;
    size_t lo = len - 22 > 65535 ? len - 22 - 65535 : 0;
    for (size_t i = len - 22 + 1; i-- > lo;) {
        if (rd32(buf + i) == 0x06054B50u && i + 22 + rd16(buf + i + 20) == len) {
            eocd = i;
            break;
        }
    }
    if (eocd == SIZE_MAX) return zfail(fname, "no end-of-central-directory record (truncated file?)");
    const unsigned char *e = buf + eocd;
    if (rd16(e + 4) != 0 || rd16(e + 6) != 0 || rd16(e + 8) != rd16(e + 10)) return zfail(fname, "multi-disk archive");
    uint64_t count = rd16(e + 10), cd_size = rd32(e + 12), cd_off = rd32(e + 16);
    size_t cd_end_limit = eocd;
    if (count == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu) {
        if (eocd < 20 || rd32(buf + eocd - 20) != 0x07064B50u)
            return zfail(fname, "zip64 sizes without a zip64 end locator");
        const unsigned char *loc = buf + eocd - 20;
        uint64_t z = rd64(loc + 8);
        if (rd32(loc + 4) != 0 || rd32(loc + 16) > 1) return zfail(fname, "multi-disk archive");
        if (z > eocd - 20 || eocd - 20 - z < 56 || rd32(buf + z) != 0x06064B50u)
            return zfail(fname, "zip64 end record out of place");
        const unsigned char *r = buf + z;
        if (rd32(r + 16) != 0 || rd32(r + 20) != 0 || rd64(r + 24) != rd64(r + 32))
            return zfail(fname, "multi-disk archive");
        count = rd64(r + 32);
        cd_size = rd64(r + 40);
        cd_off = rd64(r + 48);
        cd_end_limit = (size_t)z;
    }
    if (cd_off > cd_end_limit || cd_size > cd_end_limit - cd_off)
        return zfail(fname, "central directory (%llu bytes at %llu) outside the file", (unsigned long long)cd_size,
                     (unsigned long long)cd_off);
    if (count == 0) return zfail(fname, "the archive is empty");
    if (count > PT_MAX_ENTRIES || count > cd_size / 46)
        return zfail(fname, "%llu entries in a %llu-byte central directory", (unsigned long long)count,
                     (unsigned long long)cd_size);
    pt_entry *ent = calloc((size_t)count, sizeof *ent);
    if (!ent) return qd_err_set(QD_ENOMEM, "%s: out of memory", fname);
    const unsigned char *p = buf + cd_off, *end = buf + cd_off + cd_size;
    int rc = QD_OK;
    for (uint64_t k = 0; k < count && rc == QD_OK; k++) {
        if (end - p < 46 || rd32(p) != 0x02014B50u) {
            rc = zfail(fname, "central directory entry %llu is damaged", (unsigned long long)k);
            break;
        }
        unsigned flags = rd16(p + 8), method = rd16(p + 10);
        uint64_t csize = rd32(p + 20), usize = rd32(p + 24), lho = rd32(p + 42);
        size_t nlen = rd16(p + 28), elen = rd16(p + 30), clen = rd16(p + 32);
        if ((size_t)(end - p) - 46 < nlen + elen + clen) {
            rc = zfail(fname, "central directory entry %llu runs past its end", (unsigned long long)k);
            break;
        }
        const char *name = (const char *)p + 46;
        const unsigned char *x = p + 46 + nlen, *xe = x + elen;
        /* zip64 extra: the 8-byte values of the fields that hold 0xFFFFFFFF, in this order */
        while (xe - x >= 4) {
            unsigned id = rd16(x), sz = rd16(x + 2);
            if ((size_t)(xe - x) - 4 < sz) break;
            if (id == 1) {
                const unsigned char *v = x + 4, *ve = x + 4 + sz;
                if (usize == 0xFFFFFFFFu && ve - v >= 8) {
                    usize = rd64(v);
                    v += 8;
                }
                if (csize == 0xFFFFFFFFu && ve - v >= 8) {
                    csize = rd64(v);
                    v += 8;
                }
                if (lho == 0xFFFFFFFFu && ve - v >= 8) {
                    lho = rd64(v);
                    v += 8;
                }
            }
            x += 4 + sz;
        }
        char shown[128];
        snprintf(shown, sizeof shown, "%.*s", (int)(nlen < 100 ? nlen : 100), name);
        if (nlen == 0 || memchr(name, 0, nlen)) {
            rc = zfail(fname, "entry %llu has an empty name or a NUL in it", (unsigned long long)k);
        } else if (flags & 1) {
            rc = qd_err_set(QD_EUNSUPPORTED, "%s: entry '%s' is encrypted", fname, shown);
        } else if (method != 0) {
            rc = qd_err_set(QD_EUNSUPPORTED,
                            "%s: entry '%s' is compressed (method %u); torch.save "
                            "stores entries uncompressed and only those are read",
                            fname, shown, method);
        } else if (csize != usize) {
            rc = zfail(fname, "stored entry '%s' has compressed size %llu != size %llu", shown,
                       (unsigned long long)csize, (unsigned long long)usize);
        } else if (lho > cd_off || cd_off - lho < 30 || rd32(buf + lho) != 0x04034B50u) {
            rc = zfail(fname, "entry '%s': no local header at offset %llu", shown, (unsigned long long)lho);
        } else {
            const unsigned char *lh = buf + lho;
            uint64_t ln = rd16(lh + 26), le = rd16(lh + 28);
            uint64_t data = lho + 30 + ln + le;
            if (ln != nlen || data > cd_off || memcmp(lh + 30, name, nlen) != 0)
                rc = zfail(fname, "entry '%s': local header does not match the directory", shown);
            else if (usize > cd_off - data)
                rc = zfail(fname,
                           "entry '%s': %llu bytes at offset %llu run past the data area "
                           "(%llu bytes; truncated or lying sizes)",
                           shown, (unsigned long long)usize, (unsigned long long)data, (unsigned long long)cd_off);
            else
                ent[k] = (pt_entry){name, nlen, data, usize, rd32(p + 16)};
        }
        p += 46 + nlen + elen + clen;
    }
    if (rc != QD_OK) {
        free(ent);
        return rc;
    }
    *out = ent;
    *nout = (int)count;
    return QD_OK;
}

static int cmp_entry(const void *a, const void *b)
{
    const pt_entry *x = a, *y = b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->name, y->name, n);
    return c ? c : (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

/* The entry named prefix + "/" + rest in entries sorted by cmp_entry, or NULL. */
static const pt_entry *zip_find(const pt_entry *ent, int n, const char *prefix, size_t plen, const char *rest,
                                size_t rlen)
{
    char key[256];
    if (plen + 1 + rlen > sizeof key) return NULL;
    memcpy(key, prefix, plen);
    key[plen] = '/';
    memcpy(key + plen + 1, rest, rlen);
    pt_entry k = {.name = key, .name_len = plen + 1 + rlen};
    return bsearch(&k, ent, (size_t)n, sizeof *ent, cmp_entry);
}

/* ---- the restricted pickle machine --------------------------------------------------------- */

typedef enum {
    PV_NONE,
    PV_BOOL,
    PV_INT,
    PV_FLOAT,
    PV_STR,
    PV_TUPLE,
    PV_LIST,
    PV_DICT,
    PV_GLOBAL,
    PV_STORAGE,
    PV_TENSOR,
    PV_MARK
} pv_kind;

typedef enum { G_ORDERED_DICT, G_REBUILD_TENSOR_V2, G_REBUILD_PARAMETER, G_STORAGE_TYPE } g_kind;

typedef struct pv pv;
struct pv {
    pv_kind k;
    int64_t i;     /* BOOL, INT; GLOBAL: g_kind; STORAGE: index in m->st */
    qd_dtype dt;   /* GLOBAL storage type */
    const char *s; /* STR: bytes in data.pkl (not NUL-terminated) */
    size_t slen;
    pv **items; /* TUPLE, LIST: n items; DICT: n (key, value) pairs = 2n slots */
    size_t n, cap;
    /* TENSOR */
    int st;      /* storage index */
    int64_t off; /* storage offset, in elements */
    int ndim;
    int64_t size[QD_ST_MAX_DIMS], stride[QD_ST_MAX_DIMS];
};

typedef struct {
    const char *key; /* into data.pkl */
    size_t klen;
    qd_dtype dt;
    uint64_t numel;
    uint64_t off; /* absolute data offset of the entry */
} pt_storage;

typedef struct {
    const char *fname;
    const unsigned char *pkl;
    size_t plen, pos, op_pos;
    const unsigned char *buf; /* the whole file */
    const pt_entry *ent;
    int nent;
    const char *prefix;
    size_t prefix_len;
    pv **all; /* every node, for freeing */
    size_t nall, capall;
    pv **stack;
    size_t sp, stack_cap;
    size_t *marks;
    size_t nmarks, marks_cap;
    pv **memo;
    size_t memo_cap, memo_next;
    pt_storage *st;
    size_t nst, st_cap;
} pm;

static int pfail(pm *m, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int pfail(pm *m, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return qd_err_set(code, "%s: data.pkl offset %zu: %s", m->fname, m->op_pos, msg);
}

static int grow(void **p, size_t *cap, size_t need, size_t elsize)
{
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elsize);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

static pv *pv_new(pm *m, pv_kind k)
{
    if (grow((void **)&m->all, &m->capall, m->nall + 1, sizeof *m->all)) return NULL;
    pv *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->k = k;
    m->all[m->nall++] = v;
    return v;
}

/* Append to a tuple or list. */
static int pv_append(pv *c, pv *x)
{
    if (grow((void **)&c->items, &c->cap, c->n + 1, sizeof *c->items)) return -1;
    c->items[c->n++] = x;
    return 0;
}

/* Add a (key, value) pair to a dict (a repeated key is kept twice and rejected later). */
static int pv_dict_set(pv *d, pv *k, pv *v)
{
    if (grow((void **)&d->items, &d->cap, 2 * d->n + 2, sizeof *d->items)) return -1;
    d->items[2 * d->n] = k;
    d->items[2 * d->n + 1] = v;
    d->n++;
    return 0;
}

static int push(pm *m, pv *v)
{
    if (!v) return pfail(m, QD_ENOMEM, "out of memory");
    if (m->sp >= PT_MAX_STACK) return pfail(m, QD_EFORMAT, "stack deeper than %d", PT_MAX_STACK);
    if (grow((void **)&m->stack, &m->stack_cap, m->sp + 1, sizeof *m->stack))
        return pfail(m, QD_ENOMEM, "out of memory");
    m->stack[m->sp++] = v;
    return QD_OK;
}

/* Pop one value (never a MARK) into *out. */
static int pop(pm *m, pv **out)
{
    if (m->sp == 0 || (m->nmarks && m->marks[m->nmarks - 1] >= m->sp)) return pfail(m, QD_EFORMAT, "stack underflow");
    *out = m->stack[--m->sp];
    return QD_OK;
}

static int top(pm *m, pv **out)
{
    if (m->sp == 0 || (m->nmarks && m->marks[m->nmarks - 1] >= m->sp)) return pfail(m, QD_EFORMAT, "stack underflow");
    *out = m->stack[m->sp - 1];
    return QD_OK;
}

/* Pop the values above the last MARK (and the MARK): *first points at them in the stack. */
static int pop_mark(pm *m, pv ***first, size_t *n)
{
    if (!m->nmarks) return pfail(m, QD_EFORMAT, "no MARK on the stack");
    size_t k = m->marks[--m->nmarks];
    *first = m->stack + k;
    *n = m->sp - k;
    m->sp = k;
    return QD_OK;
}

static int need(pm *m, size_t n)
{
    if (m->plen - m->pos < n)
        return pfail(m, QD_EFORMAT, "truncated: opcode needs %zu more bytes, %zu left", n, m->plen - m->pos);
    return QD_OK;
}

static int memo_put(pm *m, uint64_t idx)
{
    pv *v = NULL;
    int rc = top(m, &v);
    if (rc) return rc;
    /* pickle numbers memo slots 0, 1, 2...: an index beyond the pickle's length is hostile */
    if (idx >= m->plen) return pfail(m, QD_EFORMAT, "memo index %llu too large", (unsigned long long)idx);
    size_t old = m->memo_cap;
    if (grow((void **)&m->memo, &m->memo_cap, (size_t)idx + 1, sizeof *m->memo))
        return pfail(m, QD_ENOMEM, "out of memory");
    if (m->memo_cap > old) memset(m->memo + old, 0, (m->memo_cap - old) * sizeof *m->memo);
    m->memo[idx] = v;
    if (idx + 1 > m->memo_next) m->memo_next = (size_t)idx + 1;
    return QD_OK;
}

static int memo_get(pm *m, uint64_t idx)
{
    if (idx >= m->memo_cap || !m->memo[idx])
        return pfail(m, QD_EFORMAT, "memo index %llu was never stored", (unsigned long long)idx);
    return push(m, m->memo[idx]);
}

static const struct {
    const char *name;
    qd_dtype dt;
} storage_types[] = {
    {"FloatStorage", QD_DT_F32},  {"HalfStorage", QD_DT_F16}, {"BFloat16Storage", QD_DT_BF16},
    {"DoubleStorage", QD_DT_F64}, {"LongStorage", QD_DT_I64}, {"IntStorage", QD_DT_I32},
    {"ShortStorage", QD_DT_I16},  {"CharStorage", QD_DT_I8},  {"ByteStorage", QD_DT_U8},
    {"BoolStorage", QD_DT_BOOL},
};

static int seq_eq(const char *s, size_t n, const char *lit) { return strlen(lit) == n && !memcmp(s, lit, n); }

/* A GLOBAL from the allow-list, or an error naming it. */
static int make_global(pm *m, const char *mod, size_t ml, const char *name, size_t nl)
{
    pv *g = pv_new(m, PV_GLOBAL);
    if (!g) return pfail(m, QD_ENOMEM, "out of memory");
    if (seq_eq(mod, ml, "collections") && seq_eq(name, nl, "OrderedDict")) {
        g->i = G_ORDERED_DICT;
    } else if (seq_eq(mod, ml, "torch._utils") && seq_eq(name, nl, "_rebuild_tensor_v2")) {
        g->i = G_REBUILD_TENSOR_V2;
    } else if (seq_eq(mod, ml, "torch._utils") && seq_eq(name, nl, "_rebuild_parameter")) {
        g->i = G_REBUILD_PARAMETER;
    } else {
        int found = 0;
        if (seq_eq(mod, ml, "torch"))
            for (size_t k = 0; k < sizeof storage_types / sizeof storage_types[0]; k++)
                if (seq_eq(name, nl, storage_types[k].name)) {
                    g->i = G_STORAGE_TYPE;
                    g->dt = storage_types[k].dt;
                    found = 1;
                }
        if (!found)
            return pfail(m, QD_EPERM,
                         "GLOBAL '%.*s.%.*s' is not allowed: a state dict needs only "
                         "collections.OrderedDict, torch._utils._rebuild_tensor_v2 / "
                         "_rebuild_parameter and torch.*Storage; refusing to load this file",
                         (int)(ml < 200 ? ml : 200), mod, (int)(nl < 200 ? nl : 200), name);
    }
    return push(m, g);
}

static int is_int(const pv *v) { return v->k == PV_INT || v->k == PV_BOOL; }

/* Empty OrderedDict() / {} / None: what torch passes as backward hooks and metadata. */
static int is_empty_dict_or_none(const pv *v) { return v->k == PV_NONE || (v->k == PV_DICT && v->n == 0); }

/* BINPERSID: ('storage', torch.<T>Storage, key, location, numel) -> a STORAGE node. */
static int persistent_load(pm *m, pv *pid)
{
    if (pid->k != PV_TUPLE || pid->n != 5 || pid->items[0]->k != PV_STR ||
        !seq_eq(pid->items[0]->s, pid->items[0]->slen, "storage"))
        return pfail(m, QD_EFORMAT, "persistent id is not ('storage', type, key, location, numel)");
    pv *ty = pid->items[1], *key = pid->items[2], *loc = pid->items[3], *num = pid->items[4];
    if (ty->k != PV_GLOBAL || ty->i != G_STORAGE_TYPE || key->k != PV_STR || loc->k != PV_STR || num->k != PV_INT ||
        num->i < 0)
        return pfail(m, QD_EFORMAT,
                     "persistent id is not ('storage', torch.<Type>Storage, "
                     "str key, str location, int numel >= 0)");
    if (key->slen == 0 || key->slen > 64 || memchr(key->s, '/', key->slen) || memchr(key->s, 0, key->slen))
        return pfail(m, QD_EFORMAT, "storage key of %zu bytes is not a plain name", key->slen);
    const char *kn = key->s;
    int kl = (int)key->slen;
    size_t es = qd_dtype_size(ty->dt);
    uint64_t numel = (uint64_t)num->i;
    for (size_t s = 0; s < m->nst; s++) {
        if (m->st[s].klen == key->slen && !memcmp(m->st[s].key, kn, key->slen)) {
            if (m->st[s].dt != ty->dt || m->st[s].numel != numel)
                return pfail(m, QD_EFORMAT,
                             "storage '%.*s' declared again as %s x %llu (was %s x "
                             "%llu)",
                             kl, kn, qd_dtype_name(ty->dt), (unsigned long long)numel, qd_dtype_name(m->st[s].dt),
                             (unsigned long long)m->st[s].numel);
            pv *v = pv_new(m, PV_STORAGE);
            if (v) v->i = (int64_t)s;
            return push(m, v);
        }
    }
    char rest[80];
    int rl = snprintf(rest, sizeof rest, "data/%.*s", kl, kn);
    const pt_entry *e = zip_find(m->ent, m->nent, m->prefix, m->prefix_len, rest, (size_t)rl);
    if (numel > UINT64_MAX / es)
        return pfail(m, QD_EFORMAT, "storage '%.*s': %llu elements overflow", kl, kn, (unsigned long long)numel);
    if (!e && numel > 0)
        return pfail(m, QD_EFORMAT, "storage '%.*s' (%s x %llu): no entry '%.*s/%s' in the archive", kl, kn,
                     qd_dtype_name(ty->dt), (unsigned long long)numel, (int)m->prefix_len, m->prefix, rest);
    if (e && e->size != numel * es)
        return pfail(m, QD_EFORMAT,
                     "storage '%.*s' declares %llu x %s = %llu bytes but its entry "
                     "holds %llu bytes",
                     kl, kn, (unsigned long long)numel, qd_dtype_name(ty->dt), (unsigned long long)(numel * es),
                     (unsigned long long)e->size);
    if (grow((void **)&m->st, &m->st_cap, m->nst + 1, sizeof *m->st)) return pfail(m, QD_ENOMEM, "out of memory");
    m->st[m->nst] = (pt_storage){kn, key->slen, ty->dt, numel, e ? e->off : 0};
    pv *v = pv_new(m, PV_STORAGE);
    if (v) v->i = (int64_t)m->nst;
    m->nst++;
    return push(m, v);
}

/* REDUCE: the callable must be an allowed GLOBAL; nothing is called. */
static int reduce(pm *m, pv *fn, pv *args)
{
    if (fn->k != PV_GLOBAL) return pfail(m, QD_EPERM, "REDUCE of something that is not an allowed GLOBAL");
    if (args->k != PV_TUPLE) return pfail(m, QD_EFORMAT, "REDUCE arguments are not a tuple");
    pv **a = args->items;
    switch ((g_kind)fn->i) {
    case G_ORDERED_DICT:
        if (args->n != 0) return pfail(m, QD_EPERM, "OrderedDict() with arguments");
        return push(m, pv_new(m, PV_DICT));
    case G_REBUILD_TENSOR_V2: {
        /* (storage, offset, size, stride, requires_grad, backward_hooks[, metadata]) */
        if (args->n != 6 && args->n != 7)
            return pfail(m, QD_EFORMAT, "_rebuild_tensor_v2 with %zu arguments (6 or 7 expected)", args->n);
        if (a[0]->k != PV_STORAGE || a[1]->k != PV_INT || a[2]->k != PV_TUPLE || a[3]->k != PV_TUPLE || !is_int(a[4]) ||
            !is_empty_dict_or_none(a[5]) || (args->n == 7 && !is_empty_dict_or_none(a[6])))
            return pfail(m, QD_EFORMAT,
                         "_rebuild_tensor_v2 arguments are not (storage, int, "
                         "tuple, tuple, bool, empty hooks[, empty metadata])");
        if (a[2]->n != a[3]->n || a[2]->n > QD_ST_MAX_DIMS)
            return pfail(m, QD_EFORMAT, "tensor with %zu sizes and %zu strides (at most %d dims)", a[2]->n, a[3]->n,
                         QD_ST_MAX_DIMS);
        pv *t = pv_new(m, PV_TENSOR);
        if (!t) return pfail(m, QD_ENOMEM, "out of memory");
        t->st = (int)a[0]->i;
        t->off = a[1]->i;
        t->ndim = (int)a[2]->n;
        for (int d = 0; d < t->ndim; d++) {
            if (a[2]->items[d]->k != PV_INT || a[3]->items[d]->k != PV_INT)
                return pfail(m, QD_EFORMAT, "tensor size or stride is not an int");
            t->size[d] = a[2]->items[d]->i;
            t->stride[d] = a[3]->items[d]->i;
        }
        return push(m, t);
    }
    case G_REBUILD_PARAMETER:
        /* (tensor, requires_grad, backward_hooks) -> the tensor */
        if (args->n != 3 || a[0]->k != PV_TENSOR || !is_int(a[1]) || !is_empty_dict_or_none(a[2]))
            return pfail(m, QD_EFORMAT,
                         "_rebuild_parameter arguments are not (tensor, bool, "
                         "empty hooks)");
        return push(m, a[0]);
    case G_STORAGE_TYPE:
        return pfail(m, QD_EPERM, "REDUCE of torch.%s: storages come only as persistent ids", qd_dtype_name(fn->dt));
    }
    return pfail(m, QD_EPERM, "REDUCE of an unknown callable");
}

static int64_t sext(uint64_t v, unsigned bytes)
{
    if (bytes == 0) return 0;
    if (bytes < 8 && (v >> (8 * bytes - 1)) & 1) v |= ~0ull << (8 * bytes);
    return (int64_t)v;
}

/* Run data.pkl; on success *result is the object STOP returned. */
static int run_pickle(pm *m, pv **result)
{
    int rc = QD_OK;
    const unsigned char *p = m->pkl;
    while (rc == QD_OK) {
        if (m->pos >= m->plen) return pfail(m, QD_EFORMAT, "truncated: no STOP opcode");
        m->op_pos = m->pos;
        unsigned op = p[m->pos++];
        pv *v = NULL, *w = NULL, *x = NULL, **items = NULL;
        size_t n = 0;
        switch (op) {
        case 0x80: /* PROTO */
            if ((rc = need(m, 1))) break;
            if (p[m->pos] < 2 || p[m->pos] > 4)
                rc = pfail(m, QD_EUNSUPPORTED, "pickle protocol %u (2 to 4 are read)", p[m->pos]);
            m->pos++;
            break;
        case 0x95: /* FRAME: a length hint */
            if ((rc = need(m, 8))) break;
            m->pos += 8;
            break;
        case '.': /* STOP */
            if (m->nmarks) return pfail(m, QD_EFORMAT, "STOP with an open MARK");
            if ((rc = pop(m, result))) break;
            if (m->sp != 0) return pfail(m, QD_EFORMAT, "STOP with %zu values left on the stack", m->sp);
            return QD_OK;
        case '(': /* MARK */
            if (grow((void **)&m->marks, &m->marks_cap, m->nmarks + 1, sizeof *m->marks)) {
                rc = pfail(m, QD_ENOMEM, "out of memory");
                break;
            }
            m->marks[m->nmarks++] = m->sp;
            break;
        case 'N': rc = push(m, pv_new(m, PV_NONE)); break;
        case 0x88: /* NEWTRUE */
        case 0x89: /* NEWFALSE */
            if ((v = pv_new(m, PV_BOOL))) v->i = op == 0x88;
            rc = push(m, v);
            break;
        case 'K': /* BININT1 */
        case 'M': /* BININT2 */
        case 'J': /* BININT */ {
            unsigned nb = op == 'K' ? 1 : op == 'M' ? 2 : 4;
            if ((rc = need(m, nb))) break;
            uint64_t u = 0;
            for (unsigned b = 0; b < nb; b++) u |= (uint64_t)p[m->pos + b] << (8 * b);
            m->pos += nb;
            if ((v = pv_new(m, PV_INT))) v->i = op == 'J' ? sext(u, 4) : (int64_t)u;
            rc = push(m, v);
            break;
        }
        case 0x8a: /* LONG1 */ {
            if ((rc = need(m, 1))) break;
            unsigned nb = p[m->pos++];
            if (nb > 8) {
                rc = pfail(m, QD_EFORMAT, "integer of %u bytes (at most 8 are read)", nb);
                break;
            }
            if ((rc = need(m, nb))) break;
            uint64_t u = 0;
            for (unsigned b = 0; b < nb; b++) u |= (uint64_t)p[m->pos + b] << (8 * b);
            m->pos += nb;
            if ((v = pv_new(m, PV_INT))) v->i = sext(u, nb);
            rc = push(m, v);
            break;
        }
        case 'G': /* BINFLOAT, big-endian */ {
            if ((rc = need(m, 8))) break;
            uint64_t u = 0;
            for (int b = 0; b < 8; b++) u = u << 8 | p[m->pos + b];
            m->pos += 8;
            if ((v = pv_new(m, PV_FLOAT))) memcpy(&v->i, &u, 8);
            rc = push(m, v);
            break;
        }
        case 'X':    /* BINUNICODE */
        case 0x8c:   /* SHORT_BINUNICODE */
        case 0x8d: { /* BINUNICODE8 */
            unsigned nb = op == 'X' ? 4 : op == 0x8c ? 1 : 8;
            if ((rc = need(m, nb))) break;
            uint64_t len = 0;
            for (unsigned b = 0; b < nb; b++) len |= (uint64_t)p[m->pos + b] << (8 * b);
            m->pos += nb;
            if (len > m->plen - m->pos) {
                rc = pfail(m, QD_EFORMAT, "truncated: a %llu-byte string, %zu bytes left", (unsigned long long)len,
                           m->plen - m->pos);
                break;
            }
            if ((v = pv_new(m, PV_STR))) {
                v->s = (const char *)p + m->pos;
                v->slen = (size_t)len;
            }
            m->pos += (size_t)len;
            rc = push(m, v);
            break;
        }
        case 'c': { /* GLOBAL "module\nname\n" */
            const char *s = (const char *)p + m->pos;
            size_t left = m->plen - m->pos;
            const char *nl1 = memchr(s, '\n', left);
            const char *nl2 = nl1 ? memchr(nl1 + 1, '\n', left - (size_t)(nl1 + 1 - s)) : NULL;
            if (!nl2) {
                rc = pfail(m, QD_EFORMAT, "truncated GLOBAL");
                break;
            }
            m->pos += (size_t)(nl2 + 1 - s);
            rc = make_global(m, s, (size_t)(nl1 - s), nl1 + 1, (size_t)(nl2 - nl1 - 1));
            break;
        }
        case 0x93: /* STACK_GLOBAL */
            if ((rc = pop(m, &w)) || (rc = pop(m, &v))) break;
            if (v->k != PV_STR || w->k != PV_STR) {
                rc = pfail(m, QD_EFORMAT, "STACK_GLOBAL of non-strings");
                break;
            }
            rc = make_global(m, v->s, v->slen, w->s, w->slen);
            break;
        case ')': rc = push(m, pv_new(m, PV_TUPLE)); break;
        case ']': rc = push(m, pv_new(m, PV_LIST)); break;
        case '}': rc = push(m, pv_new(m, PV_DICT)); break;
        case 0x85: /* TUPLE1 */
        case 0x86: /* TUPLE2 */
        case 0x87: /* TUPLE3 */ {
            size_t k = op - 0x84;
            pv *it[3];
            for (size_t j = k; j-- > 0 && rc == QD_OK;) rc = pop(m, &it[j]);
            if (rc) break;
            if (!(v = pv_new(m, PV_TUPLE))) {
                rc = pfail(m, QD_ENOMEM, "out of memory");
                break;
            }
            for (size_t j = 0; j < k; j++)
                if (pv_append(v, it[j])) rc = pfail(m, QD_ENOMEM, "out of memory");
            if (rc == QD_OK) rc = push(m, v);
            break;
        }
        case 't': /* TUPLE */
        case 'l': /* LIST */
        case 'd': /* DICT */
            if ((rc = pop_mark(m, &items, &n))) break;
            if (op == 'd' && n % 2) {
                rc = pfail(m, QD_EFORMAT, "DICT with an odd number of items");
                break;
            }
            if (!(v = pv_new(m, op == 't' ? PV_TUPLE : op == 'l' ? PV_LIST : PV_DICT))) {
                rc = pfail(m, QD_ENOMEM, "out of memory");
                break;
            }
            for (size_t j = 0; j < n && rc == QD_OK; j += op == 'd' ? 2 : 1)
                if (op == 'd' ? pv_dict_set(v, items[j], items[j + 1]) : pv_append(v, items[j]))
                    rc = pfail(m, QD_ENOMEM, "out of memory");
            if (rc == QD_OK) rc = push(m, v);
            break;
        case 'a': /* APPEND */
            if ((rc = pop(m, &w)) || (rc = top(m, &v))) break;
            if (v->k != PV_LIST)
                rc = pfail(m, QD_EFORMAT, "APPEND to a non-list");
            else if (pv_append(v, w))
                rc = pfail(m, QD_ENOMEM, "out of memory");
            break;
        case 'e': /* APPENDS */
            if ((rc = pop_mark(m, &items, &n)) || (rc = top(m, &v))) break;
            if (v->k != PV_LIST) rc = pfail(m, QD_EFORMAT, "APPENDS to a non-list");
            for (size_t j = 0; j < n && rc == QD_OK; j++)
                if (pv_append(v, items[j])) rc = pfail(m, QD_ENOMEM, "out of memory");
            break;
        case 's': /* SETITEM */
            if ((rc = pop(m, &x)) || (rc = pop(m, &w)) || (rc = top(m, &v))) break;
            if (v->k != PV_DICT)
                rc = pfail(m, QD_EFORMAT, "SETITEM on a non-dict");
            else if (pv_dict_set(v, w, x))
                rc = pfail(m, QD_ENOMEM, "out of memory");
            break;
        case 'u': /* SETITEMS */
            if ((rc = pop_mark(m, &items, &n)) || (rc = top(m, &v))) break;
            if (v->k != PV_DICT || n % 2) {
                rc = pfail(m, QD_EFORMAT, "SETITEMS on a non-dict or with an odd count");
                break;
            }
            for (size_t j = 0; j < n && rc == QD_OK; j += 2)
                if (pv_dict_set(v, items[j], items[j + 1])) rc = pfail(m, QD_ENOMEM, "out of memory");
            break;
        case 'b': /* BUILD: only attribute dicts on a dict (the state dict's _metadata) */
            if ((rc = pop(m, &w)) || (rc = top(m, &v))) break;
            if (v->k != PV_DICT || (w->k != PV_DICT && w->k != PV_NONE))
                rc = pfail(m, QD_EPERM, "BUILD of something other than a dict's attributes");
            break;
        case 'R': /* REDUCE */
            if ((rc = pop(m, &w)) || (rc = pop(m, &v))) break;
            rc = reduce(m, v, w);
            break;
        case 'Q': /* BINPERSID */
            if ((rc = pop(m, &v))) break;
            rc = persistent_load(m, v);
            break;
        case 'q': /* BINPUT */
            if ((rc = need(m, 1))) break;
            rc = memo_put(m, p[m->pos++]);
            break;
        case 'r': /* LONG_BINPUT */
            if ((rc = need(m, 4))) break;
            rc = memo_put(m, rd32(p + m->pos));
            m->pos += 4;
            break;
        case 0x94: /* MEMOIZE */ rc = memo_put(m, m->memo_next); break;
        case 'h': /* BINGET */
            if ((rc = need(m, 1))) break;
            rc = memo_get(m, p[m->pos++]);
            break;
        case 'j': /* LONG_BINGET */
            if ((rc = need(m, 4))) break;
            rc = memo_get(m, rd32(p + m->pos));
            m->pos += 4;
            break;
        default: {
            char shown[8] = "";
            if (op >= 0x20 && op < 0x7f) snprintf(shown, sizeof shown, " ('%c')", (char)op);
            rc = pfail(m, QD_EPERM, "opcode 0x%02x%s is not allowed in a torch state dict", op, shown);
        }
        }
    }
    return rc;
}

static void pm_free(pm *m)
{
    for (size_t i = 0; i < m->nall; i++) {
        free(m->all[i]->items);
        free(m->all[i]);
    }
    free(m->all);
    free(m->stack);
    free(m->marks);
    free(m->memo);
    free(m->st);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const qd_tensor_info *)a)->name, ((const qd_tensor_info *)b)->name);
}

/* One (name, tensor) of the state dict -> *t, with every check that names the tensor. */
static int to_info(pm *m, const char *name, const pv *v, qd_tensor_info *t)
{
    const char *f = m->fname;
    if (v->k != PV_TENSOR)
        return qd_err_set(QD_EFORMAT,
                          "%s: '%s' is not a tensor (a state dict of tensors is "
                          "expected)",
                          f, name);
    const pt_storage *s = &m->st[v->st];
    size_t es = qd_dtype_size(s->dt);
    uint64_t numel = 1;
    for (int d = 0; d < v->ndim; d++) {
        if (v->size[d] < 0)
            return qd_err_set(QD_EFORMAT, "%s: tensor '%s': negative size %lld", f, name, (long long)v->size[d]);
        if (v->size[d] && numel > UINT64_MAX / es / (uint64_t)v->size[d])
            return qd_err_set(QD_EFORMAT, "%s: tensor '%s': element count overflows", f, name);
        numel *= (uint64_t)v->size[d];
    }
    /* contiguous (row-major) strides; a dimension of size 1 may have any stride */
    int64_t want = 1;
    for (int d = v->ndim - 1; d >= 0 && numel > 0; d--) {
        if (v->size[d] != 1 && v->stride[d] != want) {
            char sz[160] = "", sd[160] = "";
            for (int k = 0; k < v->ndim; k++) {
                snprintf(sz + strlen(sz), sizeof sz - strlen(sz), "%s%lld", k ? "," : "", (long long)v->size[k]);
                snprintf(sd + strlen(sd), sizeof sd - strlen(sd), "%s%lld", k ? "," : "", (long long)v->stride[k]);
            }
            return qd_err_set(QD_EUNSUPPORTED,
                              "%s: tensor '%s': non-contiguous strides (%s) for "
                              "size (%s): unsupported; save tensor.contiguous() instead",
                              f, name, sd, sz);
        }
        want *= v->size[d];
    }
    if (v->off < 0 || (uint64_t)v->off > s->numel || numel > s->numel - (uint64_t)v->off)
        return qd_err_set(QD_EFORMAT,
                          "%s: tensor '%s': %llu elements at offset %lld run past its "
                          "storage '%.*s' of %llu elements",
                          f, name, (unsigned long long)numel, (long long)v->off, (int)s->klen, s->key,
                          (unsigned long long)s->numel);
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name) return qd_err_set(QD_ENOMEM, "%s: out of memory", f);
    t->dtype = s->dt;
    t->ndim = v->ndim;
    for (int d = 0; d < v->ndim; d++) t->shape[d] = v->size[d];
    t->numel = numel;
    t->nbytes = numel * es;
    t->file_index = 0;
    t->offset = s->off + (numel ? (uint64_t)v->off * es : 0);
    t->float_like = s->dt == QD_DT_F32 || s->dt == QD_DT_F16 || s->dt == QD_DT_BF16 || s->dt == QD_DT_F64;
    return QD_OK;
}

int qd_pt_sniff(const unsigned char *head, size_t n)
{
    static const unsigned char legacy[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c,
                                           0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
    if (n >= 4 && head[0] == 'P' && head[1] == 'K' &&
        ((head[2] == 3 && head[3] == 4) || (head[2] == 5 && head[3] == 6))) {
        /* a safetensors file whose header is exactly 0x04034B50 bytes long starts the same way;
         * its JSON then opens at byte 8, where a zip holds the compression method (0) */
        if (n >= 9 && !head[4] && !head[5] && !head[6] && !head[7] && head[8] == '{') return QD_PT_NONE;
        return QD_PT_ZIP;
    }
    if (n >= sizeof legacy && !memcmp(head, legacy, sizeof legacy)) return QD_PT_LEGACY;
    return QD_PT_NONE;
}

int qd_pt_parse(const char *fname, const unsigned char *buf, size_t len, qd_tensor_info **tensors, int *ntensors,
                char **metadata, uint64_t *pickle_off, uint64_t *pickle_len)
{
    if (tensors) *tensors = NULL;
    if (ntensors) *ntensors = 0;
    if (metadata) *metadata = NULL;
    if (qd_pt_sniff(buf, len) == QD_PT_LEGACY)
        return qd_err_set(QD_EUNSUPPORTED,
                          "%s: legacy torch.save format (a bare pickle, written "
                          "before PyTorch 1.6 or with _use_new_zipfile_serialization=False): "
                          "unsupported; re-save it with a current torch or convert it to "
                          "safetensors",
                          fname);
    pt_entry *ent = NULL;
    int nent = 0;
    int rc = zip_entries(fname, buf, len, &ent, &nent);
    if (rc) return rc;
    /* the folder: the first entry's name up to its first '/' */
    const char *slash = memchr(ent[0].name, '/', ent[0].name_len);
    if (!slash) {
        rc = zfail(fname, "first entry '%.*s' is not inside a folder",
                   (int)(ent[0].name_len < 100 ? ent[0].name_len : 100), ent[0].name);
        free(ent);
        return rc;
    }
    pm m = {.fname = fname,
            .buf = buf,
            .ent = ent,
            .nent = nent,
            .prefix = ent[0].name,
            .prefix_len = (size_t)(slash - ent[0].name)};
    int pl = (int)(m.prefix_len < 100 ? m.prefix_len : 100);
    qsort(ent, (size_t)nent, sizeof *ent, cmp_entry); /* the prefix still points into buf */
    for (int i = 1; i < nent; i++)
        if (!cmp_entry(&ent[i - 1], &ent[i])) {
            rc = zfail(fname, "entry '%.*s' appears twice", (int)(ent[i].name_len < 100 ? ent[i].name_len : 100),
                       ent[i].name);
            goto done;
        }
    const pt_entry *pk = zip_find(ent, nent, m.prefix, m.prefix_len, "data.pkl", 8);
    if (!pk) {
        if (zip_find(ent, nent, m.prefix, m.prefix_len, "constants.pkl", 13))
            rc = qd_err_set(QD_EUNSUPPORTED,
                            "%s: a TorchScript archive, not a torch.save state "
                            "dict",
                            fname);
        else
            rc = zfail(fname, "no '%.*s/data.pkl' entry", pl, m.prefix);
        goto done;
    }
    const pt_entry *bo = zip_find(ent, nent, m.prefix, m.prefix_len, "byteorder", 9);
    if (bo && !(bo->size == 6 && !memcmp(buf + bo->off, "little", 6))) {
        rc = qd_err_set(QD_EUNSUPPORTED,
                        "%s: byteorder '%.*s': only little-endian storages are "
                        "read",
                        fname, (int)(bo->size < 16 ? bo->size : 16), (const char *)buf + bo->off);
        goto done;
    }
    if (pk->size > PT_MAX_PICKLE) {
        rc = zfail(fname, "data.pkl of %llu bytes (at most %u)", (unsigned long long)pk->size, PT_MAX_PICKLE);
        goto done;
    }
    if (crc32_ieee(buf + pk->off, (size_t)pk->size) != pk->crc) {
        rc = zfail(fname, "data.pkl fails its CRC-32 check (damaged file)");
        goto done;
    }
    m.pkl = buf + pk->off;
    m.plen = (size_t)pk->size;
    pv *root = NULL;
    rc = run_pickle(&m, &root);
    if (rc) goto done;
    if (root->k != PV_DICT) {
        rc = qd_err_set(QD_EFORMAT,
                        "%s: data.pkl holds no dict (a torch.save state dict is "
                        "expected)",
                        fname);
        goto done;
    }
    qd_tensor_info *t = calloc(root->n + 1, sizeof *t);
    if (!t) {
        rc = qd_err_set(QD_ENOMEM, "%s: out of memory", fname);
        goto done;
    }
    int nt = 0;
    for (size_t i = 0; i < root->n && rc == QD_OK; i++) {
        const pv *k = root->items[2 * i], *v = root->items[2 * i + 1];
        if (k->k != PV_STR || memchr(k->s, 0, k->slen) || k->slen == 0 || k->slen > 4096) {
            rc = qd_err_set(QD_EFORMAT, "%s: state dict key %zu is not a tensor name", fname, i);
            break;
        }
        char *name = malloc(k->slen + 1);
        if (!name) {
            rc = qd_err_set(QD_ENOMEM, "%s: out of memory", fname);
            break;
        }
        memcpy(name, k->s, k->slen);
        name[k->slen] = 0;
        if (v->k == PV_DICT && v->n > 0)
            rc = qd_err_set(QD_EFORMAT,
                            "%s: '%s' holds a dict: a nested checkpoint (e.g. "
                            "{'model': state_dict, ...}), not a flat state dict",
                            fname, name);
        else
            rc = to_info(&m, name, v, &t[nt]);
        free(name);
        if (rc == QD_OK) nt++;
    }
    if (rc == QD_OK) {
        qsort(t, (size_t)nt, sizeof *t, cmp_name);
        for (int i = 1; i < nt && rc == QD_OK; i++)
            if (!strcmp(t[i - 1].name, t[i].name))
                rc = qd_err_set(QD_EFORMAT, "%s: tensor '%s': listed twice", fname, t[i].name);
    }
    if (rc == QD_OK && metadata) {
        const pt_entry *ver = zip_find(ent, nent, m.prefix, m.prefix_len, "version", 7);
        char vs[16] = "";
        if (ver && ver->size < sizeof vs) {
            for (uint64_t i = 0; i < ver->size; i++) {
                unsigned char c = buf[ver->off + i];
                if (c < '0' || c > '9') break;
                vs[i] = (char)c;
            }
        }
        size_t cap = 96 + m.prefix_len * 6;
        char *js = malloc(cap);
        if (!js) {
            rc = qd_err_set(QD_ENOMEM, "%s: out of memory", fname);
        } else {
            /* the folder name for JSON (control characters, quotes, backslashes dropped) */
            char pre[101] = "";
            size_t q = 0;
            for (size_t i = 0; i < m.prefix_len && q + 1 < sizeof pre; i++) {
                unsigned char c = (unsigned char)m.prefix[i];
                if (c >= 0x20 && c != '"' && c != '\\') pre[q++] = (char)c;
            }
            pre[q] = 0;
            snprintf(js, cap, "{\"format\":\"torch-zip\",\"archive\":\"%s\",\"version\":\"%s\"}", pre, vs);
            *metadata = js;
        }
    }
    if (rc != QD_OK) {
        qd_st_free_tensors(t, nt);
        goto done;
    }
    if (pickle_off) *pickle_off = pk->off;
    if (pickle_len) *pickle_len = pk->size;
    if (tensors)
        *tensors = t;
    else
        qd_st_free_tensors(t, nt);
    if (ntensors) *ntensors = nt;
done:
    pm_free(&m);
    free(ent);
    return rc;
}
