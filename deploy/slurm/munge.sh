# deploy/slurm/munge.sh — sourced by the Slurm tests: start_munge DIR starts a munged private to
# the test (its own key and socket under DIR/munge, logs there), appends its pid to PIDS and
# returns non-zero (log printed) when it did not come up. slurm.conf then says
# AuthInfo=socket=DIR/munge/sock.
start_munge() {
  mkdir -p "$1/munge" && chmod 700 "$1/munge" &&
    dd if=/dev/urandom of="$1/munge/munge.key" bs=1024 count=1 status=none && chmod 400 "$1/munge/munge.key" ||
    return 1
  munged --force -F --socket="$1/munge/sock" --key-file="$1/munge/munge.key" \
    --log-file="$1/munge/munged.log" --pid-file="$1/munge/munged.pid" --seed-file="$1/munge/seed" >/dev/null 2>&1 &
  PIDS+=($!)
  for _ in $(seq 50); do [ -S "$1/munge/sock" ] && return 0; sleep 0.1; done
  cat "$1/munge/munged.log"
  return 1
}
