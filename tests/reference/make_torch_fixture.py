#!/usr/bin/env python3
"""Fixtures of the torch-format (pytorch_model.bin) reader tests, written by real torch.save.

    /tmp/venv-ref/bin/python tests/reference/make_torch_fixture.py     # the venv of
                                                                       # make_bert_reference.py
Writes tests/reference/torch/:
  tiny.bin                   torch.save of a state dict covering every storage type the reader
                             maps (F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL), a 0-d
                             tensor, an empty tensor, a row view sharing its storage at an
                             offset, a 3-d tensor, an nn.Parameter (_rebuild_parameter) and a
                             requires_grad tensor
  tiny-expected.safetensors  the same tensors (contiguous, same dtypes), for value comparisons
  noncontig.bin              a state dict holding a transposed (non-contiguous) view
  legacy.bin                 the same dict in the pre-1.6 non-zip format
                             (_use_new_zipfile_serialization=False)
and checks that tests/reference/torch_format.py (the torch-free writer the other tests use)
produces a data.pkl byte-identical to torch's for the same state dict, and files torch.load
reads back exactly.

Made with torch 2.15.0 (see make_bert_reference.py for the virtualenv). Hostile inputs (os.system
GLOBAL, unknown opcodes, truncated and lying archives) are built in the C test itself
(tests/shard/test_torch_format.c).
"""
import collections
import os
import sys
import tempfile
import zipfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import torch_format as tf  # noqa: E402

OUT = os.path.join(HERE, "torch")
ST_DTYPE = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
            torch.float64: "F64", torch.int64: "I64", torch.int32: "I32", torch.int16: "I16",
            torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}


def tiny_state_dict():
    g = torch.Generator().manual_seed(1234)
    w = torch.randn(4, 3, generator=g)
    sd = collections.OrderedDict()
    sd["layer.weight"] = w
    sd["layer.bias"] = torch.randn(4, generator=g)
    sd["layer.weight_row2"] = w[2]                  # shares w's storage, offset 6
    sd["half"] = torch.randn(5, generator=g).half()
    sd["bf16"] = torch.randn(2, 3, generator=g).bfloat16()
    sd["double"] = torch.randn(3, generator=g).double()
    sd["cube"] = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4) / 8
    sd["ids"] = torch.arange(-3, 4, dtype=torch.int64)
    sd["i32"] = torch.tensor([1, -2, 2**31 - 1], dtype=torch.int32)
    sd["i16"] = torch.tensor([-7, 300], dtype=torch.int16)
    sd["i8"] = torch.tensor([-128, 127], dtype=torch.int8)
    sd["u8"] = torch.tensor([0, 255, 7], dtype=torch.uint8)
    sd["mask"] = torch.tensor([True, False, True])
    sd["scalar"] = torch.tensor(3.5)
    sd["empty"] = torch.zeros(0, 3)
    sd["param"] = torch.nn.Parameter(torch.randn(2, 2, generator=g))
    sd["grad"] = torch.randn(3, generator=g).requires_grad_(True)
    sd._metadata = collections.OrderedDict([("", {"version": 1}), ("layer", {"version": 1})])
    return sd


def expected(sd):
    """name -> numpy array of the same dtype (BF16 as its raw uint16 bits)."""
    import numpy as np
    out = {}
    for k, t in sd.items():
        t = t.detach().contiguous()
        if t.dtype == torch.bfloat16:
            a = t.view(torch.int16).numpy().view(np.uint16)
        else:
            a = t.numpy()
        out[k] = (ST_DTYPE[t.dtype], a)
    return out


def write_expected(path, arrays):
    """safetensors with the given dtypes (make_bert_reference's writer handles F32/I32 only)."""
    import json
    import struct
    header, off, blobs = {"__metadata__": {"format": "qdist-torch-fixture-expected"}}, 0, []
    for name in sorted(arrays):
        dt, a = arrays[name]
        b = a.tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def check_writer_matches_torch():
    """torch_format.py's data.pkl == torch's, and torch.load reads its archives back."""
    g = torch.Generator().manual_seed(7)
    w, b, h = torch.randn(3, 2, generator=g), torch.randn(3, generator=g), torch.arange(4).half()
    sd = collections.OrderedDict([("a.weight", w), ("a.bias", b), ("a.row", w[1]), ("h", h)])
    sd._metadata = collections.OrderedDict([("", {"version": 1}), ("a", {"version": 1})])
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "m.bin")
        torch.save(sd, p)
        with zipfile.ZipFile(p) as z:
            torch_pkl = z.read("m/data.pkl")
        st = [tf.Storage(ST_DTYPE[t.dtype], t.numpy().tobytes(), i) for i, t in enumerate((w, b, h))]
        mine = tf.state_dict([("a.weight", tf.Tensor(st[0], 0, (3, 2))),
                              ("a.bias", tf.Tensor(st[1], 0, (3,))),
                              ("a.row", tf.Tensor(st[0], 2, (2,))),
                              ("h", tf.Tensor(st[2], 0, (4,)))], ("", "a"))
        assert tf.dumps_state_dict(mine) == torch_pkl, "data.pkl differs from torch's"
        q = os.path.join(d, "mine.bin")
        tf.save(mine, q)
        back = torch.load(q, weights_only=True)
        for k in sd:
            assert torch.equal(back[k], sd[k]), k
        assert back["a.row"].untyped_storage().data_ptr() == back["a.weight"].untyped_storage().data_ptr()
    print("torch_format.py: data.pkl identical to torch.save's; torch.load reads its archives")


def main():
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    check_writer_matches_torch()
    sd = tiny_state_dict()
    torch.save(sd, os.path.join(OUT, "tiny.bin"))
    write_expected(os.path.join(OUT, "tiny-expected.safetensors"), expected(sd))
    nc = collections.OrderedDict([("ok", torch.ones(2)), ("transposed", torch.randn(2, 3).t())])
    torch.save(nc, os.path.join(OUT, "noncontig.bin"))
    torch.save(collections.OrderedDict([("w", torch.ones(2, 2))]), os.path.join(OUT, "legacy.bin"),
               _use_new_zipfile_serialization=False)
    back = torch.load(os.path.join(OUT, "tiny.bin"), weights_only=True)
    assert all(torch.equal(back[k], sd[k]) for k in sd)
    for f in sorted(os.listdir(OUT)):
        print(f"{f}: {os.path.getsize(os.path.join(OUT, f))} bytes")
    print(f"torch {torch.__version__}")


if __name__ == "__main__":
    main()
