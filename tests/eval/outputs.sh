#!/bin/sh
# qdist eval --save-outputs / --reference, and the outputs files eval and forward share. The file
# is read back here with the Python standard library alone (its own safetensors reader): its FP32
# and quantized rows give again the cosine, agreement and accuracy the run printed; its labels are
# MNIST's, and its BERT input ids are the reference WordPiece tokenization of SST-2
# (tests/reference, google-research/bert's algorithm). A reference equal to our own outputs scores
# cosine 1, difference 0, agreement 1, also with its rows shuffled (matched through sample_index);
# PyTorch's float64 logits of the first 16 MNIST images score our FP32 pass within 2e-5, and so do
# qdist forward's outputs of the same images (eval reads forward's file). qdist forward runs eval's
# saved BERT inputs again and reproduces eval's FP32 embeddings (forward reads eval's file, rows
# shuffled too). Bad reference files are clear errors.
set -eu
: "${QDIST:?}" "${QD_MODELS_DIR:?}" "${QD_SOURCE_DIR:?}"
M="$QD_MODELS_DIR/vit-mnist-tiny"
D="$QD_MODELS_DIR/data/mnist/t10k-images-idx3-ubyte.gz"
REF="$QD_MODELS_DIR/reference"
T=$(mktemp -d /tmp/qd-evalout-XXXXXX)
trap 'rm -rf "$T"' EXIT
PY=/usr/bin/python3
cat > "$T/st.py" <<'PY'
import array, json, struct
def read(path):
    """A safetensors file: ({name: (dtype, shape, values)}, metadata)."""
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop("__metadata__", {})
    code = {"F32": "f", "I64": "q", "I32": "i"}
    out = {}
    for k, v in h.items():
        a = array.array(code[v["dtype"]])
        a.frombytes(b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
        out[k] = (v["dtype"], v["shape"], a)
    return out, meta
def write(path, tensors):
    """tensors: {name: (dtype, shape, values)}."""
    code = {"F32": "f", "I64": "q", "I32": "i"}
    hdr, blob = {}, b""
    for k in sorted(tensors):
        dt, shape, vals = tensors[k]
        data = array.array(code[dt], vals).tobytes()
        hdr[k] = {"dtype": dt, "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + blob)
def rows(t):
    _, shape, v = t
    return [list(v[i * shape[1]:(i + 1) * shape[1]]) for i in range(shape[0])]
def cos(a, b):
    ab = sum(x * y for x, y in zip(a, b)); aa = sum(x * x for x in a); bb = sum(y * y for y in b)
    return ab / (aa * bb) ** 0.5
def argmax(v): return max(range(len(v)), key=lambda i: v[i])
PY

# ---- ViT: logits, image indices, labels ----------------------------------------------------------
"$QDIST" quantize --model "$M" --out "$T/q8.h5" --quiet
"$QDIST" eval --model "$M" --quantized "$T/q8.h5" --data "$D" --n 64 --batch 16 --json \
  --save-outputs "$T/vit.safetensors" > "$T/vit.json"
"$QDIST" eval --model "$M" --quantized "$T/q8.h5" --data "$D" --n 64 --batch 16 --json \
  --reference "$T/vit.safetensors" > "$T/vit-self.json"
"$QDIST" eval --model "$M" --quantized "$T/q8.h5" --data "$D" --n 16 --json \
  --reference "$REF/vit-forward-reference.safetensors" > "$T/vit-torch.json"
"$QDIST" forward --model "$M" --inputs "$REF/vit-forward-reference.safetensors" --save-outputs "$T/fwd.safetensors" \
  > /dev/null
"$QDIST" eval --model "$M" --quantized "$T/q8.h5" --data "$D" --n 16 --json --reference "$T/fwd.safetensors" \
  > "$T/vit-fwd.json"
$PY - "$T" "$QD_MODELS_DIR" <<'PY'
import gzip, json, sys
sys.path.insert(0, sys.argv[1]); import st
t, models = sys.argv[1], sys.argv[2]
e = json.load(open(f"{t}/vit.json"))
f, meta = st.read(f"{t}/vit.safetensors")
assert meta["format"] == "qdist-outputs" and meta["version"] == "1" and meta["command"] == "eval", meta
assert meta["inputs"].endswith("t10k-images-idx3-ubyte.gz") and meta["runtime"] == e["runtime_path"], meta
assert set(f) == {"fp32.logits", "logits", "sample_index", "labels"}, set(f)
assert f["fp32.logits"][0] == f["logits"][0] == "F32" and f["fp32.logits"][1] == f["logits"][1] == [64, 10]
assert list(f["sample_index"][2]) == list(range(64))
lab = gzip.open(f"{models}/data/mnist/t10k-labels-idx1-ubyte.gz").read()[8:8 + 64]
assert list(f["labels"][2]) == list(lab), "labels are not MNIST's first 64"
a, b = st.rows(f["fp32.logits"]), st.rows(f["logits"])
c = [st.cos(x, y) for x, y in zip(a, b)]
assert abs(sum(c) / 64 - e["cosine"]["mean"]) < 1e-9 and abs(min(c) - e["cosine"]["min"]) < 1e-9, (c, e["cosine"])
agree = sum(st.argmax(x) == st.argmax(y) for x, y in zip(a, b)) / 64
assert agree == e["agreement"], (agree, e["agreement"])
for side, r in (("fp32", a), ("quantized", b)):
    acc = sum(st.argmax(x) == l for x, l in zip(r, lab)) / 64
    assert acc == e[side]["accuracy"], (side, acc, e[side]["accuracy"])
s = json.load(open(f"{t}/vit-self.json"))["reference"]
assert s["tensor"] == "logits" and s["samples"] == 64, s
assert s["quantized"] == {"cosine_mean": 1, "cosine_min": 1, "max_abs_diff": 0, "agreement": 1}, s["quantized"]
assert abs(s["fp32"]["cosine_mean"] - e["cosine"]["mean"]) < 1e-12 and s["fp32"]["agreement"] == e["agreement"]
r = json.load(open(f"{t}/vit-torch.json"))["reference"]
assert r["tensor"] == "logits" and r["samples"] == 16, r
assert r["fp32"]["max_abs_diff"] < 2e-5 and r["fp32"]["cosine_min"] > 0.999999 and r["fp32"]["agreement"] == 1, r
assert r["quantized"]["agreement"] >= 15 / 16 and r["quantized"]["cosine_min"] > 0.999, r
w, wm = st.read(f"{t}/fwd.safetensors")
assert wm["format"] == "qdist-outputs" and wm["version"] == "1" and wm["command"] == "forward", wm
assert w["logits"][0] == "F32" and w["logits"][1] == [16, 10], w["logits"][:2]
r2 = json.load(open(f"{t}/vit-fwd.json"))["reference"]
assert r2["tensor"] == "logits" and r2["fp32"]["max_abs_diff"] < 2e-5 and r2["fp32"]["agreement"] == 1, r2
print("ok: vit: outputs file = printed cosine %.6f, agreement %.4f, accuracy; self-reference 1; "
      "fp32 vs PyTorch float64 max abs %.2g, vs qdist forward %.2g"
      % (e["cosine"]["mean"], e["agreement"], r["fp32"]["max_abs_diff"], r2["fp32"]["max_abs_diff"]))
# a reference from elsewhere: rows shuffled, matched through sample_index; and one with a row missing
perm = [(i * 37) % 64 for i in range(64)]
q = st.rows(f["logits"])
st.write(f"{t}/shuffled.safetensors", {"logits": ("F32", [64, 10], [v for i in perm for v in q[i]]),
                                       "sample_index": ("I64", [64], perm)})
st.write(f"{t}/short.safetensors", {"logits": ("F32", [63, 10], [v for i in range(63) for v in q[i]])})
st.write(f"{t}/wide.safetensors", {"logits": ("F32", [64, 9], [0.0] * 576)})
st.write(f"{t}/other.safetensors", {"outputs": ("F32", [64, 10], [0.0] * 640)})
PY
"$QDIST" eval --model "$M" --quantized "$T/q8.h5" --data "$D" --n 64 --batch 16 --json \
  --reference "$T/shuffled.safetensors" > "$T/vit-shuf.json"
$PY -c 'import json,sys; r=json.load(open(sys.argv[1]))["reference"]; assert r["tensor"]=="logits" and r["quantized"]["cosine_min"]==1 and r["quantized"]["max_abs_diff"]==0, r; print("ok: shuffled reference matched by sample_index")' "$T/vit-shuf.json"
for bad in short:"has 63 rows and no 'sample_index'" wide:"must be a float \[rows, 10\] array" \
  other:"no tensor 'logits' (the outputs computed here" none:"none.safetensors"; do
  f=${bad%%:*} want=${bad#*:}
  if "$QDIST" eval --model "$M" --quantized "$T/q8.h5" --data "$D" --n 64 --reference "$T/$f.safetensors" \
       > /dev/null 2> "$T/err"; then echo "FAIL: reference $f accepted"; exit 1; fi
  grep -q "$want" "$T/err" || { echo "FAIL: reference $f:"; cat "$T/err"; exit 1; }
done
echo "ok: bad references are errors naming the file"

# ---- BERT: embeddings, input ids -------------------------------------------------------------------
BERT=$(sh "$QD_SOURCE_DIR/tests/reference/bert_dir.sh") || { echo "SKIP: BERT part (no checkpoint)"; exit 0; }
S2="$QD_MODELS_DIR/data/sst2/dev.tsv"
"$QDIST" quantize --model "$BERT" --out "$T/b8.h5" --quiet
"$QDIST" eval --model "$BERT" --quantized "$T/b8.h5" --data "$S2" --n 48 --batch 8 --json \
  --save-outputs "$T/bert.safetensors" > "$T/bert.json"
"$QDIST" eval --model "$BERT" --quantized "$T/b8.h5" --data "$S2" --n 48 --batch 8 --json \
  --reference "$T/bert.safetensors" > "$T/bert-self.json"
$PY - "$T" "$REF/bert-tokenizer-reference.safetensors" <<'PY'
import json, sys
sys.path.insert(0, sys.argv[1]); import st
t = sys.argv[1]
e = json.load(open(f"{t}/bert.json"))
f, meta = st.read(f"{t}/bert.safetensors")
assert meta["command"] == "eval" and meta["inputs"].endswith("dev.tsv") and meta["architecture"] == "BertModel", meta
assert set(f) == {"sentence_embedding", "fp32.sentence_embedding", "sample_index", "labels", "input_ids",
                  "attention_mask", "token_type_ids"}, set(f)
assert f["fp32.sentence_embedding"][1] == [48, 384] and f["input_ids"][0] == "I64", f["input_ids"][:2]
tok, _ = st.read(sys.argv[2])
ids, off, labels = tok["input_ids"][2], tok["offsets"][2], tok["labels"][2]
T = f["input_ids"][1][1]
assert T == max(off[i + 1] - off[i] for i in range(48)), T
for i in range(48):
    want = list(ids[off[i]:off[i + 1]])
    row = list(f["input_ids"][2][i * T:(i + 1) * T])
    mask = list(f["attention_mask"][2][i * T:(i + 1) * T])
    assert row == want + [0] * (T - len(want)), (i, row, want)
    assert mask == [1] * len(want) + [0] * (T - len(want)), (i, mask)
assert set(f["token_type_ids"][2]) == {0} and list(f["labels"][2]) == list(labels[:48])
a, b = st.rows(f["fp32.sentence_embedding"]), st.rows(f["sentence_embedding"])
c = [st.cos(x, y) for x, y in zip(a, b)]
assert abs(sum(c) / 48 - e["cosine"]["mean"]) < 1e-9 and abs(min(c) - e["cosine"]["min"]) < 1e-9, (c, e["cosine"])
s = json.load(open(f"{t}/bert-self.json"))["reference"]
assert s["quantized"] == {"cosine_mean": 1, "cosine_min": 1, "max_abs_diff": 0}, s
print("ok: bert: input ids = the reference tokenization of the first 48 SST-2 sentences; embeddings give the "
      "printed cosine %.6f; self-reference 1" % e["cosine"]["mean"])
# eval's inputs with its FP32 embeddings as the reference of an FP32 forward, rows shuffled
perm = [(i * 29) % 48 for i in range(48)]
st.write(f"{t}/bert-fp.safetensors", {k: f[k] for k in ("input_ids", "attention_mask", "token_type_ids")} | {
    "sentence_embedding": ("F32", [48, 384], [v for i in perm for v in a[i]]), "sample_index": ("I64", [48], perm)})
PY
"$QDIST" forward --model "$BERT" --inputs "$T/bert-fp.safetensors" --reference "$T/bert-fp.safetensors" --tol 1e-5 \
  --json > "$T/bert-fwd.json" || { echo "FAIL: qdist forward does not reproduce eval's FP32 embeddings"; exit 1; }
# and forward reads eval's own file: its inputs, its outputs as the reference
"$QDIST" forward --model "$BERT" --inputs "$T/bert.safetensors" --quantized "$T/b8.h5" \
  --reference "$T/bert.safetensors" --json > "$T/bert-fwdq.json"
$PY - "$T" <<'PY'
import json, sys
t = sys.argv[1]
e = json.load(open(f"{t}/bert-fwd.json"))["relative_error"]["sentence_embedding"]
q = json.load(open(f"{t}/bert-fwdq.json"))["relative_error"]["sentence_embedding"]
assert q < 0.1, q  # the same integer kernels; padding differs (eval pads a batch to its longest)
print("ok: qdist forward on eval's saved inputs: FP32 embeddings within %.2g of eval's (rows matched by "
      "sample_index), quantized within %.2g" % (e, q))
PY
