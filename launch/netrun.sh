#!/usr/bin/env bash
# Runs fibertrain with mpirun across the emulated cluster of launch/netcluster.sh, over
# the kernel's TCP stack (Open MPI's tcp transport between nodes, shared memory within).
#   launch/netrun.sh [--ranks-per-node K] [--bin PATH] -- <fibertrain arguments>
# e.g. launch/netcluster.sh up --nodes 4 --nodes-per-pod 2 --node-rate 1gbit --pod-rate 500mbit
#      launch/netrun.sh --ranks-per-node 2 -- train configs/demo.yaml --set topology.ranks_per_node=0
# Ranks fill the nodes in order, K per node (one world of nodes x K ranks). fibertrain sees
# each namespace as a host, so leave topology.ranks_per_node at 0 (nodes from hosts) and
# set topology.nodes_per_pod to the cluster's.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
state=/run/fibertrain-netcluster
per_node=1
bin=$here/build/trainer/fibertrain
while (($#)); do
  case "$1" in
    --ranks-per-node) per_node=$2; shift 2 ;;
    --bin) bin=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); shift 2 ;;
    --) shift; break ;;
    *) echo "usage: launch/netrun.sh [--ranks-per-node K] [--bin PATH] -- <fibertrain arguments>" >&2; exit 2 ;;
  esac
done
[ -f "$state/hosts" ] || { echo "netrun: no emulated cluster is up (launch/netcluster.sh up ...)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "netrun: needs root (ip netns exec)" >&2; exit 1; }
hostfile=$(mktemp)
trap 'rm -f "$hostfile"' EXIT
awk -v k="$per_node" '{print $1 " slots=" k}' "$state/hosts" >"$hostfile"
ranks=$(($(wc -l <"$state/hosts") * per_node))
# btl_tcp_links 2: with one TCP connection a shaped transfer sometimes took twice as long.
ip netns exec ftsw mpirun -q --allow-run-as-root -n "$ranks" --hostfile "$hostfile" --map-by slot \
  --mca plm_rsh_agent "$here/launch/netns-rsh.sh" \
  --mca oob_tcp_if_include 10.77.0.0/16 --mca btl_tcp_if_include 10.77.0.0/16 \
  --mca btl tcp,vader,self --mca btl_tcp_links 2 \
  --wdir "$here" "$bin" "$@"
