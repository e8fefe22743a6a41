"""One-rank training on configs/tiny.yaml: the loss starts at ln(vocab) and falls below a
threshold; a run resumed from a checkpoint repeats the uninterrupted run bit for bit."""
import math
import os

import h5py

from ftest import check, finish, run, tempdir

# Byte-level text: an untrained model is uniform over 256 bytes (5.545 nats). Within 200
# steps at lr 1e-3 it learns the byte statistics of English (unigram entropy ~3 nats) and
# beyond; 3.0 is crossed with room to spare (measured ~1.8 on the README).
THRESHOLD = 3.0
tmp = tempdir()
out = os.path.join(tmp, "tiny.h5")
p = run(["train", "configs/tiny.yaml", "--out", out, "-q"], timeout=600)
check(p.returncode == 0, f"training failed:\n{p.stderr}")
with h5py.File(out, "r") as f:
    loss = f["steps/loss"][:]
check(len(loss) == 200, f"{len(loss)} steps logged")
check(abs(loss[0] - math.log(256)) < 0.02 * math.log(256), f"initial loss {loss[0]:.4f} not within 2% of ln 256")
final = loss[-10:].mean()
check(final < THRESHOLD, f"final loss {final:.3f} (mean of the last 10 steps) not below {THRESHOLD}")
print(f"initial loss {loss[0]:.4f}, final {final:.4f}")

# Resume: checkpoints at steps 6 and 12 of a 12-step run; resuming from step 6 must give
# exactly the losses of steps 6..11.
ck = os.path.join(tmp, "ck-{step}.h5")
sets = ["--set", "train.steps=12", "--set", f"checkpoint.path={ck}", "--set", "checkpoint.every=6"]
a = os.path.join(tmp, "a.h5")
p = run(["train", "configs/tiny.yaml", *sets, "--out", a, "-q"])
check(p.returncode == 0, f"run A failed:\n{p.stderr}")
check(os.path.exists(ck.format(step=6)) and os.path.exists(ck.format(step=12)), "checkpoints at steps 6 and 12")
b = os.path.join(tmp, "b.h5")
p = run(["train", "configs/tiny.yaml", *sets, "--resume", ck.format(step=6), "--out", b, "-q"])
check(p.returncode == 0, f"resumed run failed:\n{p.stderr}")
with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
    check(list(fb["steps/step"][:]) == list(range(6, 12)), f"resumed run logged steps {list(fb['steps/step'][:])}")
    for name in ("loss", "grad_norm", "lr"):
        same = list(fa[f"steps/{name}"][6:]) == list(fb[f"steps/{name}"][:])
        check(same, f"{name} after resume differs:\n{fa[f'steps/{name}'][6:]}\n{fb[f'steps/{name}'][:]}")

# A checkpoint of another model is refused.
p = run(["train", "configs/tiny.yaml", *sets, "--set", "model.width=64", "--resume", ck.format(step=6), "--out", "none"])
check(p.returncode == 2 and "holds model" in p.stderr, f"mismatched resume: {p.returncode}\n{p.stderr}")
# A bad data file is refused with its problem.
p = run(["train", "configs/tiny.yaml", "--set", "data.path=/nonexistent.txt", "--out", "none"])
check(p.returncode == 2 and "data file '/nonexistent.txt' cannot be opened" in p.stderr, f"missing data: {p.stderr}")
finish()
