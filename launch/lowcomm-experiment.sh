#!/usr/bin/env bash
# Synchronous data parallelism (dense and with per-step codecs) against the outer sync
# (DiLoCo, streaming DiLoCo) across pods, on the codec experiment's cluster
# (configs/compression.yaml: 8 ranks, 2 pods of 2 nodes x 2; --pods 8: 8 pods of one rank),
# same seed and tokens, the held-out loss evaluated every 50 steps. The data (--data):
#  - synthetic: seeded Markov chains, which cannot be memorised but let every method end
#    within 2% of their entropy floor;
#  - pydocs: the Python 3.11 documentation's reStructuredText sources, byte by byte
#    (tools/setup.sh experiments installs them), 491 files of English prose and code; every
#    tenth file is held out whole, so the held-out loss is that of documents never seen.
#
# Two phases, because training is deterministic and the emulated link changes only time:
#  1. loss: each method for --steps steps with the pod links unthrottled
#     (runs/lowcomm/<model>/<method>.h5);
#  2. time: each method at each link rate of --rates, and unthrottled, for one period of its
#     outer sync (or 20 steps) after 2 warm-up steps (runs/lowcomm/<model>/time/<rate>/).
#     Compute utilisation = unthrottled step time / step time at the rate.
# Then a Markdown table (runs/lowcomm/<model>/table.md) and, where matplotlib is installed,
# two plots in runs/lowcomm/<model>/: the held-out loss against pod-tier bytes per token
# (pareto.png), and utilisation against link rate (utilisation.png).
#   launch/lowcomm-experiment.sh [--model tiny|3m] [--data synthetic|pydocs] [--pods 2|8] [--steps N]
#                                [--rates "1Gbit 100Mbit 10Mbit" | --loss-only] [--only "sync diloco-50-int4 ..."]
#                                [--bin PATH]
# Results go to runs/lowcomm/<model>[-pydocs][-8pods]/. Runs already there are kept; --only
# trains and tabulates those methods alone (sync, the reference, always); --loss-only skips
# phase 2 and tabulates loss and bytes alone.
set -euo pipefail
cd "$(dirname "$0")/.."
model=tiny
data=synthetic
pods=2
steps=1000
rates="1Gbit 100Mbit 10Mbit"
bin=build/trainer/fibertrain
only=""
loss_only=0
usage="usage: launch/lowcomm-experiment.sh [--model tiny|3m] [--data synthetic|pydocs] [--pods 2|8] [--steps N] [--rates \"1Gbit 100Mbit 10Mbit\" | --loss-only] [--only \"NAME ...\"] [--bin PATH]"
while (($#)); do
  case "$1" in
    --model) model=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --pods) pods=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --rates) rates=$2; shift 2 ;;
    --loss-only) loss_only=1; shift ;;
    --only) only=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
# name | --set overrides (';'-separated)
sync=(
  "sync|"
  "sync-int8|compression.inter_pod={codec: int8}"
  "sync-powersgd|compression.inter_pod={codec: powersgd, rank: 4}"
  "sync-sign|compression.inter_pod={codec: sign}"
  "sync-int8-gathered|compression.inter_pod={codec: int8, reduce: gather}"
  "sync-int4|compression.inter_pod={codec: int4}"
  "sync-fp8|compression.inter_pod={codec: fp8}"
  "sync-demo|compression.inter_pod={codec: demo};train.optimizer=sign"
)
outer=(
  "diloco-10|sync.outer={tier: inter_pod, every: 10}"
  "diloco-50|sync.outer={tier: inter_pod, every: 50}"
  "diloco-100|sync.outer={tier: inter_pod, every: 100}"
  "diloco-50-int4|sync.outer={tier: inter_pod, every: 50};compression.inter_pod={codec: int4}"
  "diloco-100-int4|sync.outer={tier: inter_pod, every: 100};compression.inter_pod={codec: int4}"
  "streaming-50x10-int8|sync.outer={tier: inter_pod, every: 50, fragments: 10, delay: 2, mix: 0.5};compression.inter_pod={codec: int8}"
  "streaming-50x10-int4|sync.outer={tier: inter_pod, every: 50, fragments: 10, delay: 2, mix: 0.5};compression.inter_pod={codec: int4}"
  "sparseloco-50|sync.outer={tier: inter_pod, every: 50, momentum: 0, lr: 1};compression.inter_pod={codec: sparseloco}"
)
case "$model" in
  tiny) shape=""; methods=("${sync[@]}" "${outer[@]}") ;;
  # 3.2M parameters; the headline rows only (each takes four times as long).
  3m) shape="model={vocab: 256, context: 64, layers: 4, heads: 4, width: 256}"
      methods=("${sync[0]}" "${sync[3]}" "${outer[4]}" "${outer[6]}") ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
case "$data" in
  synthetic) data_sets=(--set data.kind=synthetic) ;;
  pydocs)
    corpus=/usr/share/doc/python3.11/html/_sources
    if [ ! -d "$corpus" ]; then echo "[lowcomm] $corpus is missing: run tools/setup.sh experiments" >&2; exit 1; fi
    data_sets=(--set data.kind=text --set "data.path=$corpus/*/*.rst.txt" --set data.held_out=files --set eval.holdout=0.1) ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
case "$pods" in
  2) cluster_sets=() ;;
  8) cluster_sets=(--set topology.ranks_per_node=1 --set topology.nodes_per_pod=1) ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
if [ -n "$only" ]; then
  kept=()
  for m in "${sync[@]}" "${outer[@]}"; do  # any method, at any model
    name=${m%%|*}
    if [ "$name" = sync ] || [[ " $only " == *" $name "* ]]; then kept+=("$m"); fi
  done
  methods=("${kept[@]}")
fi
out=runs/lowcomm/$model
[ "$data" = synthetic ] || out+=-$data
[ "$pods" = 2 ] || out+=-${pods}pods
mkdir -p "$out"

# train NAME OUT STEPS RATE OVERRIDES...: one run, kept only when it finishes.
train() {
  local name=$1 file=$2 n=$3 rate=$4
  shift 4
  if [ -f "$file" ]; then echo "[lowcomm] $model $name ($rate): done already ($file)"; return; fi
  echo "[lowcomm] $model $name: $n steps, pod links at $rate"
  local latency=1ms
  [ "$rate" = 0bit ] && latency=0  # unthrottled: no pacer at all
  local sets=(--set "train.steps=$n" --set metrics.compression_error=false "${data_sets[@]}" "${cluster_sets[@]}"
              --set "links.inter_pod={bandwidth: $rate, latency: $latency}" --set eval.batches=8)
  [ -n "$shape" ] && sets+=(--set "$shape")
  mkdir -p "$(dirname "$file")"
  launch/mpirun.sh -n 8 --bin "$bin" -- train configs/compression.yaml "${sets[@]}" "$@" \
    --out "$file.partial" --overwrite -q
  mv "$file.partial" "$file"
}
overrides() {  # the --set flags of method line $1
  local e
  IFS=';' read -ra extra <<< "${1#*|}"
  for e in "${extra[@]}"; do [ -n "$e" ] && printf -- '--set\n%s\n' "$e"; done
  return 0
}
# The steps a timing run needs: 2 warm-up steps and one outer period (or 20 steps).
period() { local every; every=$(grep -o 'every: [0-9]*' <<< "$1" | grep -o '[0-9]*' || true); echo "${every:-20}"; }

for m in "${methods[@]}"; do
  mapfile -t sets < <(overrides "$m")
  train "${m%%|*}" "$out/${m%%|*}.h5" "$steps" 0bit "${sets[@]}" --set eval.every=50
done
((loss_only)) && rates=""
for rate in 0bit $rates; do
  ((loss_only)) && break
  for m in "${methods[@]}"; do
    mapfile -t sets < <(overrides "$m")
    train "${m%%|*}" "$out/time/$rate/${m%%|*}.h5" $(($(period "$m") + 2)) "$rate" "${sets[@]}" --set eval.every=0
  done
done

/usr/bin/python3 - "$out" "$rates" "$loss_only" "${methods[@]}" <<'PY'
import os, sys, h5py, numpy as np
out, rates, loss_only, methods = sys.argv[1], sys.argv[2].split(), sys.argv[3] == "1", [m.split("|")[0] for m in sys.argv[4:]]
def rate_bits(r):
    units = {"Gbit": 1e9, "Mbit": 1e6, "kbit": 1e3, "bit": 1}
    for u, f in units.items():
        if r.endswith(u): return float(r[: -len(u)]) * f
rows = {}
for n in methods:
    with h5py.File(f"{out}/{n}.h5") as f:
        s = f["steps"]
        pod = s["bytes_wire/inter_pod"][:].sum(axis=1)  # every rank's bytes across the pod tier, per step
        tokens = float(s["tokens"][0])
        rows[n] = dict(eval=float(s["eval_loss"][-1]), per_token=pod.mean() / tokens, mean=pod.mean(), peak=pod.max())
    step = {}
    for r in ([] if loss_only else ["0bit"] + rates):
        with h5py.File(f"{out}/time/{r}/{n}.h5") as f:
            step[r] = float(f["steps"]["step_time"][:].max(axis=1)[2:].mean())  # one period after warm-up
    rows[n]["util"] = {r: step["0bit"] / step[r] for r in rates}
    rows[n]["step"] = step
base = rows[methods[0]]
# --loss-only: no timing runs, and the loss runs' step times are not kept (they share the
# cores with whatever else ran).
timed = [] if loss_only else ["step time, unthrottled"] + [f"utilisation at {r}" for r in rates]
head = ["method", "final held-out loss", "vs sync", "pod-tier bytes per token", "vs sync", "mean / peak bytes per step"]
lines = ["| " + " | ".join(head + timed) + " |", "|---" * (len(head) + len(timed)) + "|"]
for n in methods:
    r = rows[n]
    cells = [n, f"{r['eval']:.4f}", f"{100 * (r['eval'] / base['eval'] - 1):+.1f}%", f"{r['per_token']:.0f}",
             f"{base['per_token'] / r['per_token']:.0f}x{' less' if r is not base else ''}",
             f"{r['mean'] / 1e6:.2f} / {r['peak'] / 1e6:.2f} MB"]
    if not loss_only:
        cells += [f"{r['step']['0bit'] * 1e3:.0f} ms"] + [f"{100 * r['util'][x]:.0f}%" for x in rates]
    lines.append("| " + " | ".join(cells) + " |")
table = "\n".join(lines)
print(table)
open(f"{out}/table.md", "w").write(table + "\n")
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("(matplotlib is not installed: no plots)")
    sys.exit(0)
fig, ax = plt.subplots(figsize=(7, 4.5))
for n in methods:
    r = rows[n]
    ax.scatter(r["per_token"], r["eval"], marker="o" if n.startswith("sync") else "s")
    ax.annotate(n, (r["per_token"], r["eval"]), fontsize=7, xytext=(4, 2), textcoords="offset points")
ax.set_xscale("log")
ax.set_xlabel("pod-tier bytes per token (all ranks)")
ax.set_ylabel("final held-out loss")
ax.set_title(f"{os.path.basename(out)}: loss against cross-pod traffic")
ax.grid(True, which="both", alpha=0.3)
fig.tight_layout()
fig.savefig(f"{out}/pareto.png", dpi=120)
if loss_only:
    print(f"plot: {out}/pareto.png")
    sys.exit(0)
fig, ax = plt.subplots(figsize=(7, 4.5))
xs = [rate_bits(r) for r in rates]
for n in methods:
    ax.plot(xs, [100 * rows[n]["util"][r] for r in rates], marker="o", label=n)
ax.set_xscale("log")
ax.set_xlabel("pod uplink rate (bit/s)")
ax.set_ylabel("compute utilisation (%)")
ax.set_ylim(0, 105)
ax.grid(True, which="both", alpha=0.3)
ax.legend(fontsize=7)
ax.set_title(f"{os.path.basename(out)}: utilisation against link rate")
fig.tight_layout()
fig.savefig(f"{out}/utilisation.png", dpi=120)
print(f"plots: {out}/pareto.png, {out}/utilisation.png")
PY
