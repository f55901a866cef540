#!/usr/bin/env python3
"""bench/train_step_torch.py — the PyTorch peer of bench_train_step: one training step (forward,
cross-entropy, backward, torch.optim.AdamW over every parameter) on CPU, one thread, the same
models, inputs and shapes.

  vit   vit-mnist-tiny written out in plain torch (transformers' ViT cannot load its config:
        4 heads of size 64 on hidden 64, no q/k/v bias, ReLU, pre-LN), first B MNIST test images.
  bert  all-MiniLM-L6-v2 as transformers' BertForSequenceClassification (eager attention, no
        dropout) with a new 2-class head, first B SST-2 dev sentences padded/cut to T tokens.

  python bench/train_step_torch.py vit|bert [--batch B] [--seq T] [--steps N] [--warmup W]
prints one JSON line: median and best seconds per step, the last loss.
"""
import os

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_v] = "1"
import argparse
import gzip
import json
import statistics
import time

import numpy as np
import torch
from safetensors.numpy import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.environ.get("QD_MODELS_DIR", os.path.join(ROOT, "..", "shared", "models"))


class TinyViT(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.cfg = json.load(open(os.path.join(d, "config.json")))
        sd = load_file(os.path.join(d, "model.safetensors"))
        self.w = torch.nn.ParameterDict({k.replace(".", "__"): torch.nn.Parameter(torch.tensor(v)) for k, v in sd.items()})

    def W(self, k):
        return self.w[k.replace(".", "__")]

    def forward(self, x):
        c = self.cfg
        H, heads, hs, eps, p = c["hidden_size"], c["num_attention_heads"], c["attention_head_size"], c["layer_norm_eps"], "vit."
        F = torch.nn.functional
        B = x.shape[0]
        h = F.conv2d(x, self.W(p + "embeddings.patch_embeddings.projection.weight"),
                     self.W(p + "embeddings.patch_embeddings.projection.bias"), stride=c["patch_size"]).flatten(2).transpose(1, 2)
        h = torch.cat([self.W(p + "embeddings.cls_token").expand(B, -1, -1), h], 1) + self.W(p + "embeddings.position_embeddings")
        T = h.shape[1]
        for k in range(c["num_hidden_layers"]):
            q = f"{p}encoder.layer.{k}."
            a = F.layer_norm(h, (H,), self.W(q + "layernorm_before.weight"), self.W(q + "layernorm_before.bias"), eps)
            Q, K, V = (F.linear(a, self.W(q + f"attention.attention.{n}.weight")).view(B, T, heads, hs).transpose(1, 2)
                       for n in ("query", "key", "value"))
            P = torch.softmax(Q @ K.transpose(-1, -2) / hs ** 0.5, -1)
            h = h + F.linear((P @ V).transpose(1, 2).reshape(B, T, heads * hs), self.W(q + "attention.output.dense.weight"),
                             self.W(q + "attention.output.dense.bias"))
            a = F.layer_norm(h, (H,), self.W(q + "layernorm_after.weight"), self.W(q + "layernorm_after.bias"), eps)
            a = torch.relu(F.linear(a, self.W(q + "intermediate.dense.weight"), self.W(q + "intermediate.dense.bias")))
            h = h + F.linear(a, self.W(q + "output.dense.weight"), self.W(q + "output.dense.bias"))
        f = F.layer_norm(h[:, 0], (H,), self.W(p + "layernorm.weight"), self.W(p + "layernorm.bias"), eps)
        return F.linear(f, self.W("classifier.weight"), self.W("classifier.bias"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=["vit", "bert"])
    ap.add_argument("--batch", type=int)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(1)
    B = a.batch or (32 if a.model == "vit" else 8)
    if a.model == "vit":
        with gzip.open(os.path.join(MODELS, "data", "mnist", "t10k-images-idx3-ubyte.gz")) as f:
            img = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:B]
        with gzip.open(os.path.join(MODELS, "data", "mnist", "t10k-labels-idx1-ubyte.gz")) as f:
            lab = np.frombuffer(f.read(), np.uint8, offset=8)[:B].astype(np.int64)
        model = TinyViT(os.path.join(MODELS, "vit-mnist-tiny"))
        x = torch.tensor(((img / 255.0 - 0.1307) / 0.3081).astype(np.float32)).unsqueeze(1)
        run = lambda: model(x)
        T = 50
    else:
        import transformers
        d = os.environ.get("QD_BERT_DIR") or os.path.expanduser("~/.cache/qdist/models/all-MiniLM-L6-v2")
        rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(MODELS, "data", "sst2", "dev.tsv"), encoding="utf-8")][1:1 + B]
        tok = transformers.BertTokenizer.from_pretrained(d)
        enc = tok([r[0] for r in rows], padding="max_length", truncation=True, max_length=a.seq, return_tensors="pt")
        lab = np.array([int(r[1]) for r in rows], dtype=np.int64)
        model = transformers.BertForSequenceClassification.from_pretrained(d, num_labels=2, attn_implementation="eager")
        model.eval()  # no dropout, as qdist
        run = lambda: model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
        T = a.seq
    y = torch.tensor(lab)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)
    times, loss = [], 0.0
    for s in range(a.steps + a.warmup):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        out = torch.nn.functional.cross_entropy(run(), y)
        out.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        loss = out.item()
    t = sorted(times[a.warmup:])
    print(json.dumps({"impl": "torch", "model": a.model, "batch": B, "tokens": T,
                      "params": sum(p.numel() for p in model.parameters()), "median_s": statistics.median(t),
                      "best_s": t[0], "loss": loss, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
