"""Writes damaged copies of a qdist model file, one per kind of damage a reader must refuse:
    python3 damage.py GOOD.h5 GPTQ_ACT_ORDER.h5 OUTDIR PRUNED_2_4.h5
prints the names of the files it wrote (OUTDIR/<class>.h5)."""
import json
import shutil
import sys

import h5py
import numpy as np

good, gptq, out, pruned = sys.argv[1:5]
Q = "tensors/vit.encoder.layer.1.attention.attention.query.weight"
F = "tensors/vit.encoder.layer.1.layernorm_before.weight"


def sattr(obj, name, text):
    # fixed-length strings, as qdist writes them
    obj.attrs.create(name, np.bytes_(text))


def damage(name, src, fn):
    path = f"{out}/{name}.h5"
    shutil.copy(src, path)
    with h5py.File(path, "r+") as f:
        fn(f)
    print(name)


def replace(f, path, data):
    attrs = dict(f[path].attrs)
    del f[path]
    f[path] = data
    for k, v in attrs.items():
        f[path].attrs[k] = v


def set_value(path, index, value):
    def fn(f):
        d = f[path]
        a = d[...]
        a.flat[index] = value
        d[...] = a
    return fn


damage("version", good, lambda f: f.attrs.modify("format_version", np.int64(2)))
damage("status", good, lambda f: sattr(f, "status", "running"))
damage("nostatus", good, lambda f: f.attrs.__delitem__("status"))
damage("model_config", good, lambda f: sattr(f, "model_config", '{"model_type": "vit", '))
damage("quant_config", good, lambda f: sattr(f, "quant_config", "method=rtn"))
def unknown_arch(f):
    mc = json.loads(f.attrs["model_config"])
    mc["model_type"] = "gpt9"
    sattr(f, "model_config", json.dumps(mc))
    sattr(f, "arch", "gpt9")
damage("arch_unknown", good, unknown_arch)
damage("arch_mismatch", good, lambda f: sattr(f, "arch", "bert"))
damage("codes_type", good, lambda f: replace(f, Q + "/qweight", f[Q + "/qweight"][...].astype(np.int16)))
damage("missing_tensor", good, lambda f: f.__delitem__("tensors/vit.encoder.layer.3.output.dense.weight"))
damage("missing_dataset", good, lambda f: f.__delitem__(Q + "/scales"))
damage("scale_nan", good, set_value(Q + "/scales", 5, np.nan))
damage("scale_negative", good, set_value(Q + "/scales", 7, -0.5))
damage("scale_zero", good, set_value(Q + "/scales", 0, 0.0))
damage("zeros_range", good, set_value(Q + "/zeros", 3, 16))
damage("scales_shape", good, lambda f: replace(f, Q + "/scales", f[Q + "/scales"][:, :1]))
damage("data_nan", good, set_value(F + "/data", 2, np.inf))
damage("unknown_dataset", good, lambda f: f.create_dataset(Q + "/lookup_table", data=np.zeros(16, np.float32)))
damage("bits", good, lambda f: f[Q].attrs.modify("bits", np.int64(9)))
damage("g_idx_range", gptq, set_value("tensors/vit.encoder.layer.0.intermediate.dense.weight/g_idx", 4, 99))
# 2:4 positions: row 0's first group stores positions 1, 1
damage("nm_order", pruned, set_value(Q + "/nm_index", 0, 0b0101))
damage("nonzeros", pruned, lambda f: f[Q].attrs.modify("nonzeros_per_row", np.int64(31)))
