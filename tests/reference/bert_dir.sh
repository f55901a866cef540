#!/bin/sh
# Prints the directory of the real BERT checkpoint that tests and benchmarks use (fetched by
# deploy/fetch-models.sh), or exits 77 (ctest's "skipped") when there is none.
#   dir=$(sh tests/reference/bert_dir.sh) || exit $?
# Lookup order: $QD_BERT_DIR, $QD_CACHE/models/all-MiniLM-L6-v2,
# $HOME/.cache/qdist/models/all-MiniLM-L6-v2 (the same as tests/reference/bert_dir.h).
# A directory counts when it holds config.json and model.safetensors.
for d in "${QD_BERT_DIR:-}" \
         "${QD_CACHE:+$QD_CACHE/models/all-MiniLM-L6-v2}" \
         "${HOME:+$HOME/.cache/qdist/models/all-MiniLM-L6-v2}"; do
  if [ -n "$d" ] && [ -f "$d/config.json" ] && [ -f "$d/model.safetensors" ]; then
    echo "$d"
    exit 0
  fi
done
echo "bert_dir: no BERT checkpoint (run deploy/fetch-models.sh or set QD_BERT_DIR): skipped" >&2
exit 77
