#!/usr/bin/env bash
# The same model, data and seed trained with each codec on the inter-pod tier of an 8-rank,
# 2-pod run (configs/compression.yaml); one HDF5 file per codec in runs/compression/, then
# a Markdown table: final loss, bytes per step across the pod uplinks, ratio, step time.
# --data pydocs trains on the Python documentation's sources instead of the README (every
# tenth file held out whole; tools/setup.sh experiments installs them), evaluates the
# held-out loss every 50 steps, and adds the quantizers in the ring and DeMo; its table's
# loss is the final held-out loss (runs/compression/pydocs/).
#   launch/compression-experiment.sh [--data readme|pydocs] [--steps N] [--bin PATH]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=300
data=readme
bin=build/trainer/fibertrain
while (($#)); do
  case "$1" in
    --steps) steps=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    *) echo "usage: launch/compression-experiment.sh [--data readme|pydocs] [--steps N] [--bin PATH]" >&2; exit 2 ;;
  esac
done
out=runs/compression
codecs=("none" "fp16" "bf16" "int8" "topk, ratio: 0.01" "sign" "powersgd, rank: 4")
extra=()
case "$data" in
  readme) ;;
  pydocs)
    corpus=/usr/share/doc/python3.11/html/_sources
    if [ ! -d "$corpus" ]; then echo "[compression] $corpus is missing: run tools/setup.sh experiments" >&2; exit 1; fi
    out=$out/pydocs
    extra=(--set data.kind=text --set "data.path=$corpus/*/*.rst.txt" --set data.held_out=files
           --set eval.holdout=0.1 --set eval.every=50 --set eval.batches=8)
    codecs+=("int8-ring, reduce: ring" "int4-ring, reduce: ring" "fp8-ring, reduce: ring" "demo") ;;
  *) echo "usage: launch/compression-experiment.sh [--data readme|pydocs] [--steps N] [--bin PATH]" >&2; exit 2 ;;
esac
mkdir -p "$out"
for c in "${codecs[@]}"; do
  name=${c%%,*}
  codec="${name%-ring}${c#"$name"}"  # "int8-ring, reduce: ring" -> "int8, reduce: ring"
  sets=("${extra[@]}")
  [ "$name" = demo ] && sets+=(--set train.optimizer=sign)
  if [ -f "$out/$name.h5" ] && [ "$(stat -c %Y "$out/$name.h5")" -gt "$(stat -c %Y configs/compression.yaml)" ]; then
    echo "[compression] $name: done already ($out/$name.h5)"
    continue
  fi
  echo "[compression] $name: $steps steps"
  launch/mpirun.sh -n 8 --bin "$bin" -- train configs/compression.yaml --set train.steps="$steps" \
    --set "compression.inter_pod={codec: $codec}" "${sets[@]}" --out "$out/$name.h5.partial" --overwrite -q
  mv "$out/$name.h5.partial" "$out/$name.h5"
done
/usr/bin/python3 - "$out" "$data" "${codecs[@]}" <<'PY'
import sys, h5py, numpy as np
out, data, names = sys.argv[1], sys.argv[2], [c.split(",")[0] for c in sys.argv[3:]]
rows = {}
for n in names:
    with h5py.File(f"{out}/{n}.h5") as f:
        s = f["steps"]
        last = slice(-20, None)  # the final loss: mean of the last 20 steps (one step's batch is noisy)
        # On pydocs, the held-out loss of the files never trained on, after the last step.
        loss = float(s["eval_loss"][-1]) if data == "pydocs" else float(s["loss"][last].mean())
        rows[n] = dict(loss=loss,
                       wire=float(s["bytes_wire/inter_pod"][last].mean(axis=0).sum()) / 2,  # per pod uplink
                       logical=float(s["bytes_logical/inter_pod"][last].mean(axis=0).sum()) / 2,
                       step=float(s["step_time"][last].max(axis=1).mean()),
                       err=float(s["compression_error"][last].mean()))
base = rows["none"]["loss"]
print(f"| codec | final {'held-out ' if data == 'pydocs' else ''}loss | vs none | bytes/step across a pod uplink | ratio | step time | rel. error |")
print("|---|---|---|---|---|---|---|")
for n in names:
    r = rows[n]
    print(f"| {n} | {r['loss']:.4f} | {100 * (r['loss'] / base - 1):+.1f}% | {r['wire'] / 1e6:.3f} MB | "
          f"{r['logical'] / r['wire']:.1f} | {r['step'] * 1e3:.0f} ms | {r['err']:.3f} |")
PY
