"""Read a qdist model file (docs/FORMAT.md) into numpy arrays: codes, scales, zero points, column
groups, masks and metadata. Needs h5py and numpy only; copy this file next to your script.

    import qdist_h5
    m = qdist_h5.open("model-int4.h5")
    m.format_version, m.arch, m.model_config["hidden_size"], m.quant_config["bits"]
    for name in m.names():                   # every tensor of the checkpoint, name order
        t = m.tensor(name)
        t.kind                                # "quantized", "float" or "raw"
        if t.kind == "quantized":
            t.codes                           # uint8 [out, in], unpacked, 0 .. 2^bits - 1
            t.scales, t.zeros                 # float32 / int32 [out, groups] (zeros filled in for
                                              # symmetric tensors: 2^(bits-1))
            t.codebook                        # method kmeans: float32 [out, groups, 2^bits] levels
                                              # (stored as float16; float32 in older files)
                                              # (no scales or zeros then); else None
            t.group_of_column                 # int32 [in]: g_idx, or c // group_size
            t.bits, t.sym, t.granularity, t.group_size, t.method, t.act_order, t.metrics
            t.mask                            # bool [out, in] of kept weights, or None (not pruned)
            w = t.dequantize()                # float32 [out, in] = scales * (codes - zeros)
        elif t.kind == "float":
            w = t.data                        # float32, original shape
        else:
            a = t.array()                     # the raw bytes viewed as their original dtype
    m.close()                                 # or: with qdist_h5.open(path) as m: ...

Everything is read when asked for (m.tensor(name) reads that tensor only). The dequantization is
done in float32 in qdist's order, so it reproduces `qdist export`'s weights bit for bit. A file that
is not a finished qdist model of format version 1 raises ValueError naming the file and why.
"""
import json

import h5py
import numpy as np

FORMAT_VERSION = 1
_RAW_DTYPES = {"I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?",
               "F64": "<f8", "F32": "<f4", "F16": "<f2"}


def _text(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray) and v.dtype.kind == "S":
        return v.tobytes().decode()
    return str(v)


def unpack_codes(packed, n, bits):
    """Rows of little-endian bit streams (code i at bits [i*bits, i*bits + bits)) -> uint8 [rows, n]."""
    b = np.unpackbits(np.ascontiguousarray(packed, dtype=np.uint8), axis=-1, bitorder="little")[..., : n * bits]
    b = b.reshape(*packed.shape[:-1], n, bits).astype(np.uint16)
    return (b << np.arange(bits, dtype=np.uint16)).sum(-1).astype(np.uint8)


class Tensor:
    """One record of /tensors: attributes as fields, datasets read on first use."""

    def __init__(self, group, name):
        a = group.attrs
        self._g = group
        self.name = name
        self.kind = _text(a["kind"])
        self.shape = tuple(int(s) for s in np.atleast_1d(a["shape"]))
        self.orig_dtype = _text(a["orig_dtype"]) if "orig_dtype" in a else "F32"
        if self.kind == "quantized":
            self.method = _text(a["method"])
            self.bits = int(a["bits"])
            self.sym = bool(int(a["sym"]))
            self.granularity = _text(a["granularity"])
            gs = int(a["group_size"])
            self.group_size = gs if gs > 0 else self.shape[1]
            self.act_order = bool(int(a.get("act_order", 0)))
            names = _text(a["metrics_names"]).split(",") if "metrics_names" in a else []
            self.metrics = dict(zip(names, (float(v) for v in a.get("metrics", []))))
            self.sparsity = _text(a["sparsity"]) if "sparsity" in a else None
        else:
            self.sparsity = _text(a["sparsity"]) if "sparsity" in a else None

    def _ds(self, name):
        return self._g[name][...] if name in self._g else None

    def _stored(self):
        """Pruned records: (row, column) of every stored value, and which of the [out, S] slots hold
        one (docs/FORMAT.md "Sparsity")."""
        rows, cols = self.shape
        S = int(self._g.attrs["nonzeros_per_row"])
        if "nm_index" in self._g:
            n, m = (int(x) for x in self.sparsity.split(":"))
            pos = unpack_codes(self._ds("nm_index").reshape(rows, -1), S, max(1, (m - 1).bit_length()))
            col = (np.arange(S) // n * m)[None, :] + pos.astype(np.int64)
            used = np.ones((rows, S), dtype=bool)
        else:
            kept = self.mask
            col = np.zeros((rows, S), dtype=np.int64)
            used = np.zeros((rows, S), dtype=bool)
            for r in range(rows):
                c = np.flatnonzero(kept[r])
                col[r, : len(c)] = c
                used[r, : len(c)] = True
        row = np.broadcast_to(np.arange(rows)[:, None], (rows, S))
        return row[used], col[used], used

    @property
    def codes(self):
        rows, cols = self.shape
        if "nz_qweight" not in self._g:
            return unpack_codes(self._ds("qweight").reshape(rows, -1), cols, self.bits)
        # pruned: every weight the zero point's code of its group, the stored ones scattered back
        c = self.zeros[:, self.group_of_column].astype(np.uint8) if self.codebook is None else \
            np.zeros((rows, cols), dtype=np.uint8)
        r, k, used = self._stored()
        S = used.shape[1]
        c[r, k] = unpack_codes(self._ds("nz_qweight").reshape(rows, -1), S, self.bits)[used]
        return c

    @property
    def scales(self):
        return self._ds("scales").astype(np.float32)

    @property
    def zeros(self):
        z = self._ds("zeros")
        if z is None:  # symmetric: zero = 2^(bits-1)
            z = np.full(self._g["scales"].shape, 1 << (self.bits - 1), dtype=np.int32)
        return z.astype(np.int32)

    @property
    def codebook(self):
        c = self._ds("codebook")
        return c.astype(np.float32) if c is not None else None

    @property
    def g_idx(self):
        return self._ds("g_idx")

    @property
    def group_of_column(self):
        g = self.g_idx
        return g.astype(np.int32) if g is not None else (np.arange(self.shape[1]) // self.group_size).astype(np.int32)

    @property
    def mask(self):
        m = self._ds("mask")
        if m is None:
            return None
        rows, cols = self.shape
        return np.unpackbits(m, axis=-1, bitorder="little")[:, :cols].astype(bool)

    @property
    def data(self):
        if "nz_data" in self._g:  # pruned float record: zeros, the stored values scattered back
            d = np.zeros(self.shape, dtype=np.float32)
            r, k, used = self._stored()
            d[r, k] = self._ds("nz_data").astype(np.float32)[used]
            return d
        d = self._ds("data").astype(np.float32)
        return d.reshape(self.shape) if d.size == int(np.prod(self.shape)) else d.reshape(())  # 0-d tensors

    def array(self):
        """A raw record's bytes as its original dtype and shape."""
        return np.frombuffer(self._ds("raw").tobytes(), dtype=_RAW_DTYPES[self.orig_dtype]).reshape(self.shape)

    def dequantize(self):
        """float32 [out, in] = scales[r, g] * float32(codes[r, c] - zeros[r, g]), g = group of column c
        (K-means codebooks: codebook[r, g, codes[r, c]])."""
        if self.kind == "float":
            return self.data
        g = self.group_of_column
        cb = self.codebook
        if cb is not None:
            return np.take_along_axis(cb[:, g, :], self.codes[..., None].astype(np.int64), -1)[..., 0]
        diff = (self.codes.astype(np.int32) - self.zeros[:, g]).astype(np.float32)
        return self.scales[:, g] * diff


class QdistFile:
    def __init__(self, path):
        self.path = path
        self._f = h5py.File(path, "r")
        a = self._f.attrs
        fmt = _text(a["format"]) if "format" in a else ""
        if fmt != "qdist":
            self.close()
            raise ValueError(f"{path}: not a qdist model (attribute 'format' is '{fmt}')")
        self.format_version = int(a["format_version"])
        if self.format_version != FORMAT_VERSION:
            self.close()
            raise ValueError(f"{path}: format version {self.format_version}, this reader knows {FORMAT_VERSION}")
        self.status = _text(a["status"]) if "status" in a else ""
        if self.status != "complete":
            self.close()
            raise ValueError(f"{path}: the model is incomplete (status '{self.status}')")
        self.qdist_version = _text(a.get("qdist_version", ""))
        self.arch = _text(a.get("arch", ""))
        self.model_config = json.loads(_text(a["model_config"])) if "model_config" in a else {}
        self.quant_config = json.loads(_text(a["quant_config"])) if "quant_config" in a else {}
        self.source = _text(a.get("source", ""))
        self.calibration = _text(a.get("calibration", ""))

    def names(self):
        return sorted(self._f["tensors"].keys())

    def tensor(self, name):
        return Tensor(self._f["tensors"][name], name)

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open(path):  # noqa: A001 (the module's entry point reads as qdist_h5.open)
    return QdistFile(path)
