#!/bin/sh
# Markdown tables of a qdist sweep's sweep.csv, as docs/sweep.md shows them: one row per method
# and granularity (dense cells of the first activation mode), one column per weight bit width,
# each "quality, file MB" (quality: the column named by QUALITY, default cosine_mean); then the
# float reference cells and the pruned cells, one line each.
# Usage: sh bench/sweep_table.sh OUT/sweep.csv [QUALITY]
set -eu
CSV=$1
Q=${2:-cosine_mean}
awk -F, -v Q="$Q" '
NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
{
  m = $col["method"]; g = $col["granularity"]; b = $col["bits"]; sp = $col["sparsity"]; st = $col["status"]
  v = (st == "ok") ? sprintf("%.4f, %.2f MB", $col[Q], $col["file_bytes"] / 1e6) : (st == "skipped" ? "—" : "failed")
  if (g == "-") { fl[++nf] = sprintf("| %s | %s | %.4f | %.2f MB | %.2fx |", m, st, $col[Q], $col["file_bytes"] / 1e6, $col["compression"]); next }
  if (sp != "0" && sp != "") {
    if (st == "ok") pr[++np] = sprintf("| %s | %s | %s | %s | %s | %.4f | %.2f MB |", m, b, g, sp, $col["prune"], $col[Q], $col["file_bytes"] / 1e6)
    next
  }
  key = m SUBSEP g
  if (!(key in seen)) { seen[key] = 1; order[++nk] = key }
  if (!(b in bs)) { bs[b] = 1; nb++; bl[nb] = b }
  cell[key, b] = v
  if (fp == "" && st == "ok") fp = sprintf("%.2f MB", $col["fp32_file_bytes"] / 1e6)
}
END {
  n = nb; for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (bl[j] + 0 < bl[i] + 0) { t = bl[i]; bl[i] = bl[j]; bl[j] = t }
  printf "| method | granularity |"; for (i = 1; i <= n; i++) printf " %s bits |", bl[i]; printf "\n"
  printf "|---|---|"; for (i = 1; i <= n; i++) printf "---|"; printf "\n"
  for (k = 1; k <= nk; k++) {
    split(order[k], p, SUBSEP); printf "| %s | %s |", p[1], p[2]
    for (i = 1; i <= n; i++) printf " %s |", ((order[k], bl[i]) in cell) ? cell[order[k], bl[i]] : "not run"
    printf "\n"
  }
  printf "\n(%s, file size; FP32 checkpoint %s.)\n", Q == "cosine_mean" ? "cosine to FP32" : Q, fp
  if (nf) { printf "\n| reference | status | %s | file | compression |\n|---|---|---|---|---|\n", Q; for (i = 1; i <= nf; i++) print fl[i] }
  if (np) { printf "\n| method | bits | granularity | sparsity | pruning | %s | file |\n|---|---|---|---|---|---|---|\n", Q; for (i = 1; i <= np; i++) print pr[i] }
}' "$CSV"
