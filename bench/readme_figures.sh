#!/usr/bin/env bash
# bench/readme_figures.sh — re-measures every row of README.md's "Measured here" table and prints
# the table as this run found it (markdown: what | figure | command), so the README states what the
# code does today on this machine, not what an earlier version did on another one.
#
#   bench/readme_figures.sh [--quick] [OUTDIR]       (OUTDIR default: out/readme-figures)
#
# Each row's command runs as written in its "command" column (the test binaries, bench/ programs
# and scripts, qdist itself); its output goes to OUTDIR/logs/KEY.log and the figure is read from
# there. A row whose command fails or is missing prints why instead of a figure. Rows about
# identity (files equal for any number of ranks, resume) report the ctest verdict of the test
# that checks them.
#
# Full mode (the default) runs everything at the README's settings: about 1.5-2 hours on a quiet
# 2-core machine, most of it AdaRound (the whole-checkpoint timing, bench/adaround_job.sh, about
# 20 min; the RTN/GPTQ/AdaRound comparison, bench/adaround_compare.sh restricted to the settings
# the row cites, about an hour). --quick skips those two rows and the 4-minute AdaRound layer test,
# runs the timing scripts once instead of best-of-2, and evaluates on fewer samples (the figure
# says how many): about 10 minutes.
#
# Timings are the machine's at the time: on a shared machine they move by tens of percent between
# runs (the load average is printed at the start and the end). Speed figures are ratios against a
# peer measured in the same run wherever the row has one.
#
# Environment: QD_BUILD_DIR (default build; built with tests and benchmarks, e.g. by
# deploy/test.sh), QD_MODELS_DIR (default ../shared/models), QD_BERT_DIR (as
# tests/reference/bert_dir.sh finds it; without it the BERT parts are reported missing),
# QD_TORCH_PYTHON (the PyTorch peer of bench_forward; default: deploy/pyenv.sh's venv).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
QUICK=0
if [ "${1:-}" = --quick ]; then
  QUICK=1
  shift
fi
OUT=${1:-out/readme-figures}
mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
B=$(cd "${QD_BUILD_DIR:-build}" 2>/dev/null && pwd) || { echo "readme_figures: no build directory" >&2; exit 2; }
Q=$B/qdist
[ -x "$Q" ] || { echo "readme_figures: no $Q (build first: deploy/test.sh or deploy/build.sh)" >&2; exit 2; }
MODELS=$(cd "${QD_MODELS_DIR:-../shared/models}" && pwd) || { echo "readme_figures: no models folder" >&2; exit 2; }
VIT=$MODELS/vit-mnist-tiny
MNIST=$MODELS/data/mnist/t10k-images-idx3-ubyte.gz
SST2=$MODELS/data/sst2/dev.tsv
BERT=$(sh tests/reference/bert_dir.sh 2>/dev/null || true)
# shellcheck source=deploy/mpienv.sh
. deploy/mpienv.sh
export OPENBLAS_NUM_THREADS=1 QD_MODELS_DIR=$MODELS
T=$(mktemp -d /tmp/qd-readme-XXXXXX)
trap 'rm -rf "$T"' EXIT
t_start=$(date +%s)
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), $(nproc) cores"
  echo "mode: $([ $QUICK = 1 ] && echo quick || echo full)"
  echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
} > "$OUT/machine.txt"

# run KEY COMMAND...: runs it, output in logs/KEY.log, exit status and seconds in logs/KEY.rc
run() {
  local key=$1 t0 rc=0
  shift
  echo "readme_figures: $key ... (load $(cut -d' ' -f1 /proc/loadavg))" >&2
  t0=$(date +%s.%N)
  "$@" > "$OUT/logs/$key.log" 2>&1 || rc=$?
  echo "$rc $(echo "$(date +%s.%N) - $t0" | bc)" > "$OUT/logs/$key.rc"
}
skip() { echo "skipped $2" > "$OUT/logs/$1.log"; echo "skip 0" > "$OUT/logs/$1.rc"; }
in_dir() { (cd "$1" && shift && "$@"); }
bert() { [ -n "$BERT" ] || { echo "no BERT checkpoint (deploy/fetch-models.sh)"; return 1; }; }

run quant_real in_dir "$B/tests/quant" ./test_quant_real
run gptq_reference in_dir "$B/tests/gptq" ./test_gptq_reference
run bench_gptq "$B/bench/bench_gptq"
if [ $QUICK = 1 ]; then skip adaround_real "(--quick: about 4 minutes)"; else
  run adaround_real in_dir "$B/tests/adaround" ./test_adaround_real; fi
run quickstart_q8 mpirun -n 4 "$Q" quantize --model "$VIT" --out "$T/q8-4.h5" --overwrite --progress none
run ctest in_dir "$B" ctest --timeout 900 -R '^(job_determinism|job_resume|gptq_job|calibrate_cmd|test_calib|test_calib_mpi_np[124]|sparse_job)$'
run rtn_throughput bench/rtn_throughput.sh "$B" $((2 - QUICK))
run vit_forward in_dir "$B/tests/model" ./test_vit_forward
run vit_mnist in_dir "$B/tests/model" ./test_vit_mnist
run bert_forward in_dir "$B/tests/model" ./test_bert_forward
run tokenizer in_dir "$B/tests/model" ./test_tokenizer
TORCH_PY=${QD_TORCH_PYTHON:-$(deploy/pyenv.sh 2>/dev/null || true)}
run forward env QD_TORCH_PYTHON="$TORCH_PY" "$B/bench/bench_forward"
calib1() { bert && "$Q" calibrate --model "$BERT" --calib "$SST2" --json; }
calib2() { bert && mpirun -n 2 "$Q" calibrate --model "$BERT" --calib "$SST2" --calib-mode pipeline --json; }
run calibrate1 calib1
run calibrate2 calib2
run gptq_layers in_dir "$B/tests/gptq" ./test_gptq_layers
run bench_adaround "$B/bench/bench_adaround"
if [ $QUICK = 1 ]; then
  skip adaround_job "(--quick: about 20 minutes)"
  skip adaround_compare "(--quick: about an hour)"
else
  run adaround_job sh bench/adaround_job.sh "$Q"
  # the settings the row cites: layer errors at 4 and 3 bits (channel, g32, g64; the first 64 rows
  # of each layer, as test_adaround_real), end models of INT3 and INT4 per channel and INT4 g32
  run adaround_compare env BITS=4,3 LAYER_ARGS="--rows 64" SCHEMES="int4 int4-g32 int3" KEEP_H5=0 \
    bench/adaround_compare.sh "$OUT/compare"
fi
run gptq_job sh bench/gptq_job.sh "$Q" $((2 - QUICK))
g128() {
  bert && "$Q" quantize --model "$BERT" --out "$T/g128.h5" --method gptq --bits 4 --asym --group-size 128 \
    --calib "$SST2" --nsamples 128 --seqlen 128 --progress none --overwrite
}
run gptq_rss g128
run bench_gemm "$B/bench/bench_gemm"

NV=10000 NB=872
[ $QUICK = 1 ] && NV=2000 NB=200
"$Q" quantize --model "$VIT" --out "$T/vit-q8.h5" --quiet --overwrite
run eval_vit "$Q" eval --model "$VIT" --quantized "$T/vit-q8.h5" --data "$MNIST" --n $NV --batch 100 --json
# MiniLM: INT8 RTN (with and without the outlier columns, and weights alone), INT4 g32 GPTQ and RTN,
# at batch 1 on the SST-2 dev sentences (GPTQ calibrated as bench/eval_all.sh does)
if [ -n "$BERT" ]; then
  "$Q" quantize --model "$BERT" --out "$T/b8.h5" --quiet --overwrite
  "$Q" quantize --model "$BERT" --out "$T/b4r.h5" --quiet --overwrite --bits 4 --asym --group-size 32
  "$Q" quantize --model "$BERT" --out "$T/b4g.h5" --quiet --overwrite --bits 4 --asym --group-size 32 \
    --method gptq --calib "$SST2" --nsamples 128 --seqlen 64
fi
ev() { bert && "$Q" eval --model "$BERT" --data "$SST2" --n $NB --batch 1 --json "$@"; }
run eval_b8 ev --quantized "$T/b8.h5"
run eval_b8_noout ev --quantized "$T/b8.h5" --outlier-threshold 0
run eval_b8_fake ev --quantized "$T/b8.h5" --fake-quant
run eval_b4g ev --quantized "$T/b4g.h5"
run eval_b4r ev --quantized "$T/b4r.h5"
run sparsegpt_reference in_dir "$B/tests/sparse" ./test_sparsegpt_reference
run bench_gemm_24 "$B/bench/bench_gemm_24"
run bench_gemm_u8_24 "$B/bench/bench_gemm_u8_24"
"$Q" quantize --model "$VIT" --out "$T/vit-s24.h5" --quiet --overwrite --method gptq --bits 8 --sparsity 2:4 \
  --calib "$MNIST"
run eval_sparse "$Q" eval --model "$VIT" --quantized "$T/vit-s24.h5" --data "$MNIST" --n $NV --batch 100 --json
run plan in_dir "$B/tests/job" ./test_plan

echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); $(($(date +%s) - t_start)) s in all" >> "$OUT/machine.txt"
# ---- the table: one row per README row, the figure read from the logs ------------------------------
python3 - "$OUT" <<'EOF' | tee "$OUT/table.md"
import json, math, os, re, sys

out = sys.argv[1]
logs = os.path.join(out, "logs")


class Missing(Exception):
    pass


def log(key):
    try:
        text = open(os.path.join(logs, key + ".log"), errors="replace").read()
        rc, secs = open(os.path.join(logs, key + ".rc")).read().split()
    except OSError:
        raise Missing("not run")
    if rc == "skip":
        raise Missing(text.strip())
    if rc != "0":
        last = [l for l in text.strip().splitlines() if l.strip()][-1:] or [""]
        raise Missing("failed (exit %s): %s" % (rc, last[0][:160]))
    return text


def find(pattern, text, what="figure"):
    m = re.search(pattern, text, re.M)
    if not m:
        raise Missing("no %s in the output (pattern %r)" % (what, pattern))
    return m


def js(key):
    return json.loads(log(key))


def ctest_verdict(names):
    text = log("ctest") if os.path.exists(os.path.join(logs, "ctest.rc")) else ""
    res = []
    for n in names:
        m = re.search(r"Test +#\d+: %s \.+[* ]*(\w[\w ]*?) +[\d.]+ sec" % re.escape(n), text)
        res.append((n, m.group(1) if m else "not run"))
    return res


def identical(names, what):
    v = ctest_verdict(names)
    if all(r == "Passed" for _, r in v):
        return what
    return "FAILED: " + ", ".join("%s %s" % (n, r) for n, r in v if r != "Passed")


def pct(x, d=2):
    return ("%%.%df %%%%" % d) % (100 * x)


def r_rtn_ref():
    t = log("quant_real")
    m = find(r"reference RTN parameters: (\d+) groups, (\d+) scale and (\d+) zero mismatches, (\d+) code mismatches", t)
    return "%s groups: %s scale, %s zero, %s code mismatches" % ("{:,}".format(int(m.group(1))), m.group(2), m.group(3), m.group(4))


def r_mse():
    t = log("quant_real")
    parts, worse = [], 0
    for b in (4, 3, 2):
        m = find(r"^%d-bit per channel over 37 matrices.*mse search [\d.e+-]+ \(([\d.]+)%% lower, (\d+) rows worse\)" % b, t)
        parts.append(m.group(1))
        worse += int(m.group(2))
    return "mean MSE %s %% lower at 4 bits, %s %% at 3, %s %% at 2; %s" % (
        parts[0], parts[1], parts[2], "no row worse" if worse == 0 else "%d rows worse" % worse)


def r_gptq_ref():
    t = log("gptq_reference")
    m = find(r"worst: codes equal ([\d.]+)%, relerr off by ([\d.]+)%, error off by ([\d.]+)%", t)
    return 'worst layer: %s %% of codes equal; output error within %s %%, reference "error" within %s %%' % m.groups()


def r_gptq_time():
    t = log("bench_gptq")
    ms = [find(r"^%s \S+ +([\d.]+) " % re.escape(k), t).group(1) for k in ("768x768", "3072x768", "768x3072")]
    return ("768×768: %s ms, 3072×768: %s ms, 768×3072: %s ms (the reference implementation is not run here: "
            "bench_gptq's ratio is against times measured once on another machine, so none is claimed)" % tuple(ms))


def r_adaround_real():
    t = log("adaround_real")
    rows = re.findall(r"^(\S+) (\d)-bit, 36 layers: RTN/AdaRound worst ([\d.]+) mean ([\d.]+); largest soft fraction "
                      r"([\d.]+); rows kept RTN: (\d+) of (\d+)", t, re.M)
    if len(rows) != 4:
        raise Missing("expected 4 summary lines, found %d" % len(rows))
    worst = min(float(r[2]) for r in rows)
    means = [float(r[3]) for r in rows]
    soft = max(float(r[4]) for r in rows)
    kept = max(int(r[5]) / int(r[6]) for r in rows)
    return ("lower on every layer, by %.2f× at least (mean %.1f–%.1f×); weights left soft ≤ %s; rows kept at RTN "
            "≤ %s" % (worst, min(means), max(means), pct(soft), pct(kept)))


def r_quickstart():
    t = log("quickstart_q8")
    nq = find(r"^  tensors +(\d+) quantized", t).group(1)
    m = find(r"^  tensor data +(\d+) bytes in the checkpoint, (\d+) in the file \(([\d.]+)x smaller\)", t)
    fb = find(r"^  file +(\d+) bytes", t).group(1)
    e = find(r"^  rel\. error +mean ([\d.e+-]+)", t).group(1)
    s = find(r"^  time +([\d.]+) s on 4 ranks", t).group(1)
    return ("%s tensors quantized; tensor data %s× smaller (%.2f MB of 2.00), file %.2f MB; mean rel. error %.1e; "
            "%s s" % (nq, m.group(3), int(m.group(2)) / 1e6, int(fb) / 1e6, float(e), s))


def r_rtn_tp():
    t = log("rtn_throughput")
    rows = re.findall(r"^bert-base +(--bits [^\n]*?) +([12]) +([\d.]+) +([\d.]+) +([\d.]+) +([\d.]+) +([\d.]+)", t, re.M)
    sp = re.findall(r"2-rank speed-up: ([\d.]+) wall, ([\d.]+) from the busiest rank's CPU time", t)
    if len(rows) < 4 or len(sp) < 4:
        raise Missing("incomplete table")
    g = {(r[0].split()[1], r[1]): r for r in rows}
    return ("8-bit per channel %s GB/s on 1 rank, 4-bit g128 %s GB/s; 2 ranks: %s× (8-bit) and %s× (4-bit) from the "
            "busiest rank's CPU time (wall time on this shared 2-core machine: %s×, %s×)" % (
                g[("8", "1")][3], g[("4", "1")][3], sp[2][1], sp[3][1], sp[2][0], sp[3][0]))


def r_vit_fwd():
    t = log("vit_forward")
    blocks = [float(x) for x in re.findall(r"^hidden\.\d +max\|diff\| ([\d.e+-]+)", t, re.M)]
    lg = find(r"^logits +max\|diff\| ([\d.e+-]+)", t).group(1)
    m = find(r"MNIST test top-1: (\d+)/(\d+) = ([\d.]+) %", log("vit_mnist"))
    return "every block within %.1e, logits within %.0e; MNIST test top-1 %s/%s = %s %%" % (
        max(blocks), float(lg), m.group(1), m.group(2), m.group(3))


def r_bert_fwd():
    t = log("bert_forward")
    blocks = [float(x) for x in re.findall(r"^hidden\.\S+ +max\|diff\|(?: at real tokens)? ([\d.e+-]+)", t, re.M)]
    pool = find(r"^pooler_output +max\|diff\| ([\d.e+-]+)", t).group(1)
    emb = find(r"^sentence_embedding +max\|diff\| ([\d.e+-]+)", t).group(1)
    return "every block within %.1e, pooler %.1e, mean-pooled embedding %.1e" % (max(blocks), float(pool), float(emb))


def r_tok():
    t = log("tokenizer")
    find(r"SST-2 dev \(872 sentences", t)
    find(r"all \d+ checks passed", t)
    return "872 / 872 sentences identical"


def r_forward():
    t = log("forward")
    b = find(r"^BERT \S+ +8x128 .*\| +([\d.]+)x +([\d.]+)x", t, "BERT ratio")
    v = find(r"^ViT \S+ +64 .*\| +([\d.]+)x +([\d.]+)x", t, "ViT ratio")
    cw = find(r"^BERT \S+: CPU time / wall time ([\d.]+)", t).group(1)
    return ("BERT 8×128 tokens %s× PyTorch's speed (best of 7; median %s×), ViT 64 images %s× (median %s×); "
            "CPU/wall %s: the machine was busy" % (b.group(1), b.group(2), v.group(1), v.group(2), cw)
            if float(cw) < 0.9 else "BERT 8×128 tokens %s× PyTorch's speed (best of 7), ViT 64 images %s×" % (
                b.group(1), v.group(1)))


def r_calib():
    a, b = js("calibrate1"), js("calibrate2")
    v = identical(["calibrate_cmd", "test_calib", "test_calib_mpi_np1", "test_calib_mpi_np2", "test_calib_mpi_np4"],
                  "bit-identical to 1 rank")
    return ("%s; all-MiniLM-L6-v2, %d SST-2 samples: %.1f s, peak RSS %.0f MiB on 1 rank; pipelined on 2 ranks %.1f s, "
            "%.0f MiB on the larger" % (v, a["samples"], a["seconds"], max(a["peak_rss_bytes"]) / 2**20, b["seconds"],
                                        max(b["peak_rss_bytes"]) / 2**20))


def r_gptq_layers():
    t = log("gptq_layers")
    r = [float(x) for x in re.findall(r"smallest RTN/GPTQ error ratio: ([\d.]+)", t)]
    if not r:
        raise Missing("no ratio")
    return "GPTQ lower on every layer, by %.2f× at least" % min(r)


def r_bench_ada():
    t = log("bench_adaround")
    mini = t[t.index("all-MiniLM-L6-v2 ("):]
    base = t[t.index("BERT-base ("):t.index("all-MiniLM-L6-v2 (")]
    q = find(r"^384x384 \S+ +([\d.]+) +([\d.]+) +[\d.]+ +([\d.]+)x", mini)
    o = find(r"^384x1536 \S+ +([\d.]+) +([\d.]+) +[\d.]+ +([\d.]+)x", mini)
    r = [float(x) for x in re.findall(r"^\d+x\d+ \S+ +[\d.]+ +[\d.]+ +[\d.]+ +([\d.]+)x", base, re.M)]
    isa = find(r"kernels (.*)$", t).group(1)
    s = lambda ips: 1e4 / float(ips)
    return ("10,000 steps of one unit: `attention.self.query` 64×384 %.1f s with the bfloat16 tile product, %.1f s with "
            "the float sgemm product (%s×); `output.dense` 64×1536 %.1f s vs %.1f s (%s×); BERT-base shapes: tiles "
            "%.2f–%.2f× the float product (kernels %s)" % (
                s(q.group(2)), s(q.group(1)), q.group(3), s(o.group(2)), s(o.group(1)), o.group(3), min(r), max(r), isa))


def both_checkpoints(t, ncols):
    """The rows of a bench/*_job.sh table (model, ranks, ncols numbers) for all-MiniLM-L6-v2 and
    vit-mnist-tiny on 1 and 2 ranks: (bert 1, bert 2, vit 1, vit 2)."""
    rows = {(m[0], m[1]): m for m in re.findall(r"^(\S+) +([12])" + r" +([\d.]+)" * ncols + " ", t, re.M)}
    got = [rows.get((model, n)) for model in ("all-MiniLM-L6-v2", "vit-mnist-tiny") for n in ("1", "2")]
    if not all(got):
        raise Missing("incomplete table")
    return got


def r_ada_job():
    b1, b2, v1, v2 = both_checkpoints(log("adaround_job"), 2)
    j1, j2 = float(b1[3]), float(b2[3])
    return ("%.1f s (%.1f min) on 1 rank, %.1f s (%.1f min) on 2 (%.2f×, %.0f %% efficiency); vit-mnist-tiny %.1f s / "
            "%.1f s" % (j1, j1 / 60, j2, j2 / 60, j1 / j2, 100 * j1 / (2 * j2), float(v1[3]), float(v2[3])))


def r_ada_cmp():
    import csv
    from collections import defaultdict
    log("adaround_compare")
    d = os.path.join(out, "compare")
    err, seen = defaultdict(list), defaultdict(int)
    with open(os.path.join(d, "layers.csv"), newline="") as fh:
        for r in csv.DictReader(fh):
            k = (r["model"], r["bits"], r["layer"], r["method"])
            g = [0, 32, 64][min(seen[k], 2)]
            seen[k] += 1
            err[(r["model"], int(r["bits"]), g, r["method"])].append(float(r["rel_output_error"]))
    wins = total = 0
    for model in ("vit-mnist-tiny", "all-MiniLM-L6-v2"):
        for b in (4, 3):
            for g in (0, 32, 64):
                m = {me: sum(v) / len(v) for me in ("rtn", "gptq", "adaround") for v in [err.get((model, b, g, me))] if v}
                if len(m) == 3:
                    total += 1
                    wins += min(m, key=m.get) == "adaround"
    ev = {}
    with open(os.path.join(d, "eval", "results.csv"), newline="") as fh:
        for r in csv.DictReader(fh):
            if r["mode"] == "int":
                ev[(r["model"], int(r["bits"]), int(r["group_size"] or 0), r["method"])] = r
    trio = lambda model, b, g, col, f: " / ".join(f % float(ev[(model, b, g, me)][col]) for me in ("rtn", "gptq", "adaround"))
    return ("mean per-layer output error lowest for AdaRound at 3–4 bits in %d of %d settings; ViT INT3 per channel "
            "top-1 %s %% (RTN / GPTQ / AdaRound); MiniLM embedding cosine INT3 per channel %s, INT4 per channel %s, "
            "INT4 g32 %s" % (wins, total, trio("vit", 3, 0, "accuracy_pct", "%.2f"), trio("bert", 3, 0, "cosine_mean", "%.3f"),
                             trio("bert", 4, 0, "cosine_mean", "%.3f"), trio("bert", 4, 32, "cosine_mean", "%.3f")))


def r_gptq_job():
    b1, b2, v1, v2 = both_checkpoints(log("gptq_job"), 4)
    cal1, cal2 = float(b1[4]) + float(b1[5]), float(b2[4]) + float(b2[5])
    g = log("gptq_rss")
    m = find(r"calibrated phase: ([\d.]+) s, peak RSS ([\d.]+) MB on the busiest rank \(estimate ([\d.]+) MB", g)
    return ("calibrated phase %.2f s on 1 rank, %.2f s on 2 (%.0f %% efficiency; whole job %.0f %%, ViT %.0f %%); "
            "peak RSS %.0f MB on 1 rank (estimate %.0f MB, `qdist plan`)" % (
                cal1, cal2, 100 * cal1 / (2 * cal2), 100 * float(b1[3]) / (2 * float(b2[3])),
                100 * float(v1[3]) / (2 * float(v2[3])), float(m.group(2)), float(m.group(3))))


def r_gemm():
    t = log("bench_gemm")
    m = find(r"^ +geometric mean \| +1\.00x \|(.*)$", t)
    vals = re.findall(r"([\d.]+)x", m.group(1))
    isa = find(r"qdist kernels: (\S+);", t).group(1).rstrip(";")
    wrong = "WRONG" in t or re.search(r"\| 0 / [1-9]", t)
    # columns: i8, i8+q, w4a8, w4a8+q, w4a32 | dnnl s8, dnnl u8
    dn = re.search(r"\| 0 / (\d+) / (\d+) of (\d+)", t)
    dnote = ""
    if dn:
        dnote = "; oneDNN's int8 GEMM: wrong on almost every output of full-range data"
    return "%s× (geometric mean, %s kernels; with the activations' quantization %s×); 4-bit weights × int8 activations %s×%s" % (
        vals[0], isa, vals[1], vals[2], dnote)


def r_eval_vit():
    e = js("eval_vit")
    f, q = e["fp32"], e["quantized"]
    return ("top-1 %.2f %% vs %.2f %%, agreement %.2f %%, logits cosine %.5f; %.2f× the FP32 speed (forward time, "
            "batch 100, %s kernels); tensor data %.2f MB vs %.2f MB, file %.2f MB vs %.2f MB (%d images)" % (
                100 * q["accuracy"], 100 * f["accuracy"], 100 * e["agreement"], e["cosine"]["mean"],
                f["forward_seconds"] / q["forward_seconds"], e["kernels_isa"], q["tensor_bytes"] / 1e6,
                f["tensor_bytes"] / 1e6, q["file_bytes"] / 1e6, f["file_bytes"] / 1e6, e["samples"]))


def r_eval_minilm():
    b8, b8n, b8f, b4g, b4r = (js(k) for k in ("eval_b8", "eval_b8_noout", "eval_b8_fake", "eval_b4g", "eval_b4r"))
    p = lambda e, s: e[s]["latency_ms"]["p50"]
    sp = lambda e: p(e, "fp32") / p(e, "quantized")  # paired: FP32 and quantized passes of the same run
    f50 = sorted(p(e, "fp32") for e in (b8, b8n, b8f, b4g, b4r))[2]  # median of the five FP32 passes
    return ("INT8 RTN embedding cosine %.4f (%.4f all-int8, %.4f weights alone), INT4 g32 GPTQ %.4f (RTN %.4f); "
            "linear probe %.1f %% vs %.1f %%; batch 1, p50 per sentence (%s kernels): FP32 %.2f ms; INT8 %.2f ms, "
            "%.2f× its FP32 pass (without the outlier columns %.2f ms, %.2f×); INT4 g32 %.2f ms, %.2f× (%d sentences)" % (
                b8["cosine"]["mean"], b8n["cosine"]["mean"], b8f["cosine"]["mean"], b4g["cosine"]["mean"],
                b4r["cosine"]["mean"], 100 * b8["quantized"]["probe_accuracy"], 100 * b8["fp32"]["probe_accuracy"],
                b8["kernels_isa"], f50, p(b8, "quantized"), sp(b8), p(b8n, "quantized"), sp(b8n), p(b4g, "quantized"),
                sp(b4g), b8["samples"]))


def r_sparsegpt():
    t = log("sparsegpt_reference")
    m = find(r"worst: mask equal ([\d.]+)%, relerr off by ([\d.]+)%, error off by ([\d.]+)%.*SparseGPT lower than "
             r"magnitude/Wanda in (\d+) of (\d+), by ([\d.]+)x at least", t)
    return ('worst layer %s %% of the mask equal; output error within %s %%, reference "error" within %s %%; lower '
            "output error than magnitude and Wanda in %s of %s layer-settings, by %s× at least" % m.groups())


def r_gemm24():
    t = log("bench_gemm_24")
    g = find(r"geometric mean of the ratio over the BERT-base shapes \(M >= 128\): ([\d.]+)x", t).group(1)
    big = [float(x) for x in re.findall(r"^ +(?:128|512) +\d+ +\d+ +[\d.]+ +[\d.]+ +([\d.]+)x", t, re.M)]
    m1 = find(r"^ +1 +768 +768 +[\d.]+ +[\d.]+ +([\d.]+)x", t).group(1)
    same = "same bits" if all(l.rstrip().endswith("yes") for l in t.splitlines() if re.match(r"^ +\d+ +\d+ +\d+ ", l)) else "DIFFERENT bits"
    return "%s× (geometric mean, M = 128 and 512; %.2f–%.2f×), M = 1: %s×; %s" % (g, min(big), max(big), m1, same)


def r_gemm_u8_24():
    t = log("bench_gemm_u8_24")
    same = "same bits" if not re.search(r" NO$", t, re.M) else "DIFFERENT bits"
    parts = []
    if "no AVX-512 VNNI + VBMI here" not in t:
        g = dict(re.findall(r"^M = (\d+): geometric mean of 2:4/dense over the three shapes ([\d.]+)x", t, re.M))
        parts.append("AVX-512 VNNI + VBMI vs the selected table: M = 1: %s×, 8: %s×, 25 (a sentence): %s×, 800 (32 "
                     "sentences): %s×" % (g.get("1"), g.get("8"), g.get("25"), g.get("800")))
    for isa, name in (("avxvnni", "AVX-VNNI"), ("avx2", "AVX2")):
        g = dict(re.findall(r"^%s M = (\d+): geometric mean of 2:4/dense over the three shapes ([\d.]+)x" % isa, t, re.M))
        if g:
            parts.append("%s vs %s: M = 1: %s×, 8: %s×, 25: %s×, 800: %s×" % (
                name, name, g.get("1"), g.get("8"), g.get("25"), g.get("800")))
    if not parts:
        return "no vector 2:4 version on this CPU: the engine runs 2:4 Linears dense"
    return "; ".join(parts) + " (geometric means); " + same


def r_sparse_vit():
    e = js("eval_sparse")
    return "top-1 %.2f %% vs %.2f %% (%d images)" % (100 * e["quantized"]["accuracy"], 100 * e["fp32"]["accuracy"], e["samples"])


def r_plan():
    t = log("plan")
    r = find(r"whole checkpoint by rows, 8 ranks: \d+ pieces, balance max/mean ([\d.]+)", t).group(1)
    tt = find(r"whole checkpoint by tensor, 8 ranks: balance max/mean ([\d.]+)", t).group(1)
    l = find(r"layer sharding, 8 ranks: balance max/mean ([\d.]+)", t).group(1)
    e = find(r"encoder weights by tensor, 8 ranks: balance max/mean ([\d.]+)", t).group(1)
    return ("balance max/mean %.3f by rows (whole checkpoint), %.3f by whole tensors (the embedding table is one "
            "piece), %.2f by layer; encoder weights alone by tensor %.3f" % (float(r), float(tt), float(l), float(e)))


ROWS = [
    ("RTN parameters vs the GPTQ reference implementation (4/3-bit per channel, 2-bit g16; 18 real layers)", r_rtn_ref,
     "`build/tests/quant/test_quant_real`"),
    ("MSE clipping search vs min–max, per-channel, all 37 2-D weights of vit-mnist-tiny", r_mse, "same"),
    ("GPTQ vs the reference implementation on the 18 real layers × 5 settings (4-bit, 4-bit g32 act-order static "
     "groups, 3-bit act-order, 8-bit sym, 2-bit g16)", r_gptq_ref, "`build/tests/gptq/test_gptq_reference`"),
    ("GPTQ time per layer, 4-bit per channel, one thread, BERT-base shapes", r_gptq_time,
     "`OPENBLAS_NUM_THREADS=1 build/bench/bench_gptq`"),
    ("AdaRound vs RTN (same MSE-searched scales), relative output error through real calibration Hessians, every "
     "encoder Linear of both checkpoints (72), 4 and 3 bits per channel, 1,500 steps (BERT: the first 64 rows of each "
     "layer)", r_adaround_real, "`build/tests/adaround/test_adaround_real`"),
    ("`mpirun -n 4 qdist quantize` vit-mnist-tiny, 8-bit per channel", r_quickstart, "`deploy/quickstart.sh`"),
    ("files written with 1, 2, 3, 4, 8 ranks", lambda: identical(["job_determinism"], "identical (`h5diff --exclude-path /run`)"),
     "`ctest -R job_determinism`"),
    ("a rank failing after K tensors, and SIGTERM (exit 3), then `--resume` on 2 and 4 ranks",
     lambda: identical(["job_resume"], "identical to an uninterrupted run"), "`ctest -R job_resume`"),
    ("`qdist export` of an 8-bit model, F32 and F16",
     lambda: identical(["job_determinism"], "every tensor within one quantization step of the source; config.json copied"),
     "`ctest -R job_determinism`"),
    ("RTN throughput, generated BERT-base shape (110M params)", r_rtn_tp, "`bench/rtn_throughput.sh build 2`"),
    ("ViT forward pass vs the float64 reference (16 MNIST images)", r_vit_fwd,
     "`build/tests/model/test_vit_forward`, `test_vit_mnist`"),
    ("BERT forward pass (all-MiniLM-L6-v2) vs Hugging Face transformers in float64, at real tokens", r_bert_fwd,
     "`build/tests/model/test_bert_forward`"),
    ("WordPiece tokenizer vs the reference tokenization of SST-2 dev", r_tok, "`build/tests/model/test_tokenizer`"),
    ("FP32 forward throughput, one thread, against PyTorch 2.15 in the same run", r_forward,
     "`OPENBLAS_NUM_THREADS=1 build/bench/bench_forward`"),
    ("calibration statistics (exact integer sums) on 1, 2, 4 ranks, data-parallel and pipelined", r_calib,
     "`qdist calibrate`, `ctest -R calib`"),
    ("GPTQ vs RTN per layer (relative output error through real calibration Hessians), every Linear of both "
     "checkpoints, 4 and 3 bits", r_gptq_layers, "`build/tests/gptq/test_gptq_layers`"),
    ("`qdist quantize --method gptq` / `adaround` (Hessian and `--batch` forms), ViT, 1, 2 and 4 ranks, "
     "`--calib-mode data` and `pipeline`", lambda: identical(["gptq_job"], "identical files (`h5diff --exclude-path /run`)"),
     "`ctest -R gptq_job`"),
    ("AdaRound step, one 64-row unit of real all-MiniLM-L6-v2 layers, one thread", r_bench_ada, "`build/bench/bench_adaround`"),
    ("AdaRound, whole all-MiniLM-L6-v2 at the defaults (4-bit per channel, 10,000 steps per layer, 128 SST-2 samples)",
     r_ada_job, "`sh bench/adaround_job.sh build/qdist`"),
    ("RTN / GPTQ / AdaRound at the defaults, both checkpoints, 4/3 bits × channel/g32/g64 (layer errors: the first 64 rows of each layer)", r_ada_cmp,
     "`BITS=4,3 LAYER_ARGS=\"--rows 64\" SCHEMES=\"int4 int4-g32 int3\" bench/adaround_compare.sh`"),
    ("GPTQ 4-bit g128 of all-MiniLM-L6-v2, 128 SST-2 samples, data-mode calibration", r_gptq_job,
     "`sh bench/gptq_job.sh build/qdist 2`"),
    ("int8 GEMM (exact) vs OpenBLAS sgemm, BERT-base shapes, one thread", r_gemm, "`build/bench/bench_gemm`"),
    ("`qdist eval`, ViT INT8 RTN vs FP32, all 10,000 MNIST test images", r_eval_vit,
     "`qdist eval --model vit-mnist-tiny --quantized q8.h5 --data t10k-images-idx3-ubyte.gz --batch 100`"),
    ("`qdist eval`, all-MiniLM-L6-v2 vs FP32, 872 SST-2 sentences, int8 activations with outlier columns in float",
     r_eval_minilm, "`qdist eval --model all-MiniLM-L6-v2 --quantized q8.h5 --data dev.tsv`; all schemes: `bench/eval_all.sh`"),
    ("SparseGPT vs the IST-DASLab sparsegpt reference, 18 real layers × 5 settings (50 %, 2:4, 4:8, 50 % + 4-bit, "
     "2:4 + 8-bit)", r_sparsegpt, "`build/tests/sparse/test_sparsegpt_reference`"),
    ("2:4 sparse int8 GEMM vs the dense int8 GEMM, same weights, one thread, BERT-base shapes", r_gemm24,
     "`build/bench/bench_gemm_24`"),
    ("the engine's 2:4 int8 GEMM (compact weights) vs the dense int8 GEMM of the same kernel table, same weights, "
     "one thread, BERT-base shapes", r_gemm_u8_24, "`build/bench/bench_gemm_u8_24`"),
    ("ViT 2:4 SparseGPT + GPTQ INT8 vs FP32, all 10,000 MNIST test images", r_sparse_vit,
     "`qdist quantize --method gptq --bits 8 --sparsity 2:4 --calib t10k…` then `qdist eval`"),
    ("planner, BERT-base shape over 8 ranks", r_plan, "`build/tests/job/test_plan`"),
]

print(open(os.path.join(out, "machine.txt")).read().rstrip())
print()
print("| what | figure | command |")
print("|---|---|---|")
for what, fn, cmd in ROWS:
    try:
        fig = fn()
    except Missing as e:
        fig = "NOT MEASURED: %s" % e
    except (KeyError, ValueError, IndexError, ZeroDivisionError, json.JSONDecodeError) as e:
        fig = "NOT MEASURED: unexpected output (%s: %s)" % (type(e).__name__, e)
    print("| %s | %s | %s |" % (what, fig.replace("|", "\\|"), cmd))
EOF
