/* shard/torch_pickle.c — the RESTRICTED pickle machine for torch.save's data.pkl (torch_pickle.h).
 *
 * Not an unpickler: it knows only the opcodes that pickle emits for a state dict (protocols 2-4)
 * and four kinds of GLOBAL (collections.OrderedDict, torch._utils._rebuild_tensor_v2 and
 * _rebuild_parameter, torch.<Type>Storage), and it calls nothing: a REDUCE only builds a tensor
 * description or an empty dict. Each tensor is pickled as
 *     torch._utils._rebuild_tensor_v2(<persistent id>, storage_offset, size, stride,
 *                                     requires_grad, OrderedDict())
 * with the persistent id ('storage', torch.<Type>Storage, '<key>', '<location>', numel), whose
 * bytes are the archive entry <folder>/data/<key>. Anything else is an error naming the file, the
 * offset in data.pkl and the opcode or global. Every length, index and count is checked against
 * the buffer before use. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shard/torch_pickle.h"

#define QD_PKL_MAX_STACK (1 << 20)

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

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
    const qd_zip_entry *ent;
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
    if (m->sp >= QD_PKL_MAX_STACK) return pfail(m, QD_EFORMAT, "stack deeper than %d", QD_PKL_MAX_STACK);
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
    const qd_zip_entry *e = qd_zip_find(m->ent, m->nent, m->prefix, m->prefix_len, rest, (size_t)rl);
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

/* Run data.pkl; on success *result is the object STOP returned. One switch over the opcodes, each
 * case a few lines of stack work: split into functions, the cases would pass the machine and the
 * loop's locals around without being easier to read, so it stays one function of ~225 lines. */
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

/* data.pkl's state dict -> tensors sorted by name (see torch_pickle.h). */
int qd_pt_unpickle(const qd_pt_archive *a, const unsigned char *pkl, size_t plen, qd_tensor_info **tensors,
                   int *ntensors)
{
    *tensors = NULL;
    *ntensors = 0;
    const char *fname = a->fname;
    pm m = {.fname = fname,
            .pkl = pkl,
            .plen = plen,
            .ent = a->ent,
            .nent = a->nent,
            .prefix = a->prefix,
            .prefix_len = a->prefix_len};
    int rc;
    qd_tensor_info *t = NULL;
    int nt = 0;
    pv *root = NULL;
    rc = run_pickle(&m, &root);
    if (rc) goto out;
    if (root->k != PV_DICT) {
        rc = qd_err_set(QD_EFORMAT,
                        "%s: data.pkl holds no dict (a torch.save state dict is "
                        "expected)",
                        fname);
        goto out;
    }
    t = calloc(root->n + 1, sizeof *t);
    if (!t) {
        rc = qd_err_set(QD_ENOMEM, "%s: out of memory", fname);
        goto out;
    }
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
    if (rc == QD_OK) {
        *tensors = t;
        *ntensors = nt;
    } else {
        qd_st_free_tensors(t, nt);
    }
out:
    pm_free(&m);
    return rc;
}
