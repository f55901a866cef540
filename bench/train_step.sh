#!/bin/sh
# bench/train_step.sh — a training step of qdist (bench_train_step) against PyTorch CPU
# (bench/train_step_torch.py) with the same model, inputs, shapes and one thread each; ROUNDS
# alternating runs of each, and the ratio of the medians (PyTorch seconds / qdist seconds: above
# 1 means qdist is faster).
#
#   sh bench/train_step.sh [BUILD_DIR]        (ROUNDS=3, STEPS=10 per run; CASES below)
#
# Needs the project venv (PY=$(deploy/pyenv.sh)) and, for bert, deploy/fetch-models.sh.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
PY=${PY:-$("$here/deploy/pyenv.sh")}
ROUNDS=${ROUNDS:-3}
STEPS=${STEPS:-10}
CASES=${CASES:-"vit:32:50 bert:8:64 bert:32:64"}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
printf '%-6s %6s %6s %12s %12s %8s\n' model batch tokens "qdist s" "torch s" ratio
for c in $CASES; do
  m=${c%%:*} r=${c#*:} b=${r%%:*} t=${r#*:}
  q="" p=""
  i=0
  while [ $i -lt "$ROUNDS" ]; do
    q="$q $("$build/bench/bench_train_step" "$m" --batch "$b" --seq "$t" --steps "$STEPS" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["median_s"])')"
    p="$p $("$PY" "$here/bench/train_step_torch.py" "$m" --batch "$b" --seq "$t" --steps "$STEPS" 2>/dev/null |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["median_s"])')"
    i=$((i + 1))
  done
  python3 - "$m" "$b" "$t" "$q" "$p" <<'EOF'
import statistics, sys
m, b, t, q, p = sys.argv[1:]
q = statistics.median(map(float, q.split())); p = statistics.median(map(float, p.split()))
print(f"{m:<6} {b:>6} {t:>6} {q:12.4f} {p:12.4f} {p / q:7.2f}x")
EOF
done
