#!/usr/bin/env python3
"""fibertrain against its peers on the same model, in one run: `fibertrain bench model` and
tools/peers/gpt_torch.py run alternately, round after round, so that the machine's drift
hits all of them alike; the table gives each one's median tokens/s over the rounds and its
ratio to fibertrain's.

    tools/peers/compare.py --config configs/bench-10m.yaml --threads 1 2 --rounds 3
    tools/peers/compare.py --python .venv-peers/bin/python --config configs/bench-10m.yaml --threads 1 2
    tools/peers/compare.py --config configs/gpt2-124m.yaml --device cuda --precision bf16 --peers eager compile

The peer runs under --python: any Python with PyTorch (PyPI's in a virtual environment, as
`tools/setup.sh peers` makes it; Debian's python3-torch; a GPU machine's own). Speed
figures, not a test: nothing here passes or fails."""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")


def fibertrain(args, threads):
    cmd = [args.bin, "bench", "model", "--config", args.config, "--warmup", str(args.warmup), "--iters", str(args.iters)]
    if threads:
        cmd += ["--threads", str(threads)]
    if args.device != "cpu":
        cmd += ["--set", f"device={args.device}", "--set", f"precision={args.precision}"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        sys.exit(f"fibertrain failed:\n{out.stderr}")
    # The line after the header: "<ms> ms  <tokens/s>  <model GFLOP/s> ..."
    lines = out.stdout.splitlines()
    head = next(i for i, l in enumerate(lines) if l.startswith("step (median)"))
    return float(lines[head + 1].split()[2])


def peer(args, kind, threads):
    cmd = [args.python, os.path.join(HERE, "gpt_torch.py"), "--config", args.config, "--device", args.device,
           "--precision", args.precision, "--warmup", str(args.warmup), "--iters", str(args.iters)]
    if threads:
        cmd += ["--threads", str(threads)]
    if kind == "compile":
        cmd.append("--compile")
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        sys.exit(f"the {kind} peer failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--threads", type=int, nargs="+", default=[0], help="thread counts to compare (0: defaults)")
    p.add_argument("--peers", nargs="+", default=["eager"], choices=["eager", "compile"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--bin", default=os.path.join(ROOT, "build", "trainer", "fibertrain"))
    p.add_argument("--python", default=sys.executable,
                   help="the Python whose PyTorch runs the peer (default: this one)")
    args = p.parse_args()

    # Fail early, with the reason, when the peer cannot run.
    probe = subprocess.run([args.python, "-c", "import torch"], capture_output=True, text=True)
    if probe.returncode != 0:
        sys.exit(f"{args.python} cannot import torch:\n{probe.stderr.strip()}")

    rows = []
    for threads in args.threads:
        runs = {"fibertrain": []}
        runs.update({f"pytorch {k}": [] for k in args.peers})
        info = {}
        for _ in range(args.rounds):
            runs["fibertrain"].append(fibertrain(args, threads))
            for k in args.peers:
                r = peer(args, k, threads)
                info = r
                runs[f"pytorch {k}"].append(r["tokens_per_s"])
        base = statistics.median(runs["fibertrain"])
        for name, v in runs.items():
            rows.append((name, threads or "default", statistics.median(v), statistics.median(v) / base, v))
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"# {args.config}, {args.device} {args.precision}, {args.rounds} alternating rounds of "
          f"{args.warmup} + {args.iters} steps; {cpu}, {os.cpu_count()} cores; PyTorch {info.get('torch', '?')} "
          f"({info.get('blas', '?')}, AdamW {info.get('adamw', '?')}); {datetime.date.today()}")
    print(f"{'trainer':<18} {'threads':>7} {'tokens/s':>10} {'vs fibertrain':>14}  rounds")
    for name, threads, med, ratio, v in rows:
        print(f"{name:<18} {threads!s:>7} {med:>10.0f} {ratio:>13.2f}x  {' '.join(f'{x:.0f}' for x in v)}")


if __name__ == "__main__":
    main()
