#!/bin/sh
# QD_KERNELS=ref forces the scalar reference kernels everywhere, and they define what qdist
# writes: quantize on the real ViT with the reference kernels and with the default dispatch gives
# identical files (h5diff, /run aside) for RTN (8-bit per channel; 4-bit groups with the MSE search
# on 2 ranks, row sharding), GPTQ (act-order, sequential calibration) and AdaRound; eval of the 8-bit
# and the GPTQ file gives the same figures (accuracy, agreement, cosine, outliers: the integer
# GEMMs and the activation kernels are bit-exact, so no tolerance is needed), timings aside.
# AdaRound's Hessian product in AMX bfloat16 tiles is another algorithm, not a faster kernel (the
# file records it): where the default picks it, the comparison is against QD_KERNELS=avx512, the
# best vector kernels without it.
set -eu
: "${QDIST:?}" "${QD_MODELS_DIR:?}"
M="$QD_MODELS_DIR/vit-mnist-tiny"
D="$QD_MODELS_DIR/data/mnist/t10k-images-idx3-ubyte.gz"
T=$(mktemp -d /tmp/qd-kref-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0

job() { # name ranks args...
  name=$1 n=$2
  shift 2
  for k in ref default; do
    if [ $k = ref ]; then
      QD_KERNELS=ref mpiexec -n "$n" --oversubscribe "$QDIST" quantize --model "$M" --out "$T/$name-$k.h5" --quiet "$@"
    else
      env -u QD_KERNELS mpiexec -n "$n" --oversubscribe "$QDIST" quantize --model "$M" --out "$T/$name-$k.h5" --quiet "$@"
    fi
  done
}
same() { # name
  if h5diff --exclude-path /run "$T/$1-ref.h5" "$T/$1-default.h5" >/dev/null; then
    echo "ok: $1: QD_KERNELS=ref == default"
  else
    echo "DIFFERENT: $1: QD_KERNELS=ref vs default"
    h5diff --exclude-path /run "$T/$1-ref.h5" "$T/$1-default.h5" | head -5
    fail=1
  fi
}

job rtn8 1 --bits 8
same rtn8
job rtn4 2 --bits 4 --asym --group-size 32 --clip mse --shard rows
same rtn4
job gptq4 2 --method gptq --bits 4 --asym --group-size 32 --act-order --calib "$D" --nsamples 16
same gptq4
job ada3 1 --method adaround --bits 3 --asym --group-size 32 --calib "$D" --nsamples 16 --iters 30
if h5dump -a /quant_config "$T/ada3-default.h5" | grep -q bf16; then
  echo "adaround: the default picked the AMX bfloat16 product; comparing QD_KERNELS=avx512 with ref"
  QD_KERNELS=avx512 "$QDIST" quantize --model "$M" --out "$T/ada3-default.h5" --quiet --overwrite --method adaround \
    --bits 3 --asym --group-size 32 --calib "$D" --nsamples 16 --iters 30
fi
same ada3
# the comparison is not vacuous: another scheme differs
h5diff -q --exclude-path /run "$T/rtn8-ref.h5" "$T/rtn4-ref.h5" >/dev/null 2>&1 && { echo "h5diff saw no difference"; fail=1; }

for f in rtn8 gptq4; do
  QD_KERNELS=ref "$QDIST" eval --model "$M" --quantized "$T/$f-ref.h5" --data "$D" --n 100 --json > "$T/e-$f-ref.json"
  env -u QD_KERNELS "$QDIST" eval --model "$M" --quantized "$T/$f-ref.h5" --data "$D" --n 100 --json > "$T/e-$f-default.json"
done
/usr/bin/python3 - "$T" <<'PY' || fail=1
import json, sys
t = sys.argv[1]
SKIP = ("latency", "throughput", "rss", "kernels_isa", "seconds", "time")
def figures(x, path=""):
    """every value of the report but timings and the ISA name, by path"""
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            if not any(s in k for s in SKIP):
                out.update(figures(v, f"{path}/{k}"))
        return out
    return {path: x}
bad = 0
for f in ("rtn8", "gptq4"):
    a = figures(json.load(open(f"{t}/e-{f}-ref.json")))
    b = figures(json.load(open(f"{t}/e-{f}-default.json")))
    assert "/quantized/accuracy" in a and "/agreement" in a, sorted(a)
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            print(f"DIFFERENT: eval {f}: {k}: ref {a.get(k)} vs default {b.get(k)}")
            bad = 1
    if not bad:
        isa = json.load(open(f"{t}/e-{f}-default.json")).get("kernels_isa")
        print(f"ok: eval {f}: QD_KERNELS=ref == default ({isa}) ({len(a)} figures, e.g. accuracy {a['/quantized/accuracy']}, "
              f"cosine {a.get('/cosine/mean')})")
sys.exit(bad)
PY
exit $fail
