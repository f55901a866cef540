#!/bin/sh
# Every architecture through the command line, on the tiny reference models of
# tests/reference/archs/ (no checkpoint to fetch):
#   - qdist forward on the reference inputs matches transformers' float64 outputs within 1e-5
#     relative (every block, pooled output, embedding, logits);
#   - qdist quantize with RTN (8-bit), GPTQ (4-bit g16, calibrated on the reference inputs given
#     as a safetensors file) and AdaRound (a few steps) writes a file that qdist forward runs with
#     integer kernels, close to FP32; for six of them also GPTQ on 1 rank (the same file as on 2),
#     pipeline calibration mode, SparseGPT 2:4 + GPTQ and Wanda 50 % (ALBERT: its shared weights quantized once, 12
#     tensors for 4 blocks);
#   - wrong inputs and unknown architectures get errors that name them.
set -eu
: "${QDIST:?}" "${QD_SOURCE_DIR:?}"
A="$QD_SOURCE_DIR/tests/reference/archs"
T=$(mktemp -d /tmp/qd-archs-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
# the largest relative error of a forward --json run
worst() { /usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["relative_error"]; print(max(d.values()))' "$1"; }
below() { /usr/bin/python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)' "$1" "$2"; }

# the models that also go through 1-rank GPTQ, pipeline mode, SparseGPT and Wanda (one per position
# scheme / attention bias / sharing / prefix layout)
EXTRA="albert-seq mpnet roberta-seq beit-cls dinov2-reg clip-vision"
for dir in "$A"/*/; do
  m=$(basename "$dir")
  in="$dir/reference.safetensors"
  "$QDIST" forward --model "$dir" --inputs "$in" --hidden --reference "$in" --tol 1e-5 --json > "$T/fp.json" ||
    fail "$m: FP32 forward differs from transformers"
  e=$(worst "$T/fp.json")
  # RTN 8-bit per channel
  "$QDIST" quantize --model "$dir" --out "$T/$m-rtn.h5" --quiet
  "$QDIST" forward --model "$dir" --inputs "$in" --quantized "$T/$m-rtn.h5" --reference "$in" --json > "$T/q8.json"
  e8=$(worst "$T/q8.json")
  below "$e8" 0.03 || fail "$m: INT8 RTN outputs off by $e8"
  # GPTQ 4-bit g16 on 2 ranks, sequential
  mpiexec -n 2 --oversubscribe "$QDIST" quantize --model "$dir" --out "$T/$m-gptq2.h5" --method gptq --bits 4 \
    --group-size 16 --calib "$in" --quiet
  "$QDIST" forward --model "$dir" --inputs "$in" --quantized "$T/$m-gptq2.h5" --reference "$in" --json > "$T/q4.json"
  e4=$(worst "$T/q4.json")
  below "$e4" 0.15 || fail "$m: INT4 GPTQ outputs off by $e4"
  case " $EXTRA " in *" $m "*)
    # the same on 1 rank (identical file) and in pipeline mode; SparseGPT 2:4 + GPTQ in one pass; Wanda
    mpiexec -n 1 "$QDIST" quantize --model "$dir" --out "$T/$m-gptq1.h5" --method gptq --bits 4 \
      --group-size 16 --calib "$in" --quiet
    h5diff -q --exclude-path /run "$T/$m-gptq1.h5" "$T/$m-gptq2.h5" || fail "$m: GPTQ differs between 1 and 2 ranks"
    mpiexec -n 2 --oversubscribe "$QDIST" quantize --model "$dir" --out "$T/$m-gptqfp.h5" --method gptq --bits 4 \
      --group-size 16 --calib "$in" --calib-mode pipeline --quiet
    mpiexec -n 2 --oversubscribe "$QDIST" quantize --model "$dir" --out "$T/$m-sp.h5" --method gptq --bits 4 \
      --calib "$in" --sparsity 2:4 --quiet
    mpiexec -n 2 --oversubscribe "$QDIST" quantize --model "$dir" --out "$T/$m-wanda.h5" --method gptq \
      --calib "$in" --sparsity 0.5 --prune wanda --prune-only --quiet
    for f in gptqfp sp wanda; do
      "$QDIST" forward --model "$dir" --inputs "$in" --quantized "$T/$m-$f.h5" --json > /dev/null ||
        fail "$m: the $f file does not run"
    done ;;
  esac
  # AdaRound, a few steps
  mpiexec -n 2 --oversubscribe "$QDIST" quantize --model "$dir" --out "$T/$m-ada.h5" --method adaround --bits 4 \
    --calib "$in" --iters 40 --quiet
  "$QDIST" forward --model "$dir" --inputs "$in" --quantized "$T/$m-ada.h5" --json > /dev/null ||
    fail "$m: the AdaRound file does not run"
  echo "ok: $m: FP32 vs transformers $e, INT8 RTN $e8, INT4 GPTQ $e4 (max relative error of the outputs)"
  rm -f "$T"/*.h5
done

# ALBERT: 4 blocks over 2 shared layer sets: 12 quantized tensors, not 24
"$QDIST" quantize --model "$A/albert-seq" --out "$T/albert.h5" --quiet
"$QDIST" inspect "$T/albert.h5" > "$T/inspect.txt"
grep -q "^43 tensors, 12 quantized" "$T/inspect.txt" || { cat "$T/inspect.txt"; fail "ALBERT: not 12 quantized tensors"; }
echo "ok: ALBERT's shared weights quantized once (12 tensors)"

# errors name what is wrong
if "$QDIST" forward --model "$A/mpnet" --inputs "$A/beit-cls/reference.safetensors" > "$T/err" 2>&1; then
  fail "pixels accepted by a text model"
fi
grep -q "input_ids" "$T/err" || { cat "$T/err"; fail "wrong input kind: unclear error"; }
mkdir "$T/qa"
sed 's/"AlbertForSequenceClassification"/"AlbertForQuestionAnswering"/' "$A/albert-seq/config.json" > "$T/qa/config.json"
ln -s "$A/albert-seq/model.safetensors" "$T/qa/model.safetensors"
if "$QDIST" forward --model "$T/qa" --inputs "$A/albert-seq/reference.safetensors" > "$T/err" 2>&1; then
  fail "unknown architecture accepted"
fi
grep -q "AlbertForQuestionAnswering" "$T/err" || { cat "$T/err"; fail "unknown architecture: unclear error"; }
echo "ok: errors"
