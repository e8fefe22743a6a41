"""Parallel layouts change who computes, not what: data parallelism (dp = 2 and 4, also
with ZeRO-1, 2 and 3, ZeRO-3 keeping units gathered for the step, HSDP sharded inside nodes or
pods, also hierarchical over an emulated 2-pod cluster), tensor parallelism (tp = 2
and 4, and tp = 2 x dp = 2, also with the vocabulary split), pipeline parallelism (pp = 2 and 4, GPipe and 1F1B, 2 to 8
micro-batches, interleaved with 2 chunks per stage) and the 8-rank 3-D layout in both rank orders (and with ZeRO-3) reach the weights, optimizer
moments, losses and gradient norms of one rank on the same global batch after 5 steps.

Tolerance. Every layout sums the same products in fp32, in different orders (one big
matmul accumulation on one rank; partial sums per rank, then the all-reduce), so
gradients agree to a few fp32 ulps, ~1e-6 relative. AdamW turns a gradient into a step of
at most ~lr per element, nearly independent of the gradient's scale, so 5 steps move a
weight by at most sum(lr) = 7.5e-4 here, and a relative gradient error e moves it by about
e x that. We allow 1e-5 absolute on weights (measured: 7e-7), a bound 75x below the whole
movement, so a wrong or missing average cannot pass. Because AdamW is nearly
scale-invariant, the first moment m (which is not) and the logged gradient norm are checked
too: they would be dp x too large if gradients were summed instead of averaged.

Devices: `test_layout_equivalence.py [cpu|cpu-async|cuda|nccl|nccl-strict]`.
- cpu-async queues every CPU kernel on a stream thread that runs it only once something
  waits for it (comm/stream.h), so a communication step that does not wait for the compute
  before it reads data not yet written, and its layout fails here. Every layout is compared
  with one synchronous CPU rank; the lossy codecs, which no single rank reproduces, with the
  same layout run synchronously (the same arithmetic in the same order: equal bits).
- cuda runs every layout on the GPUs through comm: mpi (ranks may share one GPU) for 20
  steps, against one CUDA rank within 1e-5 relative (losses, gradient norms, every
  parameter tensor); the codecs against the same layout with CUDA_LAUNCH_BLOCKING=1, which
  removes only the asynchrony. With two or more GPUs, the layouts whose ranks fit one per GPU
  also run through comm: nccl. Skipped without a GPU.
- nccl and nccl-strict run comm: nccl on cpu-async, the NCCL transport's own logic over the
  CPU model of NCCL's rules (comm/nccl_api.h), with an eager size of 1 KiB so that every
  pipeline and bucket transfer is a rendezvous, and in nccl-strict one launch queue per rank
  (every layout; nccl runs one of each kind).
  An issue order NCCL would deadlock on hangs there, and the watchdog ends the run within
  train.watchdog_min (20 s): the layout fails, naming the ranks and what they were doing.
  The outer sync with a delay joins the codecs: compared with the same layout on MPI."""
import os
import re
import subprocess
import sys

import h5py
import numpy as np

from ftest import BIN, check, finish, run, tempdir

DEVICE = sys.argv[1] if len(sys.argv) > 1 else "cpu"
SKIP = 77
NCCL_MODEL = DEVICE in ("nccl", "nccl-strict")
# What every run of the layouts under test takes besides its layout.
UNDER_TEST = (["device=cpu-async", "comm=nccl", "nccl.eager=1KiB", f"nccl.strict={str(DEVICE == 'nccl-strict').lower()}",
               "train.watchdog_min=20"] if NCCL_MODEL else [f"device={DEVICE}"])

gpus = 0
if DEVICE == "cuda":
    version = subprocess.run([BIN, "--version"], capture_output=True, text=True).stdout
    found = re.search(r"(\d+) devices?:", version)
    gpus = int(found.group(1)) if found else 0
    if gpus == 0:
        print("skipped: no CUDA device answers:", version.strip().splitlines()[-2:])
        sys.exit(SKIP)

tmp = tempdir()
STEPS = 20 if DEVICE == "cuda" else 5
COMMON = ["--set", f"train.steps={STEPS}", "--out", "{out}", "-q"]
LAYOUTS = {
    "dp1": (1, []),
    "dp2": (2, ["parallel.dp=2"]),
    "dp4": (4, ["parallel.dp=4", "sync.bucket=64KiB"]),
    "dp4-zero1": (4, ["parallel.dp=4", "parallel.zero=1", "sync.bucket=64KiB"]),
    "dp4-zero2-m2": (4, ["parallel.dp=4", "parallel.zero=2", "parallel.microbatches=2", "sync.bucket=64KiB"]),
    "dp4-zero3": (4, ["parallel.dp=4", "parallel.zero=3"]),
    "dp4-2pods-hierarchical": (4, ["parallel.dp=4", "topology.ranks_per_node=1", "topology.nodes_per_pod=2",
                                   "sync.algorithm=hierarchical"]),
    "dp4-2pods-hierarchical-zero1": (4, ["parallel.dp=4", "parallel.zero=1", "topology.ranks_per_node=1",
                                         "topology.nodes_per_pod=2", "sync.algorithm=hierarchical"]),
    "dp4-2pods-hierarchical-zero3-m2": (4, ["parallel.dp=4", "parallel.zero=3", "parallel.microbatches=2",
                                            "topology.ranks_per_node=1", "topology.nodes_per_pod=2",
                                            "sync.algorithm=hierarchical"]),
    "tp2": (2, ["parallel.tp=2"]),
    "tp4": (4, ["parallel.tp=4"]),
    "tp2-dp2": (4, ["parallel.tp=2", "parallel.dp=2", "topology.ranks_per_node=2"]),
    "pp2-1f1b-m2": (2, ["parallel.pp=2", "parallel.microbatches=2"]),
    "pp2-gpipe-m4": (2, ["parallel.pp=2", "parallel.microbatches=4", "parallel.schedule=gpipe"]),
    "pp4-1f1b-m8": (4, ["parallel.pp=4", "parallel.microbatches=8"]),
    "pp4-gpipe-m4": (4, ["parallel.pp=4", "parallel.microbatches=4", "parallel.schedule=gpipe"]),
    "3d-tp2-pp2-dp2": (8, ["parallel.tp=2", "parallel.pp=2", "parallel.dp=2", "parallel.microbatches=4",
                           "topology.ranks_per_node=2", "topology.nodes_per_pod=2"]),
    "3d-megatron-order-zero1": (8, ["parallel.tp=2", "parallel.pp=2", "parallel.dp=2", "parallel.order=tp-dp-pp",
                                    "parallel.microbatches=2", "parallel.zero=1"]),
    "pp2-dp2-zero3-m2": (4, ["parallel.pp=2", "parallel.dp=2", "parallel.microbatches=2", "parallel.zero=3"]),
    "3d-tp2-pp2-dp2-zero3": (8, ["parallel.tp=2", "parallel.pp=2", "parallel.dp=2", "parallel.microbatches=2",
                                 "parallel.zero=3", "topology.ranks_per_node=2", "topology.nodes_per_pod=2"]),
    # Interleaved pipelines: 2 stages of 2 chunks (one block each), 1F1B with a steady state and
    # GPipe, with ZeRO-3, and in the 3-D layout.
    "pp2-v2-1f1b-m4": (2, ["parallel.pp=2", "parallel.virtual_stages=2", "parallel.microbatches=4"]),
    "pp2-v2-gpipe-m2": (2, ["parallel.pp=2", "parallel.virtual_stages=2", "parallel.microbatches=2",
                            "parallel.schedule=gpipe"]),
    "pp2-v2-dp2-zero3-m4": (4, ["parallel.pp=2", "parallel.virtual_stages=2", "parallel.dp=2",
                                "parallel.microbatches=4", "parallel.zero=3"]),
    "3d-tp2-pp2-v2-dp2-zero2-m4": (8, ["parallel.tp=2", "parallel.pp=2", "parallel.virtual_stages=2", "parallel.dp=2",
                                       "parallel.microbatches=4", "parallel.zero=2", "sync.bucket=64KiB",
                                       "topology.ranks_per_node=2", "topology.nodes_per_pod=2"]),
    # The vocabulary split over tensor-parallel ranks (embedding, head and loss), alone, with the
    # tied embedding across 2 stages, and in the 3-D layout with ZeRO-3.
    "tp2-vocab": (2, ["parallel.tp=2", "parallel.vocab_parallel=true"]),
    "tp4-vocab": (4, ["parallel.tp=4", "parallel.vocab_parallel=true"]),
    "tp2-pp2-vocab-m2": (4, ["parallel.tp=2", "parallel.pp=2", "parallel.microbatches=2",
                             "parallel.vocab_parallel=true"]),
    "3d-tp2-pp2-v2-dp2-vocab-zero3-m4": (8, ["parallel.tp=2", "parallel.pp=2", "parallel.virtual_stages=2",
                                             "parallel.dp=2", "parallel.microbatches=4", "parallel.zero=3",
                                             "parallel.vocab_parallel=true", "topology.ranks_per_node=2"]),
    # ZeRO-3 that keeps each unit gathered from its first use to the step's end.
    "dp4-zero3-reshard-step-m2": (4, ["parallel.dp=4", "parallel.zero=3", "parallel.microbatches=2",
                                      "parallel.reshard=step"]),
    # HSDP: sharded inside each node of 2 ranks, replicated across the 2 nodes; across 2 pods
    # of 2 nodes of 2 ranks, each shard group a pod spanning its nodes hierarchically; and
    # pipeline stages in the node beside it.
    "hsdp-dp4-node-zero1": (4, ["parallel.dp=4", "parallel.zero=1", "topology.ranks_per_node=2",
                                "parallel.shard_within=node", "sync.bucket=64KiB"]),
    "hsdp-dp4-node-zero2-m2": (4, ["parallel.dp=4", "parallel.zero=2", "parallel.microbatches=2",
                                   "topology.ranks_per_node=2", "parallel.shard_within=node", "sync.bucket=64KiB"]),
    "hsdp-dp4-node-zero3-m2": (4, ["parallel.dp=4", "parallel.zero=3", "parallel.microbatches=2",
                                   "topology.ranks_per_node=2", "parallel.shard_within=node"]),
    "hsdp-dp8-pod-hierarchical-zero3": (8, ["parallel.dp=8", "parallel.zero=3", "topology.ranks_per_node=2",
                                            "topology.nodes_per_pod=2", "parallel.shard_within=pod",
                                            "sync.algorithm=hierarchical"]),
    "hsdp-pp2-dp4-node-zero1-m2": (8, ["parallel.pp=2", "parallel.dp=4", "parallel.microbatches=2", "parallel.zero=1",
                                       "parallel.order=pp-dp-tp", "topology.ranks_per_node=4",
                                       "parallel.shard_within=node"]),
}

# Every codec on the data-parallel all-reduce across two nodes, and a cast below int8 on
# a 2-pod hierarchy: compared with the same layout run synchronously.
CODECS = {f"dp2-{c}": (2, ["parallel.dp=2", "topology.ranks_per_node=1", f"compression.inter_node.codec={c}"])
          for c in ("fp16", "bf16", "int8", "topk", "sign", "powersgd")}
CODECS["dp4-2pods-fp16-int8"] = (4, ["parallel.dp=4", "topology.ranks_per_node=1", "topology.nodes_per_pod=2",
                                     "sync.algorithm=hierarchical", "compression.inter_node.codec=fp16",
                                     "compression.inter_pod.codec=int8"])
# HSDP with int8 on the shard's all-reduce across the nodes (ZeRO-2, 2 micro-batches).
CODECS["hsdp-dp4-node-zero2-int8"] = (4, ["parallel.dp=4", "parallel.zero=2", "parallel.microbatches=2",
                                          "topology.ranks_per_node=2", "parallel.shard_within=node",
                                          "compression.inter_node.codec=int8"])
# DiLoCo across 2 pods, every 2 steps, each outer sync landing a step late.
CODECS["dp4-2pods-outer-delay"] = (4, ["parallel.dp=4", "topology.ranks_per_node=1", "topology.nodes_per_pod=2",
                                       "sync.outer.tier=inter_pod", "sync.outer.every=2", "sync.outer.delay=1"])
if DEVICE == "cuda":  # the rows the GPU runs
    LAYOUTS = {k: LAYOUTS[k] for k in ("dp1", "tp2", "dp2", "dp4-zero1", "dp4-zero2-m2", "pp2-1f1b-m2",
                                       "pp2-gpipe-m4", "pp2-dp2-zero3-m2", "3d-tp2-pp2-dp2", "tp2-vocab",
                                       "pp2-v2-1f1b-m4")}
    CODECS = {k: CODECS[k] for k in ("dp2-int8", "dp2-powersgd")}
if NCCL_MODEL:
    CODECS = {k: CODECS[k] for k in ("dp2-int8", "dp2-powersgd", "dp4-2pods-fp16-int8", "dp4-2pods-outer-delay",
                                     "hsdp-dp4-node-zero2-int8")}
if DEVICE == "nccl":  # strict runs every layout; without it, one of each kind, for time
    LAYOUTS = {k: LAYOUTS[k] for k in ("tp2-dp2", "pp2-gpipe-m4", "pp2-1f1b-m2", "pp4-1f1b-m8", "3d-tp2-pp2-dp2",
                                       "dp4-zero1", "dp4-zero2-m2", "3d-tp2-pp2-dp2-zero3",
                                       "dp4-2pods-hierarchical-zero3-m2", "dp4-zero3-reshard-step-m2",
                                       "hsdp-dp4-node-zero3-m2", "pp2-v2-1f1b-m4", "pp2-v2-dp2-zero3-m4",
                                       "tp2-pp2-vocab-m2")}
    CODECS = {k: CODECS[k] for k in ("dp2-int8", "dp2-powersgd", "dp4-2pods-outer-delay", "hsdp-dp4-node-zero2-int8")}


def train(name, ranks, sets, device=None, env=None):
    """Trains a layout under test, or with `device`, synchronously on MPI (a reference)."""
    ck, out = os.path.join(tmp, f"{name}.ck.h5"), os.path.join(tmp, f"{name}.h5")
    args = ["train", "configs/tiny.yaml", "--set", f"checkpoint.path={ck}"]
    for s in ([f"device={device}"] if device else UNDER_TEST) + sets:
        args += ["--set", s]
    args += [a.format(out=out) for a in COMMON]
    p = run(args, ranks=ranks, env=env)
    check(p.returncode == 0, f"{name} failed:\n{p.stderr}")
    return (ck, out) if p.returncode == 0 else None


# (name, run, reference run)
pairs = []
sync_device = "cuda" if DEVICE == "cuda" else "cpu"
ref = train("ref-dp1", 1, [], sync_device)
for name, (ranks, sets) in LAYOUTS.items():
    if name == "dp1" and DEVICE in ("cpu", "nccl", "nccl-strict"):
        continue
    pairs.append((name, train(name, ranks, sets + (["comm=mpi"] if DEVICE == "cuda" else [])), ref))
if DEVICE == "cuda" and gpus >= 2:
    for name, (ranks, sets) in LAYOUTS.items():
        if ranks <= gpus:
            pairs.append((f"{name}-nccl", train(f"{name}-nccl", ranks, sets + ["comm=nccl"]), ref))
if DEVICE != "cpu":
    blocking = {"CUDA_LAUNCH_BLOCKING": "1"} if DEVICE == "cuda" else None
    for name, (ranks, sets) in CODECS.items():
        extra = ["comm=mpi"] if DEVICE == "cuda" else []
        sync_ref = train(f"{name}-sync", ranks, sets + extra, sync_device, env=blocking)
        pairs.append((name, train(name, ranks, sets + extra), sync_ref))

for name, got, reference in pairs:
    if not got or not reference:
        continue  # failed, and said so
    (ck, out), (ref_ck, ref_out) = got, reference
    with h5py.File(ref_ck) as r, h5py.File(ref_out) as rl:
        with h5py.File(ck) as f, h5py.File(out) as fl:
            worst_w, worst_m, sq_diff, sq_ref = 0.0, 0.0, 0.0, 0.0
            for k in r["params"]:
                diff = r["params"][k][:].astype(np.float64) - f["params"][k][:]
                worst_w = max(worst_w, float(np.abs(diff).max()))
                sq_diff += float((diff * diff).sum())
                sq_ref += float((r["params"][k][:].astype(np.float64) ** 2).sum())
                m_ref = r["optimizer/m"][k][:]
                scale = float(np.abs(m_ref).max()) or 1.0
                worst_m = max(worst_m, float(np.abs(m_ref - f["optimizer/m"][k][:]).max()) / scale)
            rel_w = (sq_diff / sq_ref) ** 0.5  # ||difference|| / ||reference|| over every parameter
            if DEVICE == "cuda":
                check(rel_w <= 1e-5, f"{name}: parameters differ by {rel_w:.3g} relative (> 1e-5)")
            else:
                check(worst_w <= 1e-5, f"{name}: weights differ by {worst_w:.3g} (> 1e-5)")
            check(worst_m <= 1e-4, f"{name}: first moments differ by {worst_m:.3g} of their scale (> 1e-4)")
            for col in ("loss", "grad_norm"):
                a, b = rl[f"steps/{col}"][:], fl[f"steps/{col}"][:]
                rel = float(np.abs(a - b).max() / np.abs(a).max())
                check(rel <= 1e-5, f"{name}: {col} differs by {rel:.3g} relative (> 1e-5)")
            # ZeRO's state per rank: 1/dp of one rank's, or under HSDP 1/(replicas in a node).
            shards = 4 if name.startswith("dp4-") else 2 if name.startswith("hsdp-dp4-") else 0
            if "zero" in name and shards and reference is ref:
                state = fl.attrs["optimizer_state_bytes"]
                full = rl.attrs["optimizer_state_bytes"][0]
                check(all(abs(s * shards - full) <= 0.01 * full for s in state),
                      f"{name}: ZeRO state per rank {list(state)} is not 1/{shards} of {full}")
            print(f"{name}: weights within {worst_w:.2g} ({rel_w:.2g} relative), first moments within "
                  f"{worst_m:.2g} of scale")

# Traffic by kind and tier, tp = 2 x dp = 2 on 2 nodes of 2 ranks (order tp-pp-dp): tensor
# parallelism stays inside a node, data parallelism crosses nodes. Each block all-reduces
# its [B, T, C] activations twice forward and twice backward; a 2-rank ring sends half of
# S twice, i.e. S = B x 64 x 128 x 4 bytes per call, 16 calls per step (B = 8 with dp = 2,
# 16 for tp = 2 alone, where the GPU runs no tp2-dp2).
runs = {name: got for name, got, _ in pairs if got}
traffic_run, B = (runs["tp2-dp2"], 8) if "tp2-dp2" in runs else (runs.get("tp2"), 16)
if not traffic_run:
    finish()  # the runs that would show it failed, and said so
with h5py.File(traffic_run[1]) as f:
    s = f["steps"]
    tp_intra, tp_inter = s["bytes_tp/intra_node"][:], s["bytes_tp/inter_node"][:]
    dp_intra, dp_inter = s["bytes_dp/intra_node"][:], s["bytes_dp/inter_node"][:]
    check((tp_intra == 16 * B * 64 * 128 * 4).all(), f"TP bytes per step and rank: {tp_intra[0]}")
    if "tp2-dp2" in runs:
        check((tp_inter == 0).all() and (dp_intra == 0).all(), "TP traffic stays in the node, DP traffic leaves it")
        check((dp_inter > 0).all(), "DP gradients cross nodes")
finish()
