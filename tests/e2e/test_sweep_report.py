"""A tiny sweep (launch/sweep.py) renders into a report (tools/report) from scratch: the
runs exist, a second sweep skips them, the cost model calibrates on a run and predicts,
and the report writes its plots and summary without errors."""
import json
import os
import subprocess
import sys

from ftest import BIN, SOURCE, check, finish, tempdir

tmp = tempdir()
out = os.path.join(tmp, "sweep")
PY = "/usr/bin/python3"
sweep = [PY, os.path.join(SOURCE, "launch", "sweep.py"), "--config", "configs/sweep.yaml", "--ranks", "2", "--out", out,
         "--bandwidths", "100Mbit,2Gbit", "--codecs", "none,int8", "--steps", "5", "--bin", BIN]
p = subprocess.run(sweep, capture_output=True, text=True, cwd=SOURCE, timeout=600)
check(p.returncode == 0, f"sweep failed:\n{p.stderr}")
runs = sorted(f for f in os.listdir(out) if f.endswith(".h5"))
check(len(runs) == 4, f"sweep points: {runs}")
check("ETA" in p.stderr, "progress with an ETA")
p = subprocess.run(sweep, capture_output=True, text=True, cwd=SOURCE, timeout=60)
check(p.returncode == 0 and p.stderr.count("done already") == 4, f"a second sweep skips finished points:\n{p.stderr}")

slow = os.path.join(out, "default_hierarchical_none_100Mbit.h5")
p = subprocess.run([BIN, "claims", "--calibrate", slow, "--predict", "100Mbit,2Gbit", "--format", "json"],
                   capture_output=True, text=True)
check(p.returncode == 0, f"calibrate failed:\n{p.stderr}")
cal = json.loads(p.stdout)
check(cal["tier"] == "inter_node" and cal["uplink_bytes"] > 0 and len(cal["predictions"]) == 2, f"calibration: {cal}")
check(cal["predictions"][0]["step_time"] > cal["predictions"][1]["step_time"], "a slower link predicts a slower step")
# It predicts the run it was calibrated on.
measured = cal["step_time"]
check(abs(cal["predictions"][0]["step_time"] - measured) / measured < 0.02, "calibration reproduces its own run")

for target in (out, slow):
    p = subprocess.run([PY, os.path.join(SOURCE, "tools", "report"), target, "--bin", BIN], capture_output=True, text=True,
                       cwd=SOURCE, timeout=300)
    check(p.returncode == 0, f"report of {target} failed:\n{p.stderr}")
report_dir = out + "-report"
for name in ("report.md", "step_time_vs_bandwidth.png", "bytes_per_tier.png", "ratio_vs_loss.png", "loss_curves.png",
             "breakdown.png"):
    path = os.path.join(report_dir, name)
    check(os.path.exists(path) and os.path.getsize(path) > 0, f"{name} missing")
md = open(os.path.join(report_dir, "report.md")).read()
check("## Knees" in md and "int8" in md, "report.md has the knee table and every codec")
run_dir = os.path.splitext(slow)[0] + "-report"
check(os.path.exists(os.path.join(run_dir, "default_hierarchical_none_100Mbit-loss.png")), "single-run plots")
finish()
