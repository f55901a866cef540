#!/usr/bin/env python3
"""torch.save's file format for a state dict, written without torch (Python standard library only).

Used by the tests of shard/'s torch-format reader: make_torch_fixture.py writes its hostile
fixtures with it, and tests/shard/torch_real_bert.sh converts the real BERT checkpoint's
model.safetensors into a pytorch_model.bin with it:

    python3 tests/reference/torch_format.py FROM.safetensors TO.bin

What torch.save(state_dict, f) writes (PyTorch >= 1.6 "zipfile" serialization; checked byte for
byte against torch 2.15.0 by make_torch_fixture.py, which asserts that this module's data.pkl is
identical to torch's for the same state dict):

  * a zip archive, every entry stored (method 0, uncompressed), every entry's data aligned to
    64 bytes by padding the local header's extra field (id 0x4246 "FB"), a zip64 end record and
    locator followed by the classic end record;
  * entries under one folder named after the file (<stem>/): data.pkl, .format_version ("1"),
    .storage_alignment ("64"), byteorder ("little"), data/<key> (one per storage, raw
    little-endian elements), version ("3\\n"), .data/serialization_id;
  * data.pkl: a protocol-2 pickle of the OrderedDict, written by the standard Pickler with
    persistent ids. A tensor reduces to torch._utils._rebuild_tensor_v2(storage, storage_offset,
    size, stride, requires_grad, OrderedDict()) where storage is the persistent id
    ('storage', torch.<Type>Storage, '<key>', 'cpu', <numel of the storage>). The dict carries
    a `_metadata` attribute (an OrderedDict of per-module {'version': N}), set with BUILD.
"""
import collections
import io
import json
import os
import pickle
import struct
import sys
import types
import zlib

# storage class name, element size, safetensors dtype
STORAGES = {
    "F32": ("FloatStorage", 4), "F64": ("DoubleStorage", 8), "F16": ("HalfStorage", 2),
    "BF16": ("BFloat16Storage", 2), "I64": ("LongStorage", 8), "I32": ("IntStorage", 4),
    "I16": ("ShortStorage", 2), "I8": ("CharStorage", 1), "U8": ("ByteStorage", 1),
    "BOOL": ("BoolStorage", 1),
}


class Global:
    """A name that data.pkl refers to with GLOBAL (module, qualname); never imported."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):  # the pickler only checks that a reduce function is callable
        raise TypeError(f"{self.module}.{self.name} is a name in a pickle, not a function")


REBUILD_TENSOR_V2 = Global("torch._utils", "_rebuild_tensor_v2")
STORAGE_TYPES = {dt: Global("torch", cls) for dt, (cls, _) in STORAGES.items()}


class Storage:
    def __init__(self, dtype, data, key):
        self.dtype, self.data, self.key = dtype, bytes(data), str(key)
        self.numel = len(self.data) // STORAGES[dtype][1]


class Tensor:
    """A view of a storage, pickled exactly as torch.Tensor.__reduce_ex__ does."""

    def __init__(self, storage, offset, size, stride=None, requires_grad=False):
        self.storage, self.offset, self.size = storage, offset, tuple(size)
        if stride is None:
            stride, acc = [], 1
            for s in reversed(self.size):
                stride.insert(0, acc)
                acc *= s
        self.stride, self.requires_grad = tuple(stride), requires_grad

    def __reduce_ex__(self, proto):
        return (REBUILD_TENSOR_V2, (self.storage, self.offset, self.size, self.stride,
                                    self.requires_grad, collections.OrderedDict()))


class _Pickler(pickle._Pickler):
    """The standard pickler; Global objects are written as GLOBAL without importing them."""
    dispatch = pickle._Pickler.dispatch.copy()

    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", STORAGE_TYPES[obj.dtype], obj.key, "cpu", obj.numel)
        return None

    def save_global_name(self, obj, name=None):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("utf-8"))
        self.memoize(obj)

    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, Global):
            x = self.memo.get(id(obj))
            if x is not None:
                self.write(self.get(x[0]))
                return
            return self.save_global_name(obj)
        return super().save(obj, save_persistent_id)


def dumps_state_dict(sd, protocol=2):
    f = io.BytesIO()
    _Pickler(f, protocol=protocol).dump(sd)
    return f.getvalue()


def state_dict(tensors, metadata_modules=("",)):
    """An OrderedDict of name -> Tensor with torch's `_metadata` attribute."""
    sd = collections.OrderedDict(tensors)
    sd._metadata = collections.OrderedDict((m, {"version": 1}) for m in metadata_modules)
    return sd


def zip_stored(entries, align=64):
    """A zip archive of (name, bytes) entries, stored, data aligned like PyTorchStreamWriter."""
    out = bytearray()
    central = []
    for name, data in entries:
        nb = name.encode("utf-8")
        off = len(out)
        pad = (-(off + 30 + len(nb) + 4)) % align
        extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad
        crc = zlib.crc32(data) & 0xFFFFFFFF
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0x21, crc, len(data),
                           len(data), len(nb), len(extra)) + nb + extra + data
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0x31E, 20, 0, 0, 0, 0x21,
                                   crc, len(data), len(data), len(nb), 0, 0, 0, 0, 0, off) + nb)
    cd_off = len(out)
    for c in central:
        out += c
    cd_size = len(out) - cd_off
    z64 = len(out)
    out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 0x31E, 45, 0, 0, len(central),
                       len(central), cd_size, cd_off)
    out += struct.pack("<IIQI", 0x07064B50, 0, z64, 1)
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), cd_size,
                       cd_off, 0)
    return bytes(out)


def archive(stem, pkl, storages):
    """The entries torch.save writes, in its order: pkl = data.pkl bytes, storages = key -> bytes."""
    entries = [(f"{stem}/data.pkl", pkl), (f"{stem}/.format_version", b"1"),
               (f"{stem}/.storage_alignment", b"64"), (f"{stem}/byteorder", b"little")]
    entries += [(f"{stem}/data/{k}", v) for k, v in storages.items()]
    entries += [(f"{stem}/version", b"3\n"),
                (f"{stem}/.data/serialization_id", b"0" * 40)]
    return zip_stored(entries)


def save(sd, path):
    """torch.save(sd, path) for an OrderedDict of Tensor (storages numbered as torch does)."""
    storages, seen = collections.OrderedDict(), set()
    for t in sd.values():
        if id(t.storage) not in seen:
            seen.add(id(t.storage))
            storages[t.storage.key] = t.storage.data
    stem = os.path.splitext(os.path.basename(path))[0]
    with open(path, "wb") as f:
        f.write(archive(stem, dumps_state_dict(sd), storages))


def from_safetensors(src, dst):
    """Convert a safetensors file to torch.save's format, tensor for tensor, in file order."""
    with open(src, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        items = sorted(((k, v) for k, v in header.items() if k != "__metadata__"),
                       key=lambda kv: kv[1]["data_offsets"][0])
        tensors = collections.OrderedDict()
        for i, (name, info) in enumerate(items):
            a, b = info["data_offsets"]
            f.seek(base + a)
            st = Storage(info["dtype"], f.read(b - a), i)
            tensors[name] = Tensor(st, 0, info["shape"])
    modules = sorted({""} | {k.rsplit(".", 1)[0] for k in tensors})
    save(state_dict(tensors, modules), dst)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: torch_format.py FROM.safetensors TO.bin")
    from_safetensors(sys.argv[1], sys.argv[2])
