#!/usr/bin/env bash
# bench/eval_all.sh — accuracy, size and latency of every quantization scheme on the two real
# checkpoints (vit-mnist-tiny on MNIST, BERT all-MiniLM-L6-v2 on SST-2 dev), FP32 vs quantized,
# one table and one plot.
#
#   bench/eval_all.sh [OUTDIR]            (default OUTDIR: out/eval in the source tree)
#
# Environment:
#   QDIST          the qdist binary (default: build/qdist in the source tree)
#   QD_MODELS_DIR  the shared models folder (default: ../shared/models beside the source tree):
#                  vit-mnist-tiny/, data/mnist/t10k-images-idx3-ubyte.gz, data/sst2/dev.tsv
#   QD_BERT_DIR    the BERT checkpoint, found as tests/reference/bert_dir.sh finds it
#                  (QD_BERT_DIR, $QD_CACHE/models/..., ~/.cache/qdist/models/all-MiniLM-L6-v2;
#                  deploy/fetch-models.sh fetches it); without it the BERT rows are skipped
#   MPIRUN         launcher prefix for 'qdist quantize', e.g. "mpirun -n 2" (default: one rank,
#                  no launcher; the file is identical for any number of ranks)
#   KEEP_H5=0      delete each quantized file once it has been evaluated
#   MODELS         which checkpoints to run (default "vit bert")
#   METHODS        quantization methods, in order (default "rtn gptq"; "rtn gptq adaround" adds
#                  AdaRound)
#   ADA_ITERS      AdaRound Adam steps per layer (default 10000, the method's default)
#   SCHEMES        scheme ids, space-separated, in order (default "int8 int4-g32 int4-g64
#                  int3-g32"; "all" = every id below):
#                    int8      INT8 per-channel symmetric (the qdist defaults; int8 kernels)
#                    int8-g32  INT8 asymmetric groups of 32  } no integer kernel: evaluated with
#                    int8-g64  INT8 asymmetric groups of 64  } dequantized float weights
#                    int4      INT4 asymmetric per channel   } int4 x int8 kernels
#                    int4-g32  INT4 asymmetric groups of 32  }
#                    int4-g64  INT4 asymmetric groups of 64  }
#                    int3      INT3 asymmetric per channel   } dequantized float
#                    int3-g32  INT3 asymmetric groups of 32  }
#                    int3-g64  INT3 asymmetric groups of 64  }
#
# Needs: python3 (collects the JSON into results.csv and the table; deploy/install-deps.sh
# installs it) and, for the plot only, gnuplot with its SVG terminal (Debian: apt-get install
# gnuplot-nox); without gnuplot the plot is skipped with a message.
#
# What it runs, per checkpoint:
#   schemes   INT8 per-channel symmetric (the defaults), INT4 asymmetric groups of 32 and of 64,
#             INT3 asymmetric groups of 32 (SCHEMES picks others); each with RTN and with GPTQ
#             (METHODS="rtn gptq adaround" adds AdaRound, with ADA_ITERS Adam steps per layer)
#   AdaRound  the same calibration options as GPTQ, --iters ADA_ITERS, the method's other defaults
#   GPTQ      ViT: --calib the MNIST test images --nsamples 128 (a seeded draw, --calib-seed 0,
#             out of the 10,000 images that are then all evaluated: 1.28 % of the evaluation
#             images are also calibration inputs; calibration never sees labels);
#             BERT: --calib the SST-2 dev TSV --nsamples 128 --seqlen 64 (same caveat: 128 of the
#             872 evaluated sentences, no labels)
#   eval      'qdist eval --json --batch 1' on every sample (ViT: 10,000 images, BERT: 872
#             sentences): per-sample latency and accuracy come from the same run, FP32 and
#             quantized in the same process, so the speed-up is a paired figure; plus
#             --fake-quant on the INT8 RTN file (dequantized weights, float activations), which
#             separates the weight error from that of the int8 activations
#   threads   OPENBLAS_NUM_THREADS=1: both sides on one core
#
# Writes OUTDIR/results.csv (one row per evaluation, plus one FP32 row per model),
# OUTDIR/results.md (the table, also printed), OUTDIR/eval.svg (the plot, bench/plot_eval.gp),
# OUTDIR/json/*.json (the raw 'qdist eval --json' outputs) and OUTDIR/h5/*.h5. The plot is laid
# out for the default schemes: with other SCHEMES it draws the rows of those only (OUTDIR/plot.csv).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out=${1:-$root/out/eval}
qdist=${QDIST:-$root/build/qdist}
models=${QD_MODELS_DIR:-$root/../shared/models}
launcher=${MPIRUN:-}
keep_h5=${KEEP_H5:-1}
export OPENBLAS_NUM_THREADS=1

[ -x "$qdist" ] || { echo "eval_all: no qdist binary at $qdist (set QDIST, or build it)" >&2; exit 2; }
command -v python3 > /dev/null || { echo "eval_all: python3 is needed" >&2; exit 2; }

vit_dir=$models/vit-mnist-tiny
mnist=$models/data/mnist/t10k-images-idx3-ubyte.gz
sst2=$models/data/sst2/dev.tsv
nsamples=128
bert_seqlen=64
seed=0

mkdir -p "$out/json" "$out/h5"
manifest=$out/manifest.tsv
: > "$manifest"

# scheme id | scheme label | bits | group (0 = per channel) | quantize options (besides method)
all_schemes=(
  "int8|INT8 per-channel sym|8|0|--bits 8"
  "int8-g32|INT8 g32 asym|8|32|--bits 8 --asym --group-size 32"
  "int8-g64|INT8 g64 asym|8|64|--bits 8 --asym --group-size 64"
  "int4|INT4 per-channel asym|4|0|--bits 4 --asym"
  "int4-g32|INT4 g32 asym|4|32|--bits 4 --asym --group-size 32"
  "int4-g64|INT4 g64 asym|4|64|--bits 4 --asym --group-size 64"
  "int3|INT3 per-channel asym|3|0|--bits 3 --asym"
  "int3-g32|INT3 g32 asym|3|32|--bits 3 --asym --group-size 32"
  "int3-g64|INT3 g64 asym|3|64|--bits 3 --asym --group-size 64"
)
default_schemes="int8 int4-g32 int4-g64 int3-g32"
want=${SCHEMES:-$default_schemes}
if [ "$want" = all ]; then want=$(for e in "${all_schemes[@]}"; do printf '%s ' "${e%%|*}"; done); fi
schemes=()
chosen=""
for id in $want; do
  found=""
  for e in "${all_schemes[@]}"; do
    if [ "${e%%|*}" = "$id" ]; then found=$e; fi
  done
  if [ -z "$found" ]; then
    echo "eval_all: unknown scheme '$id' in SCHEMES (known: all$(for e in "${all_schemes[@]}"; do printf ' %s' "${e%%|*}"; done))" >&2
    exit 2
  fi
  schemes+=("$found")
  chosen="$chosen${chosen:+ }$id"
done
[ ${#schemes[@]} -gt 0 ] || { echo "eval_all: SCHEMES is empty" >&2; exit 2; }

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print('%.2f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$2"; }
load1() { cut -d' ' -f1 /proc/loadavg; }

# run_model KEY MODEL_DIR DATA CALIB_OPTIONS...
run_model() {
  local key=$1 mdir=$2 data=$3
  shift 3
  local entry id label bits group opts method f j t0 t1 qs l0 l1 es
  for entry in "${schemes[@]}"; do
    IFS='|' read -r id label bits group opts <<< "$entry"
    for method in ${METHODS:-rtn gptq}; do
      f=$out/h5/$key-$id-$method.h5
      j=$out/json/$key-$id-$method.json
      echo "== $key $label $method" >&2
      t0=$(now)
      if [ "$method" = rtn ]; then
        # shellcheck disable=SC2086  # $launcher and $opts are word lists
        $launcher "$qdist" quantize --model "$mdir" --out "$f" $opts --overwrite --quiet
      else
        # shellcheck disable=SC2086
        local extra=""
        [ "$method" = adaround ] && extra="--iters ${ADA_ITERS:-10000}"
        # shellcheck disable=SC2086
        $launcher "$qdist" quantize --model "$mdir" --out "$f" --method "$method" $opts $extra "$@" \
          --overwrite --quiet
      fi
      t1=$(now)
      qs=$(elapsed "$t0" "$t1")
      l0=$(load1)
      t0=$(now)
      "$qdist" eval --model "$mdir" --quantized "$f" --data "$data" --batch 1 --json > "$j"
      t1=$(now)
      es=$(elapsed "$t0" "$t1")
      l1=$(load1)
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$key" "$id" "$label" "$method" \
        "$bits" "$group" int "$j" "$qs" "$es" "$l0/$l1" >> "$manifest"
      if [ "$id" = int8 ] && [ "$method" = rtn ]; then
        j=$out/json/$key-$id-$method-fake.json
        echo "== $key $label $method --fake-quant" >&2
        l0=$(load1)
        t0=$(now)
        "$qdist" eval --model "$mdir" --quantized "$f" --data "$data" --batch 1 --fake-quant \
          --json > "$j"
        t1=$(now)
        es=$(elapsed "$t0" "$t1")
        l1=$(load1)
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$key" "$id" "$label" "$method" \
          "$bits" "$group" fake "$j" "$qs" "$es" "$l0/$l1" >> "$manifest"
      fi
      if [ "$keep_h5" = 0 ]; then rm -f "$f"; fi
    done
  done
}

start=$(now)
models_run=" ${MODELS:-vit bert} "
if [ "${models_run#* vit }" = "$models_run" ]; then
  echo "eval_all: MODELS=\"${MODELS:-}\": ViT rows not run" >&2
elif [ -f "$vit_dir/config.json" ] && [ -f "$mnist" ]; then
  run_model vit "$vit_dir" "$mnist" --calib "$mnist" --nsamples "$nsamples" --calib-seed "$seed"
else
  echo "eval_all: no $vit_dir or $mnist: ViT rows skipped" >&2
fi
if [ "${models_run#* bert }" = "$models_run" ]; then
  echo "eval_all: MODELS=\"${MODELS:-}\": BERT rows not run" >&2
elif bert_dir=$(sh "$root/tests/reference/bert_dir.sh") && [ -f "$sst2" ]; then
  run_model bert "$bert_dir" "$sst2" --calib "$sst2" --nsamples "$nsamples" \
    --seqlen "$bert_seqlen" --calib-seed "$seed"
else
  echo "eval_all: no BERT checkpoint or no $sst2: BERT rows skipped" >&2
fi
[ -s "$manifest" ] || { echo "eval_all: nothing was evaluated" >&2; exit 1; }

# Collect: results.csv (every figure) and results.md (the table).
python3 - "$manifest" "$out/results.csv" "$out/results.md" <<'EOF'
import csv, json, sys

manifest, csv_path, md_path = sys.argv[1:4]
names = {"vit": "ViT vit-mnist-tiny", "bert": "BERT all-MiniLM-L6-v2"}
cols = ["model", "scheme_id", "scheme", "method", "mode", "bits", "group_size", "samples",
        "batch", "metric", "accuracy_pct", "fp32_accuracy_pct", "agreement_pct", "cosine_mean",
        "cosine_min", "cosine_of", "tensor_bytes", "file_bytes", "fp32_tensor_bytes",
        "fp32_file_bytes", "latency_p50_ms", "fp32_latency_p50_ms", "latency_p95_ms",
        "fp32_latency_p95_ms", "speedup_p50", "peak_rss_bytes", "fp32_peak_rss_bytes",
        "linears", "kernels_isa", "quantize_s", "eval_s", "load1_before_after"]
rows, fp32 = [], {}

def pct(x):
    return "" if x is None else "%.2f" % (100.0 * x)

with open(manifest) as fh:
    for line in fh:
        key, sid, label, method, bits, group, mode, jpath, qs, es, load = line.rstrip("\n").split("\t")
        with open(jpath) as jf:
            j = json.load(jf)
        f, q = j["fp32"], j["quantized"]
        akey = "accuracy" if j["task"] == "classification" else "probe_accuracy"
        metric = "top-1" if akey == "accuracy" else "linear probe"
        cos = j.get("cosine", {})
        lin = q.get("linears", {})
        r = {
            "model": key, "scheme_id": sid, "scheme": label, "method": method, "mode": mode,
            "bits": bits, "group_size": group, "samples": j["samples"], "batch": j["batch"],
            "metric": metric, "accuracy_pct": pct(q.get(akey)),
            "fp32_accuracy_pct": pct(f.get(akey)),
            "agreement_pct": pct(j.get("agreement")),
            "cosine_mean": "%.6f" % cos["mean"] if cos else "",
            "cosine_min": "%.6f" % cos["min"] if cos else "",
            "cosine_of": cos.get("of", ""),
            "tensor_bytes": q["tensor_bytes"], "file_bytes": q["file_bytes"],
            "fp32_tensor_bytes": f["tensor_bytes"], "fp32_file_bytes": f["file_bytes"],
            "latency_p50_ms": "%.4f" % q["latency_ms"]["p50"],
            "fp32_latency_p50_ms": "%.4f" % f["latency_ms"]["p50"],
            "latency_p95_ms": "%.4f" % q["latency_ms"]["p95"],
            "fp32_latency_p95_ms": "%.4f" % f["latency_ms"]["p95"],
            "speedup_p50": "%.3f" % (f["latency_ms"]["p50"] / q["latency_ms"]["p50"]),
            "peak_rss_bytes": q["peak_rss_bytes"], "fp32_peak_rss_bytes": f["peak_rss_bytes"],
            "linears": "; ".join("%d %s" % (v, k) for k, v in lin.items() if v),
            "kernels_isa": j["kernels_isa"], "quantize_s": qs, "eval_s": es,
            "load1_before_after": load,
        }
        rows.append(r)
        if key not in fp32:
            fp32[key] = {"acc": [], "p50": [], "r": r, "metric": metric}
        fp32[key]["acc"].append(f.get(akey))
        fp32[key]["p50"].append(f["latency_ms"]["p50"])

# One FP32 row per model: its accuracy (the same in every run: the FP32 pass is deterministic)
# and the median over all runs of its per-run latency p50.
out_rows = []
for key in fp32:
    d = fp32[key]
    p = sorted(d["p50"])
    med = p[len(p) // 2] if len(p) % 2 else 0.5 * (p[len(p) // 2 - 1] + p[len(p) // 2])
    r0 = d["r"]
    out_rows.append({
        "model": key, "scheme_id": "fp32", "scheme": "FP32", "method": "-", "mode": "float",
        "bits": 32, "group_size": "", "samples": r0["samples"], "batch": r0["batch"],
        "metric": d["metric"], "accuracy_pct": r0["fp32_accuracy_pct"],
        "fp32_accuracy_pct": r0["fp32_accuracy_pct"], "agreement_pct": "", "cosine_mean": "",
        "cosine_min": "", "cosine_of": "", "tensor_bytes": r0["fp32_tensor_bytes"],
        "file_bytes": r0["fp32_file_bytes"], "fp32_tensor_bytes": r0["fp32_tensor_bytes"],
        "fp32_file_bytes": r0["fp32_file_bytes"], "latency_p50_ms": "%.4f" % med,
        "fp32_latency_p50_ms": "%.4f" % med, "latency_p95_ms": "", "fp32_latency_p95_ms": "",
        "speedup_p50": "", "peak_rss_bytes": r0["fp32_peak_rss_bytes"],
        "fp32_peak_rss_bytes": r0["fp32_peak_rss_bytes"], "linears": "", "kernels_isa": "",
        "quantize_s": "", "eval_s": "", "load1_before_after": "",
    })
    if len(set(d["acc"])) != 1:
        print("eval_all: warning: FP32 accuracy differs between runs of %s: %s" % (key, d["acc"]),
              file=sys.stderr)
    out_rows.extend(r for r in rows if r["model"] == key)

with open(csv_path, "w", newline="") as fh:
    w = csv.DictWriter(fh, fieldnames=cols)
    w.writeheader()
    w.writerows(out_rows)

def mb(b):
    return "%.3f" % (int(b) / 1e6) if int(b) < 10e6 else "%.2f" % (int(b) / 1e6)

hdr = ["model", "scheme", "method", "accuracy %", "agreement %", "cosine mean", "cosine min",
       "tensor data MB", "file MB", "p50 ms FP32", "p50 ms quant.", "speed-up", "quantized Linears run as"]
lines = ["| " + " | ".join(hdr) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * 9 + ["---"]) + "|"]
for r in out_rows:
    method = r["method"].upper() if r["method"] != "-" else "-"
    if r["mode"] == "fake":
        method += " (fake-quant)"
    acc = r["accuracy_pct"] + (" (probe)" if r["metric"] == "linear probe" and r["accuracy_pct"] else "")
    lines.append("| " + " | ".join([
        names.get(r["model"], r["model"]), r["scheme"], method, acc,
        r["agreement_pct"] or "-", r["cosine_mean"] or "-", r["cosine_min"] or "-",
        mb(r["tensor_bytes"]), mb(r["file_bytes"]),
        "%.3f" % float(r["fp32_latency_p50_ms"]),
        "%.3f" % float(r["latency_p50_ms"]) if r["mode"] != "float" else "-",
        (r["speedup_p50"] + "x") if r["speedup_p50"] else "-",
        r["linears"] or ("float (FP32)" if r["mode"] == "float" else "-")]) + " |")
with open(md_path, "w") as fh:
    fh.write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF

if command -v gnuplot > /dev/null; then
  if gnuplot -e "set terminal svg" -e "exit" 2> /dev/null; then
    # the plot draws RTN against GPTQ: with other METHODS it may have nothing to draw
    plot_csv=$out/results.csv
    if [ "$chosen" != "$default_schemes" ]; then
      # the plot is laid out for the default schemes: it gets their rows only
      plot_csv=$out/plot.csv
      python3 - "$out/results.csv" "$plot_csv" "$default_schemes" <<'EOF'
import csv, sys
keep = set(sys.argv[3].split()) | {"fp32"}
with open(sys.argv[1], newline="") as fi, open(sys.argv[2], "w", newline="") as fo:
    r = csv.DictReader(fi)
    w = csv.DictWriter(fo, fieldnames=r.fieldnames)
    w.writeheader()
    w.writerows(row for row in r if row["scheme_id"] in keep)
EOF
    fi
    gnuplot -e "csv='$plot_csv'; svg='$out/eval.svg'" "$here/plot_eval.gp" \
      || echo "eval_all: the plot needs RTN and GPTQ rows (METHODS=\"${METHODS:-rtn gptq}\"): skipped" >&2
    echo "eval_all: plot in $out/eval.svg" >&2
  else
    echo "eval_all: gnuplot has no SVG terminal: plot skipped" >&2
  fi
else
  echo "eval_all: gnuplot not found (Debian: apt-get install gnuplot-nox): plot skipped" >&2
fi
end=$(now)
echo "eval_all: results in $out/results.csv and $out/results.md; wall time $(elapsed "$start" "$end") s" >&2
