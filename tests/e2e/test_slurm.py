"""A real Slurm on this machine (launch/slurm-cluster.sh: munge, slurmctld, two slurmd as
nodes n1 and n2): both sbatch templates run a 4-rank data-parallel job across the two
nodes; each job completes with exit code 0 and leaves its step log, log and Slurm
environment in runs/<job id>/; the step log records the job and sees the two Slurm nodes.
With a topology file the two nodes become two pods.

The two slurmd share this host, so Open MPI's shared-memory transport, which takes them
for different hosts, is switched off (TCP between all ranks). Needs root; skipped without."""
import os
import subprocess
import sys
import time

import h5py

from ftest import BIN, SOURCE, check, finish, tempdir

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
    print(f"two Slurm jobs done in {time.time() - t0:.1f} s (cluster start included)")
finally:
    sh(CLUSTER, "down")
finish()
