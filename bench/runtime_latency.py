"""Latency of an exported model in its runtime (ONNX Runtime for .onnx, LiteRT for .tflite), one
thread, batch 1, on the inputs qdist was fed
(a file written by tests/export/export_outputs): mean and median milliseconds per sample over the
first N samples after a warm-up, for each model given, in wall time and in the CPU time of the
process (all its threads), which is what to read
on a shared machine. Prints one line per model.

    runtime_latency.py INPUTS.safetensors MODEL.onnx[:accuracy_level]|MODEL.tflite ... [--n N] [--json]

accuracy_level: ONNX Runtime's session.qdq_matmulnbits_accuracy_level (default: ORT's own).
"""
import argparse
import json
import os
import time

import numpy as np
import onnxruntime as ort
from safetensors import safe_open


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("inputs")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    with safe_open(a.inputs, "np") as f:
        t = {k: f.get_tensor(k) for k in f.keys()}
    n = min(a.n, next(iter(t.values())).shape[0])
    feeds = []
    for i in range(n):
        if "pixel_values" in t:
            feeds.append({"pixel_values": t["pixel_values"][i : i + 1]})
        else:
            L = int(t["attention_mask"][i].sum())
            feeds.append({k: t[k][i : i + 1, :L] for k in ("input_ids", "attention_mask", "token_type_ids")})
    out = []
    for spec in a.models:
        path, _, level = spec.partition(":")
        if path.endswith(".tflite"):
            from ai_edge_litert.interpreter import Interpreter

            it = Interpreter(model_path=path, num_threads=1)
            it.allocate_tensors()
            i0 = it.get_input_details()[0]["index"]

            def run(f):
                it.set_tensor(i0, f["pixel_values"])
                it.invoke()

            fs = feeds
        else:
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            so.inter_op_num_threads = 1
            if level:
                so.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", level)
            s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            names = {i.name for i in s.get_inputs()}
            fs = [{k: v for k, v in f.items() if k in names} for f in feeds]

            def run(f):
                s.run(None, f)

        for f in fs[: a.warmup]:
            run(f)
        lat, cpu_ms = [], []
        c0 = time.process_time()
        w0 = time.perf_counter()
        for f in fs:
            t0, u0 = time.perf_counter(), time.process_time()
            run(f)
            lat.append(time.perf_counter() - t0)
            cpu_ms.append(time.process_time() - u0)
        cpu = (time.process_time() - c0) / max(time.perf_counter() - w0, 1e-9)
        lat, cpu_ms = np.array(lat) * 1e3, np.array(cpu_ms) * 1e3
        r = {"model": os.path.basename(path), "accuracy_level": level or "-", "n": n,
             "mean_ms": float(lat.mean()), "p50_ms": float(np.median(lat)), "cpu_over_wall": cpu,
             "cpu_mean_ms": float(cpu_ms.mean()), "cpu_p50_ms": float(np.median(cpu_ms)),
             "bytes": os.path.getsize(path)}
        out.append(r)
        if not a.json:
            print(f"{r['model']:<22} level {r['accuracy_level']:<8} {n} samples: CPU per sample mean "
                  f"{r['cpu_mean_ms']:.3f} ms p50 {r['cpu_p50_ms']:.3f} ms; wall mean {r['mean_ms']:.3f} ms p50 "
                  f"{r['p50_ms']:.3f} ms (cpu/wall {cpu:.2f}); file {r['bytes'] / 1e6:.2f} MB")
    if a.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
