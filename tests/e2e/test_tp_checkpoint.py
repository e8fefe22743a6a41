"""Checkpoints are layout independent: a tp = 2 checkpoint resumes on one rank, and a
one-rank checkpoint on tp = 2, each giving the loss the saving layout gets on the same
batch (to fp32 summation order: 1e-5 relative, see test_layout_equivalence.py)."""
import os

import h5py

from ftest import check, finish, run, tempdir

tmp = tempdir()


def losses(path):
    with h5py.File(path) as f:
        return dict(zip(f["steps/step"][:].astype(int), f["steps/loss"][:]))


for saver, resumer in (((2, 2), (1, 1)), ((1, 1), (2, 2))):
    (s_ranks, s_tp), (r_ranks, r_tp) = saver, resumer
    ck = os.path.join(tmp, f"tp{s_tp}-{{step}}.h5")
    a = os.path.join(tmp, f"save-tp{s_tp}.h5")
    p = run(["train", "configs/tiny.yaml", "--set", "train.steps=6", "--set", f"parallel.tp={s_tp}",
             "--set", f"checkpoint.path={ck}", "--set", "checkpoint.every=3", "--out", a, "-q"], ranks=s_ranks)
    check(p.returncode == 0, f"tp={s_tp} run failed:\n{p.stderr}")
    b = os.path.join(tmp, f"resume-tp{r_tp}-from-tp{s_tp}.h5")
    p = run(["train", "configs/tiny.yaml", "--set", "train.steps=6", "--set", f"parallel.tp={r_tp}",
             "--resume", ck.format(step=3), "--out", b, "-q"], ranks=r_ranks)
    check(p.returncode == 0, f"tp={r_tp} resume of a tp={s_tp} checkpoint failed:\n{p.stderr}")
    la, lb = losses(a), losses(b)
    check(sorted(lb) == [3, 4, 5], f"resumed steps {sorted(lb)}")
    for step in (3, 4, 5):
        rel = abs(la[step] - lb[step]) / la[step]
        check(rel <= 1e-5, f"tp {s_tp} -> {r_tp}: step {step} loss {la[step]} vs {lb[step]} ({rel:.2g})")
    print(f"tp {s_tp} -> tp {r_tp}: step 3 loss {la[3]:.6f} vs {lb[3]:.6f}")
finish()
