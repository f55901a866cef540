# bench/plot_eval.gp — the plot of bench/eval_all.sh: quality and file size against bit width,
# RTN vs GPTQ, one row of panels per model found in results.csv (gnuplot >= 5.4, SVG terminal).
#
#   gnuplot -e "csv='out/eval/results.csv'; svg='out/eval/eval.svg'" bench/plot_eval.gp
#
# Left: ViT top-1 % on MNIST, or for BERT the mean cosine of the mean-pooled sentence embeddings
# to FP32's; right: the .h5 file size in MB. Lines join INT3 g32, INT4 g32 and INT8 per channel
# of one method; INT4 g64 is an open symbol beside x = 4; the dashed line is FP32. Sizes include
# what the file keeps in float (BERT: the 11.7 M-parameter word embeddings).
if (!exists("csv")) csv = 'out/eval/results.csv'
if (!exists("svg")) svg = 'out/eval/eval.svg'

set datafile separator ","
set datafile columnheaders

# The rows of one model and method (mode "int": integer-kernel runs, not fake-quant) as
# "bits value group" lines in datablock $S; returns how many.
ycol = "accuracy_pct"
sel(m, meth, r) = strcol("model") eq m && strcol("method") eq meth && strcol("mode") eq r
models = ""
do for [m in "vit bert"] {
  stats csv using (strcol("model") eq m ? 1 : 0) nooutput
  if (STATS_sum > 0) { models = models . " " . m }
}
nm = words(models)
if (nm == 0) { print "plot_eval: no rows in ", csv; exit }

set terminal svg size 1000, 380 * nm dynamic enhanced font "sans,12" background "white"
set output svg
set multiplot layout nm, 2 title "qdist: FP32 vs quantized (1 thread), RTN vs GPTQ"
set grid
set xtics ("3" 3, "4" 4, "8" 8)
set xlabel "bits per weight"
set key bottom right box opaque samplen 2 font ",10"
set style line 1 lc rgb "#1f77b4" lw 2 pt 7 ps 0.9
set style line 2 lc rgb "#d62728" lw 2 pt 5 ps 0.9
set style line 3 lc rgb "#1f77b4" lw 1 pt 6 ps 1.1
set style line 4 lc rgb "#d62728" lw 1 pt 4 ps 1.1
set style line 5 lc rgb "#555555" lw 1.5 dt 2

do for [i = 1:nm] {
  m = word(models, i)
  if (m eq "vit") { ycol = "accuracy_pct"; ylab = "top-1 % (MNIST, 10,000)"; name = "ViT vit-mnist-tiny" }
  if (m eq "bert") { ycol = "cosine_mean"; ylab = "cosine to FP32 (SST-2 dev, mean)"; name = "BERT all-MiniLM-L6-v2" }
  set autoscale xy
  set offsets 0, 0, 0, 0
  set table $RTN
  plot csv using (column("bits")):(column(ycol)):(column("file_bytes")) with table if (sel(m, "rtn", "int") && strcol("group_size") ne "64")
  set table $GPTQ
  plot csv using (column("bits")):(column(ycol)):(column("file_bytes")) with table if (sel(m, "gptq", "int") && strcol("group_size") ne "64")
  set table $RTN64
  plot csv using (column("bits")):(column(ycol)):(column("file_bytes")) with table if (sel(m, "rtn", "int") && strcol("group_size") eq "64")
  set table $GPTQ64
  plot csv using (column("bits")):(column(ycol)):(column("file_bytes")) with table if (sel(m, "gptq", "int") && strcol("group_size") eq "64")
  unset table
  stats csv using (strcol("model") eq m && strcol("scheme_id") eq "fp32" ? column("accuracy_pct") : NaN) name "FPACC" nooutput
  stats csv using (strcol("model") eq m && strcol("scheme_id") eq "fp32" ? column("file_bytes") / 1e6 : NaN) name "FPMB" nooutput
  fpy = (m eq "vit") ? FPACC_max : 1.0
  fpl = (m eq "vit") ? sprintf("FP32 %.2f %%", fpy) : "FP32 (= 1)"

  set datafile separator whitespace
  set datafile nocolumnheaders
  set xrange [2.5:8.5]
  set ylabel ylab
  set format y (m eq "vit") ? "%.2f" : "%.3f"
  set offsets 0, 0, graph 0.06, graph 0.03
  set yrange [*:*]
  set key bottom right
  set title name . ": quality"
  plot $RTN using 1:2 with linespoints ls 1 title "RTN (g32; INT8 per channel)", \
       $GPTQ using 1:2 with linespoints ls 2 title "GPTQ (g32; INT8 per channel)", \
       $RTN64 using ($1 - 0.08):2 with points ls 3 title "RTN g64", \
       $GPTQ64 using ($1 + 0.08):2 with points ls 4 title "GPTQ g64", \
       fpy with lines ls 5 title fpl

  set ylabel "file MB"
  set format y "%g"
  set offsets 0, 0, 0, 0
  set yrange [0:FPMB_max * 1.45]
  set key top right
  set title name . ": .h5 file size (float tensors included)"
  plot $RTN using 1:($3 / 1e6) with linespoints ls 1 title "RTN", \
       $GPTQ using ($1 + 0.05):($3 / 1e6) with linespoints ls 2 title "GPTQ (shifted by +0.05)", \
       $RTN64 using ($1 - 0.08):($3 / 1e6) with points ls 3 title "RTN g64", \
       $GPTQ64 using ($1 + 0.08):($3 / 1e6) with points ls 4 title "GPTQ g64", \
       FPMB_max with lines ls 5 title sprintf("FP32 %.3g MB", FPMB_max)
  set datafile separator ","
  set datafile columnheaders
}
unset multiplot
