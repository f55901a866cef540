#!/bin/sh
# End-to-end 2:4 against dense INT8 in `qdist eval` at BERT-base shapes: a generated BERT-base-
# shaped checkpoint (hidden 768, intermediate 3072; LAYERS blocks, default 2, random weights, the
# real uncased vocabulary) quantized INT8 per channel dense and INT8 2:4 (magnitude + RTN), both
# run on SST-2 dev sentences. The 2:4 file's Linears run through qd_gemm_s8_24_f32 (eval prints
# "int8 2:4 sparse"), the dense one's through qd_gemm_s8_f32. Reported: the quantized pass's
# mean latency per batch for each, best of REPS interleaved rounds (the machine may be shared: the
# best round is the least disturbed one), and their ratio.
#   bench/eval_24.sh [BUILD_DIR] [REPS]      (LAYERS, N sentences (default 64), BATCH (default 8))
set -eu
cd "$(dirname "$0")/.."
B=${1:-build}
REPS=${2:-3}
MD=${QD_MODELS_DIR:-../shared/models}
T=$(mktemp -d /tmp/qd-eval24-XXXXXX)
trap 'rm -rf "$T"' EXIT
"$B/bench/gen_checkpoint" "$T/bert" "${LAYERS:-2}" > /dev/null
cp "$MD/bert-uncased/vocab.txt" "$T/bert/"
cat > "$T/bert/config.json" <<J
{"model_type": "bert", "architectures": ["BertModel"], "hidden_size": 768, "num_hidden_layers": ${LAYERS:-2},
 "num_attention_heads": 12, "intermediate_size": 3072, "vocab_size": 30522, "max_position_embeddings": 512,
 "type_vocab_size": 2, "hidden_act": "gelu", "layer_norm_eps": 1e-12}
J
"$B/qdist" quantize --model "$T/bert" --out "$T/d8.h5" --bits 8 --quiet
"$B/qdist" quantize --model "$T/bert" --out "$T/s24.h5" --bits 8 --sparsity 2:4 --quiet
E="--data $MD/data/sst2/dev.tsv --n ${N:-64} --batch ${BATCH:-8} --json"
i=0
while [ $i -lt "$REPS" ]; do
  for f in d8 s24; do
    # shellcheck disable=SC2086
    "$B/qdist" eval --model "$T/bert" --quantized "$T/$f.h5" $E > "$T/$f.$i.json"
  done
  i=$((i + 1))
done
python3 - "$T" "$REPS" <<'PY'
import json, sys
T, reps = sys.argv[1], int(sys.argv[2])
best = {}
for f in ("d8", "s24"):
    runs = [json.load(open(f"{T}/{f}.{i}.json")) for i in range(reps)]
    best[f] = min(r["quantized"]["latency_ms"]["mean"] for r in runs)
    kinds = {k: v for k, v in runs[0]["quantized"]["linears"].items() if v}
    print(f"{f:4s} Linears {kinds}  best mean latency per batch {best[f]:.2f} ms  "
          f"file {runs[0]['quantized']['file_bytes']:.0f} B  cosine to FP32 {runs[0]['cosine']['mean']:.4f}")
print(f"2:4 INT8 speed-up over dense INT8 (eval, quantized pass): {best['d8'] / best['s24']:.2f}x")
PY
