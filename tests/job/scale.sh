#!/bin/sh
# Calibrated jobs on generated sharded bf16 checkpoints (bench/gen_checkpoint, BERT and ViT
# shapes, several shards and an index), whose ranks hold one block and their own rows: GPTQ
# writes the same file at 1, 2 and 4 ranks (data mode, row and tensor sharding) and in pipeline
# mode with act-order at 1 and 3 ranks; the statistics are sharded: at 2, 4 and 8 ranks each of
# the 8 input groups' Hessians (2 blocks x 4 inputs) is formed (and factorized) on exactly one
# rank, at 8 ranks too, where 5 ranks share the 1024-input Linear's rows and its first rank sends
# the others the prepared factor; at 4 and 8 ranks only one rank holds that input's sums; a run failed on one rank half way and resumed gives the
# same file, and so does a run killed after its first calibrated block (1, 2, 4 ranks), which
# reads that block back instead of calibrating it again; a job whose estimate exceeds --mem-per-rank stops before calibrating, naming the
# estimate and the options, on every rank.
#   sh tests/job/scale.sh GEN_CHECKPOINT
set -u
: "${QDIST:?}" "${QD_MODELS_DIR:?}"
GEN=${1:?gen_checkpoint}
T=$(mktemp -d /tmp/qd-scale-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
"$GEN" --shape bert --layers 2 --hidden 256 --heads 4 --shard-mb 2 "$T/bert" > /dev/null 2>&1 || { echo "gen_checkpoint failed"; exit 1; }
cp "$QD_MODELS_DIR/bert-uncased/vocab.txt" "$T/bert/"
"$GEN" --shape vit --layers 2 --hidden 128 --intermediate 512 --heads 4 --shard-mb 1 "$T/vit" > /dev/null 2>&1 || exit 1
[ -f "$T/bert/model.safetensors.index.json" ] && [ -f "$T/bert/model-00004-of-00004.safetensors" ] \
  || { echo "no sharded checkpoint with an index"; fail=1; }
TXT="--calib $QD_MODELS_DIR/data/sst2/dev.tsv --nsamples 12 --seqlen 24"
IMG="--calib $QD_MODELS_DIR/data/mnist/t10k-images-idx3-ubyte.gz --nsamples 4"
Q="--method gptq --bits 4 --asym --group-size 128"
same() { # A B what
  if h5diff -q --exclude-path /run "$1" "$2" > /dev/null 2>&1; then echo "ok: $3"; else echo "DIFFERENT: $3"; fail=1; fi
}
run() { # N OUT ARGS...
  n=$1 out=$2
  shift 2
  timeout 240 mpiexec -n "$n" "$QDIST" quantize --out "$out" --quiet "$@" > "$T/log" 2>&1 \
    || { echo "FAILED: $n ranks $*"; cat "$T/log"; fail=1; }
}
# shellcheck disable=SC2086
{
  run 1 "$T/b1.h5" --model "$T/bert" $Q $TXT
  run 2 "$T/b2.h5" --model "$T/bert" $Q $TXT --shard tensor
  run 4 "$T/b4.h5" --model "$T/bert" $Q $TXT --shard rows --act-order
  run 1 "$T/b1a.h5" --model "$T/bert" $Q $TXT --act-order
  same "$T/b1a.h5" "$T/b4.h5" "bert gptq sequential act-order: 1 rank == 4 ranks (row sharding)"
  # the statistics' shards, from the calibrated phase's per-rank line
  for n in 2 4 8; do
    timeout 240 mpiexec --oversubscribe -n $n "$QDIST" quantize --out "$T/s$n.h5" --model "$T/bert" $Q $TXT > "$T/slog" 2>&1 \
      || { echo "FAILED: $n ranks (statistics)"; cat "$T/slog"; fail=1; }
    line=$(grep "calibration statistics per rank" "$T/slog")
    echo "$n ranks: $line"
    hs=$(echo "$line" | sed 's/.*Hessians formed \([0-9 ]*\);.*/\1/')
    held=$(echo "$line" | sed 's/.*held at most \([0-9. ]*\) MB/\1/')
    # each group's H formed once over all ranks (8 in all), no rank forms them all
    echo "$hs" | awk -v n=$n '{s = 0; for (i = 1; i <= NF; i++) { s += $i; if ($i >= 8) bad = 1 }
      exit !(NF == n && s == 8 && !bad)}' || { echo "statistics not sharded at $n ranks: $line"; fail=1; }
    # the sums of the 1024-input group: 4.2 MB; at 4 and 8 ranks only one rank holds them
    [ $n -ge 4 ] && { echo "$held" | awk -v n=$n '{b = 0; for (i = 1; i <= NF; i++) if ($i >= 4) b++; exit !(NF == n && b == 1)}' \
      || { echo "more than one rank held the 1024-input sums at $n ranks: $line"; fail=1; }; }
    same "$T/b1.h5" "$T/s$n.h5" "bert gptq sequential: 1 rank == $n ranks (statistics sharded)"
  done
  same "$T/b1.h5" "$T/b2.h5" "bert gptq sequential: 1 rank == 2 ranks (tensor sharding)"
  run 1 "$T/f1.h5" --model "$T/bert" $Q $TXT --calib-mode pipeline --act-order
  run 3 "$T/f3.h5" --model "$T/bert" $Q $TXT --calib-mode pipeline --act-order
  same "$T/f1.h5" "$T/f3.h5" "bert gptq pipeline act-order: 1 rank == 3 ranks"
  run 1 "$T/v1.h5" --model "$T/vit" $Q $IMG
  run 2 "$T/v2.h5" --model "$T/vit" $Q $IMG
  same "$T/v1.h5" "$T/v2.h5" "vit gptq sequential: 1 rank == 2 ranks"
  # not vacuous: another scheme differs
  run 1 "$T/b3bit.h5" --model "$T/bert" --method gptq --bits 3 $TXT
  if h5diff -q --exclude-path /run "$T/b1.h5" "$T/b3bit.h5" > /dev/null 2>&1; then
    echo "h5diff found no difference between 4 and 3 bits"; fail=1
  fi
  # a failure on the last rank after 3 of its tensors, then --resume
  QD_CHECKPOINT_SECONDS=0 QD_FAULT_RANK=1 QD_FAULT_AFTER=3 timeout 240 mpiexec -n 2 "$QDIST" quantize \
    --model "$T/bert" --out "$T/r2.h5" --quiet $Q $TXT > "$T/log" 2>&1
  [ -f "$T/r2.h5.partial" ] || { echo "no partial file after the injected failure"; fail=1; }
  run 2 "$T/r2.h5" --model "$T/bert" $Q $TXT --resume
  same "$T/b1.h5" "$T/r2.h5" "bert gptq: failed at 2 ranks and resumed == 1 rank"
  # killed (SIGKILL on the last rank) once the first of the 2 blocks is in the file, then
  # --resume: that block is read back from the file, not calibrated again, and the file is the
  # uninterrupted one
  for n in 1 2 4; do
    QD_FAULT_RANK=$((n - 1)) QD_FAULT_KILL_BLOCKS=1 timeout 240 mpiexec -n $n "$QDIST" quantize --model "$T/bert" \
      --out "$T/k$n.h5" --quiet $Q $TXT > "$T/log" 2>&1
    { [ -f "$T/k$n.h5.partial" ] && [ ! -f "$T/k$n.h5" ]; } || { echo "no partial file after the kill at $n ranks"; fail=1; }
    timeout 240 mpiexec -n $n "$QDIST" quantize --model "$T/bert" --out "$T/k$n.h5" $Q $TXT --resume > "$T/log" 2>&1 \
      || { echo "FAILED: resume at $n ranks"; cat "$T/log"; fail=1; }
    { grep -q "resuming .*: 6 of .* tensors already complete" "$T/log" \
      && grep -q "block 1/2: read back from the resumed file" "$T/log" \
      && grep -q "block 2/2: 6 tensors, calibration" "$T/log"; } \
      || { echo "the resumed run at $n ranks did not read block 1 back and calibrate block 2:"; cat "$T/log"; fail=1; }
    same "$T/b1.h5" "$T/k$n.h5" "bert gptq: killed after block 1 at $n ranks and resumed == uninterrupted"
  done
  # the memory check: stops every rank before calibrating, with the estimate and the options
  timeout 120 mpiexec -n 2 "$QDIST" quantize --model "$T/bert" --out "$T/m.h5" --quiet $Q $TXT \
    --mem-per-rank 20M > "$T/log" 2>&1
  rc=$?
}
if [ "$rc" != 1 ] || ! grep -q "needs about .* MB per rank" "$T/log" || ! grep -q "ranks on more hosts" "$T/log" \
  || ! grep -q -- "--calib-mode pipeline" "$T/log" || ! grep -q -- "--mem-per-rank 21 MB" "$T/log" || [ -e "$T/m.h5" ]; then
  echo "the memory check did not stop the job as it should (exit $rc):"
  cat "$T/log"
  fail=1
else
  echo "ok: --mem-per-rank 20M stops the job before calibrating (exit 1, estimate and options named)"
fi
[ $fail = 0 ] && echo "scale: all ok"
exit $fail
