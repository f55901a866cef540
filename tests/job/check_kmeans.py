"""Checks a K-means model file against its source, reading both independently of qdist (h5py
and numpy, as docs/FORMAT.md describes the file): every kmeans tensor has ascending levels per
group, each code is the nearest level of its group to the source weight (ties to either side),
each used level is the mean of its members' weights rounded to float16 (Lloyd's fixed point,
stored as float16: unweighted files),
and, given an exported checkpoint, the export equals codebook[r, c // G, q] exactly.
Usage: check_kmeans.py SRC.safetensors MODEL.h5 [EXPORT.safetensors]"""
import json
import struct
import sys

import h5py
import numpy as np


def load(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8 : 8 + n])
    return {
        k: np.frombuffer(raw[8 + n + v["data_offsets"][0] : 8 + n + v["data_offsets"][1]], "<f4").reshape(v["shape"])
        for k, v in hdr.items()
        if k != "__metadata__" and v["dtype"] == "F32"
    }


def unpack(packed, n, bits):
    b = np.unpackbits(packed, axis=-1, bitorder="little")[..., : n * bits].reshape(*packed.shape[:-1], n, bits)
    return (b * (1 << np.arange(bits))).sum(-1).astype(np.int64)


src = load(sys.argv[1])
exp = load(sys.argv[3]) if len(sys.argv) > 3 else None
bad = seen = 0
with h5py.File(sys.argv[2], "r") as f:
    weighted = json.loads(f.attrs["quant_config"])["kmeans"]["weighted"]
    for name, g in f["tensors"].items():
        m = g.attrs["method"] if "method" in g.attrs else ""
        if m not in ("kmeans", b"kmeans"):
            continue
        seen += 1
        bits = int(g.attrs["bits"])
        out, inp = (int(x) for x in g.attrs["shape"])
        G = int(g.attrs["group_size"]) if int(g.attrs["group_size"]) > 0 else inp
        q = unpack(g["qweight"][...], inp, bits)
        cb = g["codebook"][...]
        assert cb.dtype == np.float16, (name, cb.dtype)
        cb = cb.astype(np.float64)
        assert "scales" not in g and cb.shape == (out, (inp + G - 1) // G, 1 << bits), name
        if (np.diff(cb, axis=-1) < 0).any():
            print(name, "levels not ascending")
            bad += 1
        levels = cb[:, np.arange(inp) // G, :]  # [out, in, K]
        W = np.take_along_axis(levels, q[..., None], -1)[..., 0]
        w = src[name].astype(np.float64)
        d_code = np.abs(w - W)
        d_best = np.abs(w[..., None] - levels).min(-1)
        far = d_code > d_best * (1 + 1e-6) + 1e-12
        if far.any():
            print(name, "codes not the nearest level:", int(far.sum()))
            bad += 1
        if not weighted:
            grp = np.arange(inp) // G
            worst = 0.0
            for r in range(0, out, max(1, out // 8)):
                for gi in range(cb.shape[1]):
                    cols = grp == gi
                    for k in np.unique(q[r, cols]):
                        mean = w[r, cols][q[r, cols] == k].mean()
                        half_ulp = float(np.spacing(np.abs(np.float16(mean)))) / 2  # float16's rounding
                        worst = max(worst, abs(mean - cb[r, gi, k]) / (half_ulp * (1 + 1e-3) + 1e-9))
            if worst > 1:
                print(name, "a level is not the mean of its members:", worst)
                bad += 1
        if exp is not None and not np.array_equal(exp[name], W.astype(np.float32)):
            print(name, "export differs from codebook[r, c // G, q]")
            bad += 1
print(f"check_kmeans: {seen} kmeans tensors, {bad} problems")
sys.exit(1 if bad or not seen else 0)
