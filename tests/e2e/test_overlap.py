"""Gradient sync overlaps backward: with several buckets and a slow emulated link between
two nodes, the first bucket's all-reduce starts before the last backward ends, and the
time the compute thread waits (exposed) is less than the time the sync runs. With
sync.overlap false, every bucket waits for backward to end."""
import os

import h5py
import numpy as np

from ftest import check, finish, run, tempdir

tmp = tempdir()
COMMON = ["--set", "parallel.dp=2", "--set", "topology.ranks_per_node=1", "--set", "train.steps=6",
          "--set", "links.inter_node={bandwidth: 200Mbit}", "--set", "sync.bucket=256KiB", "-q"]

logs = {}
for overlap in ("true", "false"):
    out = os.path.join(tmp, f"overlap-{overlap}.h5")
    p = run(["train", "configs/tiny.yaml", *COMMON, "--set", f"sync.overlap={overlap}", "--out", out], ranks=2)
    check(p.returncode == 0, f"overlap={overlap} failed:\n{p.stderr}")
    with h5py.File(out) as f:
        check(int(f.attrs["sync_buckets"]) > 1, "more than one bucket")
        s = f["steps"]
        logs[overlap] = {k: s[k][1:] for k in ("sync_start", "backward_end", "comm_exposed", "comm_time")}

on, off = logs["true"], logs["false"]
check((on["sync_start"] < on["backward_end"]).all(),
      f"with overlap the first bucket starts before backward ends: {on['sync_start']} vs {on['backward_end']}")
check((on["comm_exposed"] < on["comm_time"]).all(),
      f"exposed {on['comm_exposed'].mean():.4f} s < sync time {on['comm_time'].mean():.4f} s")
check((off["sync_start"] >= off["backward_end"]).all(), "without overlap the sync starts after backward")
print(f"overlap: sync {on['comm_time'].mean() * 1e3:.1f} ms, exposed {on['comm_exposed'].mean() * 1e3:.1f} ms; "
      f"no overlap: sync {off['comm_time'].mean() * 1e3:.1f} ms, exposed {off['comm_exposed'].mean() * 1e3:.1f} ms")
finish()
