#!/usr/bin/env python3
"""The claims' systems simulated (docs/claims.md, "What the claims become at scale").

Runs `fibertrain simulate` on Llama 3 405B's layout (configs/llama3-405b-16k.yaml, H100 as
C4 states it) and on C10's 500K-B200 system (configs/c10-500k-b200.yaml), each under ZeRO-3
(FSDP, as laid out), ZeRO-1 (C8's premise: the averaged gradient, once per step) and an
outer sync across the top tier every 50 steps (DiLoCo; ZeRO-1 inside each pod or site), and
prints, as markdown tables:

  - step time, MFU and the bytes through the busiest top-level uplink, by kind;
  - the step as the top tier's latency grows (C8: "latency does not matter");
  - the top tier's rate needed for the step to keep 90% of its pace with that tier free.

  tools/claims_at_scale.py [--utilisation 0.9]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from simulator_validation import simulate  # noqa: E402

SYSTEMS = [
    ("Llama 3 405B, 16K H100", "configs/llama3-405b-16k.yaml", "configs/profiles/h100-claims.yaml", "inter_pod",
     ["20us", "200us", "2ms"]),
    ("C10: 3.5T, 500K B200, 4 sites", "configs/c10-500k-b200.yaml", "configs/profiles/b200-claims.yaml", "inter_site",
     ["0.5ms", "5ms", "20ms"]),
]
LAYOUTS = [("ZeRO-3 (FSDP)", ["parallel.zero=3"]), ("ZeRO-1", ["parallel.zero=1"]),
           ("outer sync every 50, ZeRO-1 inside", ["parallel.zero=1", "sync.outer={{tier: {top}, every: 50}}"])]
KINDS = ["gradient", "parameter", "pipeline", "outer"]


def tb(b):
    return f"{b / 1e12:.3g} TB"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--utilisation", type=float, default=0.9)
    a = ap.parse_args()
    u = a.utilisation
    for name, config, profile, top, latencies in SYSTEMS:
        print(f"\n### {name} ({config}, {profile})\n")
        print(f"| layout | step | compute | MFU | {top} bytes: " + ", ".join(KINDS) +
              " (all ranks) | busiest uplink | " + " | ".join(f"step at {l}" for l in latencies) +
              f" | {top} rate for {100 * u:.0f}% |")
        print("|---" * (7 + len(latencies)) + "|")
        for layout, sets in LAYOUTS:
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
