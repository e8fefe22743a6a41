#!/usr/bin/env bash
# The GPU acceptance run: on one machine with one or more GPUs, in one command and within
# about 8 minutes, everything of fibertrain that only a GPU can show, as one table:
#   - the GPU tests (those of `ctest -L gpu`: every CUDA op, the model's loss and gradients
#     against the CPU, in fp32 and bf16; run directly, so that a bundle needs no CMake);
#   - each layout against one CUDA rank through comm: mpi, and through comm: nccl where there
#     are GPUs enough (tests/e2e/test_layout_equivalence.py cuda);
#   - with two or more GPUs, pipeline parallelism over NCCL with activations above NCCL's
#     eager size, normal and strict (nccl.strict: one launch queue), the case whose hang the
#     CPU model of NCCL reproduces; and bench collectives over NCCL (its bus bandwidth);
#   - the messages a user meets: two ranks of one NCCL communicator on one GPU, and a model
#     that does not fit the GPU's memory;
#   - bench model on configs/gpt2-124m.yaml in bf16, beside PyTorch's eager and compiled
#     peers when torch imports (tools/peers/compare.py).
# Without a GPU it checks nothing and says so (exit 2).
#
#   tools/gpu-check.sh [--bin PATH] [--out FILE]
#
# PATH: a fibertrain binary, or a bundle's bin/fibertrain (tools/bundle.sh, for machines
# without Open MPI or HDF5; default: dist/fibertrain/bin/fibertrain if there, else
# build/trainer/fibertrain). The table also goes to FILE. Exit 0 when every row passed.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bin="" out=""
while (($#)); do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: tools/gpu-check.sh [--bin PATH] [--out FILE]" >&2; exit 2 ;;
  esac
done
if [ -z "$bin" ]; then
  bin=build/trainer/fibertrain
  [ -x dist/fibertrain/bin/fibertrain ] && bin=dist/fibertrain/bin/fibertrain
fi
[ -x "$bin" ] || { echo "gpu-check: no fibertrain at $bin (tools/setup.sh build, or tools/bundle.sh)" >&2; exit 2; }
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
bindir=$(dirname "$bin")
# A bundle's mpirun and GPU tests sit beside its fibertrain; a build's are the system's and build/tests/.
if [ -x "$bindir/mpirun" ]; then export PATH="$bindir:$PATH"; fi
cuda_tests=$bindir/test_cuda_ops
[ -x "$cuda_tests" ] || cuda_tests=$root/build/tests/test_cuda_ops

# GPU machines may keep CUDA's libraries beside PyTorch instead of on the library path.
if ! ldconfig -p 2>/dev/null | grep -q 'libcudart\.so\.13'; then
  nv=$(python3 -c 'import nvidia, os; print(nvidia.__path__[0])' 2>/dev/null || true)
  for d in "$nv/cu13/lib" "$nv/nccl/lib" "$nv/cublas/lib" "$nv/cuda_runtime/lib"; do
    [ -n "$nv" ] && [ -d "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  done
fi

version=$("$bin" --version 2>&1)
gpus=$(sed -n 's/.*CUDA: .*, \([0-9][0-9]*\) devices\{0,1\}.*/\1/p' <<<"$version" | head -n 1)
if [ -z "$gpus" ] || [ "$gpus" -eq 0 ]; then
  echo "gpu-check: no CUDA device answers here ($(grep -o 'CUDA: .*' <<<"$version" || echo "no CUDA in this build")); nothing was checked" >&2
  exit 2
fi
device=$(grep -o 'devices\{0,1\}: .*' <<<"$version" | cut -d' ' -f2-)

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
log=$(mktemp -d)
rows=$log/rows
: >"$rows"
row() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$rows"; }  # check, result, detail, seconds
# run NAME TIMEOUT CMD...: runs CMD, its output in $log/NAME; sets rc and secs.
run() {
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" >"$log/$name" 2>&1
  rc=$?
  secs=$((SECONDS - t0))
}
# A Python with h5py, for the layout test (Debian's keeps it under /usr/bin).
python=python3
python3 -c 'import h5py' 2>/dev/null || python=/usr/bin/python3

# The GPU tests.
if [ -x "$cuda_tests" ]; then
  run cuda_ops 300 "$cuda_tests"
  count() { grep -o "\[ *$1 *\] [0-9]* test" "$log/cuda_ops" | grep -o '[0-9][0-9]*' | head -n 1; }
  passed=$(count PASSED) skipped=$(count SKIPPED) failed=$(count FAILED)
  row "GPU tests (CUDA ops, loss and gradients vs CPU, fp32 and bf16)" \
    "$([ $rc -eq 0 ] && [ "${passed:-0}" -gt 0 ] && echo PASS || echo FAIL)" \
    "${passed:-0} passed, ${skipped:-0} skipped, ${failed:-0} failed" "$secs"
else
  row "GPU tests" "SKIP" "no test_cuda_ops beside $bin or in build/tests" 0
fi

# Each layout against one CUDA rank (the test prints one line per layout, FAIL: lines for failures).
run layouts 420 env FIBERTRAIN_BIN="$bin" FIBERTRAIN_SOURCE="$root" "$python" tests/e2e/test_layout_equivalence.py cuda
while IFS= read -r line; do
  row "layout ${line%%: weights within*}" PASS "${line#*: }" ""
done < <(grep ': weights within' "$log/layouts")
while IFS= read -r line; do
  row "layout: ${line#FAIL: }" FAIL "" ""
done < <(grep '^FAIL: ' "$log/layouts" | cut -c1-100)
row "layouts against one CUDA rank (comm mpi$([ "$gpus" -ge 2 ] && echo ', nccl'))" \
  "$([ $rc -eq 0 ] && echo PASS || echo FAIL)" "exit $rc: $(tail -n 1 "$log/layouts" | cut -c1-80)" "$secs"

tiny=(train configs/tiny.yaml --set device=cuda --set train.steps=3 --out none -q)
# Pipeline exchanges above NCCL's eager size (32 MiB activations), where unpaired sends hang.
if [ "$gpus" -ge 2 ]; then
  for strict in false true; do
    run "pp_large_$strict" 180 mpirun -n 2 --oversubscribe "$bin" "${tiny[@]}" --set comm=nccl --set nccl.strict=$strict --set parallel.pp=2 \
      --set parallel.microbatches=4 --set model.context=1024 --set model.width=1024 --set model.heads=8 \
      --set train.batch=32 --set train.watchdog_min=60
    row "pp 2, 1F1B, 32 MiB activations over NCCL$([ $strict = true ] && echo ', strict')" \
      "$([ $rc -eq 0 ] && echo PASS || echo FAIL)" "exit $rc$([ $rc -ne 0 ] && echo ": $(grep -m1 'error' "$log/pp_large_$strict" | cut -c1-100)")" "$secs"
  done
  # NCCL's all-reduce over every GPU, as nccl-tests would show it (busbw at 256 MiB).
  run bench_nccl 180 mpirun -n "$gpus" --oversubscribe "$bin" bench collectives --set device=cuda --set comm=nccl \
    --algos native,ring --min 256MiB --max 256MiB --warmup 2 --iters 5
  while read -r size count algo us algbw busbw _; do
    row "bench collectives: all-reduce 256 MiB over $gpus GPUs, $algo" \
      "$([ $rc -eq 0 ] && echo INFO || echo FAIL)" "busbw $busbw GB/s, $us us" ""
  done < <(grep -E '^ +268435456 ' "$log/bench_nccl")
  [ $rc -eq 0 ] || row "bench collectives over NCCL" FAIL "exit $rc: $(grep -m1 error "$log/bench_nccl" | cut -c1-80)" "$secs"
else
  row "pp over NCCL above its eager size; NCCL's bus bandwidth" SKIP "needs 2 GPUs (one here)" 0
fi

# Two ranks of one NCCL communicator on one GPU: one message, exit 2.
run same_gpu 120 env CUDA_VISIBLE_DEVICES=0 mpirun -n 2 --oversubscribe -x CUDA_VISIBLE_DEVICES "$bin" "${tiny[@]}" \
  --set comm=nccl --set parallel.dp=2
ok=$([ $rc -eq 2 ] && grep -q 'share GPU' "$log/same_gpu" && echo PASS || echo FAIL)
row "NCCL: two ranks on one GPU refused" "$ok" "exit $rc: $(grep -m1 -o 'ranks [0-9]* and [0-9]* share GPU [^ ]*' "$log/same_gpu")" "$secs"

# A model the GPU cannot hold: one message naming the bytes, exit 2.
run oom 120 "$bin" "${tiny[@]}" --set model.layers=64 --set model.width=8192 --set model.heads=64
ok=$([ $rc -eq 2 ] && grep -q 'do not fit' "$log/oom" && echo PASS || echo FAIL)
row "GPU out of memory refused" "$ok" "exit $rc: $(grep -m1 -o 'GPU memory: [^:]*' "$log/oom" | cut -c1-100)" "$secs"

# Speed: bench model on GPT-2 124M in bf16, with the PyTorch peers when torch imports.
run bench 240 "$bin" bench model --config configs/gpt2-124m.yaml --set device=cuda --set precision=bf16
tok=$(awk '/^step \(median\)/{getline; print $3; exit}' "$log/bench")
row "bench model gpt2-124m bf16" "$([ $rc -eq 0 ] && echo PASS || echo FAIL)" "${tok:-?} tokens/s" "$secs"
if python3 -c 'import torch' 2>/dev/null; then
  run peers 300 python3 tools/peers/compare.py --config configs/gpt2-124m.yaml --device cuda --precision bf16 \
    --peers eager compile --rounds 1 --bin "$bin"
  while read -r who kind threads toks ratio _; do
    row "bench: $who $kind, same model and batch" INFO "$toks tokens/s, ${ratio} fibertrain's" ""
  done < <(grep '^pytorch' "$log/peers")
  [ $rc -eq 0 ] || row "PyTorch peers" FAIL "exit $rc: $(tail -n 1 "$log/peers" | cut -c1-80)" "$secs"
else
  row "PyTorch peers" SKIP "torch does not import" 0
fi

{
  echo "# tools/gpu-check.sh, $(date -u +%Y-%m-%dT%H:%MZ), $gpus x $device; $bin"
  printf '%-62s %-6s %6s  %s\n' check result secs detail
  while IFS=$'\t' read -r check result detail secs; do
    printf '%-62s %-6s %6s  %s\n' "$check" "$result" "$secs" "$detail"
  done <"$rows"
  echo "# logs: $log"
} | tee ${out:+"$out"}
! grep -q $'\tFAIL\t' "$rows"
