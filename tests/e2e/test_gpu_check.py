"""tools/gpu-check.sh, the GPU acceptance run, where no GPU answers: it checks nothing, says
so in one line naming what CUDA said, and exits 2 (on a GPU machine the script is its own
check: skipped here)."""
import os
import re
import subprocess
import sys

from ftest import BIN, SOURCE, check, finish

version = subprocess.run([BIN, "--version"], capture_output=True, text=True).stdout
if re.search(r"CUDA: .*, [1-9]\d* devices?", version):
    print("skipped: a CUDA device answers; run tools/gpu-check.sh itself")
    sys.exit(77)
script = os.path.join(SOURCE, "tools", "gpu-check.sh")
p = subprocess.run(["bash", script, "--bin", BIN], capture_output=True, text=True, timeout=60)
check(p.returncode == 2, f"exit {p.returncode}, not 2:\n{p.stdout}\n{p.stderr}")
lines = p.stderr.strip().splitlines()
check(len(lines) == 1 and lines[0].startswith("gpu-check: no CUDA device answers here") and
      lines[0].endswith("nothing was checked"), f"not one clear line:\n{p.stderr}")
check(p.stdout == "", f"printed a table without a GPU:\n{p.stdout}")
p = subprocess.run(["bash", script, "--bin", "/nonexistent/fibertrain"], capture_output=True, text=True, timeout=60)
check(p.returncode == 2 and "no fibertrain at" in p.stderr, f"a missing binary: exit {p.returncode}\n{p.stderr}")
finish()
