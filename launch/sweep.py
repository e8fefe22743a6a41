#!/usr/bin/python3
"""Runs a grid of short training runs, one HDF5 step log each, and can be stopped and run
again: finished points are skipped. The grid is the bandwidth of one emulated tier x codec
x sync algorithm x layout.

  launch/sweep.py --config configs/sweep.yaml --ranks 2 --out runs/sweep \\
      --tier inter_node --bandwidths 50Mbit,100Mbit,200Mbit,500Mbit,1Gbit,2Gbit \\
      --codecs none,int8 [--algorithms hierarchical] [--layouts dp=2 "tp=2 dp=2"] \\
      [--latency 0] [--steps 12] [--set key=value ...]

Each point runs `fibertrain train CONFIG` through launch/mpirun.sh with
links.<tier> = {bandwidth, latency}, compression.<tier>.codec (unless none),
sync.algorithm and the layout's parallel.* keys, and writes
<out>/<layout>_<algorithm>_<codec>_<bandwidth>.h5 (written as .partial, renamed when
done). Progress and an ETA go to stderr. Then: tools/report <out>.
"""
import argparse
import os
import shlex
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def point_name(layout, algorithm, codec, bandwidth):
    return f"{layout.replace(' ', '_').replace('=', '')}_{algorithm}_{codec}_{bandwidth}"


def progress(done, total, started, skipped, label):
    elapsed = time.time() - started
    ran = done - skipped
    eta = elapsed / ran * (total - done) if ran else float("nan")
    width = 30
    filled = int(width * done / total) if total else width
    bar = "#" * filled + "." * (width - filled)
    eta_text = "?" if eta != eta else f"{int(eta // 60)}m{int(eta % 60):02d}s"
    line = f"[{bar}] {done}/{total} points, ETA {eta_text}  {label}"
    if sys.stderr.isatty():
        sys.stderr.write("\r" + line.ljust(110))
    else:
        sys.stderr.write(line + "\n")
    sys.stderr.flush()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--ranks", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--tier", default="inter_node", help="the tier whose link is swept (fibertrain checks the name)")
    p.add_argument("--bandwidths", required=True, help="comma-separated rates, e.g. 100Mbit,1Gbit")
    p.add_argument("--latency", default="0", help="latency of the swept link (default 0)")
    p.add_argument("--codecs", default="none", help="comma-separated codecs of the swept tier")
    p.add_argument("--algorithms", default="hierarchical", help="comma-separated sync algorithms")
    p.add_argument("--layouts", nargs="+", default=[""], help='layouts such as "dp=2" or "tp=2 dp=2"')
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--set", action="append", default=[], help="extra config override (repeatable)")
    p.add_argument("--bin", default=os.path.join(HERE, "..", "build", "trainer", "fibertrain"))
    a = p.parse_args()

    os.makedirs(a.out, exist_ok=True)
    bandwidths = a.bandwidths.split(",")
    grid = [(lay, alg, codec, bw) for lay in a.layouts for alg in a.algorithms.split(",")
            for codec in a.codecs.split(",") for bw in bandwidths]
    started, skipped = time.time(), 0
    failed = []
    for i, (layout, algorithm, codec, bandwidth) in enumerate(grid):
        name = point_name(layout or "default", algorithm, codec, bandwidth)
        final = os.path.join(a.out, name + ".h5")
        if os.path.exists(final):
            skipped += 1
            progress(i + 1, len(grid), started, skipped, f"{name}: done already")
            continue
        progress(i, len(grid), started, skipped, f"{name}: running")
        sets = [f"links.{a.tier}={{bandwidth: {bandwidth}, latency: {a.latency}}}", f"sync.algorithm={algorithm}",
                f"train.steps={a.steps}"]
        if codec != "none":
            sets.append(f"compression.{a.tier}={{codec: {codec}}}")
        sets += [f"parallel.{kv}" for kv in layout.split()] + a.set
        cmd = [os.path.join(HERE, "mpirun.sh"), "-n", str(a.ranks), "--bin", a.bin, "--", "train", a.config,
               "--out", final + ".partial", "--overwrite", "-q"]
        for s in sets:
            cmd += ["--set", s]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            failed.append(name)
            sys.stderr.write(f"\n{name} failed ({run.returncode}): {' '.join(shlex.quote(c) for c in cmd)}\n{run.stderr}\n")
            continue
        os.replace(final + ".partial", final)
        progress(i + 1, len(grid), started, skipped, f"{name}: done")
    sys.stderr.write(f"\n{len(grid) - len(failed)}/{len(grid)} points in {a.out} ({time.time() - started:.0f} s)\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
