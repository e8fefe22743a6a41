"""Fixed-seed fuzzing of the binary: mutated --set overrides (validated, and trained for two
steps), config files that are not configs, bench and claims flags. Every run exits 0 or 2,
prints at most one error line and never an internal error, is not killed by a signal (no
abort, no core dump) and ends within its time limit. tests/unit/test_fuzz.cpp covers the
same kinds in-process by the thousand; this is the sample that runs the whole program."""
import os
import random
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

from ftest import BIN, SOURCE, check, finish, tempdir

tmp = tempdir()
# Runs start in a scratch directory: a fuzzed key may name any file (checkpoint.path=abc).
work = os.path.join(tmp, "work")
os.mkdir(work)
shutil.copy(os.path.join(SOURCE, "README.md"), work)  # configs/tiny.yaml's data.path
TINY = os.path.join(SOURCE, "configs", "tiny.yaml")
rng = random.Random(20261123)
TOKENS = ["nan", "inf", "-inf", "-1", "0", "1", "2", "3", "1e400", "99999999999999999999", "[1, 2]", "{a: 1}", "",
          "~", "true", "2GiB", "16TiB", "1Tbit", "-5Mbit", "1ms", "abc", "0x10", "{", "ring", "int8", "topk",
          "powersgd", "bf16", "cuda", "cpu-async", "1.5", "0.0001", "8bit"]


def keys():
    p = subprocess.run([BIN, "train", "--keys"], capture_output=True, text=True, cwd=SOURCE)
    return [l.split("`")[1] for l in p.stdout.splitlines() if l.startswith("| `")]


KEYS = keys()
check(len(KEYS) > 50, f"train --keys listed {len(KEYS)} keys")


def sets(n):
    out = []
    for _ in range(n):
        key = rng.choice(KEYS) if rng.random() < 0.9 else rng.choice(TOKENS)
        out += ["--set", f"{key}={rng.choice(TOKENS)}"]
    return out


cases = []
for _ in range(70):  # validation only
    cases.append(["train", TINY, "--dry-run", *sets(rng.randint(1, 3))])
for _ in range(30):  # and two steps of training, where validation let the config through
    cases.append(["train", TINY, "-q", "--out", "none", "--set", "train.steps=2", "--set",
                  "train.batch=4", "--set", "model.context=16", *sets(1)])
for _ in range(25):
    size = lambda: rng.choice(["4", "1KiB", "64KiB", "16TiB", "0", "-1", "nan", "abc", "1e400"])
    cases.append(["bench", "collectives", "--min", size(), "--max", size(), "--factor", rng.choice(["2", "1", "0", "nan"]),
                  "--op", rng.choice(["all_reduce", "all_gather", "reduce_scatter", "x"]), "--iters", "1", "--warmup",
                  "1", "--algos", rng.choice(["ring", "native", "hierarchical", "x", ""])])
for _ in range(25):
    flag = rng.choice(["--params", "--tokens", "--flops", "--latency", "--format", "--predict"])
    cases.append(["claims", flag, rng.choice(TOKENS)])
bad = {"empty.yaml": b"", "binary.yaml": bytes(range(256)) * 4, "list.yaml": b"- 1\n- 2\n",
       "tabs.yaml": b"model:\n\tvocab: 1\n", "deep.yaml": b"model: " + b"[" * 5000}
for name, content in bad.items():
    with open(os.path.join(tmp, name), "wb") as f:
        f.write(content)
    cases.append(["train", os.path.join(tmp, name), "--dry-run"])
cases += [["train", tmp, "--dry-run"], ["train", "/nonexistent.yaml"], ["bench", "model", "--config", "/dev/null",
          "--iters", "1", "--warmup", "0", "--set", "model.layers=1"]]


def run(args):
    try:
        p = subprocess.run([BIN, *args], capture_output=True, text=True, cwd=work, timeout=60,
                           env=dict(os.environ, OMPI_MCA_ess_singleton_isolated="1"))
    except subprocess.TimeoutExpired:
        return args, None, ""
    return args, p.returncode, p.stderr


with ThreadPoolExecutor(max_workers=2) as pool:
    for args, rc, err in pool.map(run, cases):
        what = "fibertrain " + " ".join(repr(a) for a in args)
        errors = [l for l in err.splitlines() if "error" in l]
        check(rc is not None, f"{what}: no end within 60 s")
        check(rc in (0, 2), f"{what}: exit {rc}\n{err}")
        check(len(errors) <= 1, f"{what}: {len(errors)} error lines\n{err}")
        check("internal error" not in err, f"{what}: {err}")
print(f"{len(cases)} command lines")
finish()
