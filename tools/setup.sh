#!/usr/bin/env bash
# Set-up in one command: installs what is missing (Debian packages), builds, then runs the
# demo job or the test suite.
#
#   tools/setup.sh demo    install + build + the demo job (writes runs/demo.h5)
#   tools/setup.sh test    install + build + every test (ctest), as CI runs it
#   tools/setup.sh build   install + build only
#   tools/setup.sh experiments   install + build, and the text the experiments train on:
#                                the Python 3.11 documentation's reStructuredText sources
#                                (python3.11-doc, /usr/share/doc/python3.11/html/_sources)
#   tools/setup.sh peers   install + build, and PyPI's PyTorch in .venv-peers (the CPU peer
#                          tools/peers/compare.py --python .venv-peers/bin/python measures;
#                          TORCH_SPEC picks the version, default torch)
#
# Idempotent: a second run installs nothing, says nothing about packages, and rebuilds only
# what changed. BUILD_DIR (default build) and CMAKE_ARGS pass through to CMake.
set -euo pipefail

cd "$(dirname "$0")/.."
what=${1:-build}
case "$what" in demo|test|build|experiments|peers) ;; *) echo "usage: tools/setup.sh demo|test|build|experiments|peers" >&2; exit 2 ;; esac
build_dir=${BUILD_DIR:-build}

packages=(
  cmake ninja-build g++ pkg-config
  libopenmpi-dev openmpi-bin
  libhdf5-dev hdf5-tools
  libyaml-cpp-dev libcli11-dev libfmt-dev
  libopenblas-dev
  libgtest-dev libgmock-dev
  python3 python3-h5py python3-matplotlib python3-yaml
  iproute2 slurm-wlm munge
)
[ "$what" = experiments ] && packages+=(python3.11-doc)
[ "$what" = peers ] && packages+=(python3-venv)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[setup] installing: ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then sudo="sudo"; else
      echo "[setup] not root and no sudo: run as root: apt-get install -y ${missing[*]}" >&2; exit 1
    fi
  fi
  log=$(mktemp)
  if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2; echo "[setup] package installation failed (log: $log)" >&2; exit 1
  fi
  rm -f "$log"
fi

mkdir -p "$build_dir"
log="$build_dir/setup-build.log"
if [ ! -f "$build_dir/build.ninja" ]; then
  echo "[setup] configuring $build_dir/"
  # shellcheck disable=SC2086
  if ! cmake -S . -B "$build_dir" -G Ninja ${CMAKE_ARGS:-} >"$log" 2>&1; then
    tail -n 40 "$log" >&2; echo "[setup] cmake failed (log: $log)" >&2; exit 1
  fi
fi
echo "[setup] building $build_dir/ ($(nproc) cores)"
if ! cmake --build "$build_dir" -j "$(nproc)" >"$log" 2>&1; then
  grep -E "error|Error" "$log" | head -n 40 >&2 || tail -n 40 "$log" >&2
  echo "[setup] build failed (log: $log)" >&2; exit 1
fi

case "$what" in
  build|experiments) echo "[setup] built $build_dir/trainer/fibertrain" ;;
  peers)
    venv=.venv-peers
    if ! "$venv/bin/python" -c "import torch, yaml" 2>/dev/null; then
      echo "[setup] installing ${TORCH_SPEC:-torch} from PyPI into $venv/"
      /usr/bin/python3 -m venv "$venv"
      log=$(mktemp)
      if ! "$venv/bin/pip" install -q "${TORCH_SPEC:-torch}" pyyaml >"$log" 2>&1; then
        tail -n 30 "$log" >&2; echo "[setup] pip install failed (log: $log)" >&2; exit 1
      fi
      rm -f "$log"
    fi
    echo "[setup] $venv/bin/python: PyTorch $("$venv/bin/python" -c 'import torch; print(torch.__version__)')" ;;
  demo) exec launch/demo.sh "$build_dir/trainer/fibertrain" ;;
  test) exec ctest --test-dir "$build_dir" --output-on-failure --timeout 900 ;;
esac
