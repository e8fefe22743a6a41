"""`fibertrain claims --methods DIR`: the sync methods a directory of step logs measured,
carried to C7's and C10's systems. Three short runs across two pods (dense sync, int8 sync,
a delayed and streamed outer sync), then every column recomputed here from the step logs
and the claims' own figures: traffic against the dense run, period, overlap, loss penalty
and the rate for 90% compute utilisation. And the refusals."""
import csv
import io
import os
import shutil

import h5py
import numpy as np

from ftest import check, finish, run, tempdir

tmp = tempdir()
runs = os.path.join(tmp, "runs")
os.makedirs(runs)
BASE = ["parallel.dp=4", "topology.ranks_per_node=1", "topology.nodes_per_pod=2", "train.steps=10", "eval.every=5",
        "eval.batches=1", "data.kind=synthetic"]
METHODS = {"a-sync": [], "b-int8": ["compression.inter_pod={codec: int8}"],
           "c-outer": ["sync.outer={tier: inter_pod, every: 4, fragments: 2, delay: 1}"]}
for name, sets in METHODS.items():
    args = ["train", "configs/tiny.yaml", "--out", os.path.join(runs, f"{name}.h5"), "-q"]
    for s in BASE + sets:
        args += ["--set", s]
    p = run(args, ranks=4)
    check(p.returncode == 0, f"{name}:\n{p.stderr}")

p = run(["claims", "--methods", runs, "--format", "csv"])
check(p.returncode == 0, f"claims --methods:\n{p.stderr}")
rows = {os.path.basename(r["file"])[:-3]: r for r in csv.DictReader(io.StringIO(p.stdout))}
check(sorted(rows) == sorted(METHODS), f"rows: {sorted(rows)}")
check([rows[n]["method"] for n in sorted(METHODS)] == ["sync", "sync int8", "outer every 4 in 2 fragments delay 1"],
      f"method names: {[rows[n]['method'] for n in sorted(METHODS)]}")

claims = {(r["id"], r["claim"]): float(r["computed"])
          for r in csv.DictReader(io.StringIO(run(["claims", "--format", "csv"]).stdout))}
step7 = claims[("C4", "Llama-3-405B step time")]
bytes7 = claims[("C7", "gradient bytes crossing the top level per step")]
step10 = step7 / claims[("C10", "step shortening")]
bytes10 = claims[("C10", "model size, Chinchilla-scaled")] * 4


def measured(name):
    with h5py.File(os.path.join(runs, f"{name}.h5")) as f:
        s = f["steps"]
        loss = s["eval_loss"][:]
        return s["bytes_wire/inter_pod"][:].sum(axis=1).mean(), loss[np.isfinite(loss)][-1]


base_bytes, base_loss = measured("a-sync")
for name, period, hides in (("a-sync", 1, 2 / 3), ("b-int8", 1, 2 / 3), ("c-outer", 2, 1)):
    r = rows[name]
    b, loss = measured(name)
    traffic = b / base_bytes
    check(abs(float(r["traffic"]) / traffic - 1) < 1e-3, f"{name}: traffic {r['traffic']}, expected {traffic:.4g}")
    check(abs(float(r["loss_penalty"]) - (loss / base_loss - 1)) < 1e-4, f"{name}: loss penalty {r['loss_penalty']}")
    check(float(r["period"]) == period and abs(float(r["hideable_steps"]) - hides) < 1e-3,
          f"{name}: period {r['period']}, hides {r['hideable_steps']}")
    for col, step, grad in (("c7_bits_per_second", step7, bytes7), ("c10_bits_per_second", step10, bytes10)):
        want = 8 * period * traffic * grad / (step * (hides + period / 9))
        check(abs(float(r[col]) / want - 1) < 1e-3, f"{name}: {col} {r[col]}, expected {want:.4g}")
check(float(rows["b-int8"]["traffic"]) < 0.3, f"int8 traffic {rows['b-int8']['traffic']}")

# The table form prints both tables.
p = run(["claims", "--methods", runs])
check(p.returncode == 0 and "C10 rate" in p.stdout and "C4 " in p.stdout, f"table:\n{p.stdout}\n{p.stderr}")

# A checkpoint among the logs is skipped, saying so.
p = run(["train", "configs/tiny.yaml", "--set", "train.steps=1", "--set", f"checkpoint.path={runs}/ck.h5", "-q"])
check(p.returncode == 0, f"checkpoint run:\n{p.stderr}")
p = run(["claims", "--methods", runs, "--format", "csv"])
check(p.returncode == 0 and "is no step log; skipped" in p.stderr and len(p.stdout.splitlines()) == 4,
      f"with a checkpoint:\n{p.stdout}\n{p.stderr}")

# Refusals: a run of another experiment (here: more steps); a log without held-out losses;
# no dense synchronous run; not a directory.
def refused(name, sets, message):
    out = os.path.join(runs, f"{name}.h5")
    p = run(["train", "configs/tiny.yaml", "--out", out, "-q"] + [a for s in sets for a in ("--set", s)], ranks=4)
    check(p.returncode == 0, f"{name}:\n{p.stderr}")
    p = run(["claims", "--methods", runs])
    check(p.returncode == 2 and message in p.stderr, f"{name}: expected '{message}':\n{p.stderr}")
    os.remove(out)


refused("d-longer", BASE + ["train.steps=11"], "ran another experiment")
refused("d-no-eval", [s for s in BASE if not s.startswith("eval.")], "holds no held-out loss")
shutil.move(os.path.join(runs, "a-sync.h5"), os.path.join(tmp, "a-sync.h5"))
p = run(["claims", "--methods", runs])
check(p.returncode == 2 and "no dense synchronous run" in p.stderr, f"no baseline:\n{p.stderr}")
p = run(["claims", "--methods", os.path.join(tmp, "a-sync.h5")])
check(p.returncode == 2 and "not a directory" in p.stderr, f"not a directory:\n{p.stderr}")
finish()
