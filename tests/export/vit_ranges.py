"""Activation ranges of an integer-only ViT graph (the one `qdist export --format tflite` writes),
calibrated in float on preprocessed images (system Python: h5py, numpy): runs the model of a qdist file (weights dequantized by
docs/qdist_h5.py) operation by operation as that graph does, and records min/max of every
intermediate tensor under the graph's names. Writes the JSON --activation-ranges reads, and prints
how close its logits are to qdist's own (export_outputs' `quant`, --fake-quant).

    vit_ranges.py DOCS_DIR MODEL.h5 OUTPUTS.safetensors RANGES.json [--n N]
"""
import argparse
import json
import sys

import numpy as np

DT = {"F32": "<f4", "I32": "<i4", "I64": "<i8"}


def load_st(path):
    """A safetensors file as {name: array} (the format is a JSON header and raw little-endian data)."""
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    hdr = json.loads(raw[8 : 8 + n])
    return {k: np.frombuffer(raw[8 + n + v["data_offsets"][0] : 8 + n + v["data_offsets"][1]],
                             dtype=DT[v["dtype"]]).reshape(v["shape"])
            for k, v in hdr.items() if k != "__metadata__"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("docs")
    ap.add_argument("model")
    ap.add_argument("outputs")
    ap.add_argument("ranges")
    ap.add_argument("--n", type=int, default=256)
    a = ap.parse_args()
    sys.path.insert(0, a.docs)
    import qdist_h5

    t = load_st(a.outputs)
    px, ref = t["pixel_values"][: a.n].astype(np.float32), t["quant"][: a.n]
    m = qdist_h5.open(a.model)
    c = m.model_config
    H, heads, L = c["hidden_size"], c["num_attention_heads"], c["num_hidden_layers"]
    d = c.get("attention_head_size") or H // heads
    eps = c.get("layer_norm_eps", 1e-12)
    pfx = "vit." if "vit.embeddings.cls_token" in set(m.names()) else ""
    cache = {}

    def W(n):
        if n not in cache:
            cache[n] = m.tensor(n).dequantize().astype(np.float32)
        return cache[n]

    names = set(m.names())
    opt = lambda n: W(n) if n in names else None
    rng = {}

    def rec(name, x):
        lo, hi = float(x.min()), float(x.max())
        if name in rng:
            lo, hi = min(lo, rng[name][0]), max(hi, rng[name][1])
        rng[name] = [lo, hi]
        return x

    def ln(p, x, g, b, out):
        mean = rec(p + ".mean", x.mean(-1, keepdims=True))
        diff = rec(p + ".diff", x - mean)
        return rec(out, diff / np.sqrt((diff * diff).mean(-1, keepdims=True) + eps) * g + b)

    def fc(x, w, b):
        y = x @ w.T
        return y + b if b is not None else y

    e = pfx + "embeddings."
    pw, pb = W(e + "patch_embeddings.projection.weight"), W(e + "patch_embeddings.projection.bias")
    cls, pos = W(e + "cls_token"), W(e + "position_embeddings")
    ph = pw.shape[2]
    logits = []
    for i in range(px.shape[0]):
        x = rec("input", px[i : i + 1])
        B, C, Hh, Ww = x.shape
        gh, gw = Hh // ph, Ww // ph
        patches = x.reshape(B, C, gh, ph, gw, ph).transpose(0, 2, 4, 1, 3, 5).reshape(B, gh * gw, C * ph * ph)
        pt = rec("patches", patches @ pw.reshape(H, -1).T + pb)
        tok = rec("tokens", np.concatenate([cls.reshape(1, 1, H), pt], axis=1))
        h = rec("embeddings", tok + pos)
        T = h.shape[1]
        for k in range(L):
            p = f"{pfx}encoder.layer.{k}."
            n1 = ln(f"layer.{k}.ln1", h, W(p + "layernorm_before.weight"), W(p + "layernorm_before.bias"),
                    f"layer.{k}.qkv_in")
            at = p + "attention.attention."
            q = rec(f"layer.{k}.q", fc(n1, W(at + "query.weight"), opt(at + "query.bias"))) / np.sqrt(d)
            kk = rec(f"layer.{k}.k", fc(n1, W(at + "key.weight"), opt(at + "key.bias")))
            v = rec(f"layer.{k}.v", fc(n1, W(at + "value.weight"), opt(at + "value.bias")))
            sh = lambda t: t.reshape(1, T, heads, d).transpose(0, 2, 1, 3)
            s = rec(f"layer.{k}.scores", sh(q) @ sh(kk).transpose(0, 1, 3, 2))
            pr = np.exp(s - s.max(-1, keepdims=True))
            pr /= pr.sum(-1, keepdims=True)
            ctx = rec(f"layer.{k}.ctx", pr @ sh(v))
            ctx = ctx.transpose(0, 2, 1, 3).reshape(1, T, heads * d)
            ao = rec(f"layer.{k}.attn_out", fc(ctx, W(p + "attention.output.dense.weight"), W(p + "attention.output.dense.bias")))
            h1 = rec(f"layer.{k}.res1", h + ao)
            n2 = ln(f"layer.{k}.ln2", h1, W(p + "layernorm_after.weight"), W(p + "layernorm_after.bias"),
                    f"layer.{k}.mlp_in")
            it = fc(n2, W(p + "intermediate.dense.weight"), W(p + "intermediate.dense.bias"))
            act = rec(f"layer.{k}.act", np.maximum(it, 0) if c.get("hidden_act") == "relu" else it)
            mo = rec(f"layer.{k}.mlp_out", fc(act, W(p + "output.dense.weight"), W(p + "output.dense.bias")))
            h = rec(f"layer.{k}.out", h1 + mo)
        fin = ln("final_norm", h[:, :1, :].reshape(1, H), W(pfx + "layernorm.weight"), W(pfx + "layernorm.bias"),
                 "final_norm")
        logits.append(rec("logits", fc(fin, W("classifier.weight"), W("classifier.bias"))))
    logits = np.concatenate(logits)
    json.dump(rng, open(a.ranges, "w"), indent=0)
    print(f"vit_ranges: {len(rng)} tensors from {px.shape[0]} images; float logits vs qdist fake-quant: "
          f"max |diff| {np.abs(logits - ref).max():.3g}")


if __name__ == "__main__":
    main()
