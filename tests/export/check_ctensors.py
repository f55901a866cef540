"""Loads a compressed-tensors export with transformers (AutoModel.from_pretrained, CPU) and checks
it against qdist:

    check_ctensors.py DIR OUTPUTS.safetensors DEQUANT.safetensors [--min-cos C] [--label NAME]

- every Linear weight transformers reconstructs (compressed-tensors' decompression) equals the
  weight qdist dequantizes (`qdist export --format safetensors`, DEQUANT) bit for bit;
- the model run on the inputs qdist was fed (OUTPUTS, from tests/export/export_outputs, batches and
  padding as qdist ran them) gives qdist's quantized outputs (mean-pooled sentence embeddings, as
  `qdist eval` compares them): per-sample cosine >= C.
Prints one line of figures; exit 1 when a check fails.
"""
import argparse
import sys
import warnings

import numpy as np
import torch
from safetensors import safe_open
from compressed_tensors.compressors.base import BaseCompressor
from transformers import AutoModel


def weight_of(module):
    """The float weight compressed-tensors' own decompressor makes of a module's stored tensors."""
    scheme = module.quantization_scheme
    params = {n: p.detach() for n, p in module.named_parameters(recurse=False)}
    params.update({n: b for n, b in module.named_buffers(recurse=False)})
    if params["weight" if "weight" in params else "weight_packed"].dtype.is_floating_point:
        return params["weight"]  # already decompressed
    compressor = BaseCompressor.get_value_from_registry(scheme.format)
    return compressor.decompress(params, scheme)["weight"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("outputs")
    ap.add_argument("dequant")
    ap.add_argument("--min-cos", type=float, default=0.9999)
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)

    model = AutoModel.from_pretrained(a.model_dir, dtype=torch.float32).eval()
    quantized = [n for n, m in model.named_modules() if getattr(m, "quantization_scheme", None) is not None]
    modules = dict(model.named_modules())
    with safe_open(a.dequant, "pt") as f:
        ref = {k: f.get_tensor(k) for k in f.keys()}
    worst = 0.0
    for name in quantized:
        w = weight_of(modules[name])
        r = ref.get(name + ".weight", ref.get("bert." + name + ".weight"))
        worst = max(worst, float((w - r).abs().max()))

    with safe_open(a.outputs, "np") as f:
        meta = f.metadata()
        t = {k: f.get_tensor(k) for k in f.keys()}
    batch, q = int(meta["batch"]), t["quant"]
    n = q.shape[0]
    got = np.zeros_like(q)
    with torch.no_grad():
        for s in range(0, n, batch):
            e = min(n, s + batch)
            tb = int(t["attention_mask"][s:e].sum(1).max())
            feed = {k: torch.from_numpy(t[k][s:e, :tb]) for k in ("input_ids", "attention_mask", "token_type_ids")}
            h = model(**feed).last_hidden_state
            m = feed["attention_mask"].unsqueeze(-1).to(h.dtype)
            got[s:e] = ((h * m).sum(1) / m.sum(1).clamp(min=1e-9)).numpy()
    cos = (got * q).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(q, axis=1)
    ok = worst == 0.0 and cos.min() >= a.min_cos and len(quantized) > 0
    print(("ok " if ok else "FAILED ") + f"{a.label}: {len(quantized)} quantized Linears, weights vs qdist's dequantized: "
          f"max |diff| {worst:.3g}; {n} samples vs qdist quant: cosine mean {cos.mean():.7f} min {cos.min():.7f}, "
          f"max |diff| {np.abs(got - q).max():.3g}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
