#!/bin/sh
# A full disk while writing the model file, on a small tmpfs (needs root to mount; skipped, exit
# 77, where mounting is not allowed). The job is refused before any work with an error naming the
# file and the space it needs, no file is left marked complete (none at all when the job was new),
# the process does not crash; a partial file whose resumption finds no space is kept as it was;
# once space is freed the resumed job gives a file identical to an undisturbed run. The service
# reports the same error for its job, stays up and runs the next job.
set -u
: "${QDIST:?}" "${QD_MODELS_DIR:?}"
M=$(realpath "$QD_MODELS_DIR/vit-mnist-tiny")
T=$(mktemp -d /tmp/qd-diskfull-XXXXXX)
MNT="$T/mnt"
mkdir "$MNT"
SPID=
cleanup() {
  [ -n "$SPID" ] && kill "$SPID" 2>/dev/null
  umount "$MNT" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
mount -t tmpfs -o size=1200k tmpfs "$MNT" 2>/dev/null || { echo "cannot mount a tmpfs here: skipped"; exit 77; }
fail=0
bad() { echo "FAIL: $*"; fail=1; }
Q="--bits 4 --asym --group-size 32"
# the reference (~580 KiB), undisturbed, elsewhere
# shellcheck disable=SC2086
"$QDIST" quantize --model "$M" --out "$T/ref.h5" --quiet $Q || exit 1

# 1. a new job on a disk that cannot hold its file: refused up front, nothing left behind
dd if=/dev/zero of="$MNT/filler" bs=1k count=600 2>/dev/null
# shellcheck disable=SC2086
"$QDIST" quantize --model "$M" --out "$MNT/q.h5" --quiet $Q > "$T/out" 2>&1
rc=$?
[ $rc = 1 ] && grep -q "$MNT/q.h5.partial: cannot reserve the [0-9]* bytes the file needs: No space left on device" "$T/out" \
  || { bad "new job on a full disk: exit $rc"; cat "$T/out"; }
[ -e "$MNT/q.h5" ] || [ -e "$MNT/q.h5.partial" ] && bad "a file was left: $(ls "$MNT")"
echo "new job, disk full: exit $rc, $(grep -o 'cannot reserve.*' "$T/out")"

# 2. a partial file (a job interrupted after some tensors) that cannot grow on resumption: kept
rm -f "$MNT/filler"
# shellcheck disable=SC2086
QD_FAULT_RANK=0 QD_FAULT_AFTER=30 QD_CHECKPOINT_SECONDS=0 QD_ROUND_SECONDS=0 "$QDIST" quantize --model "$M" \
  --out "$MNT/q.h5" --quiet $Q > /dev/null 2>&1
[ -f "$MNT/q.h5.partial" ] || { bad "no partial file"; exit 1; }
# the space the interrupted run reserved is kept with its partial file; a copy without it (as a
# file system that does not reserve, or a copied file, leaves it) needs new blocks to resume
cp --sparse=always "$MNT/q.h5.partial" "$T/p" && rm "$MNT/q.h5.partial" && cp --sparse=always "$T/p" "$MNT/q.h5.partial"
used=$(du -k "$MNT/q.h5.partial" | cut -f1)
free=$(df -k "$MNT" | awk 'NR == 2 {print $4}')
dd if=/dev/zero of="$MNT/filler" bs=1k count=$((free - 8)) 2>/dev/null
sum_before=$(md5sum < "$MNT/q.h5.partial")
# shellcheck disable=SC2086
"$QDIST" quantize --model "$M" --out "$MNT/q.h5" --quiet --resume $Q > "$T/out" 2>&1
rc=$?
[ $rc = 1 ] && grep -q "cannot reserve" "$T/out" || { bad "resume on a full disk: exit $rc"; cat "$T/out"; }
[ "$(md5sum < "$MNT/q.h5.partial")" = "$sum_before" ] || bad "the partial file changed"
[ -e "$MNT/q.h5" ] && bad "a file was marked complete"
echo "resume, disk full (partial ${used} KiB on disk): exit $rc, partial kept unchanged"

# 3. space freed: the resumed file equals the undisturbed one
rm -f "$MNT/filler"
# shellcheck disable=SC2086
"$QDIST" quantize --model "$M" --out "$MNT/q.h5" --quiet --resume $Q > "$T/out" 2>&1 || { bad "resume"; cat "$T/out"; }
h5diff --exclude-path /run "$T/ref.h5" "$MNT/q.h5" > "$T/diff" 2>&1 || { bad "resumed file differs"; head "$T/diff"; }
echo "resume after freeing space: identical to the undisturbed run"
rm -f "$MNT/q.h5"

# 4. the service: the job fails with the same error, the service stays up and runs the next one
EP="ipc://$T/req.sock"
"$QDIST" serve --bind "$EP" --allow-dir "$T" --allow-dir "$M" > "$T/serve.log" 2>&1 &
SPID=$!
i=0; until "$QDIST" status --to "$EP" --timeout 1 >/dev/null 2>&1; do
  i=$((i + 1)); [ $i -gt 40 ] && { bad "service did not start"; cat "$T/serve.log"; exit 1; }; sleep 0.3; done
dd if=/dev/zero of="$MNT/filler" bs=1k count=600 2>/dev/null
printf '{"model": "%s", "out": "%s", "bits": 4, "sym": false, "group_size": 32}\n' "$M" "$MNT/s.h5" > "$T/a.json"
"$QDIST" submit "$T/a.json" --to "$EP" --wait > "$T/out" 2>&1
rc=$?
[ $rc = 1 ] && grep -q "cannot reserve" "$T/out" || { bad "service job on a full disk: exit $rc"; cat "$T/out"; }
rm -f "$MNT/filler"
"$QDIST" submit "$T/a.json" --to "$EP" --wait > "$T/out" 2>&1 || { bad "service job after freeing space"; cat "$T/out"; }
h5diff --exclude-path /run "$T/ref.h5" "$MNT/s.h5" > "$T/diff" 2>&1 || bad "service file differs"
"$QDIST" shutdown --to "$EP" > /dev/null 2>&1
wait "$SPID"
src=$?
SPID=
[ $src = 0 ] || { bad "service exit $src"; tail -5 "$T/serve.log"; }
echo "service: the job on a full disk failed (exit $rc), the service stayed up, the next job matched"
[ $fail = 0 ] && echo "ok: disk full"
exit $fail
