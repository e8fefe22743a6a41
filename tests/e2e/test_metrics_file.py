"""The HDF5 step log: readable with h5py and h5dump, complete attributes, and every flushed
step intact after SIGKILL."""
import math
import os
import signal
import subprocess

import h5py
import yaml

from ftest import BIN, SOURCE, check, finish, run, tempdir

tmp = tempdir()
out = os.path.join(tmp, "run.h5")
p = run(["train", "configs/tiny.yaml", "--set", "train.steps=12", "--set", "metrics.flush_every=5", "--out", out, "-q"])
check(p.returncode == 0, f"training failed:\n{p.stderr}")

with h5py.File(out, "r") as f:
    attrs = f.attrs
    for name in ("config", "version", "git_commit", "world_size", "layout", "hostnames", "start_time", "data",
                 "parameters", "flops_per_token", "command"):
        check(name in attrs, f"root attribute {name} missing")
    cfg = yaml.safe_load(attrs["config"])
    check(cfg["model"]["width"] == 128 and cfg["train"]["steps"] == 12, "config attribute is the resolved config")
    check(int(attrs["world_size"]) == 1, "world_size attribute")
    steps = f["steps"]
    check(list(steps["step"][:]) == list(range(12)), f"steps logged: {list(steps['step'][:])}")
    check(steps["loss"].shape == (12,), f"loss shape {steps['loss'].shape}")
    check(steps["step_time"].shape == (12, 1), f"per-rank step_time shape {steps['step_time'].shape}")
    datasets = []
    steps.visititems(lambda name, obj: datasets.append((name, obj)) if isinstance(obj, h5py.Dataset) else None)
    check(len(datasets) > 20, f"{len(datasets)} datasets under /steps")
    for name, ds in datasets:
        check("units" in ds.attrs and "description" in ds.attrs, f"/steps/{name} lacks units/description")
        if name == "eval_loss":  # NaN marks the steps not evaluated: all of them without eval.every
            check(all(math.isnan(v) for v in ds[:].flatten()), "/steps/eval_loss without eval.every")
            continue
        check(all(math.isfinite(v) for v in ds[:].flatten()), f"/steps/{name} has non-finite values")
    check(steps["loss"][-1] < steps["loss"][0], "loss falls over 12 steps")
    # Every field a user meets is documented: datasets by name (tier groups by group), attributes.
    with open(os.path.join(SOURCE, "docs", "metrics.md")) as doc_file:
        doc = doc_file.read()
    for name, _ in datasets:
        key = name.split("/")[0] + "/" if "/" in name else name
        check(f"`{key}`" in doc, f"/steps/{name} is not in docs/metrics.md")
    for name in attrs:
        check(f"`{name}`" in doc, f"root attribute {name} is not in docs/metrics.md")

d = subprocess.run(["h5dump", "-H", out], capture_output=True, text=True)
check(d.returncode == 0 and "/steps" in d.stdout or "steps" in d.stdout, f"h5dump failed:\n{d.stderr}")

# SIGKILL between flushes: the file opens and holds whole flushed blocks of steps.
killed = os.path.join(tmp, "killed.h5")
proc = subprocess.Popen([BIN, "train", "configs/tiny.yaml", "--set", "train.steps=1000", "--set", "metrics.flush_every=5",
                         "--out", killed], cwd=SOURCE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
for line in proc.stdout:
    if line.startswith("step") and line.split()[1].startswith("7/"):
        break
proc.send_signal(signal.SIGKILL)
proc.wait()
check(proc.returncode == -signal.SIGKILL, f"process ended with {proc.returncode}, not by SIGKILL")
with h5py.File(killed, "r") as f:
    n = f["steps/loss"].shape[0]
    check(n >= 5 and n % 5 == 0, f"{n} rows survived; expected whole flushes of 5 and at least one")
    check(list(f["steps/step"][:]) == list(range(n)), "surviving rows are steps 0..n-1 in order")
    check(all(math.isfinite(v) for v in f["steps/loss"][:]), "surviving losses are finite")
finish()
