# bench/plot_qat.gp — accuracy per epoch of QAT and scale-only fine-tuning against the PTQ
# methods, from bench/train_compare.sh's CSV files; one panel per data set (name column).
#
#   gnuplot -e "dir='out/train_compare'; out='out/train_compare/qat.png'" bench/plot_qat.gp
#
# Solid lines: QAT at 4/3/2 bits (epoch 0 = the GPTQ file it starts from); dashed: scale-only;
# horizontal dotted lines: the best PTQ method at each width; black: FP32.
if (!exists("dir")) dir = 'out/train_compare'
if (!exists("out")) out = dir . '/qat.png'
curve = dir . '/curve.csv'
res = dir . '/results.csv'
set datafile separator ","
names = system("tail -n +2 " . curve . " | cut -d, -f1 | sort -u | tr '\\n' ' '")
nn = words(names)
if (nn == 0) { print "plot_qat: no rows in ", curve; exit }
set terminal pngcairo size 640 * nn, 460 enhanced font "sans,11" background "white"
set output out
set multiplot layout 1, nn title "qdist: top-1 per epoch of QAT (solid) and scale-only (dashed) vs PTQ (dotted)"
set xlabel "epoch"
set ylabel "top-1 %"
set key bottom right
set grid
do for [k = 1:nn] {
  n = word(names, k)
  fp = real(system(sprintf("awk -F, '$1==\"%s\" && $3==\"fp32\" {f=$4} END{print f+0}' %s", n, res)))
  set title n
  # best PTQ per width
  p2 = real(system(sprintf("awk -F, 'BEGIN{m=0} $1==\"%s\" && $2==2 && ($3==\"rtn\"||$3==\"gptq\"||$3==\"adaround\") && $4>m {m=$4} END{print m}' %s", n, res)))
  p3 = real(system(sprintf("awk -F, 'BEGIN{m=0} $1==\"%s\" && $2==3 && ($3==\"rtn\"||$3==\"gptq\"||$3==\"adaround\") && $4>m {m=$4} END{print m}' %s", n, res)))
  p4 = real(system(sprintf("awk -F, 'BEGIN{m=0} $1==\"%s\" && $2==4 && ($3==\"rtn\"||$3==\"gptq\"||$3==\"adaround\") && $4>m {m=$4} END{print m}' %s", n, res)))
  plot \
    for [b in "4 3 2"] sprintf("< awk -F, '$1==\"%s\" && $2==%s && $3==\"qat\" {print $4\",\"$5}' %s", n, b, curve) \
      using 1:2 with linespoints lw 2 lc (b eq "4" ? 2 : b eq "3" ? 3 : 1) title "QAT ".b." bit", \
    for [b in "4 3 2"] sprintf("< awk -F, '$1==\"%s\" && $2==%s && $3==\"scale-only\" {print $4\",\"$5}' %s", n, b, curve) \
      using 1:2 with linespoints dt 2 lc (b eq "4" ? 2 : b eq "3" ? 3 : 1) title "scale-only ".b." bit", \
    (p4 > 0 ? p4 : 1/0) with lines dt 3 lc 2 title "best PTQ 4 bit", \
    (p3 > 0 ? p3 : 1/0) with lines dt 3 lc 3 title "best PTQ 3 bit", \
    (p2 > 0 ? p2 : 1/0) with lines dt 3 lc 1 title "best PTQ 2 bit", \
    (fp > 0 ? fp : 1/0) with lines lc rgb "black" title "FP32"
}
unset multiplot
