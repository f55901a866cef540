"""docs/qdist_h5.py against qdist itself: every tensor of a model file, dequantized by the Python
reader, equals `qdist export`'s dequantized checkpoint bit for bit; codes, zero points and groups
are in range; the metadata is the job's; pruned weights (mask 0) are exactly 0; a file that is not
a qdist model is refused. Usage: read_python.py DOCS_DIR (MODEL.h5 EXPORT.safetensors)... NOT_A_MODEL"""
import json
import struct
import sys

import numpy as np

sys.path.insert(0, sys.argv[1])
import qdist_h5  # noqa: E402

DT = {"F32": "<f4", "I64": "<i8"}


def load_st(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8 : 8 + n])
    return {k: np.frombuffer(raw[8 + n + v["data_offsets"][0] : 8 + n + v["data_offsets"][1]],
                             dtype=DT[v["dtype"]]).reshape(v["shape"])
            for k, v in hdr.items() if k != "__metadata__"}


args = sys.argv[2:]
for h5, st in zip(args[0:-1:2], args[1:-1:2]):
    ref = load_st(st)
    with qdist_h5.open(h5) as m:
        assert m.format_version == 1 and m.status == "complete" and m.arch, (m.format_version, m.arch)
        assert m.model_config["model_type"] in ("vit", "bert"), m.model_config
        names = m.names()
        assert sorted(ref) == names, set(ref) ^ set(names)
        nq = npruned = 0
        for name in names:
            t = m.tensor(name)
            assert t.shape == ref[name].shape, (name, t.shape, ref[name].shape)
            if t.kind == "quantized":
                nq += 1
                assert t.bits == m.quant_config.get("bits", t.bits) or "overrides" in m.quant_config
                c, z, g = t.codes, t.zeros, t.group_of_column
                assert c.shape == t.shape and c.max() < (1 << t.bits), name
                assert z.min() >= 0 and z.max() < (1 << t.bits) and g.max() < t.scales.shape[1], name
                assert t.act_order == (t.g_idx is not None), name
                assert set(t.metrics) == {"rel_fro_error", "mse", "max_abs_error", "sqnr_db"}, t.metrics
                w = t.dequantize()
                assert w.dtype == np.float32 and np.array_equal(w, ref[name]), (name, np.abs(w - ref[name]).max())
                if t.mask is not None:
                    npruned += 1
                    assert np.all(w[~t.mask] == 0), name
            elif t.kind == "float":
                assert np.array_equal(t.data, ref[name]), name
            else:
                assert np.array_equal(t.array(), ref[name]), name
        print(f"ok: {h5.split('/')[-1]}: {len(names)} tensors ({nq} quantized, {npruned} pruned) equal to "
              f"qdist export's, bit for bit")
try:
    qdist_h5.open(args[-1])
    raise SystemExit("a file that is not a qdist model was accepted")
except (ValueError, OSError) as e:
    print(f"ok: refused: {e}")
