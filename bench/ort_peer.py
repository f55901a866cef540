#!/usr/bin/env python3
"""bench/ort_peer.py — the ONNX Runtime side of bench/vs_onnxruntime.sh.

  export  --arch bert|vit --model DIR --out WORK
          the FP32 checkpoint to WORK/fp32.onnx with torch (BERT: transformers' BertModel, the
          output the mask-weighted mean of the last hidden state, as sentence-transformers pools;
          ViT: bench/forward_torch.py's plain-torch ViT, the output the logits), then ONNX
          Runtime's own quantizers: WORK/int8.onnx (quantize_dynamic, INT8 weights per channel,
          dynamic uint8 activations: MatMulInteger) and WORK/int4.onnx (MatMulNBits, 4-bit blocks
          of 32 along the input, asymmetric; WORK/int4-acc4.onnx the same with accuracy_level 4,
          i.e. int8 activations inside the kernel).
  run     --onnx FILE --arch bert|vit --model DIR --data PATH [--n N] --batch B --threads T
          --out OUT.npy --json RESULT.json
          one ONNX Runtime session (T intra-op threads, one inter-op thread, every graph
          optimization) over the first N samples in batches of B: BERT sentences tokenized by the
          checkpoint's tokenizer (transformers), padded to the longest of each batch (ORT needs a
          rectangle); MNIST-style IDX images or a folder of PPM images, normalized as
          preprocessor_config.json says. Latency = wall time of one session.run / samples in it.
          Writes the outputs and a JSON with p50/p95, throughput, peak RSS of this process and
          what ONNX Runtime's MLAS could use on this CPU.
  score   --ref FP32.npy --out OUT.npy [--labels arch:DATA]
          cosine to FP32 (mean, min) and accuracy (ViT: top-1; BERT encoders: the ridge probe
          qdist eval uses, fit on the FP32 embeddings of the first half, tested on the second).

Every number printed by the benchmark for ORT comes from here; qdist's come from `qdist eval`.
"""
import argparse
import ctypes
import gzip
import json
import os
import resource
import struct
import sys
import time

import numpy as np


# ---- inputs ------------------------------------------------------------------------------------

def sst2_rows(path, n):
    """sentence and label columns of a TSV with a header (the layout qdist eval reads)"""
    sents, labels = [], []
    with open(path, encoding="utf-8") as f:
        head = f.readline().rstrip("\n").split("\t")
        si = head.index("sentence") if "sentence" in head else head.index("text")
        li = head.index("label") if "label" in head else None
        for line in f:
            cols = line.rstrip("\n").split("\t")
            sents.append(cols[si])
            labels.append(int(cols[li]) if li is not None else -1)
            if n and len(sents) == n:
                break
    return sents, labels


def read_idx(path):
    op = gzip.open if path.endswith(".gz") else open
    with op(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def read_ppm(path):
    with open(path, "rb") as f:
        data = f.read()
    parts, pos = [], 0
    while len(parts) < 4:  # P6 W H MAXVAL, whitespace separated
        while data[pos:pos + 1].isspace():
            pos += 1
        end = pos
        while not data[end:end + 1].isspace():
            end += 1
        parts.append(data[pos:end])
        pos = end
    w, h = int(parts[1]), int(parts[2])
    return np.frombuffer(data, np.uint8, offset=pos + 1, count=w * h * 3).reshape(h, w, 3)


def images(model_dir, data, n):
    """pixel_values [N, C, H, W] and labels (or None), normalized as the preprocessor config says"""
    with open(os.path.join(model_dir, "preprocessor_config.json")) as f:
        pp = json.load(f)
    if os.path.isdir(data):
        classes = sorted(d for d in os.listdir(data) if os.path.isdir(os.path.join(data, d)))
        files = [(os.path.join(data, c, x), i) for i, c in enumerate(classes)
                 for x in sorted(os.listdir(os.path.join(data, c))) if x.lower().endswith(".ppm")]
        files = files[:n] if n else files
        px = np.stack([read_ppm(p).transpose(2, 0, 1) for p, _ in files])
        labels = np.array([c for _, c in files])
    else:
        px = read_idx(data)
        px = (px[:n] if n else px)[:, None]
        lab = data.replace("images", "labels").replace("idx3", "idx1")
        labels = read_idx(lab)[:len(px)].astype(np.int64) if os.path.exists(lab) else None
    x = px.astype(np.float32) * np.float32(pp.get("rescale_factor", 1 / 255))
    mean = np.array(pp.get("image_mean", [0.5] * x.shape[1]), np.float32)[None, :, None, None]
    std = np.array(pp.get("image_std", [0.5] * x.shape[1]), np.float32)[None, :, None, None]
    return ((x - mean) / std).astype(np.float32), labels


# ---- export ------------------------------------------------------------------------------------

def export(a):
    import torch
    os.makedirs(a.out, exist_ok=True)
    fp32 = os.path.join(a.out, "fp32.onnx")
    with torch.inference_mode():
        if a.arch == "bert":
            from transformers import BertModel

            class Pooled(torch.nn.Module):
                def __init__(self, bert):
                    super().__init__()
                    self.bert = bert

                def forward(self, input_ids, attention_mask, token_type_ids):
                    h = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state
                    m = attention_mask.unsqueeze(-1).to(h.dtype)
                    return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)

            model = Pooled(BertModel.from_pretrained(a.model, attn_implementation="eager").eval())
            ids = torch.ones(2, 16, dtype=torch.int64)
            torch.onnx.export(model, (ids, ids, torch.zeros_like(ids)), fp32, dynamo=False, opset_version=17,
                              input_names=["input_ids", "attention_mask", "token_type_ids"],
                              output_names=["embedding"],
                              dynamic_axes={k: {0: "batch", 1: "seq"} for k in
                                            ("input_ids", "attention_mask", "token_type_ids")} |
                              {"embedding": {0: "batch"}})
        else:
            from safetensors.numpy import load_file
            with open(os.path.join(a.model, "config.json")) as f:
                cfg = json.load(f)
            model = vit_module(load_file(os.path.join(a.model, "model.safetensors")), cfg)
            c, s = cfg.get("num_channels", 3), cfg["image_size"]
            torch.onnx.export(model, (torch.zeros(2, c, s, s),), fp32, dynamo=False, opset_version=17,
                              input_names=["pixel_values"], output_names=["logits"],
                              dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}})
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    quantize_dynamic(fp32, os.path.join(a.out, "int8.onnx"), per_channel=True, weight_type=QuantType.QInt8)
    import onnx
    for name, acc in (("int4.onnx", None), ("int4-acc4.onnx", 4)):
        q = MatMulNBitsQuantizer(onnx.load(fp32), bits=4, block_size=32, is_symmetric=False, accuracy_level=acc)
        q.process()
        q.model.save_model_to_file(os.path.join(a.out, name), use_external_data_format=False)
    for f in ("fp32", "int8", "int4", "int4-acc4"):
        print("%s: %.1f MB" % (f, os.path.getsize(os.path.join(a.out, f + ".onnx")) / 1e6), file=sys.stderr)


def vit_module(w, cfg):
    """a Hugging Face ViT checkpoint (standard, or with an explicit attention_head_size; pre-LN
    blocks, final LayerNorm, classifier on CLS) as a torch module whose shapes are the config's
    constants, so that the exported graph has only the batch dimension dynamic"""
    import torch
    import torch.nn.functional as F
    H, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    d = cfg.get("attention_head_size", H // heads)
    P, S, C = cfg["patch_size"], cfg["image_size"], cfg.get("num_channels", 3)
    T, eps = (S // P) ** 2 + 1, cfg.get("layer_norm_eps", 1e-12)
    act = {"relu": F.relu, "gelu": F.gelu}[cfg.get("hidden_act", "gelu")]
    # parameters (not captured tensors): they become initializers, which the quantizers need
    params = torch.nn.ParameterDict({k.replace(".", "__"): torch.nn.Parameter(torch.from_numpy(v.copy()),
                                                                           requires_grad=False)
                                     for k, v in w.items()})

    class Params:
        def __getitem__(self, k):
            return params[k.replace(".", "__")]

        def get(self, k):
            k = k.replace(".", "__")
            return params[k] if k in params else None

    t = Params()

    def lin(x, name):
        return F.linear(x, t[name + ".weight"], t.get(name + ".bias"))

    class ViT(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.params = params

        def forward(self, x):
            e = F.conv2d(x, t["vit.embeddings.patch_embeddings.projection.weight"],
                         t["vit.embeddings.patch_embeddings.projection.bias"], stride=P)
            e = e.reshape(-1, H, T - 1).transpose(1, 2)
            cls = t["vit.embeddings.cls_token"].reshape(1, 1, H).expand(e.shape[0], 1, H)
            h = torch.cat([cls, e], 1) + t["vit.embeddings.position_embeddings"].reshape(1, T, H)
            for i in range(cfg["num_hidden_layers"]):
                p = "vit.encoder.layer.%d." % i
                a = F.layer_norm(h, (H,), t[p + "layernorm_before.weight"], t[p + "layernorm_before.bias"], eps)
                q, k, v = (lin(a, p + "attention.attention." + n).reshape(-1, T, heads, d).transpose(1, 2)
                           for n in ("query", "key", "value"))
                att = torch.softmax(q @ k.transpose(2, 3) * d ** -0.5, -1) @ v
                h = h + lin(att.transpose(1, 2).reshape(-1, T, heads * d), p + "attention.output.dense")
                a = F.layer_norm(h, (H,), t[p + "layernorm_after.weight"], t[p + "layernorm_after.bias"], eps)
                h = h + lin(act(lin(a, p + "intermediate.dense")), p + "output.dense")
            c0 = F.layer_norm(h[:, 0], (H,), t["vit.layernorm.weight"], t["vit.layernorm.bias"], eps)
            return lin(c0, "classifier")

    return ViT().eval()


# ---- run -----------------------------------------------------------------------------------------

def xcomp_perm():
    """the extended CPU state this process may use (ARCH_GET_XCOMP_PERM): bit 18 = AMX tile data,
    granted only to a process that asked for it (ONNX Runtime's MLAS does, for its AMX kernels)"""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        v = ctypes.c_uint64(0)
        if libc.syscall(158, 0x1022, ctypes.byref(v)) == 0:  # SYS_arch_prctl, ARCH_GET_XCOMP_PERM
            return v.value
    except OSError:
        pass
    return 0


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def mlas_isa(onnx_path, amx_granted):
    """what ONNX Runtime's MLAS runs this model's products with on this CPU (it picks by CPUID, as
    qdist does; there is no API to ask, so: the CPU's best, and whether the AMX tile state was
    requested during the run)"""
    fl = cpu_flags()
    kind = os.path.basename(onnx_path)
    if kind.startswith("fp32"):
        return "avx512f sgemm" if "avx512f" in fl else "avx2 fma sgemm" if "avx2" in fl else "sse sgemm"
    if kind.startswith("int4") and "acc4" not in kind:
        return "fp32 act x 4-bit (avx512f)" if "avx512f" in fl else "fp32 act x 4-bit (avx2)"
    if amx_granted:
        return "amx-int8"
    if "avx512_vnni" in fl:
        return "avx512-vnni"
    if "avx_vnni" in fl:
        return "avx-vnni"
    return "avx2"


def tokenizer(model_dir, seqlen):
    """the checkpoint's fast tokenizer (tokenizer.json), or BERT WordPiece from vocab.txt, without
    importing torch (its libraries would count in this process's peak RSS)"""
    from tokenizers import BertWordPieceTokenizer, Tokenizer
    path = os.path.join(model_dir, "tokenizer.json")
    tok = Tokenizer.from_file(path) if os.path.exists(path) else \
        BertWordPieceTokenizer(os.path.join(model_dir, "vocab.txt"), lowercase=True)
    tok.enable_truncation(seqlen)
    tok.enable_padding(pad_id=0)  # to the longest of each batch
    return tok


def run(a):
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    t_load = time.perf_counter()
    sess = ort.InferenceSession(a.onnx, so, providers=["CPUExecutionProvider"])
    t_load = time.perf_counter() - t_load
    feeds = []
    if a.arch == "bert":
        tok = tokenizer(a.tokenizer or a.model, a.seqlen)
        sents, _ = sst2_rows(a.data, a.n)
        for i in range(0, len(sents), a.batch):
            enc = tok.encode_batch(sents[i:i + a.batch])
            feeds.append({"input_ids": np.array([e.ids for e in enc], np.int64),
                          "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
                          "token_type_ids": np.array([e.type_ids for e in enc], np.int64)})
    else:
        x, _ = images(a.model, a.data, a.n)
        feeds = [{"pixel_values": x[i:i + a.batch]} for i in range(0, len(x), a.batch)]
    for f in feeds[:a.warmup]:  # warm-up: first-call allocations and thread start-up
        sess.run(None, f)
    lat, outs, total, cpu = [], [], 0.0, 0.0
    for f in feeds:
        n = len(next(iter(f.values())))
        t0, c0 = time.perf_counter(), time.process_time()
        o = sess.run(None, f)[0]
        dt = time.perf_counter() - t0
        cpu += time.process_time() - c0
        total += dt
        lat.append(dt / n)
        outs.append(o)
    out = np.concatenate(outs).astype(np.float32)
    np.save(a.out, out)
    samples = len(out)
    amx = bool(xcomp_perm() & (1 << 18))
    res = {"onnx": a.onnx, "threads": a.threads, "batch": a.batch, "samples": samples,
           "latency_ms": {"p50": 1e3 * float(np.percentile(lat, 50, method="lower")),
                          "p95": 1e3 * float(np.percentile(lat, 95, method="lower")),
                          "mean": 1e3 * float(np.mean(lat))},
           "throughput_per_s": samples / total, "cpu_ms_per_sample": 1e3 * cpu / samples, "load_s": t_load,
           "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
           "file_bytes": os.path.getsize(a.onnx), "ort": ort.__version__,
           "isa": mlas_isa(a.onnx, amx), "amx_tile_state_requested": amx}
    with open(a.json, "w") as f:
        json.dump(res, f)


# ---- score -------------------------------------------------------------------------------------

def probe(f32, fq, labels):
    """qdist eval's linear probe: ridge one-vs-rest on +-1 targets, lambda = mean of the Gram
    diagonal, fit on the FP32 features of the first half, accuracy on the second half"""
    n = len(labels)
    nt, K = n // 2, int(labels.max()) + 1
    X = np.hstack([f32[:nt].astype(np.float64), np.ones((nt, 1))])
    A = X.T @ X
    d = f32.shape[1]
    A[np.arange(d), np.arange(d)] += np.trace(A[:d, :d]) / d
    Y = np.where(labels[:nt, None] == np.arange(K)[None, :], 1.0, -1.0)
    W = np.linalg.solve(A, X.T @ Y)
    acc = []
    for F in (f32, fq):
        Xt = np.hstack([F[nt:].astype(np.float64), np.ones((n - nt, 1))])
        acc.append(float(np.mean(np.argmax(Xt @ W, 1) == labels[nt:])))
    return acc


def score(a):
    ref, out = np.load(a.ref).astype(np.float64), np.load(a.out).astype(np.float64)
    cos = (ref * out).sum(1) / np.sqrt((ref * ref).sum(1) * (out * out).sum(1))
    res = {"cosine": {"mean": float(cos.mean()), "min": float(cos.min())}}
    if a.arch == "bert" and a.data:
        _, lab = sst2_rows(a.data, len(ref))
        lab = np.array(lab)
        if (lab >= 0).all():
            res["probe_accuracy"] = probe(ref.astype(np.float32), out.astype(np.float32), lab)[1]
    elif a.arch == "vit" and a.data:
        _, lab = images(a.model, a.data, len(ref))
        if lab is not None:
            res["accuracy"] = float(np.mean(np.argmax(out, 1) == lab[:len(out)]))
    print(json.dumps(res))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cmd", choices=["export", "run", "score"])
    ap.add_argument("--arch", choices=["bert", "vit"], required=True)
    ap.add_argument("--model", help="the checkpoint directory")
    ap.add_argument("--tokenizer", help="tokenizer directory (default: --model)")
    ap.add_argument("--out")
    ap.add_argument("--onnx")
    ap.add_argument("--data")
    ap.add_argument("--n", type=int, default=0)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seqlen", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--json")
    ap.add_argument("--ref")
    a = ap.parse_args()
    {"export": export, "run": run, "score": score}[a.cmd](a)


if __name__ == "__main__":
    main()
