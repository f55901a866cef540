"""Loads compressed-tensors exports of every architecture family qdist runs with transformers (the
class named by config.json's architectures, from_pretrained, CPU) and checks them against qdist:

    check_ctensors_archs.py LABEL CT_DIR DEQUANT_DIR QDIST_OUTPUTS INPUTS [LABEL CT_DIR ...]

- transformers quantizes exactly the Linears the export wrote (one module per *.weight_scale
  tensor), and every weight compressed-tensors decompresses equals the weight qdist dequantizes
  (`qdist export --format safetensors`, DEQUANT_DIR) bit for bit;
- the model run on INPUTS (input_ids/attention_mask or pixel_values) gives qdist's outputs with the
  same dequantized weights (`qdist forward --fake-quant --hidden --save-outputs`, QDIST_OUTPUTS):
  every output both write (last_hidden_state, pooler_output, logits, image_embeds), at real
  tokens, within 1e-4 of its largest value.
One line of figures per model; exit 1 when a check fails.
"""
import json
import os
import sys
import warnings

import numpy as np
import torch
import transformers
from safetensors import safe_open
from compressed_tensors.compressors.base import BaseCompressor


def weight_of(module):
    """The float weight compressed-tensors' own decompressor makes of a module's stored tensors."""
    scheme = module.quantization_scheme
    params = {n: p.detach() for n, p in module.named_parameters(recurse=False)}
    params.update({n: b for n, b in module.named_buffers(recurse=False)})
    if params["weight" if "weight" in params else "weight_packed"].dtype.is_floating_point:
        return params["weight"]
    compressor = BaseCompressor.get_value_from_registry(scheme.format)
    return compressor.decompress(params, scheme)["weight"]


def tensors(path, fmt="np"):
    with safe_open(path, fmt) as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def check(label, ct_dir, dq_dir, outputs, inputs):
    arch = json.load(open(os.path.join(ct_dir, "config.json")))["architectures"][0]
    model = getattr(transformers, arch).from_pretrained(ct_dir, dtype=torch.float32).eval()
    modules = dict(model.named_modules())
    quantized = [n for n, m in modules.items() if getattr(m, "quantization_scheme", None) is not None]
    written = [k for k in tensors(os.path.join(ct_dir, "model.safetensors")) if k.endswith(".weight_scale")]
    # the dequantized checkpoint loaded by the same class: the same module names (transformers
    # renames some families' keys while loading)
    ref = dict(getattr(transformers, arch).from_pretrained(dq_dir, dtype=torch.float32).named_modules())
    worst, missing = 0.0, 0
    for name in quantized:
        if name not in ref:
            missing += 1
            continue
        worst = max(worst, float((weight_of(modules[name]) - ref[name].weight.detach()).abs().max()))

    x = tensors(inputs)
    q = tensors(outputs)
    feed = {k: torch.from_numpy(x[k]).long() for k in ("input_ids", "attention_mask") if k in x}
    if "pixel_values" in x:
        feed["pixel_values"] = torch.from_numpy(x["pixel_values"]).float()
    with torch.no_grad():
        out = model(**feed)
    mask = x.get("attention_mask")
    errs = {}
    for k in ("last_hidden_state", "pooler_output", "logits", "image_embeds"):
        if k not in q or getattr(out, k, None) is None:
            continue
        a, b = out[k].numpy(), q[k]
        if a.shape != b.shape:
            errs[k] = float("inf")
            continue
        if mask is not None and a.ndim == 3:
            keep = mask.astype(bool)
            a, b = a[keep], b[keep]
        errs[k] = float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))
    ok = (worst == 0.0 and missing == 0 and len(quantized) == len(written) and len(quantized) > 0 and errs
          and max(errs.values()) <= 1e-4)
    figs = ", ".join(f"{k} {v:.2g}" for k, v in errs.items())
    print(("ok " if ok else "FAILED ") + f"{label} ({arch}): {len(quantized)} quantized Linears "
          f"({len(written)} written, {missing} without a reference), weights vs qdist's dequantized: max |diff| "
          f"{worst:.3g}; outputs vs qdist --fake-quant, max relative error: {figs}")
    return ok


def main():
    a = sys.argv[1:]
    if not a or len(a) % 5:
        sys.exit(__doc__)
    warnings.simplefilter("ignore")
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(1)
    bad = 0
    for i in range(0, len(a), 5):
        bad += not check(*a[i:i + 5])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
