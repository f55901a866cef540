#!/usr/bin/env python3
"""SparseGPT results of the IST-DASLab reference implementation on real layers.

Writes tests/reference/sparsegpt-reference.safetensors: for the 18 Linear layers of blocks 0-2 of
vit-mnist-tiny whose weights W and calibration Hessians H are stored in
shared/models/reference/gptq-reference.safetensors, the keep-masks the reference's
SparseGPT.fasterprune chose, its printed "error", the relative output error of its result through
H, and (setting u50) the pruned weights themselves. Prints the table of README.md.

The reference code is NOT part of this repository. It is read from a git directory of
github.com/IST-DASLab/sparsegpt at commit 147d2159dc4f3e9f73e47b32c04d7b3708f44436 (files checked
by blob id), copied into a temporary folder outside the repository and imported unmodified:
    QD_SPARSEGPT_GIT=<path to a clone or bare mirror> \
        $(deploy/pyenv.sh) tests/reference/make_sparsegpt_reference.py [--check]
Environment of the committed file: deploy/pyenv.sh's venv (torch 2.15.0, CPU path,
torch.set_num_threads(1); numpy 2.4.6, safetensors 0.8.0). --check recomputes everything and
compares with the committed file (bit for bit).

Shims, none of which touches the algorithm: torch.cuda.synchronize is a no-op (fasterprune calls it
for its timing print only); the mask of each column block is read from fasterprune's local `mask1`
by a line tracer when the block is written back (`W[:, i1:i2] = Q1`), an observer that changes
nothing; stdout is captured to read the printed error.

Settings (blocksize 128, percdamp 0.01, as opt.py's defaults):
  u50    sparsity 0.5, unstructured (one threshold per column block over all rows)
  nm24   prunen 2, prunem 4 (2 of every 4 consecutive inputs pruned: 2:4)
  nm48   prunen 4, prunem 8 (4:8)
  u50q4  sparsity 0.5 jointly with 4-bit asymmetric per-channel quantization
         (Quantizer().configure(4, perchannel=True, sym=False, mse=False), as opt.py --wbits 4)
  nm24q8 2:4 jointly with 8-bit symmetric per-channel quantization

Tensors, for L = vit.encoder.layer.{0,1,2}.{attention.attention.query|key|value,
attention.output.dense, intermediate.dense, output.dense} and S a setting:
  L.S.mask        U8 [out, ceil(in/8)]  kept weights, bit c of a row = byte c//8, bit c%8 (low first)
  L.S.error       F64 [1]              the reference's printed error (sum(Losses))
  L.S.out_relerr  F64 [1]              tr(E H E^T) / tr(W H W^T), E = W - result, float64
  L.u50.W         F32 [out, in]        the reference's result for u50
"""
import argparse
import contextlib
import io
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, "sparsegpt-reference.safetensors")
COMMIT = "147d2159dc4f3e9f73e47b32c04d7b3708f44436"
BLOBS = {"sparsegpt.py": "1b79efc28cd48910d07b000916208977a9929e4b",
         "quant.py": "cfb1b270966b24f5c8c6b3de48ebb21157adb571"}
LAYERS = ["attention.attention.query", "attention.attention.key", "attention.attention.value",
          "attention.output.dense", "intermediate.dense", "output.dense"]
SETTINGS = {  # name: (sparsity, prunen, prunem, bits, sym)
    "u50": (0.5, 0, 0, 0, False),
    "nm24": (0.0, 2, 4, 0, False),
    "nm48": (0.0, 4, 8, 0, False),
    "u50q4": (0.5, 0, 0, 4, False),
    "nm24q8": (0.0, 2, 4, 8, True),
}


def export_reference(gitdir, dest):
    for name, blob in BLOBS.items():
        got = subprocess.run(["git", "--git-dir", gitdir, "rev-parse", f"{COMMIT}:{name}"], check=True,
                             stdout=subprocess.PIPE, text=True).stdout.strip()
        if got != blob:
            sys.exit(f"{name} at {COMMIT} has blob {got}, expected {blob}")
        data = subprocess.run(["git", "--git-dir", gitdir, "show", f"{COMMIT}:{name}"], check=True,
                              stdout=subprocess.PIPE).stdout
        with open(os.path.join(dest, name), "wb") as f:
            f.write(data)


def run_one(mod, W, H, setting):
    sparsity, prunen, prunem, bits, sym = setting
    layer = torch.nn.Linear(W.shape[1], W.shape[0], bias=False)
    layer.weight.data = torch.from_numpy(W.copy())
    g = mod.SparseGPT(layer)
    g.H = torch.from_numpy(H.copy())
    if bits:
        g.quantizer = sys.modules["quant"].Quantizer()
        g.quantizer.configure(bits, perchannel=True, sym=sym, mse=False)
    # observer: the block mask at the line that writes the block back
    src = mod.SparseGPT.fasterprune.__code__
    import inspect
    lines, first = inspect.getsourcelines(mod.SparseGPT.fasterprune)
    target = first + next(i for i, l in enumerate(lines) if l.strip() == "W[:, i1:i2] = Q1")
    masks = []

    def tracer(frame, event, arg):
        if frame.f_code is not src:
            return None

        def local(frame, event, arg):
            if event == "line" and frame.f_lineno == target:
                masks.append(frame.f_locals["mask1"].clone())
            return local
        return local

    buf = io.StringIO()
    sys.settrace(tracer)
    try:
        with contextlib.redirect_stdout(buf):
            g.fasterprune(sparsity, prunen=prunen, prunem=prunem, blocksize=128, percdamp=0.01)
    finally:
        sys.settrace(None)
    err = float(next(l.split()[1] for l in buf.getvalue().splitlines() if l.startswith("error")))
    kept = torch.cat(masks, dim=1).logical_not().numpy()  # mask1 marks the PRUNED weights
    Q = layer.weight.data.numpy().astype(np.float32)
    return kept, err, Q


def relerr(W, Q, H):
    W64, E, H64 = W.astype(np.float64), (W.astype(np.float64) - Q.astype(np.float64)), H.astype(np.float64)
    return float(np.einsum("ij,jk,ik->", E, H64, E) / np.einsum("ij,jk,ik->", W64, H64, W64))


def pack(mask):
    return np.packbits(mask.astype(np.uint8), axis=1, bitorder="little")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    gitdir = os.environ.get("QD_SPARSEGPT_GIT")
    if not gitdir:
        sys.exit("set QD_SPARSEGPT_GIT to a git directory of github.com/IST-DASLab/sparsegpt")
    if os.path.isdir(os.path.join(gitdir, ".git")):
        gitdir = os.path.join(gitdir, ".git")
    models = os.environ.get("QD_MODELS_DIR", os.path.join(ROOT, "..", "shared", "models"))
    src = load_file(os.path.join(models, "reference", "gptq-reference.safetensors"))
    torch.set_num_threads(1)
    torch.cuda.synchronize = lambda *a, **k: None
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        export_reference(gitdir, tmp)
        sys.path.insert(0, tmp)
        import sparsegpt as mod
        print(f"{'layer':32s}" + "".join(f"{s:>22s}" for s in SETTINGS))
        for b in range(3):
            for l in LAYERS:
                L = f"vit.encoder.layer.{b}.{l}"
                W, H = src[L + ".W"], src[L + ".H"]
                row = f"{L[18:]:32s}"
                for s, setting in SETTINGS.items():
                    kept, err, Q = run_one(mod, W, H, setting)
                    out[f"{L}.{s}.mask"] = pack(kept)
                    out[f"{L}.{s}.error"] = np.array([err], dtype=np.float64)
                    rel = relerr(W, Q, H)
                    out[f"{L}.{s}.out_relerr"] = np.array([rel], dtype=np.float64)
                    if s == "u50":
                        out[f"{L}.u50.W"] = Q
                    row += f"  {kept.mean():6.4f} {rel:9.3e}  "
                print(row)
    meta = {"format": "qdist-sparsegpt-reference", "version": "1", "reference": f"IST-DASLab/sparsegpt@{COMMIT}",
            "torch": torch.__version__, "numpy": np.__version__,
            "source": "shared/models/reference/gptq-reference.safetensors (W, H of blocks 0-2)"}
    if args.check:
        old = load_file(OUT)
        bad = [k for k in out if k not in old or not np.array_equal(old[k], out[k])]
        bad += [k for k in old if k not in out]
        print("check:", "identical" if not bad else f"{len(bad)} tensors differ: {bad[:5]}")
        sys.exit(1 if bad else 0)
    save_file(dict(sorted(out.items())), OUT, metadata=meta)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
