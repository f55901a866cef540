#!/bin/sh
# qdist finetune end to end on vit-mnist-tiny (small: 48-96 MNIST images, a few steps each):
#  - 1, 2, 3 and 4 ranks write bit-identical weights (full fine-tuning, new head, partial batch);
#  - SIGTERM on 2 ranks (exit 3, checkpoint), --resume on 4 ranks: identical to an
#    uninterrupted 1-rank run; --resume with other settings is refused;
#  - the result loads as a checkpoint (qdist quantize);
#  - QAT from a 4-bit RTN file writes a qdist model with method "lsq" that qdist eval runs;
#    QAT starts exactly at its source; scale-only keeps every code of its source and changes
#    scales;
#  - --select: a run that only gets worse on the held-out items writes its start (the PTQ file);
#  - --act-lsq: the Linear inputs' activation steps train and are written to the record;
#  - --mask: plain fine-tuning of a pruned model keeps its pattern (pruned weights stay 0);
#  - bad input: usage errors exit 2, data errors exit 1 naming the file.
set -eu
Q=${QDIST:?QDIST is not set}
M=${QD_MODELS_DIR:?QD_MODELS_DIR is not set}
VIT=$M/vit-mnist-tiny
IMG=$M/data/mnist/t10k-images-idx3-ubyte.gz
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
A="--model $VIT --data $IMG --data-range 0:50 --head 10 --batch 12 --epochs 1 --lr 1e-3 --seed 3 --quiet"

for n in 1 2 3 4; do
  mpirun -n $n "$Q" finetune $A --out "$T/r$n" || fail "finetune on $n ranks"
done
cmp "$T/r1/model.safetensors" "$T/r2/model.safetensors" || fail "2 ranks differ from 1"
cmp "$T/r1/model.safetensors" "$T/r3/model.safetensors" || fail "3 ranks differ from 1"
cmp "$T/r1/model.safetensors" "$T/r4/model.safetensors" || fail "4 ranks differ from 1"
cmp -s "$T/r1/model.safetensors" "$VIT/model.safetensors" && fail "the weights did not change"
grep -q '"num_labels":[[:space:]]*10' "$T/r1/config.json" || fail "config.json lacks num_labels"
echo "ok: 1, 2, 3, 4 ranks identical"

# interrupted and resumed on another rank count
B="--model $VIT --data $IMG --data-range 0:96 --batch 4 --epochs 2 --lr 1e-4 --seed 5"
"$Q" finetune $B --quiet --out "$T/full" || fail "uninterrupted run"
# SIGTERM on rank 0 after step 5 (the hook raises it there)
rc=0
QD_FAULT_SIGNAL_AFTER=5 mpirun -n 2 "$Q" finetune $B --out "$T/int" >"$T/int.log" 2>&1 || rc=$?
[ $rc = 3 ] || { cat "$T/int.log"; fail "SIGTERM: exit $rc, expected 3"; }
[ -f "$T/int/checkpoint.safetensors" ] || fail "no checkpoint after SIGTERM"
rc=0
"$Q" finetune $B --lr 2e-4 --quiet --out "$T/int" --resume 2>"$T/err" || rc=$?
[ $rc = 1 ] && grep -q "other settings" "$T/err" || fail "resume with another --lr: exit $rc, $(cat "$T/err")"
# the model is compared by its fingerprint: another path to it resumes, other weights do not
rc=0
"$Q" finetune $(echo "$B" | sed "s|--model $VIT|--model $T/r1|") --quiet --out "$T/int" --resume 2>"$T/err" || rc=$?
[ $rc = 1 ] && grep -q "other settings" "$T/err" || fail "resume with another model: exit $rc, $(cat "$T/err")"
ln -s "$VIT" "$T/vit-link"
mpirun -n 4 "$Q" finetune $(echo "$B" | sed "s|--model $VIT|--model $T/vit-link|") --quiet --out "$T/int" --resume ||
  fail "resume (the model by another path)"
cmp "$T/full/model.safetensors" "$T/int/model.safetensors" || fail "resumed run differs"
[ ! -f "$T/int/checkpoint.safetensors" ] || fail "checkpoint left after completion"
echo "ok: SIGTERM + resume identical"

"$Q" quantize --model "$T/r1" --out "$T/r1.h5" --quiet || fail "quantize the fine-tuned model"

# QAT and scale-only from a 4-bit file
"$Q" quantize --model "$VIT" --out "$T/q4.h5" --bits 4 --asym --quiet
C="--model $VIT --data $IMG --data-range 0:48 --batch 16 --epochs 1 --lr 1e-4 --quiet"
mpirun -n 2 "$Q" finetune $C --qat "$T/q4.h5" --distill 0.5 --out "$T/qat.h5" || fail "qat"
"$Q" inspect "$T/qat.h5" | grep -q "lsq" || fail "qat file: method lsq"
"$Q" eval --model "$VIT" --quantized "$T/qat.h5" --data "$IMG" --n 20 --batch 20 --fake-quant >/dev/null || fail "eval qat"
"$Q" finetune $C --scale-only "$T/q4.h5" --out "$T/so.h5" || fail "scale-only"
L=vit.encoder.layer.2.intermediate.dense.weight
h5diff "$T/q4.h5" "$T/so.h5" "/tensors/$L/qweight" "/tensors/$L/qweight" || fail "scale-only changed codes"
h5diff -q "$T/q4.h5" "$T/so.h5" "/tensors/$L/scales" "/tensors/$L/scales" && fail "scale-only left the scales"
# QAT starts exactly at its source: a step of 1e-12 changes no code
"$Q" finetune $C --qat "$T/q4.h5" --max-steps 1 --lr 1e-12 --out "$T/q0.h5" || fail "qat, 1 step"
h5diff "$T/q4.h5" "$T/q0.h5" "/tensors/$L/qweight" "/tensors/$L/qweight" || fail "qat does not start at its source"
echo "ok: qat, scale-only"

# a pruned file (50 % magnitude + INT4): QAT and scale-only keep its mask; the file stays pruned
"$Q" quantize --model "$VIT" --out "$T/sp.h5" --bits 4 --asym --sparsity 0.5 --prune magnitude --quiet
mpirun -n 2 "$Q" finetune $C --qat "$T/sp.h5" --lr 1e-2 --out "$T/spq.h5" || fail "qat on a pruned file"
"$Q" inspect "$T/spq.h5" | grep "$L" | grep -q "lsq.*sparsity 50.0%" || fail "qat: the file is no longer pruned"
h5diff "$T/sp.h5" "$T/spq.h5" "/tensors/$L/mask" "/tensors/$L/mask" || fail "qat moved the mask"
h5diff -q "$T/sp.h5" "$T/spq.h5" "/tensors/$L/nz_qweight" "/tensors/$L/nz_qweight" && fail "qat left every kept code"
"$Q" finetune $C --scale-only "$T/sp.h5" --lr 1e-3 --out "$T/sps.h5" || fail "scale-only on a pruned file"
h5diff "$T/sp.h5" "$T/sps.h5" "/tensors/$L/nz_qweight" "/tensors/$L/nz_qweight" || fail "scale-only changed codes"
"$Q" eval --model "$VIT" --quantized "$T/spq.h5" --data "$IMG" --n 20 --batch 20 >/dev/null || fail "eval pruned qat"
# plain fine-tuning with the pruned file's mask: the pruned weights are exactly 0 in the output,
# so magnitude pruning at 50 % of the result finds the same mask
mpirun -n 2 "$Q" finetune $A --mask "$T/sp.h5" --out "$T/spf" || fail "finetune --mask"
cmp -s "$T/r1/model.safetensors" "$T/spf/model.safetensors" && fail "--mask changed nothing"
"$Q" quantize --model "$T/spf" --out "$T/spf.h5" --bits 4 --asym --sparsity 0.5 --prune magnitude --quiet
h5diff "$T/sp.h5" "$T/spf.h5" "/tensors/$L/mask" "/tensors/$L/mask" || fail "--mask: pruned weights moved"
rc=0; "$Q" finetune $C --qat "$T/sp.h5" --mask "$T/sp.h5" --out "$T/x.h5" 2>/dev/null || rc=$?
[ $rc = 2 ] || fail "--qat with --mask: exit $rc"
echo "ok: pruned files keep their mask"

# --select: QAT at a learning rate that wrecks the model; the held-out items choose the start
"$Q" finetune $C --qat "$T/q4.h5" --epochs 2 --lr 0.3 --warmup 0 --select "$IMG" --select-range 100:160 \
  --log "$T/sel.jsonl" --out "$T/sel.h5" || fail "qat --select"
grep -q '"select_acc"' "$T/sel.jsonl" || fail "--select: no held-out score in the log"
h5diff "$T/q4.h5" "$T/sel.h5" "/tensors/$L/qweight" "/tensors/$L/qweight" || fail "--select did not keep the start"
h5diff "$T/q4.h5" "$T/sel.h5" "/tensors/$L/scales" "/tensors/$L/scales" || fail "--select did not keep the scales"
h5dump -a /run/ranks "$T/qat.h5" | grep -q "(0): 2" || fail "qat on 2 ranks: /run/ranks is not 2"
echo "ok: --select"

# --act-lsq: the int8 steps of the Linears' inputs in the static activation record train and are
# written back (the others stay as calibrated); integer-only eval runs the result
act() { # FILE ATTR NAME: the record's ATTR value of tensor NAME
  n=$(h5dump -a /activations/names "$1" | sed -n '/DATA {/,/}/p' | tr -s ' ,' '\n\n' | grep '^"' | grep -n "^\"$3\"$" | cut -d: -f1)
  h5dump -a "/activations/$2" "$1" | sed -n '/DATA {/,/}/p' | sed 's/([0-9]*)://' | tr -s ' ,' '\n\n' |
    grep -E '^-?[0-9]' | sed -n "${n}p"
}
"$Q" quantize --model "$VIT" --out "$T/st.h5" --bits 4 --asym --activations static --calib "$IMG" --nsamples 16 --quiet
mpirun -n 2 "$Q" finetune $C --qat "$T/st.h5" --act-lsq --lr 1e-3 --out "$T/stq.h5" || fail "qat --act-lsq"
[ "$(act "$T/st.h5" scale layer.1.mlp_in)" != "$(act "$T/stq.h5" scale layer.1.mlp_in)" ] || fail "--act-lsq: step unchanged"
[ "$(act "$T/st.h5" scale layer.1.q)" = "$(act "$T/stq.h5" scale layer.1.q)" ] || fail "--act-lsq: layer.1.q changed"
"$Q" eval --model "$VIT" --quantized "$T/stq.h5" --data "$IMG" --n 20 --batch 20 --integer-only >/dev/null ||
  fail "eval --integer-only of the --act-lsq file"
rc=0; "$Q" finetune $C --qat "$T/q4.h5" --act-lsq --out "$T/x.h5" 2>"$T/err" || rc=$?
[ $rc = 1 ] && grep -q "no static activation record" "$T/err" || fail "--act-lsq without a record: exit $rc"
echo "ok: --act-lsq"

# errors
rc=0; "$Q" finetune --model "$VIT" --data "$IMG" --out "$T/x" --head 1 2>/dev/null || rc=$?
[ $rc = 2 ] || fail "--head 1: exit $rc"
rc=0; "$Q" finetune --model "$VIT" --data "$T/nope.gz" --out "$T/x" 2>"$T/err" || rc=$?
[ $rc = 1 ] && grep -q "nope.gz" "$T/err" || fail "missing data: exit $rc, $(cat "$T/err")"
rc=0; "$Q" finetune --model "$VIT" --data "$IMG" --data-range 0:20 --head 5 --out "$T/x" 2>"$T/err" || rc=$?
[ $rc = 1 ] && grep -q "classes" "$T/err" || fail "labels beyond the head: exit $rc, $(cat "$T/err")"
rc=0; "$Q" finetune $C --out "$T/x.h5" 2>/dev/null || rc=$?
[ $rc = 2 ] || fail ".h5 without --qat: exit $rc"
echo "ok: errors"
