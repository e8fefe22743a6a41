#!/usr/bin/env bash
# Runs fibertrain under Open MPI's mpirun on this machine.
#   launch/mpirun.sh -n RANKS [--bin PATH] -- <fibertrain arguments>
# e.g. launch/mpirun.sh -n 8 -- train configs/demo.yaml
# More ranks than cores is fine (oversubscribed); as root, Open MPI's root guard is lifted.
set -euo pipefail
cd "$(dirname "$0")/.."
ranks=1
bin=build/trainer/fibertrain
while (($#)); do
  case "$1" in
    -n) ranks=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: launch/mpirun.sh -n RANKS [--bin PATH] -- <fibertrain arguments>" >&2; exit 2 ;;
  esac
done
args=(-q -n "$ranks" --oversubscribe)
[ "$(id -u)" -eq 0 ] && args+=(--allow-run-as-root)
exec mpirun "${args[@]}" "$bin" "$@"
