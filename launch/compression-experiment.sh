#!/usr/bin/env bash
# The same model, data and seed trained with each codec on the inter-pod tier of an 8-rank,
# 2-pod run (configs/compression.yaml); one HDF5 file per codec in runs/compression/, then
# a Markdown table: final loss, bytes per step across the pod uplinks, ratio, step time.
#   launch/compression-experiment.sh [--steps N] [--bin PATH]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=300
bin=build/trainer/fibertrain
while (($#)); do
  case "$1" in
    --steps) steps=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    *) echo "usage: launch/compression-experiment.sh [--steps N] [--bin PATH]" >&2; exit 2 ;;
  esac
done
out=runs/compression
mkdir -p "$out"
codecs=("none" "fp16" "bf16" "int8" "topk, ratio: 0.01" "sign" "powersgd, rank: 4")
for c in "${codecs[@]}"; do
  name=${c%%,*}
  if [ -f "$out/$name.h5" ] && [ "$(stat -c %Y "$out/$name.h5")" -gt "$(stat -c %Y configs/compression.yaml)" ]; then
    echo "[compression] $name: done already ($out/$name.h5)"
    continue
  fi
  echo "[compression] $name: $steps steps"
  launch/mpirun.sh -n 8 --bin "$bin" -- train configs/compression.yaml --set train.steps="$steps" \
    --set "compression.inter_pod={codec: $c}" --out "$out/$name.h5.partial" --overwrite -q
  mv "$out/$name.h5.partial" "$out/$name.h5"
done
/usr/bin/python3 - "$out" <<'PY'
import sys, h5py, numpy as np
out = sys.argv[1]
names = ["none", "fp16", "bf16", "int8", "topk", "sign", "powersgd"]
rows = {}
for n in names:
    with h5py.File(f"{out}/{n}.h5") as f:
        s = f["steps"]
        last = slice(-20, None)  # the final loss: mean of the last 20 steps (one step's batch is noisy)
        ranks_per_pod = 4
        rows[n] = dict(loss=float(s["loss"][last].mean()),
                       wire=float(s["bytes_wire/inter_pod"][last].mean(axis=0).sum()) / 2,  # per pod uplink
                       logical=float(s["bytes_logical/inter_pod"][last].mean(axis=0).sum()) / 2,
                       step=float(s["step_time"][last].max(axis=1).mean()),
                       err=float(s["compression_error"][last].mean()))
base = rows["none"]["loss"]
print("| codec | final loss | vs none | bytes/step across a pod uplink | ratio | step time | rel. error |")
print("|---|---|---|---|---|---|---|")
for n in names:
    r = rows[n]
    print(f"| {n} | {r['loss']:.4f} | {100 * (r['loss'] / base - 1):+.1f}% | {r['wire'] / 1e6:.3f} MB | "
          f"{r['logical'] / r['wire']:.1f} | {r['step'] * 1e3:.0f} ms | {r['err']:.3f} |")
PY
