#!/usr/bin/env bash
# A real Slurm cluster on this machine, for tests and trying the sbatch templates: munge,
# slurmctld, and one slurmd per node, each a separate Slurm node (n1, n2, ...) on its own
# port of localhost.
#
#   launch/slurm-cluster.sh up [--nodes N] [--cpus C]   # then: export SLURM_CONF=<printed path>
#   launch/slurm-cluster.sh status
#   launch/slurm-cluster.sh down                        # stops every daemon by PID, removes the state
#
# Everything lives in $FIBERTRAIN_SLURM_DIR (default /run/fibertrain-slurm). Needs root.
set -euo pipefail
dir=${FIBERTRAIN_SLURM_DIR:-/run/fibertrain-slurm}
conf=$dir/slurm.conf
die() { echo "slurm-cluster: $*" >&2; exit 1; }

stop_pid() {  # stop_pid FILE: TERM, then KILL after 5 s
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

down() {
  [ -d "$dir" ] || return 0
  for f in "$dir"/slurmd-*.pid; do stop_pid "$f"; done
  stop_pid "$dir/slurmctld.pid"
  stop_pid "$dir/munge/munged.pid"
  rm -rf "$dir"
}

up() {
  local nodes=2 cpus=4
  while (($#)); do
    case "$1" in
      --nodes) nodes=$2; shift 2 ;;
      --cpus) cpus=$2; shift 2 ;;
      *) die "unknown option $1" ;;
    esac
  done
  [ "$(id -u)" -eq 0 ] || die "needs root (Slurm daemons run as root here)"
  for t in munged mungekey slurmctld slurmd sinfo; do command -v "$t" >/dev/null || die "$t is not installed (apt-get install slurm-wlm munge)"; done
  down
  mkdir -p "$dir"/{state,log,spool} "$dir/munge/socket"
  for ((i = 1; i <= nodes; i++)); do mkdir -p "$dir/tmp/n$i" "$dir/spool/n$i"; done
  # munged refuses a socket directory others can write to or list: 711, owned by munge.
  chown -R munge:munge "$dir/munge"
  chmod 700 "$dir/munge"
  chmod 711 "$dir/munge/socket"
  chmod 711 "$dir/munge"
  runuser -u munge -- mungekey --create --keyfile "$dir/munge/munge.key" --force >/dev/null
  runuser -u munge -- munged --socket "$dir/munge/socket/munge.socket" --key-file "$dir/munge/munge.key" \
    --pid-file "$dir/munge/munged.pid" --log-file "$dir/munge/munged.log" --seed-file "$dir/munge/munged.seed"
  cat >"$conf" <<CONF
ClusterName=fibertrain
SlurmctldHost=localhost
SlurmctldPort=17000
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/socket/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
TmpFS=$dir/tmp/%n
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=pmix
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
SchedulerType=sched/builtin
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MailProg=/bin/true
ReturnToService=2
NodeName=n[1-$nodes] NodeHostname=localhost Port=[17001-$((17000 + nodes))] CPUs=$cpus State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  slurmctld -f "$conf"
  for ((i = 1; i <= nodes; i++)); do slurmd -f "$conf" -N "n$i"; done
  for _ in $(seq 200); do
    if [ "$(SLURM_CONF=$conf sinfo -h -o '%T' 2>/dev/null | sort -u)" = "idle" ]; then
      echo "slurm-cluster: up, $nodes nodes x $cpus CPUs"
      echo "export SLURM_CONF=$conf"
      return 0
    fi
    sleep 0.1
  done
  tail -n 20 "$dir"/log/*.log >&2 || true
  die "nodes did not become idle in 20 s (logs above)"
}

status() {
  [ -f "$conf" ] || { echo "slurm-cluster: down"; return 0; }
  SLURM_CONF=$conf sinfo
}

cmd=${1:-}
shift || true
case "$cmd" in
  up) up "$@" ;;
  down) down; echo "slurm-cluster: down" ;;
  status) status ;;
  *) echo "usage: launch/slurm-cluster.sh up [--nodes N] [--cpus C] | status | down" >&2; exit 2 ;;
esac
