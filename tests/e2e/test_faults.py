"""Every fault ends the job in bounded time with one line naming it: a killed rank, a stopped
rank, a collective that does not move, and a stop asked for by SIGTERM or Ctrl-C, after which
the run resumes from its checkpoint bit for bit. Runs through launch/mpirun.sh, as users do."""
import os
import signal
import subprocess
import time

import h5py
import numpy as np

from ftest import BIN, SOURCE, check, finish, rank_processes, run, tempdir

tmp = tempdir()
LAUNCH = os.path.join(SOURCE, "launch", "mpirun.sh")
HOST = os.uname().nodename
ENDLESS = ["--set", "train.steps=1000000", "-q", "--out", "none"]


def default_signals():
    # Ctrl-C reaches a job as SIGINT unless the test itself runs with SIGINT ignored (as a
    # background job does); the job should see what a terminal's would.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def launch(ranks, args):
    cmd = [LAUNCH, "-n", str(ranks), "--bin", BIN, "--", "train", "configs/tiny.yaml",
           "--set", f"parallel.dp={ranks}", "--set", f"train.batch={4 * ranks}", *args]
    return subprocess.Popen(cmd, cwd=SOURCE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_signals)


def rank_pids(job, ranks):
    """World rank -> pid of the job's fibertrain processes, once all have started."""
    for _ in range(600):
        found = rank_processes("OMPI_COMM_WORLD_RANK")
        if len(found) == ranks:
            return found
        if job.poll() is not None:
            raise RuntimeError(f"the job ended before its ranks started:\n{job.communicate()[1]}")
        time.sleep(0.05)
    raise RuntimeError("ranks did not start")


def wait_steps(seconds):
    time.sleep(seconds)  # past start-up, inside the training loop


def wait_for_step(job, step):
    """Reads the job's progress lines until step STEP has been printed."""
    for line in job.stdout:
        if line.startswith("step") and int(line.split()[1].split("/")[0]) >= step:
            return
    raise RuntimeError(f"the job ended before step {step}:\n{job.communicate()[1]}")


def ended(job, within, what):
    t0 = time.monotonic()
    try:
        out, err = job.communicate(timeout=within + 30)
    except subprocess.TimeoutExpired:
        job.kill()
        out, err = job.communicate()
        check(False, f"{what}: the job did not end\n{err}")
        return None, err
    took = time.monotonic() - t0
    check(took <= within, f"{what}: the job took {took:.1f} s to end, want <= {within} s\n{err}")
    return job.returncode, err


def error_lines(err):
    return [l for l in err.splitlines() if l.startswith("fibertrain:")]


# 1. A rank killed: the job ends within 10 s and names the rank and its host.
job = launch(3, ENDLESS)
pids = rank_pids(job, 3)
wait_steps(4)
os.kill(pids[2], signal.SIGKILL)
rc, err = ended(job, 10, "a killed rank")
lines = error_lines(err)
check(rc != 0, f"a killed rank: exit {rc}")
check(len(lines) == 1 and f"rank 2 ({HOST}) stopped answering" in lines[0], f"a killed rank: {lines}\n{err}")

# 2. A stopped rank (SIGSTOP): the others' watchdog ends the job, naming it and what the
# others were doing (a collective of the step, or its metrics).
job = launch(3, [*ENDLESS, "--set", "train.watchdog_min=3"])
pids = rank_pids(job, 3)
wait_steps(4)
os.kill(pids[1], signal.SIGSTOP)
rc, err = ended(job, 10, "a stopped rank")
lines = error_lines(err)
check(rc == 3, f"a stopped rank: exit {rc}, want 3\n{err}")
check(len(lines) == 1 and f"rank 1 ({HOST}) stopped answering" in lines[0] and f"ranks 0, 2 ({HOST}): " in lines[0],
      f"a stopped rank: {lines}\n{err}")

# 3. A collective that does not move (every rank alive, the link between nodes at 8 bit/s):
# the step passes the watchdog's limit.
job = launch(2, [*ENDLESS, "--set", "topology.ranks_per_node=1", "--set", "links.inter_node.bandwidth=8bit",
                 "--set", "train.watchdog_min=2"])
rc, err = ended(job, 15, "a stuck collective")
lines = error_lines(err)
check(rc == 3, f"a stuck collective: exit {rc}, want 3\n{err}")
check(len(lines) == 1 and "watchdog: step 1 has run" in lines[0] and "waiting for the data-parallel gradient sync"
      in lines[0], f"a stuck collective: {lines}\n{err}")


# 4. SIGTERM and SIGINT to the launcher: every rank stops after the same step, saves a
# checkpoint, and the launcher exits 128 + signal. Resumed, the run equals an uninterrupted one.
def losses(path):
    with h5py.File(path, "r") as f:
        return dict(zip(f["steps/step"][:].astype(int), f["steps/loss"][:]))


def params(path):
    with h5py.File(path, "r") as f:
        return {k: f["params"][k][:] for k in f["params"]}


STEPS = 200
common = ["--set", "train.watchdog_min=60", "--overwrite"]
full_log, full_ck = os.path.join(tmp, "full.h5"), os.path.join(tmp, "full-ck.h5")
p = subprocess.run([LAUNCH, "-n", "2", "--bin", BIN, "--", "train", "configs/tiny.yaml", "--set", "parallel.dp=2",
                    "--set", "train.batch=8", "--set", f"train.steps={STEPS}", "--set", f"checkpoint.path={full_ck}",
                    "--out", full_log, *common], cwd=SOURCE, capture_output=True, text=True, timeout=600)
check(p.returncode == 0, f"the uninterrupted run failed:\n{p.stderr}")
for sig in (signal.SIGTERM, signal.SIGINT):
    name = signal.Signals(sig).name
    ck, log1, log2 = (os.path.join(tmp, f"{name}-{x}.h5") for x in ("ck", "a", "b"))
    job = launch(2, ["--set", f"train.steps={STEPS}", "--set", f"checkpoint.path={ck}", "--out", log1, *common])
    wait_for_step(job, 5)
    job.send_signal(sig)
    rc, err = ended(job, 10, name)
    lines = error_lines(err)
    check(rc == 128 + sig, f"{name}: exit {rc}, want {128 + sig}\n{err}")
    check(len(lines) == 1 and f"stopped by {name} after step" in lines[0] and f"--resume {ck}" in lines[0],
          f"{name}: {lines}")
    if rc != 128 + sig or not os.path.exists(ck):
        continue
    done = int(lines[0].split("after step ")[1].split()[0])
    check(0 < done < STEPS, f"{name}: stopped after step {done}")
    check(sorted(losses(log1)) == list(range(done)), f"{name}: the log does not hold steps 0..{done - 1}")
    p = run(["train", "configs/tiny.yaml", "--set", "parallel.dp=2", "--set", "train.batch=8", "--set",
             f"train.steps={STEPS}", "--set", f"checkpoint.path={ck}", "--resume", ck, "--out", log2, *common],
            ranks=2, timeout=600)
    check(p.returncode == 0, f"{name}: resume failed:\n{p.stderr}")
    full, resumed = losses(full_log), losses(log2)
    check(all(full[s] == resumed[s] for s in range(done, STEPS)), f"{name}: resumed losses differ")
    a, b = params(full_ck), params(ck)
    check(a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a), f"{name}: final parameters differ")

# 5. One rank alone: SIGTERM straight to fibertrain stops it the same way (exit 143).
job = subprocess.Popen([BIN, "train", "configs/tiny.yaml", *ENDLESS], cwd=SOURCE, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
wait_steps(3)
job.send_signal(signal.SIGTERM)
rc, err = ended(job, 5, "SIGTERM to one rank")
check(rc == 143 and "stopped by SIGTERM after step" in err, f"SIGTERM to one rank: {rc}\n{err}")
# A second stop, two seconds or more after the first, ends the job at once: here mid-step,
# the step being a gradient sync over a 1 Mbit/s link (tens of seconds).
job = launch(2, [*ENDLESS, "--set", "topology.ranks_per_node=1", "--set", "links.inter_node.bandwidth=1Mbit"])
rank_pids(job, 2)
wait_steps(3)
job.send_signal(signal.SIGTERM)
time.sleep(2.5)
job.send_signal(signal.SIGTERM)
rc, err = ended(job, 5, "a second SIGTERM")
check(rc != 0 and "stopped by" not in err, f"a second SIGTERM: exit {rc}\n{err}")

finish()
