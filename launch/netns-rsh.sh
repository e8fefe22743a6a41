#!/usr/bin/env bash
# Open MPI's remote-launch agent for the emulated cluster (launch/netcluster.sh): mpirun
# calls it as `netns-rsh.sh <host address> <command...>`; it runs the command inside that
# node's network namespace under the node's own hostname (Open MPI's shared-memory
# transport needs a distinct hostname per node).
set -euo pipefail
host=$1
shift
ns=$(awk -v h="$host" '$1 == h || $2 == h {print $2}' /run/fibertrain-netcluster/hosts)
[ -n "$ns" ] || { echo "netns-rsh: unknown host $host" >&2; exit 1; }
exec ip netns exec "$ns" unshare --uts sh -c "hostname $ns; $*"
