# Sourced by the export tests: fails PATTERN OUT -- command... runs a command that must be refused:
# exit code 1, PATTERN (grep) in its stderr, OUT not created and no partial output left in $T.
fails() {
  pat=$1 out=$2
  shift 3
  if "$@" 2> "$T/err"; then echo "expected a failure: $*"; exit 1; else rc=$?; fi
  [ "$rc" -eq 1 ] || { echo "exit $rc, not 1: $*"; cat "$T/err"; exit 1; }
  grep -q "$pat" "$T/err" || { echo "no '$pat' in:"; cat "$T/err"; exit 1; }
  [ ! -e "$out" ] || { echo "$out was left behind"; exit 1; }
  ls "$T" | grep -q partial && { echo "a partial output was left behind"; ls "$T"; exit 1; }
  echo "ok: refused ($pat)"
}
