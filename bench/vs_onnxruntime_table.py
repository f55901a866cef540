#!/usr/bin/env python3
"""bench/vs_onnxruntime_table.py — the tables of bench/vs_onnxruntime.sh from its manifest.

  vs_onnxruntime_table.py MANIFEST RESULTS.csv RESULTS.md H5DIR

Per model and thread count, one row per runtime configuration: medians over the rounds of p50 and
p95 latency (ms per sample), throughput and CPU ms per sample at each batch size; cosine to the
runtime's own FP32 outputs and accuracy (first round, batch 1); file MB; peak RSS; the runtime's
resident weights (qdist); the ISA of its products; and the ratio qdist/ORT of the p50 latencies
(below 1: qdist faster) against the peer of the row: FP32 against ORT FP32, INT8 against
quantize_dynamic, INT4 against the faster MatMulNBits variant at that batch. Standard library only.
"""
import csv
import json
import os
import statistics
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def fmt(x, nd=2):
    return "—" if x is None else ("%.*f" % (nd, x))


def main():
    manifest, csv_path, md_path, h5dir = sys.argv[1:5]
    runs = {}  # by JSON path: a resumed or repeated run replaces the earlier line
    with open(manifest) as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 8 or not os.path.exists(fields[7]):
                continue
            key, t, b, r, side, cid, label, path = fields[:8]
            avg = float(fields[8]) if len(fields) > 8 and fields[8] else None  # 1-minute load at the start
            runs[path] = dict(key=key, threads=int(t), batch=int(b), round=int(r), side=side, cid=cid, label=label,
                              path=path, load=avg)
    runs = list(runs.values())
    names = {"minilm": "all-MiniLM-L6-v2 (SST-2 dev, mean-pooled embeddings)",
             "vit-tiny": "vit-mnist-tiny (MNIST test)",
             "bert-base": "BERT-base shape, generated weights (SST-2 sentences)",
             "vit-b16": "ViT-B/16 shape, generated weights (224x224 images)"}
    # one record per (key, threads, config): figures per batch, over rounds
    table = {}
    for x in runs:
        j = load(x["path"])
        entries = []
        if x["side"] == "qdist":
            q, f = j["quantized"], j["fp32"]
            acc = q.get("accuracy", q.get("probe_accuracy"))
            facc = f.get("accuracy", f.get("probe_accuracy"))
            kinds = [k for k, v in q.get("linears", {}).items() if v]
            isa = "; ".join(sorted(set(q.get("gemm_isa", {}).get(k, "") for k in kinds)))
            entries.append((x["cid"], x["label"], q, j["cosine"], acc, isa, q.get("resident_weight_bytes")))
            entries.append(("q-fp32", "qdist FP32", f, {"mean": 1.0, "min": 1.0}, facc,
                            f.get("gemm_isa", {}).get("float", ""), f.get("resident_weight_bytes")))
        else:
            sc = {}
            score = x["path"][:-5] + ".score"
            if os.path.exists(score):
                sc = load(score)
            lat = {"latency_ms": j["latency_ms"], "throughput_per_s": j["throughput_per_s"],
                   "cpu_ms_per_sample": j["cpu_ms_per_sample"], "peak_rss_bytes": j["peak_rss_bytes"],
                   "file_bytes": j["file_bytes"]}
            acc = sc.get("accuracy", sc.get("probe_accuracy"))
            entries.append(("ort-" + x["cid"], x["label"], lat, sc.get("cosine"), acc, j["isa"], None))
        for cid, label, d, cos, acc, isa, res in entries:
            rec = table.setdefault((x["key"], x["threads"], cid), dict(label=label, per_batch={}, cos=None, acc=None,
                                                                      isa=isa, file=d["file_bytes"], rss=[], res=res))
            pb = rec["per_batch"].setdefault(x["batch"], dict(p50=[], p95=[], thr=[], cpu=[]))
            pb["p50"].append(d["latency_ms"]["p50"])
            pb["p95"].append(d["latency_ms"]["p95"])
            pb["thr"].append(d["throughput_per_s"])
            pb["cpu"].append(d.get("cpu_ms_per_sample"))
            rec["rss"].append(d["peak_rss_bytes"])
            if x["round"] == 1 and x["batch"] == min(r["batch"] for r in runs) and rec["cos"] is None:
                rec["cos"], rec["acc"] = cos, acc
    batches = sorted(set(r["batch"] for r in runs))
    order = ["ort-fp32", "q-fp32", "ort-int8", "q-int8", "q-int8-all", "q-int8-smooth", "q-int8-emb", "ort-int4",
             "ort-int4-acc4", "q-int4", "q-int4-emb"]

    def peer(key, t, cid, b):
        if cid == "q-fp32":
            return "ort-fp32"
        if cid.startswith("q-int8"):
            return "ort-int8"
        if cid.startswith("q-int4"):  # the faster MatMulNBits at this batch
            best = None
            for o in ("ort-int4", "ort-int4-acc4"):
                r = table.get((key, t, o))
                if r and b in r["per_batch"]:
                    v = med(r["per_batch"][b]["p50"])
                    if best is None or v < best[1]:
                        best = (o, v)
            return best[0] if best else None
        return None

    md = ["# qdist vs ONNX Runtime", "",
          "Medians over rounds; latency in ms per sample (wall time of a call / samples in it); CPU ms: the "
          "process's CPU time per sample (all threads). Ratio qdist/ORT: p50 latency of the row over its peer's "
          "(FP32: ORT FP32; INT8: quantize_dynamic per channel; INT4: the faster MatMulNBits at that batch); "
          "below 1 = qdist faster.", ""]
    rows_csv = []
    for key in dict.fromkeys(r["key"] for r in runs):
        for t in sorted(set(r["threads"] for r in runs if r["key"] == key)):
            md.append("## %s, %d thread%s" % (names.get(key, key), t, "s" if t > 1 else ""))
            md.append("")
            loads = [r["load"] for r in runs if r["key"] == key and r["threads"] == t and r["load"] is not None]
            if loads:
                md.append("Load average (1 min) at the start of the runs: median %.1f, min %.1f, max %.1f (%d runs, "
                          "%d rounds)." % (statistics.median(loads), min(loads), max(loads), len(loads),
                                           len(set(r["round"] for r in runs if r["key"] == key and r["threads"] == t))))
                md.append("")
            head = ["runtime", "ISA of the products"]
            for b in batches:
                head += ["p50 b%d" % b, "p95 b%d" % b, "CPU ms b%d" % b]
            head += ["throughput b%d /s" % batches[-1], "cosine mean (min)", "accuracy", "file MB", "peak RSS MB",
                     "resident weights MB"]
            head += ["qdist/ORT p50 b%d" % b for b in batches]
            head += ["qdist/ORT CPU b%d" % b for b in batches]
            md.append("| " + " | ".join(head) + " |")
            md.append("|" + "---|" * len(head))
            for cid in order:
                rec = table.get((key, t, cid))
                if not rec:
                    continue
                cells = [rec["label"], rec["isa"]]
                csvrow = dict(model=key, threads=t, config=cid, label=rec["label"], isa=rec["isa"],
                              load_median=statistics.median(loads) if loads else None)
                for b in batches:
                    pb = rec["per_batch"].get(b)
                    p50, p95, cpu = (med(pb["p50"]), med(pb["p95"]), med(pb["cpu"])) if pb else (None,) * 3
                    cells += [fmt(p50, 3), fmt(p95, 3), fmt(cpu, 3)]
                    csvrow.update({"p50_b%d" % b: p50, "p95_b%d" % b: p95, "cpu_b%d" % b: cpu,
                                   "throughput_b%d" % b: med(pb["thr"]) if pb else None})
                pb = rec["per_batch"].get(batches[-1])
                cos = rec["cos"]
                cells += [fmt(med(pb["thr"]) if pb else None, 1),
                          "%.5f (%.4f)" % (cos["mean"], cos["min"]) if cos else "—",
                          "%.2f%%" % (100 * rec["acc"]) if rec["acc"] is not None else "—",
                          fmt(rec["file"] / 1e6, 1) if rec["file"] else "—", fmt(max(rec["rss"]) / 2**20, 0),
                          fmt(rec["res"] / 1e6, 1) if rec["res"] else "—"]
                for what in ("p50", "cpu"):
                    for b in batches:
                        p = peer(key, t, cid, b)
                        mine, theirs = rec["per_batch"].get(b), table.get((key, t, p), {}).get("per_batch", {}).get(b)
                        ratio = None
                        if mine and theirs and med(theirs[what]) and med(mine[what]) is not None:
                            ratio = med(mine[what]) / med(theirs[what])
                        cells.append(fmt(ratio, 2) + ("x" if ratio is not None else ""))
                        csvrow["ratio_%s_b%d" % (what, b)] = ratio
                csvrow.update(cosine_mean=cos["mean"] if cos else None, cosine_min=cos["min"] if cos else None,
                              accuracy=rec["acc"], file_bytes=rec["file"], peak_rss_bytes=max(rec["rss"]),
                              resident_weight_bytes=rec["res"])
                md.append("| " + " | ".join(cells) + " |")
                rows_csv.append(csvrow)
            md.append("")
        # thread scaling at the largest batch
        ts = sorted(set(r["threads"] for r in runs if r["key"] == key))
        if len(ts) > 1:
            b = batches[-1]
            md.append("Throughput at batch %d, %d threads over 1:" % (b, ts[-1]))
            for cid in order:
                a, z = table.get((key, ts[0], cid)), table.get((key, ts[-1], cid))
                if a and z and b in a["per_batch"] and b in z["per_batch"]:
                    md.append("- %s: %.2fx" % (a["label"], med(z["per_batch"][b]["thr"]) / med(a["per_batch"][b]["thr"])))
            md.append("")
    with open(md_path, "w") as f:
        f.write("\n".join(md) + "\n")
    keys = sorted({k for r in rows_csv for k in r})
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows_csv)


if __name__ == "__main__":
    main()
