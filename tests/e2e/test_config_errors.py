"""Bad configs and launches stop every rank with one clear message and exit code 2."""
import os

from ftest import check, finish, run, tempdir

TINY = "configs/tiny.yaml"
tmp = tempdir()


def expect_error(args, message, ranks=4):
    p = run(args, ranks=ranks)
    errors = [l for l in p.stderr.splitlines() if "fibertrain: " in l and "error:" in l]
    label = f"{' '.join(args)} on {ranks} ranks"
    check(p.returncode == 2, f"{label}: exit code {p.returncode}, expected 2\n{p.stderr}")
    check(len(errors) == 1, f"{label}: expected one error line, got {len(errors)}:\n{p.stderr}")
    check(any(message in l for l in errors), f"{label}: no '{message}' in\n{p.stderr}")
    for bad in ("terminate called", "Aborted", "Segmentation", "core dumped", "what():"):
        check(bad not in p.stderr, f"{label}: '{bad}' in stderr")


def write(name, text):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


# Layout against the world size, and layout against the model.
expect_error(["train", TINY, "--dry-run"], "tp x pp x dp = 1 x 1 x 1 = 1, but the job has 4 ranks; set parallel.dp=4")
expect_error(["train", TINY, "--dry-run", "--set", "parallel.tp=3", "--set", "parallel.dp=1"],
             "model.heads (4) must divide by parallel.tp (3)")
expect_error(["train", TINY, "--dry-run", "--set", "parallel.pp=4", "--set", "model.layers=2"],
             "model.layers (2) must be at least parallel.pp (4)")
expect_error(["train", TINY, "--dry-run", "--set", "parallel.dp=4", "--set", "train.batch=10"],
             "train.batch (10) must divide by parallel.dp x parallel.microbatches")
expect_error(["train", TINY, "--dry-run", "--set", "parallel.dp=4", "--set", "parallel.virtual_stages=2"],
             "parallel.virtual_stages 2 interleaves pipeline stages: set parallel.pp above 1")
expect_error(["train", TINY, "--dry-run", "--set", "parallel.pp=4", "--set", "parallel.virtual_stages=2"],
             "model.layers (4) must be at least parallel.pp x parallel.virtual_stages (4 x 2)")
expect_error(["train", TINY, "--dry-run", "--set", "parallel.pp=2", "--set", "parallel.dp=2", "--set",
              "parallel.virtual_stages=2", "--set", "parallel.microbatches=3", "--set", "train.batch=12"],
             "parallel.microbatches (3) must divide by parallel.pp (2) with parallel.virtual_stages 2")
# Keys: unknown (with a suggestion), wrong type, out of range, not a section.
expect_error(["train", write("typo.yaml", "model:\n  layres: 4\n"), "--dry-run"],
             "unknown key 'model.layres' (did you mean 'model.layers'?)")
expect_error(["train", write("type.yaml", "train:\n  steps: many\n"), "--dry-run"],
             "type.yaml:2: train.steps expected an integer, got 'many'")
expect_error(["train", write("range.yaml", "model:\n  heads: 0\n"), "--dry-run"],
             "model.heads must be between 1 and 4096, got 0")
expect_error(["train", TINY, "--dry-run", "--set", "parallel.dp=4", "--set", "data.kind=csv"],
             "data.kind must be one of synthetic, text, tokens, got csv")
expect_error(["train", "configs/missing.yaml"], "config file 'configs/missing.yaml' does not exist")
expect_error(["train", write("syntax.yaml", "model: {width: 64\n")], "YAML syntax error")
# A key given twice: YAML readers differ on which value wins, so neither does.
expect_error(["train", write("twice.yaml", "train:\n  steps: 3\n  batch: 8\n  steps: 5\n"), "--dry-run"],
             "twice.yaml:4: key 'steps' given twice in 'train'")
expect_error(["train", write("twice-top.yaml", "train: {steps: 3}\nmodel: {width: 64, width: 32}\ntrain: {}\n"),
              "--dry-run"], "twice-top.yaml:2: key 'width' given twice in 'model'", ranks=1)
# An unknown key inside a section a --set made is the --set's.
expect_error(["train", TINY, "--dry-run", "--set", "parallel.dp=4", "--set", "links.fiber.bandwidth=1Gbit"],
             "--set links.fiber.bandwidth=1Gbit: unknown key 'links.fiber' (known keys of links: intra_node, "
             "inter_node, inter_pod, inter_site)", ranks=1)
# A misspelt command is named.
expect_error(["trian", TINY], "unknown command 'trian' (did you mean 'train'?)")
expect_error(["bench", "modle"], "unknown bench command 'modle' (did you mean 'model'?)", ranks=1)
# A bad command line, once, not once per rank.
p = run(["train", TINY, "--no-such-flag"], ranks=4)
check(p.returncode == 2, f"bad flag: exit code {p.returncode}")
check(p.stderr.count("--no-such-flag") == 1, f"bad flag reported {p.stderr.count('--no-such-flag')} times:\n{p.stderr}")

# The same checks pass on one rank with a valid config, which prints the resolved YAML.
p = run(["train", TINY, "--dry-run", "--set", "parallel.dp=4", "--set", "train.batch=16"], ranks=4)
check(p.returncode == 0, f"valid 4-rank dry run failed:\n{p.stderr}")
check(p.stdout.count("model:") == 1, "resolved config printed once")
# Shapes and numbers that once reached users as crashes or were accepted.
expect_error(["train", write("seqkey.yaml", "model: {vocab: 256}\n? [a, b]\n: 1\n"), "--dry-run"],
             "seqkey.yaml:2: a key must be a name, got a list", ranks=1)
for value in ("nan", "inf", "-1", "0"):
    expect_error(["claims", "--params", value], f"--params: '{value}' is not a finite number above zero", ranks=1)
expect_error(["bench", "collectives", "--min", "16TiB", "--max", "16TiB"], "--max 16TiB: each of this machine's",
             ranks=1)
# A model far larger than this machine's memory: the bytes, and the keys to change.
expect_error(["train", TINY, "--out", "none", "--set", "model.width=65536", "--set", "model.layers=1"],
             "needed for one buffer", ranks=1)
p = run(["train", TINY, "--out", "none", "--set", "model.width=65536", "--set", "model.layers=1"])
check("Lower train.batch" in p.stderr and "parallel.tp" in p.stderr, f"out of memory: no keys named\n{p.stderr}")

# A full disk (a small tmpfs; needs root): the step log stops while it has room and keeps
# every step it holds readable; a checkpoint names the OS's reason and leaves no partial file.
if os.geteuid() == 0:
    import subprocess
    import h5py
    disk = os.path.join(tmp, "disk")
    os.mkdir(disk)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1600k", "tmpfs", disk]).returncode == 0:
        try:
            log = os.path.join(disk, "run.h5")
            expect_error(["train", TINY, "-q", "--set", "train.steps=100000", "--set", "metrics.flush_every=1",
                          "--out", log], "the log stops here so the steps it holds stay readable", ranks=1)
            with h5py.File(log, "r") as f:
                steps = len(f["steps/loss"])
            check(steps > 100, f"full disk: the log holds {steps} steps")
            os.remove(log)
            with open(os.path.join(disk, "filler"), "wb") as f:
                f.write(b"\0" * (1600 * 1024 - 200 * 1024))
            expect_error(["train", TINY, "-q", "--set", "train.steps=2", "--set",
                          f"checkpoint.path={os.path.join(disk, 'ck.h5')}", "--out", "none"],
                         "No space left on device", ranks=1)
            check(os.listdir(disk) == ["filler"], f"full disk: files left {os.listdir(disk)}")
            # A checkpoint that fails after steps were logged: the step log (elsewhere,
            # flushed every 10 steps) still holds them, readable.
            log = os.path.join(tmp, "before-full.h5")
            expect_error(["train", TINY, "-q", "--set", "train.steps=6", "--set", "checkpoint.every=3", "--set",
                          f"checkpoint.path={os.path.join(disk, 'ck.h5')}", "--out", log],
                         "No space left on device", ranks=1)
            with h5py.File(log, "r") as f:
                logged = list(f["steps/step"][:])
            check(logged == [0, 1, 2], f"a checkpoint failing at step 3: the log holds steps {logged}")
        finally:
            subprocess.run(["umount", disk])
    else:
        print("full-disk cases skipped: tmpfs cannot be mounted here")

finish()
