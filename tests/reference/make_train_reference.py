#!/usr/bin/env python3
"""Gradients of the training loss at real weights, computed with PyTorch autograd in float64.

Writes tests/reference/train-grad-reference.safetensors, which build/tests/train/test_train_torch
compares with qdist's backward passes (train/graph.c, float32):

  vit.*   vit-mnist-tiny (shared/models/vit-mnist-tiny, its own 10-class head) on the first 4
          MNIST test images with labels (digit + 1) mod 10 (large gradients): a functional PyTorch ViT written from its config.json (pre-LN
          blocks, explicit attention_head_size 64 with 4 heads over hidden 64, no q/k/v bias,
          ReLU, LayerNorm eps 1e-5, final LayerNorm on CLS) -- transformers' ViT cannot load
          this checkpoint (it assumes heads * head size == hidden).
  bert.*  all-MiniLM-L6-v2 (deploy/fetch-models.sh) as transformers' BertForSequenceClassification
          (eager attention, eval mode: no dropout) with a new 2-class head whose weights are
          drawn here (numpy seed 0, N(0, 0.02), zero bias) and stored in the file, on the first
          4 sentences of shared/models/data/sst2/dev.tsv with their labels, padded to the
          longest.

The loss is the mean cross-entropy over the 4 items. Stored per parameter (name as the
checkpoint / Hugging Face names it): "<set>.grad.<name>.norm" (F32 [1], the gradient's L2 norm)
and "<set>.grad.<name>.samples" (F32 [17]: the gradient at flat indices floor(j * numel / 16),
j = 0..15, and at the index of its largest magnitude, "<set>.grad.<name>.argmax" I32 [1]).
Also the inputs, labels, logits and loss. About 40 KB.

Environment: the project's pinned venv, PY=$(deploy/pyenv.sh) (torch 2.15, transformers 5.23,
safetensors 0.8), CPU, torch.set_num_threads(1):
    PY=$(deploy/pyenv.sh); "$PY" tests/reference/make_train_reference.py [--check]
"""
import argparse
import gzip
import json
import os
import subprocess
import sys

import numpy as np
import torch
import transformers
from safetensors.numpy import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from make_bert_reference import write_safetensors  # noqa: E402  (sorted header, same bytes every run)
N = 4


def grad_summary(prefix, name, g, out):
    g = g.detach().double().reshape(-1).numpy()
    n = g.size
    idx = [int(j * n // 16) for j in range(16)]
    am = int(np.argmax(np.abs(g)))
    out[f"{prefix}.grad.{name}.norm"] = np.array([np.linalg.norm(g)], dtype=np.float32)
    out[f"{prefix}.grad.{name}.samples"] = np.array([g[i] for i in idx] + [g[am]], dtype=np.float32)
    out[f"{prefix}.grad.{name}.argmax"] = np.array([am], dtype=np.int32)


def mnist(models_dir):
    with gzip.open(os.path.join(models_dir, "data", "mnist", "t10k-images-idx3-ubyte.gz")) as f:
        img = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:N]
    with gzip.open(os.path.join(models_dir, "data", "mnist", "t10k-labels-idx1-ubyte.gz")) as f:
        lab = np.frombuffer(f.read(), np.uint8, offset=8)[:N]
    return img, lab.astype(np.int64)


def vit_reference(models_dir, out):
    d = os.path.join(models_dir, "vit-mnist-tiny")
    cfg = json.load(open(os.path.join(d, "config.json")))
    W = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True)
         for k, v in load_file(os.path.join(d, "model.safetensors")).items()}
    img, lab = mnist(models_dir)
    x = torch.tensor((img.astype(np.float64) / 255.0 - 0.1307) / 0.3081).unsqueeze(1)
    H, heads, hs, eps = cfg["hidden_size"], cfg["num_attention_heads"], cfg["attention_head_size"], cfg["layer_norm_eps"]
    p = "vit."
    ln = torch.nn.functional.layer_norm
    h = torch.nn.functional.conv2d(x, W[p + "embeddings.patch_embeddings.projection.weight"],
                                   W[p + "embeddings.patch_embeddings.projection.bias"], stride=cfg["patch_size"])
    h = h.flatten(2).transpose(1, 2)
    cls = W[p + "embeddings.cls_token"].expand(N, -1, -1)
    h = torch.cat([cls, h], 1) + W[p + "embeddings.position_embeddings"]
    T = h.shape[1]
    for k in range(cfg["num_hidden_layers"]):
        q = f"{p}encoder.layer.{k}."
        a = ln(h, (H,), W[q + "layernorm_before.weight"], W[q + "layernorm_before.bias"], eps)
        Q, K, V = (torch.nn.functional.linear(a, W[q + f"attention.attention.{n}.weight"]).view(N, T, heads, hs)
                   .transpose(1, 2) for n in ("query", "key", "value"))
        P = torch.softmax(Q @ K.transpose(-1, -2) / hs ** 0.5, -1)
        C = (P @ V).transpose(1, 2).reshape(N, T, heads * hs)
        h = h + torch.nn.functional.linear(C, W[q + "attention.output.dense.weight"], W[q + "attention.output.dense.bias"])
        a = ln(h, (H,), W[q + "layernorm_after.weight"], W[q + "layernorm_after.bias"], eps)
        a = torch.relu(torch.nn.functional.linear(a, W[q + "intermediate.dense.weight"], W[q + "intermediate.dense.bias"]))
        h = h + torch.nn.functional.linear(a, W[q + "output.dense.weight"], W[q + "output.dense.bias"])
    f = ln(h[:, 0], (H,), W[p + "layernorm.weight"], W[p + "layernorm.bias"], eps)
    logits = torch.nn.functional.linear(f, W["classifier.weight"], W["classifier.bias"])
    # the model is right and confident on these images (loss ~2e-3): train towards the next
    # digit instead, so that every gradient is far from zero
    lab = (lab + 1) % 10
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(lab))
    loss.backward()
    out["vit.labels"] = lab.astype(np.int32)
    out["vit.logits"] = logits.detach().numpy().astype(np.float32)
    out["vit.loss"] = np.array([loss.item()], dtype=np.float32)
    for k, v in W.items():
        grad_summary("vit", k, v.grad, out)


def bert_dir():
    d = os.environ.get("QD_BERT_DIR")
    if d:
        return d
    r = subprocess.run([os.path.join(ROOT, "deploy", "fetch-models.sh"), "all-MiniLM-L6-v2"], check=True,
                       stdout=subprocess.PIPE, text=True)
    return r.stdout.strip().splitlines()[-1]


def bert_reference(models_dir, out):
    d = bert_dir()
    rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(models_dir, "data", "sst2", "dev.tsv"), encoding="utf-8")]
    sents = [r[0] for r in rows[1:1 + N]]
    labels = np.array([int(r[1]) for r in rows[1:1 + N]], dtype=np.int64)
    tok = transformers.BertTokenizer.from_pretrained(d)
    enc = tok(sents, padding="longest", return_tensors="pt", return_token_type_ids=True)
    cfg = transformers.BertConfig.from_pretrained(d, num_labels=2)
    m = transformers.BertForSequenceClassification(cfg)
    sd = load_file(os.path.join(d, "model.safetensors"))
    missing = m.bert.load_state_dict({k: torch.tensor(v) for k, v in sd.items() if k != "embeddings.position_ids"},
                                     strict=False)
    assert not [k for k in missing.missing_keys if "position_ids" not in k], missing
    rng = np.random.default_rng(0)
    cw = (rng.standard_normal((2, cfg.hidden_size)) * 0.02).astype(np.float32)
    with torch.no_grad():
        m.classifier.weight.copy_(torch.tensor(cw))
        m.classifier.bias.zero_()
    m = m.double().eval()
    m.config._attn_implementation = "eager"
    o = m(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], token_type_ids=enc["token_type_ids"],
          labels=torch.tensor(labels))
    o.loss.backward()
    out["bert.input_ids"] = enc["input_ids"].numpy().astype(np.int32)
    out["bert.attention_mask"] = enc["attention_mask"].numpy().astype(np.int32)
    out["bert.labels"] = labels.astype(np.int32)
    out["bert.classifier.weight"] = cw
    out["bert.logits"] = o.logits.detach().numpy().astype(np.float32)
    out["bert.loss"] = np.array([o.loss.item()], dtype=np.float32)
    for k, v in m.named_parameters():
        if v.grad is not None:
            grad_summary("bert", k, v.grad, out)
    return d


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models-dir", default=os.environ.get("QD_MODELS_DIR", os.path.join(ROOT, "..", "shared", "models")))
    ap.add_argument("--out", default=os.path.join(HERE, "train-grad-reference.safetensors"))
    ap.add_argument("--check", action="store_true", help="recompute and compare with --out")
    a = ap.parse_args()
    torch.set_num_threads(1)
    out = {}
    vit_reference(a.models_dir, out)
    bert_reference(a.models_dir, out)
    meta = {"format": "qdist-train-grad-reference", "version": "1", "torch": torch.__version__,
            "transformers": transformers.__version__, "compute": "float64 autograd, mean cross-entropy of 4 items"}
    if a.check:
        old = load_file(a.out)
        worst = max(float(np.max(np.abs(old[k].astype(np.float64) - out[k]))) for k in out)
        print(f"max difference to {a.out}: {worst:.3g}")
        sys.exit(0 if worst == 0 else 1)
    write_safetensors(a.out, out, meta)
    print(f"wrote {a.out}: {len(out)} tensors, {os.path.getsize(a.out)} bytes; "
          f"vit loss {out['vit.loss'][0]:.6f}, bert loss {out['bert.loss'][0]:.6f}")


if __name__ == "__main__":
    main()
