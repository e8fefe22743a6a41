#!/usr/bin/env bash
# The demo job: trains configs/tiny.yaml and leaves its step log in runs/demo.h5.
#   launch/demo.sh [path/to/fibertrain]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/trainer/fibertrain}
mkdir -p runs
"$bin" train configs/tiny.yaml --out runs/demo.h5
