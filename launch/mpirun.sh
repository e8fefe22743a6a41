#!/usr/bin/env bash
# Runs fibertrain under Open MPI's mpirun: on this machine, or on hosts from a hostfile.
#
#   launch/mpirun.sh -n RANKS [--bin PATH] -- <fibertrain arguments>
#   launch/mpirun.sh --hostfile FILE [--ranks-per-node K] [-n RANKS] [--bin PATH] -- <fibertrain arguments>
#   launch/mpirun.sh --host h1,h2 --ranks-per-node K [--bin PATH] -- <fibertrain arguments>
#
# On this machine more ranks than cores is fine (oversubscribed, unbound). On hosts, K ranks
# go to each node, each bound to cores/K cores (CORES_PER_NODE, default this machine's
# count); fibertrain gives each rank that many BLAS threads itself. Open MPI's root guard is
# lifted when running as root. OPENBLAS_CORETYPE, LD_LIBRARY_PATH and NCCL_* variables are
# passed to every rank.
#
# Stopping: SIGINT (Ctrl-C), SIGTERM or SIGHUP to this script reaches every rank as a signal
# that mpirun forwards (SIGUSR1, SIGUSR2 or SIGALRM), which FIBERTRAIN_STOP_RELAY tells the
# ranks to read as the one sent; they stop after their current step, save a checkpoint when
# checkpointing is on, say which signal stopped them, and this script exits 128 + that
# signal. (Signalled itself, mpirun would kill the ranks a second later and drop their
# output.) A second signal stops them at once. mpirun runs in a session of its own, so
# Ctrl-C reaches this script only.
set -euo pipefail
cd "$(dirname "$0")/.."
usage() {
  echo "usage: launch/mpirun.sh [-n RANKS] [--hostfile FILE | --host H1,H2] [--ranks-per-node K] [--bin PATH] -- <fibertrain arguments>" >&2
  exit 2
}
die() { echo "launch/mpirun.sh: $*" >&2; exit 2; }
ranks="" hostfile="" hosts="" per_node="" bin=build/trainer/fibertrain
while (($#)); do
  case "$1" in
    -n) ranks=$2; shift 2 ;;
    --hostfile) hostfile=$2; shift 2 ;;
    --host) hosts=$2; shift 2 ;;
    --ranks-per-node) per_node=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --) shift; break ;;
    *) usage ;;
  esac
done
[ -x "$bin" ] || die "no fibertrain binary at $bin (build with tools/setup.sh build, or pass --bin)"
[ -n "$hostfile" ] && [ -n "$hosts" ] && die "give --hostfile or --host, not both"
for v in "$ranks" "$per_node"; do
  [ -z "$v" ] || [[ "$v" =~ ^[1-9][0-9]*$ ]] || die "'$v' is not a positive number of ranks"
done

args=(-q -x FIBERTRAIN_STOP_RELAY=SIGUSR1=SIGINT,SIGUSR2=SIGTERM,SIGALRM=SIGHUP)
[ "$(id -u)" -eq 0 ] && args+=(--allow-run-as-root)
for v in OPENBLAS_CORETYPE LD_LIBRARY_PATH $(compgen -v NCCL_ || true); do
  [ -n "${!v:-}" ] && args+=(-x "$v")
done

# Runs mpirun with these arguments and the binary; exits as described at the top.
run_mpirun() {
  local stop="" relay="" rc=0 pid=""
  on_signal() {
    if [ -z "$stop" ]; then
      stop=$1 relay=$2
      [ -z "$pid" ] || kill "-$relay" "$pid" 2>/dev/null || true
    elif [ -n "$pid" ]; then
      kill -TERM "$pid" 2>/dev/null || true
    fi
  }
  trap 'on_signal 2 USR1' INT
  trap 'on_signal 15 USR2' TERM
  trap 'on_signal 1 ALRM' HUP
  # If this script is killed outright, mpirun gets SIGTERM and takes the ranks down.
  local guard=()
  command -v setpriv >/dev/null && guard=(setpriv --pdeathsig TERM)
  setsid "${guard[@]}" mpirun "$@" &
  pid=$!
  [ -z "$stop" ] || kill "-$relay" "$pid" 2>/dev/null || true  # a stop that came while starting
  while :; do
    wait "$pid" && rc=0 || rc=$?
    kill -0 "$pid" 2>/dev/null || break  # else a trap interrupted the wait
  done
  # The wait may have been the interrupted one while mpirun ended: ask again for its status.
  local last=0
  wait "$pid" 2>/dev/null && last=0 || last=$?
  [ "$last" -ne 127 ] && rc=$last
  exit "$rc"
}

if [ -z "$hostfile" ] && [ -z "$hosts" ]; then
  [ -n "$ranks" ] || die "-n RANKS is required on this machine"
  run_mpirun "${args[@]}" -n "$ranks" --oversubscribe --bind-to none "$bin" "$@"
fi

nodes=0
if [ -n "$hostfile" ]; then
  [ -f "$hostfile" ] || die "hostfile '$hostfile' does not exist"
  line_no=0
  while IFS= read -r line || [ -n "$line" ]; do
    line_no=$((line_no + 1))
    line=${line%%#*}
    [[ "$line" =~ ^[[:space:]]*$ ]] && continue
    [[ "$line" =~ ^[[:space:]]*[A-Za-z0-9._-]+([[:space:]]+(slots|max_slots)=[0-9]+)*[[:space:]]*$ ]] ||
      die "hostfile '$hostfile' line $line_no: '$line' is not 'host [slots=N]'"
    nodes=$((nodes + 1))
  done <"$hostfile"
  ((nodes > 0)) || die "hostfile '$hostfile' names no host"
  args+=(--hostfile "$hostfile")
else
  IFS=, read -ra list <<<"$hosts"
  nodes=${#list[@]}
  spec=""
  for h in "${list[@]}"; do spec+="${spec:+,}$h:${per_node:-1}"; done
  args+=(--host "$spec")
fi
if [ -n "$per_node" ]; then
  cores=${CORES_PER_NODE:-$(nproc)}
  [ -n "$ranks" ] || ranks=$((nodes * per_node))
  if ((cores % per_node == 0 && cores >= per_node)); then
    args+=(--map-by "ppr:$per_node:node:PE=$((cores / per_node))" --bind-to core)
  else
    args+=(--map-by "ppr:$per_node:node" --bind-to none)
  fi
fi
[ -n "$ranks" ] && args+=(-n "$ranks")
run_mpirun "${args[@]}" "$bin" "$@"
