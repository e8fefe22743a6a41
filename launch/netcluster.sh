#!/usr/bin/env bash
# An emulated cluster on this machine: one network namespace per node, grouped into pods,
# with real kernel links shaped by tbf. For running fibertrain over the kernel's TCP stack.
#
#   launch/netcluster.sh up [--nodes N] [--nodes-per-pod K] [--node-rate R] [--pod-rate R]
#   launch/netcluster.sh down
#   launch/netcluster.sh status
#
# Layout: node namespaces ftn1..ftnN, each with eth0 on 10.77.0.(10+i)/16, plugged into its
# pod's bridge in the switch namespace ftsw; each pod's bridge is plugged into a top bridge
# through the pod's uplink. tbf shapes both directions of each node's link (--node-rate)
# and of each pod's uplink (--pod-rate); a rate of 0 leaves that link unshaped. The private
# addresses exist only inside these namespaces. The kernel here has tbf but no netem, so
# links get bandwidth, not latency: use the in-process pacer for latency.
#
# `up` replaces a running cluster; `down` removes everything `up` made (idempotent).
# State (hosts, rates) lives in /run/fibertrain-netcluster for launch/netrun.sh.
set -euo pipefail

state=/run/fibertrain-netcluster
sw=ftsw
subnet=10.77.0.0/16

die() { echo "netcluster: $*" >&2; exit 1; }
need_root() { [ "$(id -u)" -eq 0 ] || die "needs root (network namespaces and tc); run as root or with sudo"; }

# tbf needs a bucket of at least rate/HZ bytes or it does not shape (HZ = 250 here); twice
# that, and never under 64 KiB.
burst_for() {
  local bits=$1
  local b=$((bits / 8 / 250 * 2))
  ((b < 65536)) && b=65536
  echo "$b"
}

# Rates like 100mbit, 1gbit, 500Mbit -> bits per second.
rate_bits() {
  local r=${1,,}
  case "$r" in
    0) echo 0 ;;
    *gbit) echo $(( ${r%gbit} * 1000000000 )) ;;
    *mbit) echo $(( ${r%mbit} * 1000000 )) ;;
    *kbit) echo $(( ${r%kbit} * 1000 )) ;;
    *) die "rate '$1': use e.g. 100mbit or 1gbit (whole numbers)" ;;
  esac
}

shape() {  # shape NS DEV BITS
  local ns=$1 dev=$2 bits=$3
  ((bits > 0)) || return 0
  ip netns exec "$ns" tc qdisc replace dev "$dev" root tbf rate "${bits}bit" burst "$(burst_for "$bits")" latency 50ms
}

check_tbf() {
  local probe=ftprobe$$
  ip netns add "$probe"
  if ! ip netns exec "$probe" tc qdisc add dev lo root tbf rate 1mbit burst 32kb latency 50ms 2>/dev/null; then
    ip netns del "$probe"
    die "this kernel has no tbf qdisc (sch_tbf); cannot shape links"
  fi
  ip netns del "$probe"
}

down() {
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^(ftn[0-9]+|ftsw)$' || true); do
    ip netns del "$ns"
  done
  rm -rf "$state"
}

up() {
  local nodes=2 per_pod=0 node_rate=0 pod_rate=0
  while (($#)); do
    case "$1" in
      --nodes) nodes=$2; shift 2 ;;
      --nodes-per-pod) per_pod=$2; shift 2 ;;
      --node-rate) node_rate=$2; shift 2 ;;
      --pod-rate) pod_rate=$2; shift 2 ;;
      *) die "unknown option $1 (see the header of launch/netcluster.sh)" ;;
    esac
  done
  ((nodes >= 1 && nodes <= 200)) || die "--nodes must be 1..200"
  ((per_pod == 0)) && per_pod=$nodes
  ((nodes % per_pod == 0)) || die "--nodes ($nodes) must divide by --nodes-per-pod ($per_pod)"
  local node_bits pod_bits
  node_bits=$(rate_bits "$node_rate")
  pod_bits=$(rate_bits "$pod_rate")
  check_tbf
  down
  mkdir -p "$state"
  ip netns add "$sw"
  ip -n "$sw" link set lo up
  ip -n "$sw" link add top type bridge
  ip -n "$sw" link set top up
  ip -n "$sw" addr add 10.77.0.1/16 dev top
  local pods=$((nodes / per_pod))
  for ((p = 0; p < pods; p++)); do
    ip -n "$sw" link add "pod$p" type bridge
    ip -n "$sw" link set "pod$p" up
    # The pod's uplink: a veth between its bridge and the top bridge, shaped both ways.
    ip -n "$sw" link add "up$p" type veth peer name "dn$p"
    ip -n "$sw" link set "up$p" master "pod$p" up
    ip -n "$sw" link set "dn$p" master top up
    shape "$sw" "up$p" "$pod_bits"
    shape "$sw" "dn$p" "$pod_bits"
  done
  : >"$state/hosts"
  for ((i = 1; i <= nodes; i++)); do
    local ns=ftn$i ip=10.77.0.$((10 + i)) p=$(((i - 1) / per_pod))
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip link add "ftv$i" netns "$sw" type veth peer name eth0 netns "$ns"
    ip -n "$sw" link set "ftv$i" master "pod$p" up
    ip -n "$ns" addr add "$ip/16" dev eth0
    ip -n "$ns" link set eth0 up
    shape "$ns" eth0 "$node_bits"
    shape "$sw" "ftv$i" "$node_bits"
    echo "$ip $ns $p" >>"$state/hosts"
  done
  printf 'nodes=%s\nnodes_per_pod=%s\nnode_rate=%s\npod_rate=%s\n' "$nodes" "$per_pod" "$node_rate" "$pod_rate" >"$state/config"
  status
}

status() {
  if [ ! -f "$state/config" ]; then
    echo "netcluster: down"
    return 0
  fi
  # shellcheck disable=SC1091
  . "$state/config"
  echo "netcluster: up, $nodes nodes in pods of $nodes_per_pod, node links $node_rate, pod uplinks $pod_rate (0 = unshaped), subnet $subnet"
  while read -r ip ns pod; do
    local link shaped
    link=$(ip -n "$ns" -br link show eth0 2>/dev/null | awk '{print $2}')
    shaped=$(ip netns exec "$ns" tc qdisc show dev eth0 2>/dev/null | grep -o 'rate [^ ]*' || echo unshaped)
    echo "  $ns $ip pod $pod eth0 ${link:-missing} ($shaped)"
  done <"$state/hosts"
}

cmd=${1:-}
shift || true
case "$cmd" in
  up) need_root; up "$@" ;;
  down) need_root; down; echo "netcluster: down" ;;
  status) status ;;
  *) echo "usage: launch/netcluster.sh up|down|status [options]" >&2; exit 2 ;;
esac
