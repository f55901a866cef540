#!/bin/sh
# What qdist quantize says it did: the banner names the full scheme; the summary's "tensor data"
# equals the bytes of the file's datasets (read back with h5py, quantized payload and the rest
# apart) and "file" the file's size; a GPTQ job reports its calibrated phase and the CPU of its
# units, not GB/s of input; a checkpoint with nothing to quantize (names of an architecture
# qdist does not recognise, here a GPT-2-style one) fails on 1 and 2 ranks with a message naming
# the architecture and writes nothing, and --include is the way out it names.
set -eu
: "${QDIST:?}" "${QD_MODELS_DIR:?}"
M="$QD_MODELS_DIR/vit-mnist-tiny"
D="$QD_MODELS_DIR/data/mnist/t10k-images-idx3-ubyte.gz"
T=$(mktemp -d /tmp/qd-summary-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0

"$QDIST" quantize --model "$M" --out "$T/q4.h5" --bits 4 --asym --group-size 32 --progress none > "$T/q4.txt"
grep -q "36 to quantize: rtn 4-bit asym group 32)" "$T/q4.txt" || { echo "banner:"; cat "$T/q4.txt"; fail=1; }
grep -q "^  scheme       rtn 4-bit asym group 32$" "$T/q4.txt" || { echo "scheme line:"; cat "$T/q4.txt"; fail=1; }
"$QDIST" quantize --model "$M" --out "$T/q8.h5" --clip mse --progress none > "$T/q8.txt"
grep -q "36 to quantize: rtn 8-bit sym per channel, mse clipping)" "$T/q8.txt" || { cat "$T/q8.txt"; fail=1; }
/usr/bin/python3 - "$T/q4.h5" "$T/q4.txt" "$M/model.safetensors" <<'PY' || fail=1
import h5py, os, re, sys, struct, json
path, txt, st = sys.argv[1:4]
out = open(txt).read()
m = re.search(r"tensor data  (\d+) bytes in the checkpoint, (\d+) in the file \([\d.]+x smaller\): quantized payload "
              r"(\d+) bytes \(codes, scales, zeros\) for (\d+) bytes of weights \([\d.]+x\), (\d+) bytes kept as float", out)
assert m, out
ck, infile, qpay, qin, kept = map(int, m.groups())
f = h5py.File(path, "r")
want = {"quantized": 0, "kept": 0}
for name, g in f["tensors"].items():
    k = g.attrs["kind"]
    k = k.decode() if isinstance(k, bytes) else str(k)
    for ds in g.values():
        want["quantized" if k == "quantized" else "kept"] += ds.size * ds.dtype.itemsize
assert (qpay, kept) == (want["quantized"], want["kept"]), (qpay, kept, want)
assert infile == qpay + kept
# 36 weights of 4-bit codes, plus a float scale and an int32 zero per group of 32
assert qin == 4 * 491520 and qpay == 491520 // 2 + (491520 // 32) * 8, (qin, qpay)
# the checkpoint's tensor data: the safetensors data region (file size - 8 - header)
n = struct.unpack("<Q", open(st, "rb").read(8))[0]
assert ck == os.path.getsize(st) - 8 - n, (ck, os.path.getsize(st), n)
fb = int(re.search(r"^  file         (\d+) bytes", out, re.M).group(1))
assert fb == os.path.getsize(path), (fb, os.path.getsize(path))
print(f"ok: tensor data {infile} = quantized payload {qpay} + kept {kept}; file {fb} bytes")
PY

mpiexec -n 2 --oversubscribe "$QDIST" quantize --model "$M" --out "$T/g.h5" --method gptq --bits 4 --asym \
  --group-size 32 --calib "$D" --nsamples 16 --progress none > "$T/g.txt"
grep -q "36 to quantize: gptq 4-bit asym group 32)" "$T/g.txt" || { cat "$T/g.txt"; fail=1; }
grep -qE "^  time         [0-9.]+ s on 2 ranks: calibrated phase [0-9.]+ s \(calibration and gptq\), writing" "$T/g.txt" &&
  grep -qE "^  units CPU    [0-9.]+ s in all, [0-9.]+ s on the busiest rank \(gptq of the row units\): balance" "$T/g.txt" &&
  ! grep -q "GB/s" "$T/g.txt" || { echo "gptq summary:"; cat "$T/g.txt"; fail=1; }
[ $fail = 0 ] && echo "ok: banners and summaries"

# a GPT-2-style checkpoint: no tensor named as the encoder blocks qdist knows
mkdir -p "$T/gpt"
/usr/bin/python3 - "$T/gpt" <<'PY'
import json, struct, sys
d = sys.argv[1]
shapes = {"wte.weight": [32, 8], "h.0.attn.c_attn.weight": [8, 24], "h.0.mlp.c_fc.weight": [8, 32],
          "h.0.ln_1.weight": [8], "ln_f.weight": [8]}
hdr, off, blob = {}, 0, b""
for k, s in shapes.items():
    n = 1
    for x in s: n *= x
    data = struct.pack(f"<{n}f", *[(i % 7 - 3) * 0.01 for i in range(n)])
    hdr[k] = {"dtype": "F32", "shape": s, "data_offsets": [off, off + len(data)]}
    off += len(data); blob += data
h = json.dumps(hdr).encode()
h += b" " * (-len(h) % 8)
open(f"{d}/model.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + blob)
json.dump({"model_type": "gpt2", "n_embd": 8, "n_layer": 1}, open(f"{d}/config.json", "w"))
PY
for n in 1 2; do
  rc=0
  mpiexec -n $n --oversubscribe "$QDIST" quantize --model "$T/gpt" --out "$T/gpt$n.h5" > "$T/out" 2> "$T/err" || rc=$?
  if [ $rc != 1 ] || ! grep -q "nothing to quantize for architecture 'gpt2'" "$T/err" || ! grep -q -- "--include" "$T/err" ||
     [ -e "$T/gpt$n.h5" ] || [ -e "$T/gpt$n.h5.partial" ]; then
    echo "FAIL: nothing to quantize on $n rank(s): exit $rc"; cat "$T/out" "$T/err"; ls "$T"; fail=1
  else
    echo "ok: nothing to quantize on $n rank(s): exit 1: $(head -n 1 "$T/err" | cut -c1-120)..."
  fi
done
"$QDIST" plan --ranks 2 --model "$T/gpt" | grep -q "^nothing to quantize" || { echo "FAIL: plan did not say it"; fail=1; }
"$QDIST" quantize --model "$T/gpt" --out "$T/gpt-inc.h5" --include 'h.*.weight' --quiet
[ -f "$T/gpt-inc.h5" ] || { echo "FAIL: --include did not quantize"; fail=1; }
exit $fail
