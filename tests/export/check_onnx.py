"""Runs an exported ONNX model with ONNX Runtime on the inputs qdist was fed (a file written by
tests/export/export_outputs) and compares its outputs with qdist's.

    check_onnx.py MODEL.onnx OUTPUTS.safetensors --against quant|fp32
                  [--min-cos C] [--min-agree A] [--max-abs E] [--label NAME]
                  [--ort-accuracy-level L] [--min-mean-cos C] [--max-fidelity-gap G]

Inputs are fed in qdist's batches (metadata "batch"); text batches padded to their longest item,
as qdist ran them. The output compared is the one qdist computed: logits (models with a head) or
the mean-pooled sentence embedding. Prints one line of figures; exit 1 when a bound is missed.

--ort-accuracy-level: ONNX Runtime's session.qdq_matmulnbits_accuracy_level. Its optimizer turns
DequantizeLinear + MatMul of constant weights into MatMulNBits, by default (4) on int8 activations
quantized in blocks at run time; 0 or 1 keeps float activations, the graph's own semantics.
"""
import argparse
import sys

import numpy as np
import onnx
import onnxruntime as ort
from safetensors import safe_open


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("onnx_path")
    ap.add_argument("outputs")
    ap.add_argument("--against", choices=("quant", "fp32"), required=True)
    ap.add_argument("--min-cos", type=float, default=None)
    ap.add_argument("--min-agree", type=float, default=None)
    ap.add_argument("--max-abs", type=float, default=None)
    ap.add_argument("--label", default="")
    ap.add_argument("--ort-accuracy-level", default=None)
    ap.add_argument("--min-mean-cos", type=float, default=None)
    ap.add_argument("--max-fidelity-gap", type=float, default=None,
                    help="against quant: |mean cosine to FP32 of ORT - of qdist| at most this")
    a = ap.parse_args()

    model = onnx.load(a.onnx_path)
    onnx.checker.check_model(model, full_check=True)

    with safe_open(a.outputs, "np") as f:
        meta = f.metadata()
        t = {k: f.get_tensor(k) for k in f.keys()}
    batch, task = int(meta["batch"]), meta["task"]
    ref = t[a.against]
    n = ref.shape[0]

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    if a.ort_accuracy_level is not None:
        so.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", a.ort_accuracy_level)
    sess = ort.InferenceSession(a.onnx_path, so, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    out_name = "logits" if task == "logits" else "sentence_embedding"
    got = np.zeros_like(ref)
    for s in range(0, n, batch):
        e = min(n, s + batch)
        if "pixel_values" in t:
            feed = {"pixel_values": t["pixel_values"][s:e]}
        else:
            tb = int(t["attention_mask"][s:e].sum(1).max())
            feed = {k: t[k][s:e, :tb] for k in ("input_ids", "attention_mask", "token_type_ids") if k in names}
        got[s:e] = sess.run([out_name], feed)[0]

    def cosine(x, y):
        return (x * y).sum(1) / np.maximum(np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1), 1e-30)

    cos = cosine(got, ref)
    maxabs = float(np.abs(got - ref).max())
    line = (f"{a.label}: {n} samples vs qdist {a.against}: cosine mean {cos.mean():.7f} min {cos.min():.7f}, "
            f"max |diff| {maxabs:.3g} (max |qdist| {np.abs(ref).max():.3g})")
    ok = True
    if a.against == "quant" and "fp32" in t:
        ort_f, own_f = cosine(got, t["fp32"]).mean(), cosine(ref, t["fp32"]).mean()
        line += f", cosine to FP32: ORT {ort_f:.5f} qdist {own_f:.5f}"
        if a.max_fidelity_gap is not None and abs(ort_f - own_f) > a.max_fidelity_gap:
            ok = False
    if a.min_mean_cos is not None and cos.mean() < a.min_mean_cos:
        ok = False
    if task == "logits":
        agree = float((got.argmax(1) == ref.argmax(1)).mean())
        line += f", top-1 agreement {agree * 100:.2f} %"
        if "labels" in t:
            line += (f", accuracy ORT {(got.argmax(1) == t['labels']).mean() * 100:.2f} % "
                     f"qdist {(ref.argmax(1) == t['labels']).mean() * 100:.2f} %")
        if a.min_agree is not None and agree < a.min_agree:
            ok = False
    if a.min_cos is not None and cos.min() < a.min_cos:
        ok = False
    if a.max_abs is not None and maxabs > a.max_abs:
        ok = False
    print(("ok " if ok else "FAILED ") + line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
