"""A real Slurm on this machine (launch/slurm-cluster.sh: munge, slurmctld, two slurmd as
nodes n1 and n2): both sbatch templates run a 4-rank data-parallel job across the two
nodes; each job completes with exit code 0 and leaves its step log, log and Slurm
environment in runs/<job id>/; the step log records the job and sees the two Slurm nodes.
With a topology file the two nodes become two pods. Under srun, a killed rank ends its job
within 10 s with the rank named, and scancel's SIGTERM stops every rank after one step with
a checkpoint (exit code 143).

The two slurmd share this host, so Open MPI's shared-memory transport, which takes them
for different hosts, is switched off (TCP between all ranks). Needs root; skipped without."""
import os
import signal
import subprocess
import sys
import time

import h5py

from ftest import BIN, SOURCE, check, finish, rank_processes, tempdir

if os.geteuid() != 0:
    print("skipped: the Slurm test starts daemons as root")
    sys.exit(77)

CLUSTER = os.path.join(SOURCE, "launch", "slurm-cluster.sh")
tmp = tempdir()
os.chmod(tmp, 0o711)  # munged, running as user munge, must reach its directory below
state = os.path.join(tmp, "slurm")
env = dict(os.environ, FIBERTRAIN_SLURM_DIR=state, SLURM_CONF=os.path.join(state, "slurm.conf"),
           FIBERTRAIN_BIN=BIN, FIBERTRAIN_RUNS=os.path.join(tmp, "runs"), OMPI_MCA_btl="self,tcp")
topo = os.path.join(tmp, "pods.yaml")
with open(topo, "w") as f:
    f.write("- {hosts: n1, pod: a}\n- {hosts: n2, pod: b}\n")


def sh(*cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=SOURCE, **kw)


t0 = time.time()
p = sh(CLUSTER, "up", "--nodes", "2", "--cpus", "4")
if p.returncode != 0:
    print(p.stdout, p.stderr, file=sys.stderr)
    sys.exit(1)
try:
    jobs = {}
    for template, extra in (("srun", ["--set", f"topology.file={topo}"]), ("mpirun", [])):
        p = sh("sbatch", "--parsable", "--nodes=2", "--ntasks-per-node=2", f"--output={tmp}/slurm-%j.out",
               f"launch/slurm/{template}.sbatch", "configs/tiny.yaml", "--set", "parallel.dp=4",
               "--set", "train.steps=6", "-q", *extra)
        check(p.returncode == 0, f"sbatch {template}: {p.stderr}")
        jobs[template] = p.stdout.strip().split(";")[0]
    deadline = time.time() + 180
    while time.time() < deadline and sh("squeue", "-h", "-j", ",".join(jobs.values())).stdout.strip():
        time.sleep(0.5)
    for template, job in jobs.items():
        info = sh("scontrol", "show", "job", job).stdout
        check("JobState=COMPLETED" in info and "ExitCode=0:0" in info,
              f"{template} job {job}: {' '.join(l.strip() for l in info.splitlines() if 'State' in l or 'Exit' in l)}")
        d = os.path.join(env["FIBERTRAIN_RUNS"], job)
        for name in ("run.h5", "train.log", "slurm.env"):
            check(os.path.exists(os.path.join(d, name)), f"{template}: {d}/{name} missing")
        if not os.path.exists(os.path.join(d, "run.h5")):
            print(open(os.path.join(d, "train.log")).read() if os.path.exists(os.path.join(d, "train.log")) else "", file=sys.stderr)
            continue
        with h5py.File(os.path.join(d, "run.h5")) as f:
            check(int(f.attrs["world_size"]) == 4, f"{template}: world size {f.attrs['world_size']}")
            check(f.attrs["slurm_job_id"].decode() == job, f"{template}: slurm_job_id attribute")
            hosts = [h.decode() for h in f.attrs["hostnames"]]
            check(hosts == ["n1", "n1", "n2", "n2"], f"{template}: ranks on {hosts}")
            check(len(f["steps/loss"]) == 6, f"{template}: {len(f['steps/loss'])} steps logged")
            expect = "2 pods/site x 1 nodes/pod" if template == "srun" else "1 pods/site x 2 nodes/pod"
            check(expect in f.attrs["topology"].decode(), f"{template}: topology {f.attrs['topology']}")


    def endless(*extra):
        p = sh("sbatch", "--parsable", "--nodes=2", "--ntasks-per-node=2", f"--output={tmp}/slurm-%j.out",
               "launch/slurm/srun.sbatch", "configs/tiny.yaml", "--set", "parallel.dp=4", "--set",
               "train.steps=1000000", *extra)
        job = p.stdout.strip().split(";")[0]
        log = os.path.join(env["FIBERTRAIN_RUNS"], job, "train.log")
        deadline = time.time() + 60
        while time.time() < deadline and not (os.path.exists(log) and "step     5/" in open(log).read()):
            time.sleep(0.2)
        return job, log

    def wait_end(job, within):
        t = time.time()
        while time.time() < t + within + 30 and sh("squeue", "-h", "-j", job).stdout.strip():
            time.sleep(0.2)
        return time.time() - t

    job, log = endless()
    pid = rank_processes("SLURM_PROCID", SLURM_JOB_ID=job).get(2)
    check(pid is not None, "srun: rank 2's process not found")
    if pid:
        os.kill(pid, signal.SIGKILL)
        took = wait_end(job, 10)
        text = open(log).read()
        check(took <= 10, f"srun: a killed rank's job took {took:.1f} s to end")
        check("task 2" in text and "n2" in text, f"srun: the killed rank is not named:\n{text[-2000:]}")
    ck = os.path.join(tmp, "stop-ck.h5")
    job, log = endless("--set", f"checkpoint.path={ck}")
    sh("scancel", "--signal=TERM", job)
    took = wait_end(job, 10)
    text = open(log).read()
    info = sh("scontrol", "show", "job", job).stdout
    check("stopped by SIGTERM after step" in text and os.path.exists(ck), f"srun: SIGTERM stop:\n{text[-2000:]}")
    check("ExitCode=143:0" in info or "ExitCode=0:15" in info, f"srun: SIGTERM stop ended {info}")
    print(f"Slurm jobs done in {time.time() - t0:.1f} s (cluster start included)")
finally:
    sh(CLUSTER, "down")
finish()
