"""The F32 tensors of a safetensors file as numpy arrays, by name (the test scripts' reader:
no dependency beyond numpy)."""
import json
import struct

import numpy as np


def read(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    return {k: np.frombuffer(b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]], np.float32).reshape(v["shape"])
            for k, v in h.items() if k != "__metadata__" and v["dtype"] == "F32"}
