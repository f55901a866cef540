#!/bin/sh
# Structured pruning of the real all-MiniLM-L6-v2 (2 of 12 heads and a quarter of the FFN neurons
# per layer, then INT8): `qdist export` writes a checkpoint that transformers loads without a
# missing, unexpected or mismatched tensor (FFN matrices and intermediate_size smaller; the removed
# heads as zero rows and columns, since transformers no longer prunes heads itself), and qdist's
# FP32 forward pass of both exports — that one, and the smaller --keep-pruned-heads one whose
# config lists pruned_heads — gives transformers' last_hidden_state within 1e-4.
# Skipped (77) without the checkpoint or an already built venv of the pinned peers (deploy/pyenv.sh).
set -u
: "${QDIST:?}" "${QD_MODELS_DIR:?}"
here=$(cd "$(dirname "$0")" && pwd)
B=$(sh "$here/../reference/bert_dir.sh") || exit 77
# the venv only when it exists already (a failing base interpreter stops pyenv.sh from making one)
PY=$(QD_BASE_PYTHON=/bin/false bash "$here/../../deploy/pyenv.sh" 2> /dev/null) || { echo "no venv: skipped"; exit 77; }
T=$(mktemp -d /tmp/qd-structhf-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
"$QDIST" quantize --model "$B" --out "$T/m.h5" --bits 8 --prune-heads 2 --prune-ffn 0.25 \
  --calib "$QD_MODELS_DIR/data/sst2/dev.tsv" --nsamples 16 --seqlen 32 --quiet || exit 1
"$QDIST" export "$T/m.h5" --out "$T/exp" > /dev/null || exit 1
"$QDIST" export "$T/m.h5" --out "$T/expk" --keep-pruned-heads > /dev/null || exit 1
"$PY" - "$T" <<'PY' 2> "$T/py.err" || { echo "FAIL: transformers"; cat "$T/py.err"; exit 1; }
import json, sys, torch
from safetensors.torch import save_file
from transformers import BertModel
T = sys.argv[1]
m, info = BertModel.from_pretrained(f"{T}/exp", output_loading_info=True)
bad = {k: v for k, v in info.items() if v}
assert not bad, bad
assert m.config.intermediate_size == 1152 and m.encoder.layer[0].intermediate.dense.weight.shape == (1152, 384)
k = json.load(open(f"{T}/expk/config.json"))
assert all(len(v) == 2 for v in k["pruned_heads"].values()) and len(k["pruned_heads"]) == 6, k["pruned_heads"]
g = torch.Generator().manual_seed(0)
ids = torch.randint(1000, 30000, (3, 12), generator=g)
ids[:, 0] = 101
mask = torch.ones_like(ids)
mask[1, 8:] = 0
ids[1, 8:] = 0
with torch.no_grad():
    h = m.double()(input_ids=ids, attention_mask=mask).last_hidden_state.float()
save_file({"input_ids": ids, "attention_mask": mask}, f"{T}/in.safetensors")
save_file({"last_hidden_state": h.contiguous()}, f"{T}/ref.safetensors")
print("ok: transformers loads the export (%d heads a layer, some all zero; FFN 1152)" % m.config.num_attention_heads)
PY
cat "$T/py.err" | grep "^ok" || true
for d in exp expk; do
  if "$QDIST" forward --model "$T/$d" --inputs "$T/in.safetensors" --hidden --reference "$T/ref.safetensors" \
    --tol 1e-4 > "$T/fw" 2>&1; then echo "ok: qdist forward of $d == transformers (within 1e-4)"
  else echo "FAIL: qdist forward of $d differs from transformers"; cat "$T/fw"; fail=1; fi
done
exit $fail
