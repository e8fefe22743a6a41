#!/usr/bin/env bash
# Synchronous data parallelism against the outer sync (DiLoCo) across pods, on the codec
# experiment's cluster (configs/compression.yaml: 8 ranks, 2 pods, 100 Mbit/s between them),
# same model, seed and tokens, with the held-out loss evaluated every 50 steps. The data are
# the synthetic Markov chains: a thousand steps would see the README a hundred times over,
# and its held-out loss would measure overfitting; fresh sequences cannot be memorised. One
# HDF5 file per method in runs/lowcomm/<rate>/, then a Markdown table: final held-out loss,
# bytes across the pod tier per token, mean and peak bytes per step, step time.
#   launch/lowcomm-experiment.sh [--steps N] [--rate 100Mbit] [--bin PATH]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=300
rate=100Mbit
bin=build/trainer/fibertrain
while (($#)); do
  case "$1" in
    --steps) steps=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    *) echo "usage: launch/lowcomm-experiment.sh [--steps N] [--rate 100Mbit] [--bin PATH]" >&2; exit 2 ;;
  esac
done
out=runs/lowcomm/$rate
mkdir -p "$out"
# name | --set overrides (';'-separated)
methods=(
  "sync|"
  "sync-int8|compression.inter_pod={codec: int8}"
  "diloco-10|sync.outer={tier: inter_pod, every: 10}"
  "diloco-50|sync.outer={tier: inter_pod, every: 50}"
  "diloco-10-int8|sync.outer={tier: inter_pod, every: 10};compression.inter_pod={codec: int8}"
  "diloco-10-int4|sync.outer={tier: inter_pod, every: 10};compression.inter_pod={codec: int4}"
  "streaming-10x5-int4|sync.outer={tier: inter_pod, every: 10, fragments: 5};compression.inter_pod={codec: int4}"
  "diloco-50-int4|sync.outer={tier: inter_pod, every: 50};compression.inter_pod={codec: int4}"
  "diloco-100-int4|sync.outer={tier: inter_pod, every: 100};compression.inter_pod={codec: int4}"
  "streaming-50x10-int4|sync.outer={tier: inter_pod, every: 50, fragments: 10};compression.inter_pod={codec: int4}"
)
for m in "${methods[@]}"; do
  name=${m%%|*}
  sets=()
  IFS=';' read -ra extra <<< "${m#*|}"
  for e in "${extra[@]}"; do [ -n "$e" ] && sets+=(--set "$e"); done
  if [ -f "$out/$name.h5" ]; then
    echo "[lowcomm] $name: done already ($out/$name.h5)"
    continue
  fi
  echo "[lowcomm] $name: $steps steps at $rate"
  launch/mpirun.sh -n 8 --bin "$bin" -- train configs/compression.yaml --set train.steps="$steps" \
    --set metrics.compression_error=false --set "links.inter_pod.bandwidth=$rate" --set data.kind=synthetic \
    --set eval.every=50 --set eval.batches=8 "${sets[@]}" --out "$out/$name.h5.partial" --overwrite -q
  mv "$out/$name.h5.partial" "$out/$name.h5"
done
/usr/bin/python3 - "$out" "${methods[@]}" <<'PY'
import sys, h5py, numpy as np
out, methods = sys.argv[1], [m.split("|")[0] for m in sys.argv[2:]]
rows = {}
for n in methods:
    with h5py.File(f"{out}/{n}.h5") as f:
        s = f["steps"]
        pod = s["bytes_wire/inter_pod"][:].sum(axis=1)  # every rank's bytes across the pod tier, per step
        tokens = float(s["tokens"][0])
        rows[n] = dict(eval=float(s["eval_loss"][-1]), per_token=pod.mean() / tokens, mean=pod.mean(), peak=pod.max(),
                       step=float(s["step_time"][:].max(axis=1)[5:].mean()))
base = rows[methods[0]]
print("| method | final held-out loss | vs sync | pod-tier bytes per token | vs sync | mean / peak bytes per step | step time |")
print("|---|---|---|---|---|---|---|")
for n in methods:
    r = rows[n]
    print(f"| {n} | {r['eval']:.4f} | {100 * (r['eval'] / base['eval'] - 1):+.1f}% | {r['per_token']:.0f} | "
          f"{base['per_token'] / r['per_token']:.0f}x less | {r['mean'] / 1e6:.2f} / {r['peak'] / 1e6:.2f} MB | "
          f"{r['step'] * 1e3:.0f} ms |")
PY
