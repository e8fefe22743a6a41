#!/usr/bin/env python3
"""The claims' systems simulated (docs/claims.md, "What the claims become at scale").

Runs `fibertrain simulate` on Llama 3 405B's layout (configs/llama3-405b-16k.yaml, H100 as
C4 states it: FSDP keeping a step's parameters, interleaved stages, the vocabulary split over
TP) and on C10's 500K-B200 system (configs/c10-500k-b200.yaml: HSDP, sharded inside each
site and replicated across the 4), each also as fibertrain could lay it out before those
features, under ZeRO-1 (C8's premise: the averaged gradient, once per step) and with an
outer sync across the top tier every 50 steps (DiLoCo; ZeRO-1 inside each pod or site), and
prints, as markdown tables:

  - step time, MFU and the bytes through the busiest top-level uplink, by kind;
  - the step as the top tier's latency grows (C8: "latency does not matter");
  - the top tier's rate needed for the step to keep 90% of its pace with that tier free.

With --methods, instead: per sync method across the top tier at the system's own p (8 pods,
4 sites), each with its codec's exact bytes (the quantized ring's, SparseLoCo's, DeMo's),
the bytes through the busiest top-level uplink per step and the rate for 90% of the pace.
The per-step methods run without ZeRO (compression applies to the all-reduce), the outer
syncs with ZeRO-1 inside each pod or site.

  tools/claims_at_scale.py [--utilisation 0.9] [--methods]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from simulator_validation import simulate  # noqa: E402

# Each system: its name, config (laid out as its runs lay it out), device profile, top tier,
# the top tier's latencies to try, and its layouts: (name, overrides; {top}: the top tier).
# `reshard=use` and `shard_within=none` undo the configs' gather policy and HSDP where a row
# asks for another ZeRO stage or the whole-group sharding.
PLAIN = ["parallel.reshard=use", "parallel.shard_within=none"]
SYSTEMS = [
    ("Llama 3 405B, 16K H100", "configs/llama3-405b-16k.yaml", "configs/profiles/h100-claims.yaml", "inter_pod",
     ["20us", "200us", "2ms"],
     [("FSDP keeping a step's units, 4 chunks per stage, vocabulary split", []),
      ("FSDP regathering per micro-batch, no chunks, whole head", PLAIN + ["parallel.virtual_stages=1",
                                                                             "parallel.vocab_parallel=false"]),
      ("ZeRO-1, 4 chunks per stage, vocabulary split", PLAIN + ["parallel.zero=1"]),
      ("outer sync every 50, ZeRO-1 inside", PLAIN + ["parallel.zero=1", "sync.outer={{tier: {top}, every: 50}}"])]),
    ("C10: 3.5T, 500K B200, 4 sites", "configs/c10-500k-b200.yaml", "configs/profiles/b200-claims.yaml", "inter_site",
     ["0.5ms", "5ms", "20ms"],
     [("HSDP: FSDP inside each site keeping a step's units, replicated across, vocabulary split", []),
      ("HSDP with ZeRO-1 inside each site", PLAIN + ["parallel.zero=1", "parallel.shard_within=site"]),
      ("FSDP over every replica, whole head", PLAIN + ["parallel.vocab_parallel=false"]),
      ("ZeRO-1 over every replica", PLAIN + ["parallel.zero=1"]),
      ("outer sync every 50, ZeRO-1 inside", PLAIN + ["parallel.zero=1", "sync.outer={{tier: {top}, every: 50}}"])]),
]
KINDS = ["gradient", "parameter", "pipeline", "outer"]
# name: overrides ({top}: the system's top tier)
METHODS = [
    ("sync, fp32", ["parallel.zero=0"]),
    ("sync, int8 gathered", ["parallel.zero=0", "compression.{top}={{codec: int8, reduce: gather}}"]),
    ("sync, int8 ring", ["parallel.zero=0", "compression.{top}={{codec: int8, reduce: ring}}"]),
    ("sync, fp8 ring", ["parallel.zero=0", "compression.{top}={{codec: fp8, reduce: ring}}"]),
    ("sync, int4 ring", ["parallel.zero=0", "compression.{top}={{codec: int4, reduce: ring}}"]),
    ("sync, sign (gathered)", ["parallel.zero=0", "compression.{top}={{codec: sign}}"]),
    ("sync, DeMo", ["parallel.zero=0", "compression.{top}={{codec: demo}}", "train.optimizer=sign"]),
    ("outer every 50", ["parallel.zero=1", "sync.outer={{tier: {top}, every: 50}}"]),
    ("outer every 50, int4 ring", ["parallel.zero=1", "sync.outer={{tier: {top}, every: 50}}",
                                   "compression.{top}={{codec: int4, reduce: ring}}"]),
    ("outer every 50, SparseLoCo", ["parallel.zero=1", "sync.outer={{tier: {top}, every: 50, momentum: 0, lr: 1}}",
                                    "compression.{top}={{codec: sparseloco}}"]),
]


def methods_table(u):
    for name, config, profile, top, _, _ in SYSTEMS:
        print(f"\n### {name} ({config}, {profile}): per method across {top}\n")
        print(f"| method | step, {top} free | {top} bytes per step, busiest uplink | vs sync fp32 | {top} rate for {100 * u:.0f}% |")
        print("|---" * 5 + "|")
        base = None
        for method, sets in METHODS:
            sets = [x.format(top=top) for x in PLAIN + sets]
            s = simulate(sets, profile, config)
            busiest = s["tiers"][top]["busiest_uplink_bytes"]
            base = base or busiest
            need = simulate(sets, profile, config, "--utilisation", str(u), "--tier", top)
            rate = (f"{need['bits_per_second'] / 1e12:.3g} Tbit/s" if need["reachable"] else
                    f"none: latency alone gives {100 * need['free_step'] / need['latency_step']:.0f}%")
            print(f"| {method} | {need['free_step']:.3g} s | {tb(busiest)} | {busiest / base:.3g} | {rate} |")


def tb(b):
    return f"{b / 1e12:.3g} TB"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--utilisation", type=float, default=0.9)
    ap.add_argument("--methods", action="store_true", help="the per-method table instead")
    a = ap.parse_args()
    u = a.utilisation
    if a.methods:
        return methods_table(u)
    for name, config, profile, top, latencies, layouts in SYSTEMS:
        print(f"\n### {name} ({config}, {profile})\n")
        print(f"| layout | step | compute | MFU | {top} bytes: " + ", ".join(KINDS) +
              " (all ranks) | busiest uplink | " + " | ".join(f"step at {l}" for l in latencies) +
              f" | {top} rate for {100 * u:.0f}% |")
        print("|---" * (7 + len(latencies)) + "|")
        for layout, sets in layouts:
            sets = [x.format(top=top) for x in sets]
            s = simulate(sets, profile, config)
            t = s["tiers"][top]
            steps = [simulate(sets + [f"links.{top}.latency={l}"], profile, config)["step_time"] for l in latencies]
            need = simulate(sets, profile, config, "--utilisation", str(u), "--tier", top)
            rate = (f"{need['bits_per_second'] / 1e12:.3g} Tbit/s" if need["reachable"] else
                    f"none: latency alone gives {100 * need['free_step'] / need['latency_step']:.0f}%")
            print(f"| {layout} | {s['step_time']:.3g} s | {s['compute']:.3g} s | {100 * s['mfu']:.1f}% | " +
                  ", ".join(tb(t[f"{k}_bytes"]) for k in KINDS) + f" | {tb(t['busiest_uplink_bytes'])} | " +
                  " | ".join(f"{x:.3g} s" for x in steps) + f" | {rate} |")


if __name__ == "__main__":
    main()
