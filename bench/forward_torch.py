#!/usr/bin/env python3
"""bench/forward_torch.py — the PyTorch peer of bench_forward: FP32 forward throughput on CPU,
one thread, same models and same inputs.

  BERT  all-MiniLM-L6-v2 with transformers' BertModel (last hidden state + pooler), a batch of
        `--bert-batch` SST-2 dev sentences (the first data rows of dev.tsv, as in the file),
        tokenized by the checkpoint's own tokenizer, padded/truncated to `--seq` tokens, with the
        attention mask. Throughput counts every token, padding included.
  ViT   vit-mnist-tiny, written out below in plain torch (its config is not one transformers'
        ViTModel can load: 4 heads of size 64 on hidden 64, no q/k/v bias, ReLU, pre-LN), on
        `--vit-batch` images: the 16 MNIST test images of vit-forward-reference.safetensors
        (pixel_values, already normalized) repeated. Logits are computed.

Alone: each model gets `--warmup` untimed passes, then `--runs` timed passes under
torch.inference_mode(); prints one JSON object on stdout (best and median seconds, throughput,
process CPU time / wall time and page faults per pass). With --profile, adds a per-operator
breakdown (torch.profiler self CPU milliseconds per forward).

With --serve (how bench_forward drives it, so that its passes and PyTorch's alternate and share
whatever else the machine is doing): loads everything, prints one JSON line of facts, then
answers stdin lines until "quit" or end of input, one JSON line each:
    run bert|vit          one timed pass: {"s": wall seconds, "cpu": CPU seconds, "faults": n}
    profile bert|vit N    {"op": self CPU ms per forward, ...} over N passes

With --out-dir, writes the inputs and outputs of one pass as raw little-endian arrays so that
bench_forward can check both sides computed the same thing: bert_ids.i32 [B,T],
bert_mask.i32 [B,T], bert_hidden.f32 [B,T,H], bert_pooled.f32 [B,H], vit_logits.f32 [B,10].

Needs torch, numpy, safetensors and (for BERT) transformers.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

# one thread everywhere, before torch loads its OpenMP / BLAS runtimes
for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_v] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402


class ViT(torch.nn.Module):
    """vit-mnist-tiny: h0 = [CLS; conv_patch(x)] + pos; pre-LN blocks h += O(attn(LN1 h)),
    h += fc2(relu(fc1(LN2 h))); final LN; classifier on CLS."""

    def __init__(self, w, cfg):
        super().__init__()
        t = lambda k: torch.from_numpy(np.ascontiguousarray(w[k]))  # noqa: E731
        self.heads = cfg["num_attention_heads"]
        self.hs = cfg.get("attention_head_size", cfg["hidden_size"] // self.heads)
        self.eps = cfg.get("layer_norm_eps", 1e-12)
        self.act = {"relu": F.relu, "gelu": F.gelu}[cfg.get("hidden_act", "gelu")]
        self.patch = cfg["patch_size"]
        p = "vit.embeddings."
        self.patch_w = t(p + "patch_embeddings.projection.weight")
        self.patch_b = t(p + "patch_embeddings.projection.bias")
        self.cls = t(p + "cls_token")
        self.pos = t(p + "position_embeddings")
        self.blocks = []
        for i in range(cfg["num_hidden_layers"]):
            q = "vit.encoder.layer.%d." % i
            g = lambda k: t(q + k) if (q + k) in w else None  # noqa: E731
            self.blocks.append(dict(
                ln1=(g("layernorm_before.weight"), g("layernorm_before.bias")),
                # q, k, v as one [3A, H] product (what a PyTorch user would fuse)
                qkv_w=torch.cat([g("attention.attention.query.weight"), g("attention.attention.key.weight"),
                                 g("attention.attention.value.weight")]),
                qkv_b=None if g("attention.attention.query.bias") is None else torch.cat(
                    [g("attention.attention.query.bias"), g("attention.attention.key.bias"),
                     g("attention.attention.value.bias")]),
                o=(g("attention.output.dense.weight"), g("attention.output.dense.bias")),
                ln2=(g("layernorm_after.weight"), g("layernorm_after.bias")),
                fc1=(g("intermediate.dense.weight"), g("intermediate.dense.bias")),
                fc2=(g("output.dense.weight"), g("output.dense.bias"))))
        self.ln = (t("vit.layernorm.weight"), t("vit.layernorm.bias"))
        self.cls_head = (t("classifier.weight"), t("classifier.bias"))

    def forward(self, x):
        B = x.shape[0]
        e = F.conv2d(x, self.patch_w, self.patch_b, stride=self.patch).flatten(2).transpose(1, 2)
        h = torch.cat([self.cls.expand(B, -1, -1), e], 1) + self.pos
        T, H, A = h.shape[1], h.shape[2], self.heads * self.hs
        for b in self.blocks:
            a = F.layer_norm(h, (H,), *b["ln1"], self.eps)
            qkv = F.linear(a, b["qkv_w"], b["qkv_b"]).view(B, T, 3, self.heads, self.hs).permute(2, 0, 3, 1, 4)
            c = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], scale=self.hs ** -0.5)
            h = h + F.linear(c.transpose(1, 2).reshape(B, T, A), *b["o"])
            a = F.layer_norm(h, (H,), *b["ln2"], self.eps)
            h = h + F.linear(self.act(F.linear(a, *b["fc1"])), *b["fc2"])
        cls = F.layer_norm(h[:, 0], (H,), *self.ln, self.eps)
        return F.linear(cls, *self.cls_head)


def one_pass(fn):
    r0, t0, c0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter(), time.process_time()
    out = fn()
    t1, c1, r1 = time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    return out, t1 - t0, c1 - c0, r1 - r0


def timed(fn, warmup, runs):
    """best and median seconds; over the timed passes: process CPU time / wall time (1.0 = one
    thread, never preempted) and minor page faults per pass"""
    for _ in range(warmup):
        fn()
    ps = [one_pass(fn)[1:] for _ in range(max(runs, 1))]
    ts = [p[0] for p in ps]
    return {"best_s": min(ts), "median_s": statistics.median(ts),
            "cpu_per_wall": sum(p[1] for p in ps) / sum(ts), "faults": sum(p[2] for p in ps) / len(ps)}


def profile(fn, runs):
    """self CPU milliseconds per forward, per operator, largest first"""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprof
    with tprof(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(runs):
            fn()
    rows = [(e.key, e.self_cpu_time_total / 1e3 / runs) for e in prof.key_averages()]
    rows = [r for r in rows if r[1] >= 0.005]
    rows.sort(key=lambda r: -r[1])
    return {k: round(v, 3) for k, v in rows[:14]}


def sst2_sentences(path, n):
    out = []
    with open(path, encoding="utf-8") as f:
        next(f)  # header: sentence<TAB>label
        for line in f:
            out.append(line.rstrip("\n").rsplit("\t", 1)[0])
            if len(out) == n:
                break
    if len(out) < n:
        sys.exit("%s: only %d sentences" % (path, len(out)))
    return out


def setup(a):
    """facts (JSON-able) and the forward of each model, after one pass whose inputs and outputs
    go to --out-dir"""
    res = {"torch": torch.__version__, "threads": torch.get_num_threads(),
           "blas": "mkl" if torch.backends.mkl.is_available() else "other",
           "onednn": torch.backends.mkldnn.is_available()}
    fns = {}
    save = (lambda name, arr: arr.tofile(os.path.join(a.out_dir, name))) if a.out_dir else (lambda *_: None)
    if a.bert_dir:
        import transformers
        from transformers import AutoTokenizer, BertModel
        tok = AutoTokenizer.from_pretrained(a.bert_dir)
        enc = tok(sst2_sentences(a.sst2, a.bert_batch), padding="max_length", truncation=True,
                  max_length=a.seq, return_tensors="pt")
        model = BertModel.from_pretrained(a.bert_dir, attn_implementation=a.bert_attn).eval()
        fns["bert"] = lambda: model(**enc)  # noqa: E731
        out = fns["bert"]()
        B, T = enc["input_ids"].shape
        res["bert"] = {"transformers": transformers.__version__, "attn": a.bert_attn, "batch": B, "seq": T,
                       "real_tokens": int(enc["attention_mask"].sum())}
        save("bert_ids.i32", enc["input_ids"].numpy().astype("<i4"))
        save("bert_mask.i32", enc["attention_mask"].numpy().astype("<i4"))
        save("bert_hidden.f32", out.last_hidden_state.numpy().astype("<f4"))
        save("bert_pooled.f32", out.pooler_output.numpy().astype("<f4"))
    if a.vit_dir:
        with open(os.path.join(a.vit_dir, "config.json")) as f:
            cfg = json.load(f)
        model_v = ViT(load_file(os.path.join(a.vit_dir, "model.safetensors")), cfg)
        ref = load_file(a.vit_ref)
        px = torch.from_numpy(ref["pixel_values"])
        n = px.shape[0]
        x = px.repeat((a.vit_batch + n - 1) // n, 1, 1, 1)[: a.vit_batch].contiguous()
        fns["vit"] = lambda: model_v(x)  # noqa: E731
        logits = fns["vit"]()
        k = min(n, a.vit_batch)
        res["vit"] = {"batch": a.vit_batch,
                      # sanity: the first images' logits against the float64 reference
                      "max_abs_diff_vs_reference": float((logits[:k] - torch.from_numpy(ref["logits"][:k])).abs().max())}
        save("vit_logits.f32", logits.numpy().astype("<f4"))
    return res, fns


def serve(fns):
    for line in sys.stdin:
        w = line.split()
        if not w or w[0] == "quit":
            break
        if w[0] == "run" and len(w) == 2 and w[1] in fns:
            _, s, c, f = one_pass(fns[w[1]])
            reply = {"s": s, "cpu": c, "faults": f}
        elif w[0] == "profile" and len(w) == 3 and w[1] in fns:
            reply = profile(fns[w[1]], max(int(w[2]), 1))
        else:
            reply = {"error": "unknown command: " + line.strip()}
        print(json.dumps(reply), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bert-dir", help="all-MiniLM-L6-v2 checkpoint directory (BERT skipped without)")
    ap.add_argument("--sst2", help="SST-2 dev.tsv")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--bert-batch", type=int, default=8)
    ap.add_argument("--bert-attn", default="sdpa", choices=["sdpa", "eager"])
    ap.add_argument("--vit-dir", help="vit-mnist-tiny directory (ViT skipped without)")
    ap.add_argument("--vit-ref", help="vit-forward-reference.safetensors (pixel_values)")
    ap.add_argument("--vit-batch", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out-dir")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--serve", action="store_true")
    a = ap.parse_args()
    if a.bert_dir and not a.sst2:
        ap.error("--bert-dir needs --sst2")
    if a.vit_dir and not a.vit_ref:
        ap.error("--vit-dir needs --vit-ref")

    torch.set_num_threads(a.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    with torch.inference_mode():
        res, fns = setup(a)
        if a.serve:
            print(json.dumps(res), flush=True)
            serve(fns)
            return
        for name, fn in fns.items():
            r = timed(fn, a.warmup, a.runs)
            items = res[name]["batch"] * (res[name]["seq"] if name == "bert" else 1)
            r["tokens_per_s" if name == "bert" else "images_per_s"] = items / r["best_s"]
            res[name].update(r)
            if a.profile:
                res[name]["profile_ms"] = profile(fn, 3)
    json.dump(res, sys.stdout)
    print()


if __name__ == "__main__":
    main()
