#!/bin/sh
# qdist plan's time model end to end: run records from job logs (--record), a fit of them (--fit
# --model-out), the fitted model against the runs (--time-model) and the prediction table of a
# calibrated plan; bad logs and records are errors naming the file. The fit's arithmetic is
# tests/shard/test_cost.c's; this checks the command's plumbing.
#   plan_time.sh QDIST   (QD_MODELS_DIR: the checkpoints)
set -u
QDIST=${1:?qdist}
M=$QD_MODELS_DIR/vit-mnist-tiny
O="--method gptq --bits 4 --calib $QD_MODELS_DIR/data/mnist/t10k-images-idx3-ubyte.gz --nsamples 4"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
# logs of four runs whose phases follow known seconds (their summary lines only)
for n in 1 2 4 8; do
  cat > "$T/run$n.log" <<LOG
calibrated phases (busiest rank, s): read 0.$n forward $((40 / n + 2)).00 reduce $((n - 1)).50 quantize $((30 / n + 1)).00 gather 0.$n; statistics reduced 1.0 MB per rank
  time         $((70 / n + n + 5)).00 s on $n rank$( [ $n = 1 ] || echo s): calibrated phase 1.00 s (calibration and gptq), writing 2.00 s
  file         123456 bytes (tensor data + HDF5 structure and attributes)
LOG
  # shellcheck disable=SC2086
  "$QDIST" plan --model "$M" $O --cores 2 --record "$T/run$n.log" > "$T/r$n.json" || bad "--record run$n.log"
  grep -q "\"ranks\":$n,\"nodes\":1,\"cores\":2," "$T/r$n.json" || bad "record $n: $(cat "$T/r$n.json")"
  grep -q '"write":2' "$T/r$n.json" && grep -q '"out_bytes":123456' "$T/r$n.json" || bad "record $n: phases/file"
done
# the calibrated tensors' streamed writes (the phases' `write`) count in the write phase
sed 's/gather 0.1;/gather 0.1 write 1.50;/' "$T/run1.log" > "$T/stream.log"
# shellcheck disable=SC2086
"$QDIST" plan --model "$M" $O --cores 2 --record "$T/stream.log" > "$T/stream.json" || bad "--record stream.log"
grep -q '"gather":0.1,"write":3.5}' "$T/stream.json" || bad "streamed writes: $(cat "$T/stream.json")"
cat "$T"/r*.json > "$T/all.jsonl"
"$QDIST" plan --fit "$T/all.jsonl" --model-out "$T/model.json" > "$T/fit.txt" || bad "--fit"
[ "$(grep -cE '^[0-3] +[1248] +1 ' "$T/fit.txt")" = 4 ] || { bad "--fit: not 4 runs"; cat "$T/fit.txt"; }
grep -q '"forward_s_per_unit"' "$T/model.json" || bad "--model-out: $(cat "$T/model.json")"
"$QDIST" plan --fit "$T/all.jsonl" --time-model "$T/model.json" > "$T/check.txt" || bad "--fit --time-model"
grep -q "time model $T/model.json against 4 runs" "$T/check.txt" || bad "--time-model: $(head -2 "$T/check.txt")"
# shellcheck disable=SC2086
"$QDIST" plan --ranks 3 --model "$M" $O --time-model "$T/model.json" --nodes 2 --net-gbps 1 > "$T/plan.txt" \
  || bad "plan with the time model"
grep -q "time model ($T/model.json; 2 nodes" "$T/plan.txt" && [ "$(grep -cE '^ +[0-9]+ +[12] +[0-9.]+ ' "$T/plan.txt")" = 8 ] \
  && grep -q "<- --ranks" "$T/plan.txt" || { bad "plan's time table"; cat "$T/plan.txt"; }
# errors name the file
"$QDIST" plan --fit "$T/nothere.jsonl" 2> "$T/err"
[ $? = 1 ] && grep -q "nothere.jsonl" "$T/err" || bad "--fit of a missing file: $(cat "$T/err")"
echo '{"ranks": 2}' > "$T/bad.jsonl"
"$QDIST" plan --fit "$T/bad.jsonl" 2> "$T/err"
[ $? = 1 ] && grep -q 'bad.jsonl:1: record: "nodes"' "$T/err" || bad "--fit of a bad record: $(cat "$T/err")"
# shellcheck disable=SC2086
"$QDIST" plan --model "$M" $O --record "$T/model.json" 2> "$T/err"
[ $? = 1 ] && grep -q "not the log of a calibrated" "$T/err" || bad "--record of a non-log: $(cat "$T/err")"
[ $fail = 0 ] && echo "plan_time: all ok"
exit $fail
