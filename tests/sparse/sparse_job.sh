#!/bin/sh
# qdist quantize --sparsity on the real ViT with MNIST calibration: SparseGPT jointly with GPTQ
# (2:4, 8-bit), Wanda + GPTQ (4:8), SparseGPT pruning alone (50 %, float) and magnitude + RTN (50 %)
# give the same file on 1, 2 and 4 ranks; a rank failing midway and --resume give the file of an
# uninterrupted run; the file's masks hold the pattern (2:4: at most 2 of every 4) and zeros where
# pruned; inspect shows the sparsity; export writes the dense checkpoint with those zeros; eval
# runs a prune-only file's pruned weights, and 2:4 INT8 files through the 2:4 kernel with the dense
# int8 kernel's results; structured pruning (--prune-heads, --prune-ffn) shrinks the matrices and
# updates the config, the same on 1 and 2 ranks; bad option combinations are clear errors.
set -eu
: "${QDIST:?}" "${QD_MODELS_DIR:?}"
M="$QD_MODELS_DIR/vit-mnist-tiny"
D="$QD_MODELS_DIR/data/mnist/t10k-images-idx3-ubyte.gz"
T=$(mktemp -d /tmp/qd-sparse-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
C="--calib $D --nsamples 32 --microbatch 6 --quiet"
run() { # name ranks args...
  name=$1 n=$2
  shift 2
  timeout 120 mpiexec -n $n --oversubscribe "$QDIST" quantize --model "$M" --out "$T/$name$n.h5" "$@"
}
for n in 1 2 4; do
  run sg24_ $n --method gptq --bits 8 --sparsity 2:4 $C
  run wanda48_ $n --method gptq --bits 4 --asym --group-size 32 --sparsity 4:8 --prune wanda $C
  run only50_ $n --method gptq --sparsity 0.5 --prune-only $C
  run rtn50_ $n --sparsity 0.5 --quiet
done
for s in sg24_ wanda48_ only50_ rtn50_; do
  for n in 2 4; do
    if h5diff --exclude-path /run "$T/${s}1.h5" "$T/$s$n.h5"; then echo "ok: $s 1 rank == $n ranks"
    else echo "DIFFERENT: $s 1 rank vs $n ranks"; fail=1; fi
  done
done
# resume after a failure on rank 1 after 3 pieces
QD_FAULT_RANK=1 QD_FAULT_AFTER=3 timeout 120 mpiexec -n 2 --oversubscribe "$QDIST" quantize --model "$M" \
  --out "$T/res.h5" --method gptq --bits 8 --sparsity 2:4 $C > "$T/log" 2>&1 && { echo "FAIL: fault not raised"; fail=1; }
timeout 120 mpiexec -n 2 --oversubscribe "$QDIST" quantize --model "$M" --out "$T/res.h5" --resume --method gptq \
  --bits 8 --sparsity 2:4 $C > "$T/log" 2>&1 || { echo "FAIL: resume"; cat "$T/log"; fail=1; }
h5diff --exclude-path /run "$T/sg24_1.h5" "$T/res.h5" && echo "ok: fault + resume == uninterrupted" \
  || { echo "FAIL: fault + resume differs"; fail=1; }
# inspect
"$QDIST" inspect "$T/sg24_1.h5" > "$T/insp"
grep -q "query.weight .*sparsity 50.0% (2:4, sparsegpt, 32 stored per row)" "$T/insp" && echo "ok: inspect shows 2:4" \
  || { echo "FAIL: inspect"; grep query "$T/insp"; fail=1; }
# non-uniform sparsity: per-tensor patterns from overrides (the first matching one), the job's elsewhere
printf '{"overrides": [{"pattern": "*.attention.*", "sparsity": "0.25"}, {"pattern": "*.layer.5.*", "sparsity": "2:4"}]}' > "$T/ov.json"
"$QDIST" quantize --model "$M" --out "$T/ov.h5" --quiet --config "$T/ov.json" --bits 8 --sparsity 0.5 > /dev/null || fail=1
"$QDIST" inspect "$T/ov.h5" > "$T/insp_ov"
grep -q "layer.5.attention.attention.query.weight .*sparsity 25.0% (0.25, magnitude, 48 stored" "$T/insp_ov" \
  && grep -q "layer.5.intermediate.dense.weight .*sparsity 50.0% (2:4, magnitude, 32 stored" "$T/insp_ov" \
  && grep -q "layer.0.output.dense.weight .*sparsity 50.0% (0.5, magnitude, 64 stored" "$T/insp_ov" \
  && grep -q '"sparsity":"0.25"' "$T/insp_ov" && echo "ok: per-tensor sparsity from overrides" \
  || { echo "FAIL: per-tensor sparsity"; grep -E 'layer.(0|5)' "$T/insp_ov"; fail=1; }
printf '{"overrides": [{"pattern": "*", "sparsity": "0.3"}]}' > "$T/ov2.json"
"$QDIST" quantize --model "$M" --out "$T/ov2.h5" --quiet --config "$T/ov2.json" --bits 8 > "$T/ov2.log" 2>&1 \
  && { echo "FAIL: per-tensor sparsity without --sparsity accepted"; fail=1; }
grep -q "per-tensor sparsity needs a pruning job" "$T/ov2.log" || { echo "FAIL: message"; cat "$T/ov2.log"; fail=1; }
grep -q "sparsity 50.0% (0.5, sparsegpt," "$T/insp" && { echo "FAIL: wrong pattern"; fail=1; }
"$QDIST" inspect "$T/only50_1.h5" | grep -q "float .*sparsity 50.0% (0.5, sparsegpt, 32 stored per row)" && echo "ok: inspect prune-only" \
  || { echo "FAIL: inspect prune-only"; fail=1; }
# export: dense float with zeros where the mask says pruned
"$QDIST" export "$T/sg24_1.h5" --out "$T/exp" > /dev/null || { echo "FAIL: export"; fail=1; }
/usr/bin/python3 - "$T/sg24_1.h5" "$T/only50_1.h5" "$T/exp/model.safetensors" <<'PY' || fail=1
# an independent reader of docs/FORMAT.md "Sparsity": values and positions back to dense rows
import h5py, json, struct, sys
import numpy as np
def unpack(packed, n, bits):
    b = np.unpackbits(packed, axis=-1, bitorder="little")[..., : n * bits].reshape(*packed.shape[:-1], n, bits)
    return (b * (1 << np.arange(bits))).sum(-1).astype(np.int64)
def pruned(path):
    f = h5py.File(path, "r")
    out = {}
    for name, g in f["tensors"].items():
        if "sparsity" not in g.attrs:
            continue
        rows, cols = (int(v) for v in g.attrs["shape"])
        S = int(g.attrs["nonzeros_per_row"])
        sp = g.attrs["sparsity"]
        sp = sp.decode() if isinstance(sp, bytes) else sp
        quant = "nz_qweight" in g
        assert ("qweight" in g) == ("data" in g) == False, name
        vals = unpack(g["nz_qweight"][...], S, int(g.attrs["bits"])) if quant else g["nz_data"][...]
        m = np.zeros((rows, cols), bool)
        dense = np.zeros((rows, cols), vals.dtype)
        if ":" in sp:
            n, mm = (int(x) for x in sp.split(":"))
            pos = unpack(g["nm_index"][...], S, int(np.ceil(np.log2(mm))))
            col = (np.arange(S) // n) * mm + pos
            assert (np.diff(pos.reshape(rows, -1, n), axis=-1) > 0).all(), name
            for r in range(rows):
                m[r, col[r]] = True
                dense[r, col[r]] = vals[r]
        else:
            m = np.unpackbits(g["mask"][...], axis=1, bitorder="little")[:, :cols].astype(bool)
            for r in range(rows):
                k = m[r].sum()
                dense[r, m[r]] = vals[r, :k]
        out[name] = (g, m, dense, sp, S)
    return f, out
f, ms = pruned(sys.argv[1])
assert len(ms) == 36, len(ms)
for name, (g, m, codes, sp, S) in ms.items():
    assert sp == "2:4" and S == m.shape[1] // 2 and g["nz_qweight"].shape[1] == S, (name, S)  # 8-bit: S bytes a row
    groups = m.reshape(m.shape[0], -1, 4).sum(-1)
    assert groups.max() <= 2 and abs(m.mean() - 0.5) < 1e-9, (name, groups.max(), m.mean())
raw = open(sys.argv[3], "rb").read()
hl = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + hl])
for name, (g, m, codes, sp, S) in ms.items():
    e = hdr[name]
    a, b = e["data_offsets"]
    w = np.frombuffer(raw[8 + hl + a: 8 + hl + b], dtype=np.float32).reshape(e["shape"])
    assert (w[~m] == 0).all() and (w[m] != 0).mean() > 0.95, name
    want = (codes.astype(np.float32) - 128) * g["scales"][...]  # 8-bit symmetric, per channel
    assert np.array_equal(w[m], want[m].astype(np.float32)), name
# the same model stored dense (codes at the zero point where pruned, no sparsity): eval's int8 2:4
# kernel must give the dense int8 kernel's results
f.close()
import shutil
dense_path = sys.argv[1].replace("sg24_1.h5", "dense24.h5")
shutil.copy(sys.argv[1], dense_path)
with h5py.File(dense_path, "r+") as g5:
    for name, (g, m, codes, sp, S) in ms.items():
        t = g5["tensors"][name]
        full = np.where(m, codes, 128).astype(np.uint8)
        for k in ("nz_qweight", "nm_index"):
            del t[k]
        for k in ("sparsity", "prune_method", "nonzeros_per_row"):
            del t.attrs[k]
        t.create_dataset("qweight", data=full)
f2, ms2 = pruned(sys.argv[2])
for name, (g, m, w, sp, S) in ms2.items():
    assert g.attrs["kind"] in (b"float", "float") and "mask" in g and S == m.shape[1] // 2, name
    assert abs(m.mean() - 0.5) < 0.01 and (m.sum(1) <= S).all(), (name, m.mean())
print("ok: packed 2:4 codes and positions hold the pattern and equal export; prune-only packed float")
PY
# eval runs 2:4 INT8 Linears through the 2:4 kernel, with the dense int8 kernel's results
E="--data $D --n 100 --batch 4 --json"
# shellcheck disable=SC2086
"$QDIST" eval --model "$M" --quantized "$T/sg24_1.h5" $E > "$T/ev24.json" || fail=1
# shellcheck disable=SC2086
"$QDIST" eval --model "$M" --quantized "$T/dense24.h5" $E > "$T/evd.json" || fail=1
/usr/bin/python3 - "$T/ev24.json" "$T/evd.json" <<'PY' || fail=1
import json, sys
s, d = (json.load(open(p)) for p in sys.argv[1:3])
assert s["quantized"]["linears"]["int8 2:4 sparse"] == 36 and d["quantized"]["linears"]["int8"] == 36, (s, d)
assert s["cosine"] == d["cosine"] and s["quantized"]["accuracy"] == d["quantized"]["accuracy"], (s["cosine"], d["cosine"])
assert s["cosine"]["mean"] < 0.9999, s
print("ok: eval runs 2:4 through the sparse kernel: same logits as the dense int8 kernel (cosine %.6f)"
      % s["cosine"]["mean"])
PY
# the engine's 2:4 kernel on every call (QD_ENGINE_24_ROWS above any row count) and never (0): the
# same results as the dense file; where the CPU has the kernel, the runtime line names it and the
# compact form adds 0.625 bytes per weight to the resident ones. Again with the AVX-VNNI and AVX2
# tables (their own 2:4 versions) where this CPU has them.
for K in auto avxvnni avx2; do
  # shellcheck disable=SC2086
  QD_KERNELS=$K "$QDIST" eval --model "$M" --quantized "$T/dense24.h5" $E > "$T/evd_$K.json" || fail=1
  # shellcheck disable=SC2086
  QD_KERNELS=$K QD_ENGINE_24_ROWS=1000000 "$QDIST" eval --model "$M" --quantized "$T/sg24_1.h5" $E > "$T/ev24a_$K.json" || fail=1
  # shellcheck disable=SC2086
  QD_KERNELS=$K QD_ENGINE_24_ROWS=0 "$QDIST" eval --model "$M" --quantized "$T/sg24_1.h5" $E > "$T/ev24n_$K.json" || fail=1
  /usr/bin/python3 - "$T/ev24a_$K.json" "$T/ev24n_$K.json" "$T/evd_$K.json" $K <<'PY' || fail=1
import json, sys
a, n, d = (json.load(open(p)) for p in sys.argv[1:4])
k = sys.argv[4]
for x in (a, n):
    assert x["cosine"] == d["cosine"] and x["quantized"]["accuracy"] == d["quantized"]["accuracy"], (k, x["cosine"], d["cosine"])
if k != "auto" and a["kernels_isa"] != k:
    print("ok: no %s table on this CPU" % k)
elif "rows, else dense" in a["runtime_path"]:
    assert "below 1000000 rows" in a["runtime_path"] and "below 0 rows" in n["runtime_path"], a["runtime_path"]
    extra = a["quantized"]["resident_weight_bytes"] - d["quantized"]["resident_weight_bytes"]
    assert extra > 0, (a["quantized"]["resident_weight_bytes"], d["quantized"]["resident_weight_bytes"])
    print("ok (%s): the engine's 2:4 kernel on every call gives the dense kernel's logits; compact form %d bytes; %s"
          % (k, extra, a["runtime_path"][a["runtime_path"].find("2:4 sparse on"):][:80]))
else:
    assert k == "auto", (k, a["runtime_path"])
    print("ok: no 2:4 kernel for this CPU's table: dense (%s)" % a["runtime_path"][:120])
PY
done
# a prune-only file evaluates as pruned: its logits differ from the dense model's, and equal (bit for
# bit, batch 1) those of the FP32 forward pass of its exported checkpoint
"$QDIST" export "$T/only50_1.h5" --out "$T/exp50" > /dev/null || { echo "FAIL: export prune-only"; fail=1; }
cp "$M/preprocessor_config.json" "$T/exp50/"
E="--data $D --n 100 --batch 1 --json"
# shellcheck disable=SC2086
"$QDIST" eval --model "$M" --quantized "$T/only50_1.h5" $E > "$T/ev_dense.json" || fail=1
# shellcheck disable=SC2086
"$QDIST" eval --model "$T/exp50" --quantized "$T/only50_1.h5" $E > "$T/ev_ref.json" || fail=1
/usr/bin/python3 - "$T/ev_dense.json" "$T/ev_ref.json" <<'PY' || fail=1
import json, sys
d, r = (json.load(open(p)) for p in sys.argv[1:3])
assert d["quantized"]["linears"]["float"] == 36, d["quantized"]["linears"]
assert d["cosine"]["mean"] < 0.9999, ("prune-only evaluates as dense", d["cosine"])
assert r["cosine"]["min"] == 1 and r["agreement"] == 1, ("pruned eval != FP32 of the export", r["cosine"])
assert d["quantized"]["accuracy"] == r["quantized"]["accuracy"] == r["fp32"]["accuracy"], (d, r)
print("ok: prune-only eval differs from dense (cosine %.4f) and equals its export's FP32 forward, accuracy %.2f%%"
      % (d["cosine"]["mean"], 100 * r["fp32"]["accuracy"]))
PY
# structured: 1 of 4 heads and a quarter of the FFN neurons per layer removed, the matrices shrunk,
# the config updated; the same files on 1 and 2 ranks; eval runs the smaller model
# (each in its own folder: the file records the pruned checkpoint's path as its source)
for n in 1 2; do
  mkdir "$T/s$n"
  # shellcheck disable=SC2086
  (cd "$T/s$n" && timeout 120 mpiexec -n $n --oversubscribe "$QDIST" quantize --model "$M" --out struct.h5 --bits 8 \
    --prune-heads 1 --prune-ffn 0.25 $C > /dev/null) || { echo "FAIL: structured pruning on $n ranks"; fail=1; }
done
h5diff --exclude-path /run "$T/s1/struct.h5" "$T/s2/struct.h5" && cmp -s "$T/s1/struct.h5.structured/model.safetensors" \
  "$T/s2/struct.h5.structured/model.safetensors" && echo "ok: structured pruning: 1 rank == 2 ranks" \
  || { echo "FAIL: structured pruning differs between 1 and 2 ranks"; fail=1; }
cp "$T/s1/struct.h5" "$T/struct_1.h5"
cp -r "$T/s1/struct.h5.structured" "$T/struct_1.h5.structured"
"$QDIST" eval --model "$T/struct_1.h5.structured" --quantized "$T/struct_1.h5" --data "$D" --n 200 --batch 50 --json \
  > "$T/evs.json" || { echo "FAIL: eval of the structured model"; fail=1; }
/usr/bin/python3 - "$T/struct_1.h5" "$T/evs.json" <<'PY' || fail=1
import h5py, json, sys
f = h5py.File(sys.argv[1], "r")
cfg = json.loads(f.attrs["model_config"])
ph = cfg["pruned_heads"]
assert len(ph) == 6 and all(len(v) == 1 for v in ph.values()) and cfg["intermediate_size"] == 96, cfg
t = f["tensors"]
for l in range(6):
    p = f"vit.encoder.layer.{l}."
    assert list(t[p + "attention.attention.query.weight"].attrs["shape"]) == [192, 64]
    assert list(t[p + "attention.output.dense.weight"].attrs["shape"]) == [64, 192]
    assert list(t[p + "intermediate.dense.weight"].attrs["shape"]) == [96, 64]
    assert list(t[p + "output.dense.weight"].attrs["shape"]) == [64, 96]
e = json.load(open(sys.argv[2]))
assert e["quantized"]["linears"]["int8"] == 36 and e["fp32"]["accuracy"] > 0.9, e
print("ok: structured file: heads %s, FFN 128 -> 96, pruned FP32 top-1 %.1f %%" % (sorted(ph.items()), 100 * e["fp32"]["accuracy"]))
PY
# errors
for bad in "--sparsity 2:4 --method gptq --calib $D --act-order|act-order" \
           "--sparsity 0.5 --prune wanda|needs calibration" \
           "--sparsity 3:2|N:M needs" "--prune-only|needs a sparsity" "--prune-heads 4 --calib $D|has 4 heads" \
           "--prune-ffn 1.5|a fraction in (0, 1)" "--prune-heads 1|need calibration samples"; do
  args=${bad%%|*} want=${bad#*|}
  # shellcheck disable=SC2086
  if "$QDIST" quantize --model "$M" --out "$T/bad.h5" $args 2> "$T/err"; then echo "FAIL: accepted $args"; fail=1; fi
  grep -q -- "$want" "$T/err" && echo "ok: refused $args" || { echo "FAIL: message for $args"; cat "$T/err"; fail=1; }
done
exit $fail
