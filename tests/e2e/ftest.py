"""Helpers for the end-to-end tests: run the fibertrain binary, alone or under mpirun."""
import math
import os
import subprocess
import sys
import tempfile

BIN = os.environ["FIBERTRAIN_BIN"]
SOURCE = os.environ["FIBERTRAIN_SOURCE"]
FAILURES = []


def run(args, ranks=1, timeout=300, cwd=None, env=None):
    """Runs fibertrain ARGS, under `mpirun -n RANKS` when RANKS > 1. Returns CompletedProcess."""
    cmd = [BIN] + list(args)
    if ranks > 1:
        cmd = ["mpirun", "-n", str(ranks), "--oversubscribe"] + cmd
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd or SOURCE, env=full_env)


def rank_processes(rank_var, **match):
    """{rank: pid} of the running fibertrain processes whose environment holds `rank_var`
    (OMPI_COMM_WORLD_RANK, SLURM_PROCID) and every KEY=value of `match`."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if not f.read().startswith(BIN.encode()):
                    continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
        except OSError:
            continue
        if rank_var.encode() in env and all(env.get(k.encode()) == str(v).encode() for k, v in match.items()):
            found[int(env[rank_var.encode()])] = int(pid)
    return found


def check(cond, what):
    """Records a failure instead of stopping, so one run reports every broken expectation."""
    if not cond:
        FAILURES.append(what)
        print("FAIL:", what, file=sys.stderr)


def finish():
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed", file=sys.stderr)
        sys.exit(1)
    print("all checks passed")


def tempdir():
    return tempfile.mkdtemp(prefix="fibertrain-e2e-")


def close(a, b, rel):
    return math.isclose(a, b, rel_tol=rel)
