#!/bin/sh
# Command tests of `qdist inspect`: totals on the real checkpoint, --json, usage errors (exit 2),
# a corrupt file (exit 1 with the reader's message), and the same under mpiexec with 2 ranks.
# Usage: inspect_cmd.sh QDIST MPIEXEC MODELS_DIR
set -u
QDIST=$1 MPIEXEC=$2 MODELS=$3
CK=$MODELS/vit-mnist-tiny/model.safetensors
T=$(mktemp -d /tmp/qd_inspect_XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# expect CODE CMD...: run, keep stdout in $T/out and stderr in $T/err, compare the exit code
expect() {
    want=$1; shift
    "$@" >"$T/out" 2>"$T/err"
    got=$?
    [ "$got" = "$want" ] || { fail "'$*' exited $got, expected $want"; cat "$T/err"; }
}
has() { grep -qF -- "$2" "$T/$1" || { fail "$1 of the last command lacks '$2'"; head -5 "$T/$1"; }; }

expect 0 "$QDIST" inspect "$CK"
has out "total: 86 tensors, 499,722 parameters, 1,998,888 bytes, 6 encoder blocks"
has out "quantized by default: 36 tensors, 491,520 parameters"
has out "model_type           vit"
has out "architectures[0]     ViTForImageClassification"
has out "num_hidden_layers    6"
has out "header sha256 921c57c6b3a202868435ef686e7657fe7cd40bed458dcdcc5332f63a3ab87b04"
grep -Eq '^vit\.encoder\.layer\.3\.attention\.output\.dense\.weight +F32 +\[64, 256\] +16,384 +65,536 +yes$' "$T/out" \
    || fail "table line of layer.3 attention.output.dense.weight"
grep -Eq '^vit\.embeddings\.patch_embeddings\.projection\.weight +F32 +\[64, 1, 4, 4\] +1,024 +4,096 +-$' "$T/out" \
    || fail "table line of the patch embedding"
[ "$(grep -c ' yes$' "$T/out")" = 36 ] || fail "36 tensors marked for quantization"

expect 0 "$QDIST" inspect "$MODELS/vit-mnist-tiny"          # a directory
has out "499,722 parameters"

expect 0 "$QDIST" inspect --json "$CK"
python3 - "$T/out" <<'PY' || fail "--json output"
import json, sys
j = json.load(open(sys.argv[1]))
t = j["totals"]
assert (t["tensors"], t["params"], t["bytes"], t["quantize_tensors"], t["quantize_params"]) == \
    (86, 499722, 1998888, 36, 491520), t
assert j["config"]["hidden_size"] == 64 and j["config"]["model_type"] == "vit"
assert j["files"][0]["header_sha256"].startswith("921c57c6")
w = [x for x in j["tensors"] if x["name"] == "vit.encoder.layer.5.output.dense.weight"][0]
assert w["shape"] == [64, 128] and w["quantize"] is True and w["block"] == 5, w
PY

# no config.json beside the checkpoint is fine
cp "$CK" "$T/model.safetensors"
expect 0 "$QDIST" inspect "$T/model.safetensors"
has out "config.json: absent"
has out "499,722 parameters"

expect 0 "$QDIST" inspect --help
has out "Usage: [mpirun -n N] qdist inspect"
expect 2 "$QDIST" inspect --bogus "$CK"
has err "unknown option '--bogus'"
expect 2 "$QDIST" inspect
has err "missing PATH"
expect 2 "$QDIST" inspect "$CK" "$CK"

# a corrupt file: header length beyond the end, and a file with a hole
printf '\377\000\000\000\000\000\000\000{}' >"$T/bad.safetensors"
expect 1 "$QDIST" inspect "$T/bad.safetensors"
has err "$T/bad.safetensors: header length 255 larger than the file"
python3 -c "
import struct,sys
h=b'{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}'
open(sys.argv[1],'wb').write(struct.pack('<Q',len(h))+h+bytes(8))" "$T/hole.safetensors"
expect 1 "$QDIST" inspect "$T/hole.safetensors"
has err "hole.safetensors: tensor 'w': hole in the data region"
expect 1 "$QDIST" inspect "$T/nonexistent.safetensors"
has err "no such file"
expect 1 "$QDIST" inspect "$T/nonexistent.h5"

# under MPI: only rank 0 prints; errors give the same exit code on every rank
expect 0 "$MPIEXEC" -n 2 --oversubscribe "$QDIST" inspect "$CK"
[ "$(grep -c '^total: 86 tensors, 499,722 parameters' "$T/out")" = 1 ] || fail "mpiexec -n 2: one table"
expect 1 "$MPIEXEC" -n 2 --oversubscribe "$QDIST" inspect "$T/hole.safetensors"
[ "$(grep -c "tensor 'w': hole" "$T/err")" = 1 ] || fail "mpiexec -n 2: one error message"
expect 2 "$MPIEXEC" -n 2 --oversubscribe "$QDIST" inspect --bogus

if [ "$fails" = 0 ]; then echo "inspect_cmd: all passed"; else echo "inspect_cmd: $fails FAILED"; fi
[ "$fails" = 0 ]
