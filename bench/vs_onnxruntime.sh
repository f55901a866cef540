#!/usr/bin/env bash
# bench/vs_onnxruntime.sh — qdist's inference runtime against ONNX Runtime, side by side in one run:
# the same checkpoints, the same inputs, the same thread counts, the same machine, measurements of
# both repeated in alternation, medians reported.
#
#   bench/vs_onnxruntime.sh [OUTDIR]        (default: out/vs_onnxruntime in the source tree)
#
# Models (MODELS, default "minilm vit-tiny bert-base vit-b16"):
#   minilm     all-MiniLM-L6-v2 (deploy/fetch-models.sh; tests/reference/bert_dir.sh finds it) on the
#              872 SST-2 dev sentences: the mask-weighted mean of the last hidden state; accuracy =
#              the linear probe of qdist eval (ridge on the FP32 embeddings of the first half)
#   vit-tiny   ../shared/models/vit-mnist-tiny on the first N_VITTINY (2000) MNIST test images:
#              logits, top-1 accuracy
#   bert-base  a BERT-base shape with generated weights (bench/gen_checkpoint, the bert-uncased
#              vocabulary) on the first N_BERTBASE (200) SST-2 sentences: latency only
#   vit-b16    a ViT-B/16 shape with generated weights (gen_checkpoint --vit) on N_VITB16 (64)
#              generated 224x224 RGB images: latency only
# The peer (bench/ort_peer.py, in the pinned venv of deploy/pyenv.sh): the FP32 model exported
# with torch to ONNX (BERT: transformers' BertModel with the mean pooling in the graph; ViT:
# bench/forward_torch.py's ViT), quantize_dynamic INT8 per channel (MatMulInteger with dynamic
# uint8 activations), MatMulNBits 4-bit blocks of 32 (float activations; and accuracy_level 4:
# int8 activations); one session per run with THREADS intra-op threads, every graph optimization.
# qdist: `qdist eval` (FP32 and quantized engine passes in one process) with --threads, on files
# from `qdist quantize`: INT8 RTN per channel (with outlier columns in float, and with every column
# int8), INT8 SmoothQuant (--smooth, every column int8), INT8 with INT8 embeddings, INT4 g32
# (GPTQ on the real models, RTN on the generated ones), INT4 with INT4 embeddings.
# Batches (BATCHES, default "1 32"): BERT batches are padded to their longest sentence for ORT (a
# rectangle); qdist runs every sentence at its own length. Latency = wall time of one call /
# samples in it; p50/p95 over the calls; throughput = samples / total time of the calls; CPU ms =
# CPU time of the process during the calls / samples (every thread: the work, where wall time
# also counts whatever else runs on the machine). Warm-up: 3 untimed calls on each side.
# Rounds (ROUNDS, default 3): every configuration runs once per round, qdist and ORT alternating;
# tables show the median over rounds. Cosine: each runtime's outputs against its own FP32 outputs
# on the same inputs (mean, min over samples), from the first round at batch 1.
#
# Writes OUTDIR/json/*.json (every run), OUTDIR/results.csv and OUTDIR/results.md (one table per
# model and thread count, with the ratio qdist/ORT of p50 latency per row: below 1, qdist faster,
# and the load average of the machine at the start of the runs beside each table).
# Partial runs and resuming: a run whose JSON exists in OUTDIR is not repeated (FORCE=1 repeats
# it), OUTDIR/manifest.tsv is appended to, and the tables are built from every run recorded there.
# So subsets (MODELS, THREADS, BATCHES, ROUNDS) add to the same results, and a run stopped midway
# goes on where it stopped when the same command is given again; e.g. the 2-thread rows alone:
#   MODELS="minilm vit-tiny" THREADS=2 ROUNDS=3 bench/vs_onnxruntime.sh out/vs_onnxruntime
# Caches (QD_CACHE, default ~/.cache/qdist): bench-ort/<model>/*.onnx (exported once),
# bench-gen/<model>/ (generated checkpoints and images).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out=${1:-$root/out/vs_onnxruntime}
qdist=${QDIST:-$root/build/qdist}
gen=${GEN_CHECKPOINT:-$(dirname "$qdist")/bench/gen_checkpoint}
models_dir=${QD_MODELS_DIR:-$root/../shared/models}
cache=${QD_CACHE:-$HOME/.cache/qdist}
MODELS=${MODELS:-minilm vit-tiny bert-base vit-b16}
THREADS=${THREADS:-1 2}
BATCHES=${BATCHES:-1 32}
ROUNDS=${ROUNDS:-3}
N_MINILM=${N_MINILM:-872}
N_VITTINY=${N_VITTINY:-2000}
N_BERTBASE=${N_BERTBASE:-200}
N_VITB16=${N_VITB16:-64}
export OPENBLAS_NUM_THREADS=1
mkdir -p "$cache/bench-gen" "$cache/bench-ort"

[ -x "$qdist" ] || { echo "vs_onnxruntime: no qdist binary at $qdist (set QDIST, or build it)" >&2; exit 2; }
PY=$("$root/deploy/pyenv.sh") || { echo "vs_onnxruntime: no Python venv with onnxruntime (deploy/pyenv.sh)" >&2; exit 2; }
mkdir -p "$out/json" "$out/h5"
manifest=$out/manifest.tsv
touch "$manifest"
FORCE=${FORCE:-0}
load1() { cut -d' ' -f1 /proc/loadavg; }
# done JSON: whether a run can be skipped (its JSON complete from an earlier invocation)
done_json() { [ "$FORCE" != 1 ] && [ -s "$1" ]; }
# record KEY T B R SIDE ID LABEL JSON LOAD: one manifest line, unless that JSON is recorded already
record() {
  grep -qF "$8" "$manifest" 2>/dev/null && return 0
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$manifest"
}

# prepare KEY: sets ckpt, data, arch, n, calib (empty: no calibration), work (ORT exports)
prepare() {
  local key=$1
  work=$cache/bench-ort/$key
  calib=""
  case $key in
    minilm)
      ckpt=$(sh "$root/tests/reference/bert_dir.sh") || return 1
      data=$models_dir/data/sst2/dev.tsv arch=bert n=$N_MINILM calib=$data ;;
    vit-tiny)
      ckpt=$models_dir/vit-mnist-tiny data=$models_dir/data/mnist/t10k-images-idx3-ubyte.gz
      arch=vit n=$N_VITTINY calib=$data ;;
    bert-base)
      ckpt=$cache/bench-gen/bert-base data=$models_dir/data/sst2/dev.tsv arch=bert n=$N_BERTBASE
      if [ ! -f "$ckpt/model.safetensors" ]; then
        "$gen" "$ckpt" 12 > /dev/null
        cp "$models_dir/bert-uncased/vocab.txt" "$ckpt/"
      fi ;;
    vit-b16)
      ckpt=$cache/bench-gen/vit-b16 data=$cache/bench-gen/vit-b16-images arch=vit n=$N_VITB16
      [ -f "$ckpt/model.safetensors" ] || "$gen" --vit "$ckpt" 12 > /dev/null
      if [ ! -d "$data/0" ]; then # random RGB images, one class folder (PPM: no image library needed)
        mkdir -p "$data/0"
        "$PY" - "$data/0" "$N_VITB16" <<'PYEOF'
import os, sys
import numpy as np
rng = np.random.default_rng(0)
for i in range(int(sys.argv[2])):
    with open(os.path.join(sys.argv[1], "%04d.ppm" % i), "wb") as f:
        f.write(b"P6 224 224 255\n" + rng.integers(0, 256, (224, 224, 3), dtype=np.uint8).tobytes())
PYEOF
      fi ;;
    *) echo "vs_onnxruntime: unknown model '$key' in MODELS" >&2; return 1 ;;
  esac
  if [ ! -f "$work/int4-acc4.onnx" ]; then
    echo "== $key: exporting the FP32 model and ONNX Runtime's quantized models into $work" >&2
    "$PY" "$here/ort_peer.py" export --arch "$arch" --model "$ckpt" --out "$work" 2>&1 | grep -v INFO >&2 || true
    [ -f "$work/int4-acc4.onnx" ] || { echo "vs_onnxruntime: export of $key failed" >&2; return 1; }
  fi
}

# qdist files of KEY: id|quantize options (calibrated ones only where calibration data exist)
qfiles() {
  local key=$1 c=()
  if [ -n "$calib" ]; then
    c=(--calib "$calib" --nsamples 128)
    [ "$arch" = bert ] && c+=(--seqlen 64)
  fi
  echo "int8|"
  if [ -n "$calib" ]; then
    echo "int8-smooth|--smooth 0.65 ${c[*]}"
    echo "int4|--method gptq --bits 4 --asym --group-size 32 ${c[*]}"
  else
    echo "int4|--bits 4 --asym --group-size 32"
  fi
  if [ "$arch" = bert ]; then
    echo "int8-emb|--quantize-embeddings 8 --include-head"
    if [ -n "$calib" ]; then # the pooler is no encoder Linear: round to nearest, as the embeddings
      echo '{"overrides": [{"pattern": "*pooler*", "method": "rtn"}]}' > "$out/h5/pooler-rtn.json"
      echo "int4-emb|--config $out/h5/pooler-rtn.json --method gptq --bits 4 --asym --group-size 32 ${c[*]} --quantize-embeddings 4 --include-head"
    else
      echo "int4-emb|--bits 4 --asym --group-size 32 --quantize-embeddings 4 --include-head"
    fi
  fi
}

# qdist eval configurations: id|file id|eval options|label
qconfigs() {
  echo "q-int8|int8||qdist INT8 RTN per channel, outlier columns in float"
  echo "q-int8-all|int8|--outlier-threshold 0|qdist INT8 RTN, every column int8"
  if [ -n "$calib" ]; then
    echo "q-int8-smooth|int8-smooth|--outlier-threshold 0|qdist INT8 SmoothQuant 0.65, every column int8"
  fi
  [ "$arch" = bert ] && echo "q-int8-emb|int8-emb||qdist INT8 + INT8 embeddings"
  echo "q-int4|int4||qdist INT4 g32 $([ -n "$calib" ] && echo GPTQ || echo RTN)"
  [ "$arch" = bert ] && echo "q-int4-emb|int4-emb||qdist INT4 g32 + INT4 embeddings"
  return 0
}

start=$(date +%s)
for key in $MODELS; do
  if ! prepare "$key"; then
    echo "vs_onnxruntime: $key skipped" >&2
    continue
  fi
  echo "== $key: quantizing with qdist" >&2
  while IFS='|' read -r id opts; do
    f=$out/h5/$key-$id.h5
    # shellcheck disable=SC2086  # opts is a word list
    [ -f "$f" ] || "$qdist" quantize --model "$ckpt" --out "$f" $opts --quiet --overwrite
  done < <(qfiles "$key")
  for t in $THREADS; do
    for b in $BATCHES; do
      for r in $(seq 1 "$ROUNDS"); do
        # alternate: a qdist configuration, an ORT model, ...
        mapfile -t qc < <(qconfigs)
        orts=(fp32 int8 int4 int4-acc4)
        i=0
        while [ $i -lt ${#qc[@]} ] || [ $i -lt ${#orts[@]} ]; do
          if [ $i -lt ${#qc[@]} ]; then
            IFS='|' read -r cid fid eopts label <<< "${qc[$i]}"
            j=$out/json/$key-t$t-b$b-r$r-$cid.json
            if ! done_json "$j"; then
              l=$(load1)
              echo "== $key threads $t batch $b round $r: $label (load $l)" >&2
              # shellcheck disable=SC2086
              "$qdist" eval --model "$ckpt" --quantized "$out/h5/$key-$fid.h5" --data "$data" --n "$n" --batch "$b" \
                --threads "$t" $eopts --json > "$j.part"
              mv "$j.part" "$j"
              record "$key" "$t" "$b" "$r" qdist "$cid" "$label" "$j" "$l"
            fi
          fi
          if [ $i -lt ${#orts[@]} ]; then
            o=${orts[$i]}
            j=$out/json/$key-t$t-b$b-r$r-ort-$o.json
            if ! done_json "$j"; then
              l=$(load1)
              echo "== $key threads $t batch $b round $r: ONNX Runtime $o (load $l)" >&2
              rm -f "$j"
              "$PY" "$here/ort_peer.py" run --arch "$arch" --model "$ckpt" --onnx "$work/$o.onnx" --data "$data" \
                --n "$n" --batch "$b" --threads "$t" --out "${j%.json}.npy" --json "$j.part"
              mv "$j.part" "$j"
              record "$key" "$t" "$b" "$r" ort "$o" "ONNX Runtime $o" "$j" "$l"
            fi
          fi
          i=$((i + 1))
        done
        # cosine and accuracy of the peer, against its own FP32 run of this round
        for o in int8 int4 int4-acc4; do
          j=$out/json/$key-t$t-b$b-r$r-ort-$o.json
          [ -s "${j%.json}.score" ] && [ "$FORCE" != 1 ] && continue
          "$PY" "$here/ort_peer.py" score --arch "$arch" --model "$ckpt" --data "$data" \
            --ref "$out/json/$key-t$t-b$b-r$r-ort-fp32.npy" --out "${j%.json}.npy" > "${j%.json}.score"
        done
        if [ ! -s "$out/json/$key-t$t-b$b-r$r-ort-fp32.score" ] || [ "$FORCE" = 1 ]; then
          "$PY" "$here/ort_peer.py" score --arch "$arch" --model "$ckpt" --data "$data" \
            --ref "$out/json/$key-t$t-b$b-r$r-ort-fp32.npy" --out "$out/json/$key-t$t-b$b-r$r-ort-fp32.npy" \
            > "$out/json/$key-t$t-b$b-r$r-ort-fp32.score"
        fi
      done
    done
  done
done
[ -s "$manifest" ] || { echo "vs_onnxruntime: nothing was measured" >&2; exit 1; }
echo "== done in $(( $(date +%s) - start )) s" >&2

python3 "$here/vs_onnxruntime_table.py" "$manifest" "$out/results.csv" "$out/results.md" "$out/h5"
cat "$out/results.md"
