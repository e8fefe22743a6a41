#!/usr/bin/env bash
# The demo job: configs/demo.yaml on 8 ranks (tp = 2 x pp = 2 x dp = 2 over an emulated
# 2-pod cluster); the step log goes to runs/demo.h5.
#   launch/demo.sh [path/to/fibertrain]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/trainer/fibertrain}
mkdir -p runs
exec launch/mpirun.sh -n 8 --bin "$bin" -- train configs/demo.yaml --out runs/demo.h5 --overwrite
