"""Reads a qdist model with h5py exactly as docs/FORMAT.md describes and checks every tensor
against the source checkpoint: quantized weights within half a quantization step (a full step at the clamped top of
symmetric ranges),
float tensors equal. Usage: read_h5py.py MODEL.h5 CHECKPOINT/model.safetensors"""
import json
import struct
import sys

import h5py
import numpy as np


def unpack(packed, n, bits):
    b = np.unpackbits(packed, axis=-1, bitorder="little")[..., : n * bits]
    b = b.reshape(*packed.shape[:-1], n, bits).astype(np.int64)
    return (b * (1 << np.arange(bits))).sum(-1)


def s(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def main():
    h5, st = sys.argv[1], sys.argv[2]
    raw = open(st, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8 : 8 + n])
    src = {}
    for k, v in hdr.items():
        if k == "__metadata__" or v["dtype"] != "F32":
            continue
        b, e = v["data_offsets"]
        src[k] = np.frombuffer(raw[8 + n + b : 8 + n + e], dtype="<f4").reshape(v["shape"])
    bad = 0
    nq = 0
    with h5py.File(h5, "r") as f:
        assert s(f.attrs["format"]) == "qdist" and int(f.attrs["format_version"]) == 1
        assert s(f.attrs["status"]) == "complete"
        for name, g in f["tensors"].items():
            if s(g.attrs["kind"]) == "quantized":
                nq += 1
                bits = int(g.attrs["bits"])
                out, inp = (int(x) for x in g.attrs["shape"])
                q = unpack(g["qweight"][...], inp, bits)
                sc = g["scales"][...]
                z = g["zeros"][...] if "zeros" in g else np.full(sc.shape, 2 ** (bits - 1), dtype=np.int64)
                G = int(g.attrs["group_size"]) if int(g.attrs["group_size"]) > 0 else inp
                gi = g["g_idx"][...] if "g_idx" in g else np.arange(inp) // G
                W = sc[:, gi] * (q - z[:, gi])
                err = np.abs(W - src[name])
                # symmetric: codes 0..2^b-1 around 2^(b-1), so +max clamps one step short (FORMAT.md)
                step = 1.0 if int(g.attrs["sym"]) else 0.5
                if not np.all(err <= sc[:, gi] * step * (1 + 1e-5) + 1e-12):
                    print("too far:", name, err.max())
                    bad += 1
            elif "data" in g and name in src:
                if not np.array_equal(g["data"][...], src[name]):
                    print("float tensor differs:", name)
                    bad += 1
    print(f"{nq} quantized tensors checked, {bad} bad")
    sys.exit(1 if bad or nq == 0 else 0)


main()
