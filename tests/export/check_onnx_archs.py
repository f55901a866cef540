"""Runs ONNX exports of further families (RoBERTa, XLM-R, DistilBERT, ELECTRA, ALBERT, MPNet, BEiT) with ONNX
Runtime on the reference inputs and compares them with qdist forward's outputs on the same inputs:

    check_onnx_archs.py LABEL MODEL.onnx QDIST_OUTPUTS INPUTS [LABEL MODEL.onnx ...]

QDIST_OUTPUTS: `qdist forward --hidden --save-outputs` (FP32, or --fake-quant for a quantized file).
last_hidden_state at real tokens, sentence_embedding (vision: pooler_output) and the head's logits (at real tokens for
token heads; present in both or in neither) must agree within 1e-4 of their largest value. One line per model; exit 1 when a check fails.
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort
from safetensors import safe_open


def tensors(path):
    with safe_open(path, "np") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def check(label, onnx_path, outputs, inputs):
    x, q = tensors(inputs), tensors(outputs)
    onnx.checker.check_model(onnx.load(onnx_path), full_check=True)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "1")
    s = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    if "pixel_values" in x:  # vision: every token is real; the pooled output instead of a sentence embedding
        feed = {"pixel_values": x["pixel_values"].astype(np.float32)}
        mask = np.ones(x["hidden.0"].shape[:2], np.int64)
        keys = ("last_hidden_state", "pooler_output", "image_embeds", "logits")
    else:
        ids = x["input_ids"].astype(np.int64)
        mask = x["attention_mask"].astype(np.int64) if "attention_mask" in x else np.ones_like(ids)
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in [i.name for i in s.get_inputs()]:
            feed["token_type_ids"] = np.zeros_like(ids)
        keys = ("last_hidden_state", "sentence_embedding", "logits")
    got = dict(zip([o.name for o in s.get_outputs()], s.run(None, feed)))
    keep = mask.astype(bool)
    errs = {}
    for k in keys:
        if k in ("logits", "image_embeds") and k not in got and k not in q:
            continue
        if k not in got or k not in q:
            print(f"FAILED {label}: '{k}' only in {'ONNX' if k in got else 'qdist'}'s outputs")
            return False
        a, b = got[k], q[k].reshape(got[k].shape)
        if k == "last_hidden_state" or (k == "logits" and a.ndim >= 2 and a.shape[:2] == keep.shape):
            a, b = a[keep], b[keep]  # token heads: real tokens only
        errs[k] = float(np.abs(a - b).max() / np.abs(b).max())
    ok = max(errs.values()) <= 1e-4
    print(("ok " if ok else "FAILED ") + f"{label}: ONNX Runtime vs qdist forward, max relative error: "
          + ", ".join(f"{k} {v:.2g}" for k, v in errs.items()))
    return ok


def main():
    a = sys.argv[1:]
    if not a or len(a) % 4:
        sys.exit(__doc__)
    bad = 0
    for i in range(0, len(a), 4):
        bad += not check(*a[i:i + 4])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
