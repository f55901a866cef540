#!/usr/bin/env bash
# Prints the path of a Python interpreter whose venv holds the pinned peers of
# deploy/requirements-py.txt (torch, transformers, onnx, onnxruntime, compressed-tensors,
# ai-edge-litert), creating the venv on first use. The venv lives outside the repository, under
# ${QD_CACHE:-$HOME/.cache/qdist}/venv/<first 12 hex of the requirements' sha256>, so a changed pin
# makes a new venv and an unchanged one is reused (~6 GB: torch from PyPI is its CUDA build).
# Concurrent callers wait on a lock; a half-built venv is never used (marked complete last).
#   PY=$(deploy/pyenv.sh) && "$PY" script.py
# Exit status 1 (reason on stderr) when the venv cannot be made (no registry reachable).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
req="$here/requirements-py.txt"
CACHE=${QD_CACHE:-${HOME:?HOME is not set; set QD_CACHE}/.cache/qdist}
tag=$(sha256sum "$req" | cut -c1-12)
dest="$CACHE/venv/$tag"
BASE_PY=${QD_BASE_PYTHON:-/usr/bin/python3}
if [ -x "$dest/bin/python" ] && [ -f "$dest/.complete" ]; then echo "$dest/bin/python"; exit 0; fi
mkdir -p "$CACHE/venv"
exec 9>"$CACHE/venv/.lock"
flock 9
if [ -x "$dest/bin/python" ] && [ -f "$dest/.complete" ]; then echo "$dest/bin/python"; exit 0; fi
# built in place and marked complete last: an interrupted build is removed and redone
rm -rf "$dest"
echo "pyenv: creating $dest (pinned peers of deploy/requirements-py.txt; about 2 minutes)" >&2
"$BASE_PY" -m venv "$dest" >&2
if ! "$dest/bin/pip" install -q --no-input -r "$req" >&2; then
  echo "pyenv: pip could not install deploy/requirements-py.txt (is a package registry reachable?)" >&2
  rm -rf "$dest"
  exit 1
fi
touch "$dest/.complete"
echo "$dest/bin/python"
