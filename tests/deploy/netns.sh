# tests/deploy/netns.sh — sourced by the tests that make hosts of network namespaces
# (tests/deploy/multihost.sh, deploy/slurm/test-multinode.sh; the recipe in ENVIRONMENT.md, with
# a bridge so that more than two can talk).
#   netns_switch SW              a namespace SW holding the bridge br0
#   netns_host SW NS I ADDR      a namespace NS joined to SW's bridge by veth pI (its end named
#                                mpi0), loopback-range address 127.100.0.ADDR/24 on it, 127/8
#                                no longer local (route_localnet), so traffic leaves by mpi0
#   netns_delete NS...           (below)
netns_switch() {
  ip netns add "$1" && ip -n "$1" link add br0 type bridge && ip -n "$1" link set br0 up
}
netns_host() {
  ip netns add "$2" &&
    ip -n "$1" link add "p$3" type veth peer name mpi0 netns "$2" &&
    ip -n "$1" link set "p$3" master br0 && ip -n "$1" link set "p$3" up &&
    ip netns exec "$2" sysctl -qw net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.mpi0.route_localnet=1 \
      net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.mpi0.rp_filter=0 &&
    ip -n "$2" link set lo up && ip -n "$2" addr del 127.0.0.1/8 dev lo && ip -n "$2" addr add 127.0.0.1/32 dev lo &&
    { ! ip -n "$2" route show table local | grep -q '^local 127.0.0.0/8' ||
      ip -n "$2" route del local 127.0.0.0/8 dev lo table local; } &&
    ip -n "$2" addr add "127.100.0.$4/24" dev mpi0 && ip -n "$2" link set mpi0 up
}
# netns_delete NS...: every process in them killed, then the namespaces removed
netns_delete() {
  local ns p
  for ns in "$@"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
}
