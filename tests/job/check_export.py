"""Checks an exported checkpoint against its source and the qdist model it came from: same names,
shapes and dtype (F32, or F16 with --dtype f16); quantized tensors within one quantization step
of the source (scales from the model; half a step except at the clamped top of symmetric ranges),
float tensors equal (F32) or equal after F16 rounding. Usage: check_export.py SRC.safetensors
EXPORT.safetensors MODEL.h5 f32|f16"""
import json
import struct
import sys

import h5py
import numpy as np

DT = {"F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4"}


def load(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8 : 8 + n])
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        out[k] = (v["dtype"], np.frombuffer(raw[8 + n + b : 8 + n + e], dtype=DT[v["dtype"]]).reshape(v["shape"]))
    return out


src, exp = load(sys.argv[1]), load(sys.argv[2])
want = "F16" if sys.argv[4] == "f16" else "F32"
bad = 0
assert set(src) == set(exp), "tensor names differ"
with h5py.File(sys.argv[3], "r") as f:
    for name, (dt, a) in src.items():
        edt, e = exp[name]
        if e.shape != a.shape or (dt == "F32" and edt != want):
            print("shape/dtype differs:", name, e.shape, a.shape, edt)
            bad += 1
            continue
        g = f["tensors"][name]
        kind = g.attrs["kind"]
        kind = kind.decode() if isinstance(kind, bytes) else kind
        e = e.astype(np.float64)
        if kind == "quantized":
            sc = g["scales"][...]
            G = int(g.attrs["group_size"]) if int(g.attrs["group_size"]) > 0 else a.shape[1]
            step = sc[:, np.arange(a.shape[1]) // G].astype(np.float64)
            tol = step * (1.0 if int(g.attrs["sym"]) else 0.5) * (1 + 1e-3) + (np.abs(a) * 1e-3 if want == "F16" else 0)
            if not np.all(np.abs(e - a) <= tol):
                print("too far:", name, np.abs(e - a).max())
                bad += 1
        elif dt == "F32":
            ref = a.astype(np.float16).astype(np.float64) if want == "F16" else a
            if not np.array_equal(e, ref):
                print("float tensor differs:", name)
                bad += 1
print(f"{len(src)} tensors compared, {bad} bad")
sys.exit(1 if bad else 0)
