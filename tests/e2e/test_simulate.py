"""`fibertrain simulate` against real runs on this machine's emulated cluster.

1. Traffic: the bytes the simulator predicts per tier and kind come from the collectives'
   own plan (comm/collective_plan.h) and the codecs' own phases (Codec::phases); they must
   equal, byte for byte, what the traffic counters measure: the demo layout's
   (tensor-parallel, pipeline with the tied embedding, gradients), ZeRO-3's gradient and
   parameter bytes (also kept gathered for the step), casts below an int8 top level, PowerSGD's
   factors, quantizers reduced in the ring, DeMo's payloads, HSDP's shards reduced inside a
   unit and all-reduced across it (with int8), and an outer sync's (streamed, delayed, int8 across the pods;
   SparseLoCo's) over its periods.
2. Step time: six fixed configurations of tools/simulator_validation.py (one with int8, one
   with an outer sync, one with SparseLoCo's),
   simulated from device profiles measured here; each must be within 25% of its measured
   median step time (the validation's worst-case bound), the medians of three rounds.
3. The rate a tier needs for 90% of the pace, at the scale of the claims.
4. What it cannot simulate is refused with one message and exit code 2."""
import json
import os
import sys

import h5py
import numpy as np

from ftest import BIN, check, finish, run, tempdir

sys.path.insert(0, os.path.join(os.environ["FIBERTRAIN_SOURCE"], "tools"))
import simulator_validation as sv  # noqa: E402

tmp = tempdir()
TIERS = ["intra_node", "inter_node", "inter_pod", "inter_site"]


def simulate(sets, profile, config="configs/tiny.yaml"):
    args = ["simulate", config, "--profile", profile, "--format", "json"]
    for s in sets:
        args += ["--set", s]
    return run(args)


# 1. Traffic, exactly. The profile does not change bytes; any step log will do that states the
# codecs' costs: the run's own.
profile = os.path.join(tmp, "profile.h5")
sv.train(sv.PROFILES["dense"], profile, 4)
CASES = {
    "demo": ["parallel.tp=2", "parallel.pp=2", "parallel.dp=2", "parallel.microbatches=4", "topology.ranks_per_node=2",
             "topology.nodes_per_pod=2"],
    "zero3": ["parallel.dp=4", "parallel.zero=3", "parallel.microbatches=2", "topology.ranks_per_node=2"],
    "fp16, bf16, int8": ["parallel.dp=8", "topology.ranks_per_node=2", "topology.nodes_per_pod=2",
                         "compression.intra_node={codec: fp16}", "compression.inter_node={codec: bf16}",
                         "compression.inter_pod={codec: int8}"],
    "powersgd": ["parallel.dp=4", "topology.ranks_per_node=2", "compression.inter_node={codec: powersgd}"],
    # Quantizers reduced in the ring across 8 nodes (messages of whole blocks), and fp8 forced
    # into the ring of 2 pods below bf16.
    "int8 ring": ["parallel.dp=8", "topology.ranks_per_node=1", "compression.inter_node={codec: int8}"],
    "fp8 ring below bf16": ["parallel.dp=8", "topology.ranks_per_node=2", "topology.nodes_per_pod=2",
                            "compression.inter_node={codec: bf16}",
                            "compression.inter_pod={codec: fp8, exponent: 5, reduce: ring}"],
    "DeMo": ["parallel.dp=4", "topology.ranks_per_node=1", "compression.inter_node={codec: demo}",
             "train.optimizer=sign"],
    "sparseloco outer": ["parallel.dp=8", "topology.ranks_per_node=2", "topology.nodes_per_pod=1",
                         "sync.outer={tier: inter_pod, every: 4, momentum: 0}",
                         "compression.inter_pod={codec: sparseloco, chunk: 512, k: 16}"],
    "outer sync": ["parallel.dp=8", "topology.ranks_per_node=2", "topology.nodes_per_pod=2",
                   "sync.outer={tier: inter_pod, every: 4, fragments: 2, delay: 1}",
                   "compression.intra_node={codec: fp16}", "compression.inter_pod={codec: int8}"],
    # HSDP: ZeRO-1 sharded inside each pod (hierarchically over its 2 nodes), int8 across the
    # 2 pods; ZeRO-3 inside nodes, keeping units gathered for the step, with pipeline stages.
    "hsdp zero1, int8 across pods": ["parallel.dp=8", "parallel.zero=1", "topology.ranks_per_node=2",
                                     "topology.nodes_per_pod=2", "parallel.shard_within=pod",
                                     "sync.algorithm=hierarchical", "compression.inter_pod={codec: int8}"],
    "hsdp zero3, reshard step": ["parallel.pp=2", "parallel.dp=4", "parallel.microbatches=2", "parallel.zero=3",
                                 "parallel.order=pp-dp-tp", "topology.ranks_per_node=4",
                                 "parallel.shard_within=node", "parallel.reshard=step"],
    # Interleaved: 2 chunks per stage, whose messages go round the ring of stages; with the
    # vocabulary split over tensor-parallel pairs across nodes.
    "interleaved, vocab-parallel": ["parallel.tp=2", "parallel.pp=2", "parallel.virtual_stages=2", "parallel.dp=2",
                                    "parallel.microbatches=4", "parallel.zero=3", "parallel.vocab_parallel=true",
                                    "parallel.order=dp-tp-pp", "topology.ranks_per_node=2",
                                    "topology.nodes_per_pod=2"],
    # A replica per pod: islands of one, whose fragments differ by stage.
    "demo, outer sync": ["parallel.tp=2", "parallel.pp=2", "parallel.dp=2", "parallel.microbatches=4",
                         "topology.ranks_per_node=2", "topology.nodes_per_pod=2",
                         "sync.outer={tier: inter_pod, every: 2, fragments: 2}"],
}
# The outer sync's bytes differ from step to step: its run covers two periods and the
# simulated mean step is compared with their total.
PERIOD = {"outer sync": 4, "demo, outer sync": 2, "sparseloco outer": 4}
KINDS = {"bytes_tp": ["tensor"], "bytes_pp": ["pipeline", "embedding"], "bytes_dp": ["gradient", "parameter", "outer"]}
for name, sets in CASES.items():
    log = os.path.join(tmp, f"{name.replace(', ', '-').replace(' ', '-')}.h5")
    steps = 2 * PERIOD[name] if name in PERIOD else 3
    sv.train(sets, log, steps)
    p = simulate(sets, log)
    check(p.returncode == 0, f"simulate {name} failed:\n{p.stderr}")
    if p.returncode != 0:
        continue
    sim = json.loads(p.stdout)["tiers"]
    with h5py.File(log) as f:
        for group, kinds in KINDS.items():
            for t in TIERS:
                if name in PERIOD:
                    measured = float(f[f"steps/{group}/{t}"][:].sum())
                    predicted = round(steps * sum(sim[t][f"{k}_bytes"] for k in kinds))
                else:
                    measured = float(f[f"steps/{group}/{t}"][-1].sum())
                    predicted = sum(sim[t][f"{k}_bytes"] for k in kinds)
                check(measured == predicted, f"{name}: {group}/{t} measured {measured:.0f} bytes, simulated {predicted:.0f}")
    print(f"{name}: simulated bytes equal the traffic counters on every tier")

# 2. Step time within the bound.
# Node links at 1 Gbit/s and 50 Mbit/s; the demo's pods at 50 Mbit/s; int8 across nodes at 50 Mbit/s;
# an outer sync across nodes at 50 Mbit/s.
# SparseLoCo's outer sync across nodes, from a profile whose outer sync runs every 2 steps.
ROWS = [sv.CONFIGS[i] for i in (2, 1, 6, 12, 14, 18)]
for name, n, measured, simulated, error in sv.validate(ROWS, 12, 3, tmp):
    print(f"{name}: measured {measured * 1e3:.1f} ms, simulated {simulated * 1e3:.1f} ms ({100 * error:+.1f}%)")
    check(abs(error) <= 0.25, f"{name}: simulated step time {100 * error:+.1f}% from the measured one (bound 25%)")

# The pipeline's bubble, at a stated device with free links: (pp - 1) / (v m + pp - 1) of the
# step, but for the head's and embedding's share of the stages' compute and the messages.
PIPE = os.path.join(tmp, "pipe.yaml")
with open(PIPE, "w") as f:
    f.write("model: {vocab: 1024, context: 1024, layers: 32, heads: 16, width: 2048}\n"
            "parallel: {pp: 4, microbatches: 8}\ntrain: {steps: 1, batch: 8}\ntopology: {ranks_per_node: 4}\n"
            "device: cuda\n")
for v in (1, 2, 4):
    p = run(["simulate", PIPE, "--profile", "configs/profiles/h100-claims.yaml", "--format", "json", "--set",
             f"parallel.virtual_stages={v}"])
    check(p.returncode == 0, f"simulate pp 4, v {v} failed:\n{p.stderr}")
    if p.returncode == 0:
        bubble, theory = json.loads(p.stdout)["bubble"], 3 / (v * 8 + 3)
        check(theory <= bubble <= theory + 0.015, f"pp 4, v {v}: simulated bubble {bubble:.4f}, theory {theory:.4f}")
        print(f"pp 4, m 8, {v} chunk{'s' if v > 1 else ''} per stage: bubble {bubble:.4f} (theory {theory:.4f})")

# 3. The rate a tier needs, at the scale of the claims: the step at that rate keeps 90% of the
# pace with the tier free.
LLAMA = ["configs/llama3-405b-16k.yaml", "--profile", "configs/profiles/h100-claims.yaml", "--format", "json"]
p = run(["simulate", *LLAMA, "--set", "parallel.zero=1", "--utilisation", "0.9", "--tier", "inter_pod"])
check(p.returncode == 0, f"simulate --utilisation failed:\n{p.stderr}")
if p.returncode == 0:
    r = json.loads(p.stdout)
    check(r["reachable"] and r["bits_per_second"] > 0 and r["step_time"] <= r["free_step"] / 0.9 * (1 + 1e-6),
          f"the rate for 90% of the pace: {r}")
    print(f"405B, ZeRO-1: the pods need {r['bits_per_second'] / 1e12:.3g} Tbit/s per uplink for 90% of the pace")
for extra, words in [(["--utilisation", "1.5"], "utilisation"), (["--utilisation", "0.9", "--tier", "pod"], "--tier"),
                     (["--utilisation", "0.9"], "no traffic crosses inter_site"), (["--tier", "inter_pod"], "--utilisation")]:
    p = run(["simulate", *LLAMA, *extra])
    check(p.returncode == 2 and words in p.stderr and "Traceback" not in p.stderr,
          f"simulate {extra}: exit {p.returncode}, stderr {p.stderr!r}")

# 4. Refusals.
for sets, words in [(["compression.inter_node={codec: int8}", "topology.ranks_per_node=1", "parallel.dp=2"],
                     "states no cost for codec int8"),
                    (["compression.inter_node={codec: int8}", "topology.ranks_per_node=1", "parallel.dp=2",
                      "parallel.zero=1"], "ZeRO-1"),
                    (["sync.outer={tier: inter_node}", "compression.inter_node={codec: powersgd}",
                      "topology.ranks_per_node=1", "parallel.dp=2"], "not whole matrices"),
                    (["sync.outer={tier: inter_node}", "topology.ranks_per_node=1", "parallel.tp=2", "parallel.dp=2"],
                     "spans several nodes"),
                    (["parallel.dp=2"], "topology.ranks_per_node")]:
    p = simulate(sets, profile)
    check(p.returncode == 2 and words in p.stderr and "Traceback" not in p.stderr,
          f"simulate {sets}: exit {p.returncode}, stderr {p.stderr!r}")
p = simulate(["parallel.dp=2", "topology.ranks_per_node=1"], os.path.join(tmp, "missing.h5"))
check(p.returncode == 2 and "missing.h5" in p.stderr, f"a missing profile: exit {p.returncode}, {p.stderr!r}")

finish()
