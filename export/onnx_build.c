/* export/onnx_build.c — building and writing an ONNX model (see onnx_build.h). */
#include "export/onnx_build.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/qd_common.h"
#include "export/outfile.h"

typedef struct blk {
    struct blk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} blk;

/* a growable array of message pointers */
typedef struct {
    void **v;
    size_t n, cap;
} vec;

static void vec_push(vec *a, void *p)
{
    if (a->n == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 64;
        a->v = realloc(a->v, a->cap * sizeof *a->v);
        QD_ASSERT(a->v);
    }
    a->v[a->n++] = p;
}

struct qd_ob {
    blk *mem;
    vec owned, nodes, inits, inputs, outputs, opsets, meta;
    int opset;
    char scope[256];
    long counter;
    Onnx__ModelProto model;
    Onnx__GraphProto graph;
};

void *qd_ob_alloc(qd_ob *b, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (!b->mem || b->mem->cap - b->mem->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        blk *k = malloc(sizeof *k + cap);
        QD_ASSERT(k);
        k->next = b->mem;
        k->used = 0;
        k->cap = cap;
        b->mem = k;
    }
    void *p = b->mem->data + b->mem->used;
    b->mem->used += n;
    memset(p, 0, n);
    return p;
}

static char *vstr(qd_ob *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    char *s = qd_ob_alloc(b, (size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return s;
}

char *qd_ob_str(qd_ob *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = vstr(b, fmt, ap);
    va_end(ap);
    return s;
}

void qd_ob_own(qd_ob *b, void *p)
{
    if (p) vec_push(&b->owned, p);
}

static void add_opset(qd_ob *b, const char *domain, int64_t version)
{
    for (size_t i = 0; i < b->opsets.n; i++)
        if (!strcmp(((Onnx__OperatorSetIdProto *)b->opsets.v[i])->domain, domain)) return;
    Onnx__OperatorSetIdProto *o = qd_ob_alloc(b, sizeof *o);
    onnx__operator_set_id_proto__init(o);
    o->domain = qd_ob_str(b, "%s", domain);
    o->has_version = 1;
    o->version = version;
    vec_push(&b->opsets, o);
}

qd_ob *qd_ob_new(int opset, const char *graph_name)
{
    qd_ob *b = qd_xcalloc(1, sizeof *b);
    b->opset = opset;
    onnx__model_proto__init(&b->model);
    onnx__graph_proto__init(&b->graph);
    b->graph.name = qd_ob_str(b, "%s", graph_name);
    add_opset(b, "", opset);
    return b;
}

void qd_ob_free(qd_ob *b)
{
    if (!b) return;
    for (size_t i = 0; i < b->owned.n; i++) free(b->owned.v[i]);
    vec *vs[] = {&b->owned, &b->nodes, &b->inits, &b->inputs, &b->outputs, &b->opsets, &b->meta};
    for (size_t i = 0; i < QD_ARRAY_LEN(vs); i++) free(vs[i]->v);
    while (b->mem) {
        blk *n = b->mem->next;
        free(b->mem);
        b->mem = n;
    }
    free(b);
}

int qd_ob_opset(const qd_ob *b) { return b->opset; }

void qd_ob_scope(qd_ob *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->scope, sizeof b->scope, fmt, ap);
    va_end(ap);
}

Onnx__NodeProto *qd_ob_node(qd_ob *b, const char *op, const char *domain, int nin, const char *const *in, int nout)
{
    Onnx__NodeProto *n = qd_ob_alloc(b, sizeof *n);
    onnx__node_proto__init(n);
    long id = ++b->counter;
    const char *sep = b->scope[0] ? "/" : "";
    n->op_type = qd_ob_str(b, "%s", op);
    n->name = qd_ob_str(b, "%s%s%s_%ld", b->scope, sep, op, id);
    if (domain && domain[0]) n->domain = qd_ob_str(b, "%s", domain);
    n->n_input = (size_t)nin;
    n->input = qd_ob_alloc(b, sizeof(char *) * (size_t)(nin ? nin : 1));
    for (int i = 0; i < nin; i++) n->input[i] = qd_ob_str(b, "%s", in[i]);
    n->n_output = (size_t)nout;
    n->output = qd_ob_alloc(b, sizeof(char *) * (size_t)(nout ? nout : 1));
    for (int i = 0; i < nout; i++) n->output[i] = qd_ob_str(b, "%s%s%s_%ld:%d", b->scope, sep, op, id, i);
    vec_push(&b->nodes, n);
    return n;
}

Onnx__NodeProto *qd_ob_last(qd_ob *b)
{
    QD_ASSERT(b->nodes.n > 0);
    return b->nodes.v[b->nodes.n - 1];
}

const char *qd_ob_op1(qd_ob *b, const char *op, const char *x)
{
    return qd_ob_node(b, op, "", 1, (const char *[]){x}, 1)->output[0];
}
const char *qd_ob_op2(qd_ob *b, const char *op, const char *x, const char *y)
{
    return qd_ob_node(b, op, "", 2, (const char *[]){x, y}, 1)->output[0];
}
const char *qd_ob_op3(qd_ob *b, const char *op, const char *x, const char *y, const char *z)
{
    return qd_ob_node(b, op, "", 3, (const char *[]){x, y, z}, 1)->output[0];
}

static Onnx__AttributeProto *attr(qd_ob *b, Onnx__NodeProto *n, const char *name, Onnx__AttributeProto__AttributeType t)
{
    Onnx__AttributeProto *a = qd_ob_alloc(b, sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = qd_ob_str(b, "%s", name);
    a->has_type = 1;
    a->type = t;
    Onnx__AttributeProto **v = qd_ob_alloc(b, sizeof *v * (n->n_attribute + 1));
    if (n->n_attribute) memcpy(v, n->attribute, sizeof *v * n->n_attribute);
    v[n->n_attribute++] = a;
    n->attribute = v;
    return a;
}

void qd_ob_attr_i(qd_ob *b, Onnx__NodeProto *n, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    a->has_i = 1;
    a->i = v;
}

void qd_ob_attr_f(qd_ob *b, Onnx__NodeProto *n, const char *name, float v)
{
    Onnx__AttributeProto *a = attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    a->has_f = 1;
    a->f = v;
}

void qd_ob_attr_s(qd_ob *b, Onnx__NodeProto *n, const char *name, const char *v)
{
    Onnx__AttributeProto *a = attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    a->has_s = 1;
    a->s.data = (uint8_t *)qd_ob_str(b, "%s", v);
    a->s.len = strlen(v);
}

void qd_ob_attr_ints(qd_ob *b, Onnx__NodeProto *n, const char *name, int nv, const int64_t *v)
{
    Onnx__AttributeProto *a = attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    a->n_ints = (size_t)nv;
    a->ints = qd_ob_alloc(b, sizeof(int64_t) * (size_t)(nv ? nv : 1));
    memcpy(a->ints, v, sizeof(int64_t) * (size_t)nv);
}

const char *qd_ob_init(qd_ob *b, const char *name, int dtype, int ndim, const int64_t *dims, const void *data,
                       size_t bytes, int own)
{
    /* a tensor the graph reads in several places (ALBERT's shared layers) is built once per use
     * from the same file record: keep the first, with the same contents */
    for (size_t i = 0; i < b->inits.n; i++) {
        Onnx__TensorProto *e = b->inits.v[i];
        if (strcmp(e->name, name)) continue;
        QD_ASSERT(e->data_type == dtype && e->raw_data.len == bytes);
        if (own) free((void *)data);
        return e->name;
    }
    Onnx__TensorProto *t = qd_ob_alloc(b, sizeof *t);
    onnx__tensor_proto__init(t);
    t->name = qd_ob_str(b, "%s", name);
    t->has_data_type = 1;
    t->data_type = dtype;
    t->n_dims = (size_t)ndim;
    t->dims = qd_ob_alloc(b, sizeof(int64_t) * (size_t)(ndim ? ndim : 1));
    if (ndim) memcpy(t->dims, dims, sizeof(int64_t) * (size_t)ndim);
    t->has_raw_data = 1;
    t->raw_data.len = bytes;
    t->raw_data.data = (uint8_t *)data;
    if (own) qd_ob_own(b, (void *)data);
    vec_push(&b->inits, t);
    return t->name;
}

const char *qd_ob_const(qd_ob *b, int dtype, int ndim, const int64_t *dims, const void *v, size_t bytes)
{
    void *p = qd_ob_alloc(b, bytes ? bytes : 1);
    memcpy(p, v, bytes);
    char name[300];
    snprintf(name, sizeof name, "%s%sconst_%ld", b->scope, b->scope[0] ? "/" : "", ++b->counter);
    return qd_ob_init(b, name, dtype, ndim, dims, p, bytes, 0);
}

const char *qd_ob_f32(qd_ob *b, float v) { return qd_ob_const(b, QD_OT_FLOAT, 0, NULL, &v, sizeof v); }
const char *qd_ob_i64(qd_ob *b, int64_t v) { return qd_ob_const(b, QD_OT_INT64, 0, NULL, &v, sizeof v); }
const char *qd_ob_i64s(qd_ob *b, int n, const int64_t *v)
{
    int64_t d = n;
    return qd_ob_const(b, QD_OT_INT64, 1, &d, v, sizeof(int64_t) * (size_t)n);
}

const char *qd_ob_reduce(qd_ob *b, const char *op, const char *x, int naxes, const int64_t *axes, int keepdims)
{
    int as_input = !strcmp(op, "ReduceSum") ? b->opset >= 13 : b->opset >= 18;
    Onnx__NodeProto *n;
    if (as_input)
        n = qd_ob_node(b, op, "", 2, (const char *[]){x, qd_ob_i64s(b, naxes, axes)}, 1);
    else {
        n = qd_ob_node(b, op, "", 1, (const char *[]){x}, 1);
        qd_ob_attr_ints(b, n, "axes", naxes, axes);
    }
    qd_ob_attr_i(b, n, "keepdims", keepdims);
    return n->output[0];
}

static Onnx__ValueInfoProto *value_info(qd_ob *b, const char *name, int dtype, int ndim, const int64_t *dims,
                                        const char *const *dim_names)
{
    Onnx__ValueInfoProto *v = qd_ob_alloc(b, sizeof *v);
    onnx__value_info_proto__init(v);
    v->name = qd_ob_str(b, "%s", name);
    Onnx__TypeProto *t = qd_ob_alloc(b, sizeof *t);
    onnx__type_proto__init(t);
    Onnx__TypeProto__Tensor *tt = qd_ob_alloc(b, sizeof *tt);
    onnx__type_proto__tensor__init(tt);
    tt->has_elem_type = 1;
    tt->elem_type = dtype;
    Onnx__TensorShapeProto *sh = qd_ob_alloc(b, sizeof *sh);
    onnx__tensor_shape_proto__init(sh);
    sh->n_dim = (size_t)ndim;
    sh->dim = qd_ob_alloc(b, sizeof(void *) * (size_t)(ndim ? ndim : 1));
    for (int d = 0; d < ndim; d++) {
        Onnx__TensorShapeProto__Dimension *dm = qd_ob_alloc(b, sizeof *dm);
        onnx__tensor_shape_proto__dimension__init(dm);
        if (dims[d] >= 0) {
            dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dm->dim_value = dims[d];
        } else {
            dm->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dm->dim_param = qd_ob_str(b, "%s", dim_names[d]);
        }
        sh->dim[d] = dm;
    }
    tt->shape = sh;
    t->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    t->tensor_type = tt;
    v->type = t;
    return v;
}

void qd_ob_input(qd_ob *b, const char *name, int dtype, int ndim, const int64_t *dims, const char *const *dim_names)
{
    vec_push(&b->inputs, value_info(b, name, dtype, ndim, dims, dim_names));
}

void qd_ob_output(qd_ob *b, const char *value, const char *name, int dtype, int ndim, const int64_t *dims,
                  const char *const *dim_names)
{
    if (strcmp(value, name)) {
        Onnx__NodeProto *n = qd_ob_node(b, "Identity", "", 1, (const char *[]){value}, 1);
        n->output[0] = qd_ob_str(b, "%s", name);
    }
    vec_push(&b->outputs, value_info(b, name, dtype, ndim, dims, dim_names));
}

void qd_ob_use_domain(qd_ob *b, const char *domain, int64_t version) { add_opset(b, domain, version); }

void qd_ob_meta(qd_ob *b, const char *key, const char *value)
{
    Onnx__StringStringEntryProto *e = qd_ob_alloc(b, sizeof *e);
    onnx__string_string_entry_proto__init(e);
    e->key = qd_ob_str(b, "%s", key);
    e->value = qd_ob_str(b, "%s", value);
    vec_push(&b->meta, e);
}

void qd_ob_doc(qd_ob *b, const char *doc) { b->model.doc_string = qd_ob_str(b, "%s", doc); }

/* The IR version that goes with an opset of the default domain (the ONNX release that
 * introduced it). */
static int64_t ir_version(int opset) { return opset <= 18 ? 8 : opset <= 20 ? 9 : opset <= 22 ? 10 : 11; }

typedef struct {
    ProtobufCBuffer base;
    qd_xout *out;
} file_buffer;

static void file_append(ProtobufCBuffer *buf, size_t len, const uint8_t *data)
{
    qd_xout_write(((file_buffer *)buf)->out, data, len);
}

int qd_ob_write(qd_ob *b, const char *path, int64_t *bytes)
{
    Onnx__GraphProto *g = &b->graph;
    g->n_node = b->nodes.n;
    g->node = (Onnx__NodeProto **)b->nodes.v;
    g->n_initializer = b->inits.n;
    g->initializer = (Onnx__TensorProto **)b->inits.v;
    g->n_input = b->inputs.n;
    g->input = (Onnx__ValueInfoProto **)b->inputs.v;
    g->n_output = b->outputs.n;
    g->output = (Onnx__ValueInfoProto **)b->outputs.v;
    Onnx__ModelProto *m = &b->model;
    m->has_ir_version = 1;
    m->ir_version = ir_version(b->opset);
    m->producer_name = "qdist";
    m->producer_version = QD_VERSION;
    m->graph = g;
    m->n_opset_import = b->opsets.n;
    m->opset_import = (Onnx__OperatorSetIdProto **)b->opsets.v;
    m->n_metadata_props = b->meta.n;
    m->metadata_props = (Onnx__StringStringEntryProto **)b->meta.v;
    size_t size = onnx__model_proto__get_packed_size(m);
    if (size > INT32_MAX)
        return qd_err_set(QD_EUNSUPPORTED,
                          "%s: the model would take %zu bytes, beyond protobuf's 2 GiB limit for one message", path,
                          size);
    qd_xout o;
    int rc = qd_xout_open(&o, path);
    if (rc) return rc;
    file_buffer fb = {.base = {.append = file_append}, .out = &o};
    onnx__model_proto__pack_to_buffer(m, &fb.base);
    int64_t n = o.bytes;
    rc = qd_xout_commit(&o);
    if (!rc && bytes) *bytes = n;
    return rc;
}
