"""The held-out evaluation (eval.*): logged every eval.every steps and after the last, the
same whatever the layout, carried through a resume, on file and synthetic data, and a
held-out part too small for one sequence refused in one line."""
import os

import h5py
import numpy as np

from ftest import check, finish, run, tempdir

tmp = tempdir()


def train(sets, out, ranks=1, steps=10, resume=None):
    args = ["train", "configs/tiny.yaml", "--set", f"train.steps={steps}", "--set", "eval.every=4",
            "--set", "eval.batches=2", "--out", out, "-q"]
    for s in sets:
        args += ["--set", s]
    if resume:
        args += ["--resume", resume]
    return run(args, ranks=ranks)


def evals(path):
    with h5py.File(path) as f:
        return f["steps/eval_loss"][:], f.attrs["data"]


# Evaluated after steps 4, 8 and the last (10); NaN elsewhere. The data line says how much
# is trained on and how much held out.
one = os.path.join(tmp, "one.h5")
p = train([], one)
check(p.returncode == 0, f"one rank failed:\n{p.stderr}")
e, data = evals(one)
done = [i + 1 for i in range(10) if not np.isnan(e[i])]
check(done == [4, 8, 10], f"evaluated after steps {done}")
check(all(2.0 < x < 6.0 for x in e[[3, 7, 9]]), f"held-out losses {e[[3, 7, 9]]}")
check("trained on" in data.decode() if isinstance(data, bytes) else "trained on" in data, f"data attribute: {data}")

# The same held-out losses from 4 ranks in two layouts (data, tensor and pipeline parallel).
for name, sets in (("dp2pp2", ["parallel.dp=2", "parallel.pp=2"]), ("tp2dp2", ["parallel.tp=2", "parallel.dp=2"])):
    out = os.path.join(tmp, f"{name}.h5")
    p = train(sets, out, ranks=4)
    check(p.returncode == 0, f"{name} failed:\n{p.stderr}")
    got, _ = evals(out)
    check(np.allclose(got[[3, 7, 9]], e[[3, 7, 9]], rtol=1e-5), f"{name}: held-out losses {got[[3, 7, 9]]} vs {e[[3, 7, 9]]}")

# A resumed run logs the same held-out losses, bit for bit.
ck = os.path.join(tmp, "ck-{step}.h5")
a, b = os.path.join(tmp, "a.h5"), os.path.join(tmp, "b.h5")
p = train([f"checkpoint.path={ck}", "checkpoint.every=6"], a)
check(p.returncode == 0, f"checkpointed run failed:\n{p.stderr}")
p = train([f"checkpoint.path={os.path.join(tmp, 'ck2.h5')}"], b, resume=ck.format(step=6))
check(p.returncode == 0, f"resume failed:\n{p.stderr}")
ea, eb = evals(a)[0][6:], evals(b)[0]
check(np.array_equal(ea, eb, equal_nan=True), f"resumed held-out losses {eb} vs {ea}")

# Synthetic data holds out sequences of a stream of its own.
out = os.path.join(tmp, "synthetic.h5")
p = train(["data.kind=synthetic"], out, steps=4)
check(p.returncode == 0 and np.isfinite(evals(out)[0][3]), f"synthetic:\n{p.stderr}")

# Too little held out for one sequence: refused in one line.
p = train(["eval.holdout=0.001"], os.path.join(tmp, "x.h5"), steps=1)
check(p.returncode == 2 and "its held-out part" in p.stderr and "eval.holdout" in p.stderr, f"tiny holdout:\n{p.stderr}")
finish()
