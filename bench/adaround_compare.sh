#!/usr/bin/env bash
# bench/adaround_compare.sh — RTN, GPTQ and AdaRound side by side on both real checkpoints
# (vit-mnist-tiny, BERT all-MiniLM-L6-v2) at 8, 4 and 3 bits, per channel and in groups of 32 and
# 64: the mean per-layer relative output error and the end-model fidelity, one markdown table per
# checkpoint.
#
#   bench/adaround_compare.sh [OUTDIR]       (default OUTDIR: out/adaround-compare in the source tree)
#
# What it runs:
#   layers  build/bench/bench_layer_error --iters ADA_ITERS --bits BITS --csv OUTDIR/layers.csv:
#           every encoder Linear, relative output error tr(D H D^T) / tr(W H W^T) through the
#           Hessian of real calibration data (ViT: 128 MNIST test images; BERT: 128 SST-2
#           sentences of at most 64 tokens), all asymmetric; its printout in OUTDIR/layers.txt
#   eval    bench/eval_all.sh OUTDIR/eval with METHODS, SCHEMES and MPIRUN below: each file from
#           'qdist quantize' (sequential calibration on the same kind of data, 128 samples, seed 0),
#           then 'qdist eval' against FP32 (ViT: all 10,000 MNIST test images; BERT: 872 SST-2 dev
#           sentences)
#   table   OUTDIR/compare.md (also printed), from OUTDIR/layers.csv and OUTDIR/eval/results.csv:
#           rows bits x granularity; per method the mean layer error and, for ViT, MNIST top-1 %
#           (accuracy_pct) and the cosine of the logits to FP32's (cosine_mean), for BERT the
#           cosine of the mean-pooled sentence embeddings to FP32's (cosine_mean)
#
# Environment:
#   QDIST        the qdist binary (default build/qdist in the source tree)
#   LAYER_ERROR  the bench_layer_error binary (default: bench/bench_layer_error beside QDIST)
#   ADA_ITERS    AdaRound Adam steps per layer, both parts (default 10000, the method's default)
#   BITS         bit widths of the layer part (default 8,4,3)
#   LAYER_ARGS   more bench_layer_error options, e.g. "--rows 64" (the first 64 rows of each layer:
#                a sub-problem for every method, which keeps the BERT rows to minutes per scheme)
#   SCHEMES      eval_all.sh scheme ids (default "all": int8 int8-g32 int8-g64 int4 int4-g32
#                int4-g64 int3 int3-g32 int3-g64; int8 is eval_all's symmetric INT8 per channel)
#   METHODS      default "rtn gptq adaround"
#   MPIRUN       launcher of 'qdist quantize' (default "mpirun -n 2 --oversubscribe")
#   PARTS        which of "layers eval" to run (default both); the table is always made from what
#                OUTDIR holds, so PARTS=none rebuilds it alone
#   QD_BERT_DIR  the BERT checkpoint, found as tests/reference/bert_dir.sh finds it; without it the
#                BERT rows are skipped with a message; QD_MODELS_DIR as for eval_all.sh (eval
#                part only: bench_layer_error reads the models folder it was built with)
#   KEEP_H5      passed to eval_all.sh (KEEP_H5=0 deletes each file after its eval)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out=${1:-$root/out/adaround-compare}
export QDIST=${QDIST:-$root/build/qdist}
layer_error=${LAYER_ERROR:-$(dirname "$QDIST")/bench/bench_layer_error}
export ADA_ITERS=${ADA_ITERS:-10000}
bits=${BITS:-8,4,3}
export SCHEMES=${SCHEMES:-all}
export METHODS=${METHODS:-rtn gptq adaround}
export MPIRUN=${MPIRUN:-mpirun -n 2 --oversubscribe}
parts=${PARTS:-layers eval}
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

command -v python3 > /dev/null || { echo "adaround_compare: python3 is needed" >&2; exit 2; }
mkdir -p "$out"
out=$(cd "$out" && pwd)

# One BERT checkpoint for both parts (bench_layer_error reads QD_BERT_DIR; a path that does not
# exist makes it skip BERT like eval_all.sh does).
if bert=$(sh "$root/tests/reference/bert_dir.sh" 2> /dev/null); then
  export QD_BERT_DIR=$bert
else
  echo "adaround_compare: no BERT checkpoint (deploy/fetch-models.sh or QD_BERT_DIR): BERT rows skipped" >&2
  export QD_BERT_DIR=$out/no-bert-checkpoint
fi

now() { date +%s; }
# settings PART TEXT: what the part was run with, kept in OUTDIR/settings.txt for the table
settings() {
  touch "$out/settings.txt"
  { grep -v "^$1: " "$out/settings.txt" || true; echo "$1: $2"; } > "$out/settings.tmp"
  mv "$out/settings.tmp" "$out/settings.txt"
}
start=$(now)
for part in $parts; do
  case $part in
    layers)
      [ -x "$layer_error" ] || { echo "adaround_compare: no bench_layer_error at $layer_error (set LAYER_ERROR, or build it)" >&2; exit 2; }
      echo "== layers: $layer_error --iters $ADA_ITERS --bits $bits (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
      t0=$(now)
      # shellcheck disable=SC2086  # LAYER_ARGS is a word list
      "$layer_error" --iters "$ADA_ITERS" --bits "$bits" ${LAYER_ARGS:-} --csv "$out/layers.csv" | tee "$out/layers.txt"
      settings layers "bench_layer_error ${LAYER_ARGS:-}, AdaRound $ADA_ITERS Adam steps per layer, bits $bits"
      echo "== layers: $(($(now) - t0)) s (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
      ;;
    eval)
      echo "== eval: SCHEMES=\"$SCHEMES\" METHODS=\"$METHODS\" MPIRUN=\"$MPIRUN\" ADA_ITERS=$ADA_ITERS (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
      t0=$(now)
      "$here/eval_all.sh" "$out/eval"
      settings eval "eval_all.sh, AdaRound $ADA_ITERS Adam steps per layer, SCHEMES=\"$SCHEMES\", quantized with \`$MPIRUN\`"
      echo "== eval: $(($(now) - t0)) s (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
      ;;
    none) ;;
    *) echo "adaround_compare: unknown part '$part' in PARTS (layers, eval, none)" >&2; exit 2 ;;
  esac
done

rev=$(git -C "$root" rev-parse --short HEAD 2> /dev/null || echo unknown)
if [ -n "$(git -C "$root" status --porcelain --untracked-files=no 2> /dev/null)" ]; then rev="$rev (tree modified)"; fi

python3 - "$out/layers.csv" "$out/eval/results.csv" "$out/compare.md" "$out/settings.txt" "$rev" \
  "$QD_BERT_DIR" <<'EOF'
import csv, os, sys
from collections import defaultdict

layers_csv, results_csv, md_path, settings_txt, rev, bert_dir = sys.argv[1:7]
methods = [("rtn", "RTN"), ("gptq", "GPTQ"), ("adaround", "AdaRound")]
models = [  # layers.csv name, results.csv key, title, end-model figures (column, header, format)
    ("vit-mnist-tiny", "vit", "ViT vit-mnist-tiny (MNIST test set, 10,000 images)",
     [("accuracy_pct", "top-1 %", "%.2f"), ("cosine_mean", "logits cos", "%.5f")]),
    ("all-MiniLM-L6-v2", "bert", "BERT all-MiniLM-L6-v2 (SST-2 dev, 872 sentences)",
     [("cosine_mean", "emb. cos", "%.5f")]),
]
gname = {0: "channel", 32: "g32", 64: "g64"}
order_groups = [0, 32, 64]  # bench_layer_error's order of granularities within one bit width

# Mean layer error per (model, bits, group, method). layers.csv writes group_size -1 where the
# group covers the whole row (per channel, and g32/g64 on layers with at most that many inputs),
# so the granularity of a row is its position: per (model, bits, layer, method) the k-th row is
# granularity order_groups[k].
err = defaultdict(list)
if os.path.exists(layers_csv):
    seen = defaultdict(int)
    with open(layers_csv, newline="") as fh:
        for r in csv.DictReader(fh):
            k = (r["model"], r["bits"], r["layer"], r["method"])
            g = order_groups[min(seen[k], len(order_groups) - 1)]
            seen[k] += 1
            if int(r["group_size"]) > 0 and int(r["group_size"]) != g:
                sys.exit("adaround_compare: %s: row %s: group size %s where %d was expected"
                         % (layers_csv, k, r["group_size"], g))
            err[(r["model"], int(r["bits"]), g, r["method"])].append(float(r["rel_output_error"]))
else:
    print("adaround_compare: no %s: no layer errors" % layers_csv, file=sys.stderr)

ev, fp32, run_as, labels = {}, {}, {}, {}
if os.path.exists(results_csv):
    with open(results_csv, newline="") as fh:
        for r in csv.DictReader(fh):
            if r["scheme_id"] == "fp32":
                fp32[r["model"]] = r
                continue
            if r["mode"] != "int":
                continue
            key = (r["model"], int(r["bits"]), int(r["group_size"] or 0))
            ev[key + (r["method"],)] = r
            run_as.setdefault(key, r["linears"])
            labels.setdefault(key, r["scheme"])
else:
    print("adaround_compare: no %s: no end-model figures" % results_csv, file=sys.stderr)

def fmt(v, f):
    return f % float(v) if v not in (None, "") else "–"

lines = ["# RTN vs GPTQ vs AdaRound", "", "qdist %s." % rev, ""]
if os.path.exists(settings_txt):
    with open(settings_txt) as fh:
        lines += ["- " + l.strip() for l in fh if l.strip()] + [""]
for lname, key, title, figs in models:
    has_err = any(k[0] == lname for k in err)
    has_ev = any(k[0] == key for k in ev)
    if not has_err and not has_ev:
        msg = "no rows in layers.csv or results.csv"
        if key == "bert" and not os.path.isdir(bert_dir):
            msg = "no BERT checkpoint (deploy/fetch-models.sh or QD_BERT_DIR): rows skipped"
        print("adaround_compare: %s: %s" % (title, msg), file=sys.stderr)
        lines += ["## " + title, "", msg, ""]
        continue
    bits_present = sorted({k[1] for k in err if k[0] == lname} | {k[1] for k in ev if k[0] == key},
                          reverse=True)
    hdr = ["bits", "groups"]
    for _, mn in methods:
        hdr += ["%s layer err" % mn] + ["%s %s" % (mn, h) for _, h, _ in figs]
    hdr += ["scheme in eval", "eval Linears run as"]
    rows = ["| " + " | ".join(hdr) + " |",
            "|" + "|".join(["---:", "---"] + ["---:"] * (len(hdr) - 4) + ["---", "---"]) + "|"]
    for b in bits_present:
        for g in order_groups:
            e = {m: err.get((lname, b, g, m)) for m, _ in methods}
            r = {m: ev.get((key, b, g, m)) for m, _ in methods}
            if not any(e.values()) and not any(r.values()):
                continue
            means = {m: sum(v) / len(v) for m, v in e.items() if v}
            best_e = min(means.values()) if means else None
            cells = [str(b), gname[g]]
            best_f = {}
            for col, _, f in figs:
                vals = [float(x[col]) for x in r.values() if x and x[col] != ""]
                best_f[col] = max(vals) if vals else None
            for m, _ in methods:
                c = "%.3e" % means[m] if m in means else "–"
                if m in means and len(means) > 1 and means[m] == best_e:
                    c = "**" + c + "**"
                cells.append(c)
                for col, _, f in figs:
                    v = r[m][col] if r[m] else ""
                    c = fmt(v, f)
                    if v != "" and best_f[col] is not None and sum(1 for x in r.values() if x) > 1 \
                            and f % float(v) == f % best_f[col]:
                        c = "**" + c + "**"
                    cells.append(c)
            cells += [labels.get((key, b, g), "–"), run_as.get((key, b, g), "–")]
            rows.append("| " + " | ".join(cells) + " |")
    lines += ["## " + title, ""]
    if key in fp32:
        f = fp32[key]
        lines += ["FP32: " + ("top-1 %s %%" % f["accuracy_pct"] if key == "vit" else
                              "linear probe %s %% (cosines are to FP32's embeddings)" % f["accuracy_pct"]), ""]
    lines += rows + [""]
lines += [
    "Layer err: mean over the encoder Linears of tr(D H D^T) / tr(W H W^T), D = W - W', H from FP32",
    "calibration inputs (`bench_layer_error`, all asymmetric; RTN with min-max scales, AdaRound",
    "with MSE-searched scales). The end-model files come from `qdist quantize` (sequential",
    "calibration) and `qdist eval` with the integer kernels named in the last column; the 8-bit",
    "per-channel files are symmetric (the qdist defaults), the others asymmetric. Bold: the best of",
    "the three methods in that column (ties all bold).", ""]
with open(md_path, "w") as fh:
    fh.write("\n".join(lines))
print("\n".join(lines))
EOF
echo "adaround_compare: table in $out/compare.md; wall time $(($(now) - start)) s" >&2
