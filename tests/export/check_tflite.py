"""Runs an exported .tflite model with LiteRT (ai_edge_litert, its default CPU delegate) on the
images qdist was fed (a file from tests/export/export_outputs) and compares the logits with qdist's:

    check_tflite.py MODEL.tflite OUTPUTS.safetensors [--against quant|fp32] [--min-agree A]
                    [--min-mean-cos C] [--max-acc-drop D] [--label NAME]

Prints one line of figures; exit 1 when a bound is missed. The model is also checked to be
integer-only: every tensor between the input QUANTIZE and the output DEQUANTIZE is int8 or int32.
"""
import argparse
import sys

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from safetensors import safe_open


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("outputs")
    ap.add_argument("--against", default="quant", choices=("quant", "fp32"))
    ap.add_argument("--min-agree", type=float, default=None)
    ap.add_argument("--min-mean-cos", type=float, default=None)
    ap.add_argument("--max-acc-drop", type=float, default=None)
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    with safe_open(a.outputs, "np") as f:
        t = {k: f.get_tensor(k) for k in f.keys()}
    px, ref = t["pixel_values"], t[a.against]
    it = Interpreter(model_path=a.model, num_threads=1)
    it.allocate_tensors()
    kinds = {d["dtype"].__name__ for d in it.get_tensor_details()}
    floats = [d["name"] for d in it.get_tensor_details() if d["dtype"] == np.float32]
    i0, o0 = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    out = np.zeros_like(ref)
    for i in range(px.shape[0]):
        it.set_tensor(i0, px[i : i + 1])
        it.invoke()
        out[i] = it.get_tensor(o0)[0]
    cos = (out * ref).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(ref, axis=1)
    agree = float((out.argmax(1) == ref.argmax(1)).mean())
    line = (f"{a.label}: {px.shape[0]} images vs qdist {a.against}: top-1 agreement {agree * 100:.2f} %, logits cosine "
            f"mean {cos.mean():.5f} min {cos.min():.5f}; tensor types {sorted(kinds)}, float tensors {floats}")
    ok = len(floats) == 2
    drop = 0.0
    if "labels" in t:
        acc_l, acc_q = (out.argmax(1) == t["labels"]).mean(), (ref.argmax(1) == t["labels"]).mean()
        drop = acc_q - acc_l
        line += f"; accuracy LiteRT {acc_l * 100:.2f} % qdist {acc_q * 100:.2f} %"
    if a.min_agree is not None and agree < a.min_agree:
        ok = False
    if a.min_mean_cos is not None and cos.mean() < a.min_mean_cos:
        ok = False
    if a.max_acc_drop is not None and drop > a.max_acc_drop:
        ok = False
    print(("ok " if ok else "FAILED ") + line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
