"""No input or output of a run is destroyed, and a diverged run stops: each case from the
reliability issue, on configs/tiny.yaml with one rank. Refusals exit 2 with one error line
and leave every file as it was."""
import hashlib
import os
import shutil
import subprocess
import time

import h5py
import numpy as np

from ftest import BIN, SOURCE, check, finish, run, tempdir

tmp = tempdir()
CONFIG = "configs/tiny.yaml"


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def refused(args, what, expect, untouched=()):
    before = {p: digest(p) for p in untouched}
    p = run(["train", CONFIG, "-q", *args], timeout=120)
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    check(p.returncode == 2, f"{what}: exit {p.returncode}, want 2\n{p.stderr}")
    check(len(lines) == 1 and expect in lines[0], f"{what}: want one error line with '{expect}', got {lines}")
    for path, d in before.items():
        check(digest(path) == d, f"{what}: {path} changed")


def t(name):
    return os.path.join(tmp, name)


steps = ["--set", "train.steps=4"]
data = t("data.txt")
shutil.copy(os.path.join(SOURCE, "README.md"), data)
text = ["--set", "data.kind=text", "--set", f"data.path={data}"]

# A checkpoint and a step log to protect.
ck = t("ck.h5")
p = run(["train", CONFIG, "-q", *steps, *text, "--set", f"checkpoint.path={ck}", "--out", t("a.h5")])
check(p.returncode == 0, f"the first run failed:\n{p.stderr}")

# 1. An output that is an input, or another output.
refused([*steps, *text, "--out", data], "--out = data.path", "is also data.path", [data])
refused(["--set", "train.steps=6", *text, "--resume", ck, "--out", ck], "--out = --resume", "is also --resume", [ck])
refused([*steps, *text, "--set", f"checkpoint.path={t('b.h5')}", "--out", t("b.h5")], "checkpoint.path = --out",
        "two outputs of the run would overwrite each other")
check(not os.path.exists(t("b.h5")), "a refused run created its outputs")
os.link(data, t("hardlink.txt"))
refused([*steps, *text, "--out", t("hardlink.txt")], "--out = a hard link of data.path", "is also data.path", [data])
cfg_copy = t("tiny.yaml")
shutil.copy(os.path.join(SOURCE, CONFIG), cfg_copy)
p = run(["train", cfg_copy, "-q", *steps, "--out", cfg_copy])
check(p.returncode == 2 and "is also the config" in p.stderr, f"--out = the config: {p.returncode} {p.stderr}")

# An existing log stays unless --overwrite.
refused([*steps, *text, "--out", t("a.h5")], "an existing --out", "pass --overwrite", [t("a.h5")])
p = run(["train", CONFIG, "-q", *steps, *text, "--out", t("a.h5"), "--overwrite"])
check(p.returncode == 0, f"--overwrite refused:\n{p.stderr}")

# A checkpoint directory that cannot be written is found before training.
refused([*steps, "--set", "checkpoint.path=/proc/fibertrain/ck.h5", "--out", t("c.h5")], "unwritable checkpoint",
        "cannot write in its directory")
check(not os.path.exists(t("c.h5")), "a refused run created its step log")
refused([*steps, "--set", "checkpoint.every=2", "--set", "checkpoint.path=/proc/ck-{step}.h5", "--out", t("c.h5")],
        "checkpoints in /proc", "checkpoint.path (step 2) '/proc/ck-2.h5': cannot write in its directory")
check(not os.path.exists(t("c.h5")), "a refused run created its step log")
# A directory where a checkpoint goes.
os.makedirs(t("ckdir/ck-4.h5"))
refused([*steps, "--set", f"checkpoint.path={t('ckdir/ck-{step}.h5')}", "--out", t("c.h5")],
        "a checkpoint path that is a directory", "is a directory: the run could not write its file there")
check(not os.path.exists(t("c.h5")), "a refused run created its step log")

# A second writer of a log in use is refused and the log is not touched.
first = subprocess.Popen([BIN, "train", CONFIG, "-q", "--set", "train.steps=200", *text, "--out", t("busy.h5")],
                         cwd=SOURCE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
deadline = time.time() + 60
while time.time() < deadline and not (os.path.exists(t("busy.h5")) and os.path.getsize(t("busy.h5")) > 0):
    time.sleep(0.2)
size = os.path.getsize(t("busy.h5"))
p = run(["train", CONFIG, "-q", *steps, *text, "--out", t("busy.h5"), "--overwrite"])
check(p.returncode == 2 and "another run" in p.stderr, f"a second writer: exit {p.returncode}\n{p.stderr}")
check(os.path.getsize(t("busy.h5")) >= size, "the second writer truncated the first run's log")
first.wait(timeout=300)
check(first.returncode == 0, f"the first writer failed after the second was refused:\n{first.stderr.read()}")
with h5py.File(t("busy.h5"), "r") as f:
    check(len(f["steps/loss"]) == 200, "the first writer's log is complete")

# Default names: two runs of one config keep two logs.
work = t("defaults")
os.makedirs(work)
shutil.copy(os.path.join(SOURCE, "README.md"), work)
for _ in range(2):
    p = run(["train", os.path.join(SOURCE, CONFIG), "-q", "--set", "train.steps=2"], cwd=work)
    check(p.returncode == 0, f"a default-named run failed:\n{p.stderr}")
logs = os.listdir(os.path.join(work, "runs"))
check(len(logs) == 2 and all(l.startswith("tiny-") for l in logs), f"default logs: {logs}")

# 2. Checkpoints: past train.steps refused; no partial file; corruption named.
refused(["--set", "train.steps=2", *text, "--resume", ck, "--out", t("d.h5")], "resume past train.steps",
        "nothing is left to train", [ck])
check(not [f for f in os.listdir(tmp) if f.endswith(".partial")], "a .partial file was left behind")
bad = t("bad.h5")
shutil.copy(ck, bad)
with h5py.File(bad, "r") as f:
    offset = f["params/wte"].id.get_offset()
with open(bad, "r+b") as f:
    f.seek(offset)
    f.write(b"\xff" * 4096)
refused(["--set", "train.steps=6", *text, "--resume", bad, "--out", t("e.h5")], "corrupted checkpoint",
        "/params/wte does not match its checksum")


# 3. A NaN stops every rank at that step, logged; `skip` goes on without updating. The
# checkpoint holds a NaN with a valid checksum, as a diverged run would have saved it.
def fnv1a64(b):
    h = 1469598103934665603
    for x in b:
        h = ((h ^ x) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h - (1 << 64) if h >= 1 << 63 else h


nan_ck = t("nan.h5")
shutil.copy(ck, nan_ck)
with h5py.File(nan_ck, "r+") as f:
    d = f["params/lnf.bias"]
    v = d[:]
    v[0] = np.nan
    d[...] = v
    d.attrs["checksum_fnv1a64"] = np.int64(fnv1a64(v.astype(np.float32).tobytes()))
for ranks in (1, 2):
    p = run(["train", CONFIG, "-q", "--set", "train.steps=8", "--set", f"parallel.dp={ranks}", *text, "--resume",
             nan_ck, "--out", t(f"nan{ranks}.h5")], ranks=ranks, timeout=120)
    lines = [l for l in p.stderr.splitlines() if l.startswith("fibertrain:")]  # mpirun adds its own banner
    check(p.returncode == 2 and len(lines) == 1 and "step 5: the loss is nan" in lines[0],
          f"NaN on {ranks} rank(s): exit {p.returncode}, {lines}")
    with h5py.File(t(f"nan{ranks}.h5"), "r") as f:
        check(list(f["steps/step"][:]) == [4] and f["steps/nonfinite"][0] == 1, "the NaN step is in the log")
p = run(["train", CONFIG, "-q", "--set", "train.steps=6", "--set", "train.nonfinite=skip", *text, "--resume", nan_ck,
         "--out", t("skip.h5")])
check(p.returncode == 0 and "step skipped" in p.stderr, f"nonfinite: skip: exit {p.returncode}\n{p.stderr}")
with h5py.File(t("skip.h5"), "r") as f:
    check(list(f["steps/nonfinite"][:]) == [1, 1], f"skipped steps {list(f['steps/nonfinite'][:])}")
finish()
