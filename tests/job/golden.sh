#!/bin/sh
# The files qdist writes do not change unnoticed: tiny jobs on vit-mnist-tiny, each file dumped
# (h5dump, every float with 17 digits, without /run and the file name) and hashed, against the
# digests in tests/job/golden.txt.
#   RTN files depend on nothing but the code (the kernels' bits are the scalar reference's), so
#   their digests hold on every machine.
#   GPTQ and AdaRound files also depend on the BLAS kernels and (AdaRound) on AMX bfloat16 tiles,
#   which the CPU picks, so their digests are stored per product: a line is keyed by the CPU model
#   and its AVX2 / AVX-512 / AMX flags. On a CPU without stored lines they are only compared
#   across rank counts here, and the lines to record are printed.
#   sh tests/job/golden.sh [--record]      (QDIST, QD_MODELS_DIR as in ctest)
set -u
: "${QDIST:?}" "${QD_MODELS_DIR:?}"
here=$(cd "$(dirname "$0")" && pwd)
G="$here/golden.txt"
M="$QD_MODELS_DIR/vit-mnist-tiny"
D="$QD_MODELS_DIR/data/mnist/t10k-images-idx3-ubyte.gz"
T=$(mktemp -d /tmp/qd-golden-XXXXXX)
trap 'rm -rf "$T"' EXIT
record=0
[ "${1:-}" = --record ] && record=1
[ -f "$G" ] || G=/dev/null
flags=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|amx_bf16)$' | tr '\n' '+')
key=$(printf '%s|%s' "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" "$flags" |
  sha256sum | cut -c1-12)
digest() { # file -> sha256 of its dump outside /run
  h5dump -m '%.17g' "$1" | sed 1d | awk '/^   GROUP "run" \{/ {skip=1} !skip {print} skip && /^   \}$/ {skip=0}' |
    sha256sum | cut -c1-64
}
job() { # name ranks args...
  name=$1 n=$2
  shift 2
  # from the models folder: calibrated files record the --calib path as given, so it is relative
  # (the same wherever the checkout and ../shared are)
  (cd "$QD_MODELS_DIR" && mpiexec -n "$n" --oversubscribe "$QDIST" quantize --model "$M" --out "$T/$name.h5" --quiet \
    "$@") > "$T/log" 2>&1 ||
    { echo "FAIL: $name: $(cat "$T/log")"; exit 1; }
  digest "$T/$name.h5" > "$T/$name.sha"
}
cat > "$T/mix.json" <<J
{"bits": 8, "include": ["classifier.weight"], "overrides": [
  {"pattern": "*.output.dense.weight", "skip": true},
  {"pattern": "*.attention.attention.*", "bits": 4, "group_size": 32, "sym": false, "clip": "mse"},
  {"pattern": "*.intermediate.*", "bits": 3, "granularity": "tensor", "sym": false}]}
J
job rtn8 2 --bits 8
job rtn4g32mse 2 --bits 4 --asym --group-size 32 --clip mse
job rtn3g16 1 --bits 3 --asym --group-size 16
job rtn2tensor 1 --bits 2 --asym --granularity tensor
job rtnmix 2 --config "$T/mix.json"
# the scalar reference kernels write the same bits
QD_KERNELS=ref job rtn4g32mse_ref 1 --bits 4 --asym --group-size 32 --clip mse
C="--calib ${D#"$QD_MODELS_DIR"/} --nsamples 16 --microbatch 4"
# shellcheck disable=SC2086
job gptq 1 --method gptq --bits 4 --asym --group-size 32 --act-order $C
# shellcheck disable=SC2086
job gptq_n2 2 --method gptq --bits 4 --asym --group-size 32 --act-order $C
# shellcheck disable=SC2086
job ada 1 --method adaround --bits 3 --asym --group-size 32 --iters 30 $C
# shellcheck disable=SC2086
job ada_n2 2 --method adaround --bits 3 --asym --group-size 32 --iters 30 $C
fail=0
cmp -s "$T/rtn4g32mse.sha" "$T/rtn4g32mse_ref.sha" || { echo "FAIL: QD_KERNELS=ref wrote another file"; fail=1; }
for p in gptq ada; do
  cmp -s "$T/$p.sha" "$T/${p}_n2.sha" || { echo "FAIL: $p: 1 and 2 ranks wrote different files"; fail=1; }
done
check() { # case expected
  got=$(cat "$T/$1.sha")
  if [ "$got" = "$2" ]; then echo "ok: $1"; else echo "FAIL: $1: digest $got, stored $2"; fail=1; fi
}
for c in rtn8 rtn4g32mse rtn3g16 rtn2tensor rtnmix; do
  want=$(awk -v c="$c" '$1 == "any" && $2 == c {print $3}' "$G")
  if [ $record = 1 ]; then echo "any $c $(cat "$T/$c.sha")"; continue; fi
  [ -n "$want" ] || { echo "FAIL: $c: no stored digest in $G"; fail=1; continue; }
  check "$c" "$want"
done
for c in gptq ada; do
  want=$(awk -v k="$key" -v c="$c" '$1 == k && $2 == c {print $3}' "$G")
  if [ $record = 1 ] || [ -z "$want" ]; then
    echo "$key $c $(cat "$T/$c.sha")"
    [ $record = 1 ] || echo "note: no stored $c digest for this CPU (key $key): the line above records it"
    continue
  fi
  check "$c" "$want"
done
exit $fail
