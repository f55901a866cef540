#!/bin/sh
# qdist calibrate on the real BERT checkpoint: the per-group statistics printed with --json are
# the same on 1 rank, 2 ranks data-parallel and 2 and 3 ranks pipelined (also by quantize's old
# name of the mode, fp); bad inputs give a clear
# error and exit code. Skipped (77) without the checkpoint.
set -eu
: "${QDIST:?}" "${QD_MODELS_DIR:?}" "${QD_SOURCE_DIR:?}"
BERT=$(sh "$QD_SOURCE_DIR/tests/reference/bert_dir.sh") || exit 77
DATA="$QD_MODELS_DIR/data/sst2/dev.tsv"
T=$(mktemp -d /tmp/qd-cal-XXXXXX)
trap 'rm -rf "$T"' EXIT
run() { n=$1; shift; mpiexec -n "$n" --oversubscribe "$QDIST" calibrate --model "$BERT" --calib "$DATA" \
          --nsamples 24 --seqlen 48 --microbatch 5 --json "$@"; }
run 1 > "$T/one.json"
run 2 --calib-mode data > "$T/dp2.json"
run 2 --calib-mode pipeline > "$T/pp2.json"
run 3 --calib-mode pipeline > "$T/pp3.json"
run 2 --calib-mode fp > "$T/fp2.json"          # quantize's old name of pipeline, an alias
/usr/bin/python3 - "$T" <<'PY'
import json, sys
t = sys.argv[1]
one = json.load(open(f"{t}/one.json"))
assert one["samples"] == 24 and one["tokens_per_sample"] == 48, one
assert len(one["groups"]) == 24 and all(g["tokens"] == one["real_tokens"] for g in one["groups"])
assert all(g["mean_diag_h"] > 0 and g["max_abs"] > 0 for g in one["groups"])
assert json.load(open(f"{t}/pp2.json"))["mode"] == "pipeline" == json.load(open(f"{t}/fp2.json"))["mode"]
for name in ("dp2", "pp2", "pp3", "fp2"):
    other = json.load(open(f"{t}/{name}.json"))
    for a, b in zip(one["groups"], other["groups"]):
        assert a == b, (name, a, b)
    print(f"ok: 1 rank == {name}: {len(one['groups'])} groups, {one['real_tokens']} real tokens")
PY
# a missing calibration file names the file; a folder is refused for a text model
if "$QDIST" calibrate --model "$BERT" --calib "$T/none.txt" > "$T/err" 2>&1; then echo "missing file accepted"; exit 1; fi
grep -q "none.txt" "$T/err" || { cat "$T/err"; exit 1; }
if "$QDIST" calibrate --model "$BERT" --calib "$T" > "$T/err" 2>&1; then echo "folder accepted"; exit 1; fi
grep -q "text or TSV" "$T/err" || { cat "$T/err"; exit 1; }
# an empty file
: > "$T/empty.txt"
if "$QDIST" calibrate --model "$BERT" --calib "$T/empty.txt" > "$T/err" 2>&1; then echo "empty file accepted"; exit 1; fi
grep -q "no samples" "$T/err" || { cat "$T/err"; exit 1; }
# an unknown mode names the accepted ones
if "$QDIST" calibrate --model "$BERT" --calib "$DATA" --calib-mode later > "$T/err" 2>&1; then echo "mode 'later' accepted"; exit 1; fi
grep -q "data or pipeline" "$T/err" || { cat "$T/err"; exit 1; }
echo "ok: errors"
