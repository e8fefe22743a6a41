"""Launch mistakes stop the job before training, with one clear message and exit code 2:
a bad hostfile, a topology file that does not name the hosts the ranks run on, a world
size the layout does not fit."""
import os
import socket
import subprocess

from ftest import BIN, SOURCE, check, finish, tempdir

tmp = tempdir()
MPIRUN = os.path.join(SOURCE, "launch", "mpirun.sh")


def launch(*args):
    return subprocess.run([MPIRUN, "--bin", BIN, *args], capture_output=True, text=True, cwd=SOURCE, timeout=120)


def expect(p, message, what):
    errors = [l for l in p.stderr.splitlines() if "error" in l or "mpirun.sh:" in l]
    check(p.returncode == 2, f"{what}: exit code {p.returncode}, expected 2\n{p.stderr}")
    check(any(message in l for l in errors), f"{what}: no '{message}' in\n{p.stderr}")
    check(len(errors) == 1, f"{what}: {len(errors)} error lines:\n{p.stderr}")


bad = os.path.join(tmp, "hosts-bad")
with open(bad, "w") as f:
    f.write("# nodes\nnode1 slots=2\nnode2 slots=two\n")
expect(launch("--hostfile", bad, "--", "train", "configs/tiny.yaml"), "line 3: 'node2 slots=two' is not 'host [slots=N]'",
       "bad hostfile")
expect(launch("--hostfile", os.path.join(tmp, "none"), "--", "train", "configs/tiny.yaml"), "does not exist",
       "missing hostfile")

topo = os.path.join(tmp, "pods.yaml")
with open(topo, "w") as f:
    f.write("- {hosts: \"gpu[001-002]\", pod: a}\n")
me = socket.gethostname()
expect(launch("-n", "2", "--", "train", "configs/tiny.yaml", "--set", "parallel.dp=2", "--set", f"topology.file={topo}"),
       f"host '{me}' (rank 0) matches no entry", "topology file without this host")

expect(launch("-n", "3", "--", "train", "configs/tiny.yaml", "--set", "parallel.dp=2"),
       "tp x pp x dp = 1 x 1 x 2 = 2, but the job has 3 ranks", "world size")
finish()
