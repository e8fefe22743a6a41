"""The ZeRO stages beyond what test_layout_equivalence checks (that each equals one rank):
the data-parallel bytes each stage sends per step, exactly as it must (ZeRO-2 reduce-scatters
every micro-batch; ZeRO-3 also all-gathers every unit before its forward, the embedding again
for the tied head, and every unit before its backward, or once per step when it keeps them,
at the memory it reports); HSDP's bytes inside and across nodes; checkpoints that resume under
another stage; the paths without overlap, through GPipe and evaluation; and the
combinations that are refused, or only warned about."""
import os

import h5py
import numpy as np

from ftest import check, finish, run, tempdir

tmp = tempdir()
DP = 4
BASE = ["parallel.dp=4", "eval.every=0", "train.warmup=0"]
# configs/tiny.yaml: V = 256, T = 64, C = 128, 4 blocks.
V, T, C, L = 256, 64, 128, 4
BLOCK = 12 * C * C + 13 * C
N = V * C + T * C + L * BLOCK + 2 * C  # every parameter: one stage holds all
E = V * C + T * C                      # the embedding unit (wte, wpe)


def train(sets, out, steps=3, resume=None):
    args = ["train", "configs/tiny.yaml", "--set", f"train.steps={steps}", "--out", out, "-q"]
    for s in BASE + sets:
        args += ["--set", s]
    if resume:
        args += ["--resume", resume]
    return run(args, ranks=DP)


def dp_bytes(path):
    """Data-parallel bytes per step, summed over tiers, averaged over ranks."""
    with h5py.File(path) as f:
        tiers = f["steps/bytes_dp"]
        return sum(tiers[k][:] for k in tiers).mean(axis=1)


# 1. Traffic. One ring of 4 ranks moves (p - 1) / p of a buffer per reduce-scatter or
# all-gather, per rank: X for the whole model.
X = 4 * N * (DP - 1) / DP
EXPECTED = {
    "zero1": (["parallel.zero=1"], 2 * X),                                   # one reduce-scatter, one all-gather
    "zero2-m2": (["parallel.zero=2", "parallel.microbatches=2"], 3 * X),     # two reduce-scatters, one all-gather
    "zero3": (["parallel.zero=3"], 3 * X + X * E / N),                       # + forward, head's wte, backward
    "zero3-m2": (["parallel.zero=3", "parallel.microbatches=2"], 2 * (3 * X + X * E / N)),
    # Units kept gathered from their first use to the step's end: one all-gather of each.
    "zero3-m2-reshard-step": (["parallel.zero=3", "parallel.microbatches=2", "parallel.reshard=step"], 3 * X),
}
held = {}
for name, (sets, want) in EXPECTED.items():
    out = os.path.join(tmp, f"{name}.h5")
    p = train(sets, out)
    check(p.returncode == 0, f"{name} failed:\n{p.stderr}")
    if p.returncode == 0:
        got = dp_bytes(out)
        # Segments are whole elements: a few bytes per collective from (p - 1) / p exactly.
        check(np.all(np.abs(got - want) <= 1e-4 * want), f"{name}: {got} data-parallel bytes per step, expected {want:.0f}")
        print(f"{name}: {got[0]:.0f} bytes per step and rank ({got[0] / (2 * X):.3f} x ZeRO-1's)")
        if name.startswith("zero3-m2"):
            with h5py.File(out) as f:
                held[name] = f.attrs["parameters_held_peak"]
# What keeping units costs: every parameter of the stage held at once, where dropping after
# each use holds this rank's parts, the unit in use and the one fetched meanwhile.
if len(held) == 2:
    kept, dropped = held["zero3-m2-reshard-step"], held["zero3-m2"]
    check(np.all(kept == N), f"reshard step: {kept} parameters held at the peak, expected all {N}")
    check(np.all(dropped < 0.8 * N), f"reshard use: {dropped} parameters held at the peak of {N}")
    print(f"parameters held at the peak per rank: {dropped[0]} dropping after use, {kept[0]} keeping them for the step")

# HSDP (parallel.shard_within node, 2 nodes of 2 ranks): ZeRO-1 inside each node, and each
# rank's half all-reduced with its peer in the other node. Inside: a reduce-scatter and an
# all-gather of the whole model in rings of 2 (4 N / 2 bytes each); across: an all-reduce of
# the half in a ring of 2 (2 x 4 (N / 2) / 2 bytes).
out = os.path.join(tmp, "hsdp.h5")
p = train(["parallel.zero=1", "topology.ranks_per_node=2", "parallel.shard_within=node"], out)
check(p.returncode == 0, f"hsdp failed:\n{p.stderr}")
if p.returncode == 0:
    with h5py.File(out) as f:
        intra, inter = f["steps/bytes_dp/intra_node"][:], f["steps/bytes_dp/inter_node"][:]
    check(np.all(np.abs(intra - 4 * N) <= 16) and np.all(np.abs(inter - 2 * N) <= 16),
          f"hsdp: {intra[0]} bytes per rank inside a node and {inter[0]} across, expected {4 * N} and {2 * N}")
    print(f"hsdp inside nodes, replicated across: {intra[0, 0]:.0f} bytes per rank inside a node, {inter[0, 0]:.0f} "
          f"across (ZeRO-1 over all 4 ranks sends {2 * X:.0f} across)")

# 2. A checkpoint holds whole parameters and optimizer state under every stage: a run
# resumed under another stage repeats the uninterrupted one.
for saved, resumed in ((3, 1), (0, 3), (2, 3)):
    ck = os.path.join(tmp, f"ck{saved}-{{step}}.h5")
    a, b = os.path.join(tmp, f"from{saved}.h5"), os.path.join(tmp, f"from{saved}-as{resumed}.h5")
    sets = ["parallel.microbatches=2", f"checkpoint.path={ck}", "checkpoint.every=3"]
    p = train(sets + [f"parallel.zero={saved}"], a, steps=6)
    check(p.returncode == 0, f"zero={saved}: run failed:\n{p.stderr}")
    p = train(sets + [f"parallel.zero={resumed}"], b, steps=6, resume=ck.format(step=3))
    check(p.returncode == 0, f"zero={saved} resumed as zero={resumed}:\n{p.stderr}")
    if p.returncode == 0:
        with h5py.File(a) as fa, h5py.File(b) as fb:
            la, lb = fa["steps/loss"][3:], fb["steps/loss"][:]
        check(np.allclose(la, lb, rtol=1e-5, atol=0), f"zero={saved} resumed as zero={resumed}: losses {la} vs {lb}")

# 3. The other paths through the sync: buckets started only after each backward
# (sync.overlap false), GPipe over two stages with the tied embedding, and evaluation, which
# gathers ZeRO-3's units outside any step: the losses of ZeRO-0.
OTHER = ["sync.overlap=false", "parallel.dp=2", "parallel.pp=2", "parallel.microbatches=4", "parallel.schedule=gpipe",
         "eval.every=2", "eval.batches=1"]
evals = {}
for zero in (0, 2, 3):
    out = os.path.join(tmp, f"other-zero{zero}.h5")
    p = train(OTHER + [f"parallel.zero={zero}"], out, steps=4)
    check(p.returncode == 0, f"zero={zero} without overlap, GPipe, evaluation:\n{p.stderr}")
    if p.returncode == 0:
        with h5py.File(out) as f:
            evals[zero] = (f["steps/loss"][:], f["steps/eval_loss"][:])
for zero in (2, 3):
    if 0 in evals and zero in evals:
        for what, a, b in zip(("loss", "eval_loss"), evals[0], evals[zero]):
            ok = np.array_equal(np.isnan(a), np.isnan(b)) and np.allclose(a[~np.isnan(a)], b[~np.isnan(b)], rtol=1e-5, atol=0)
            check(ok, f"zero={zero} without overlap, GPipe: {what} {b} against ZeRO-0's {a}")

# 4. Refused, with one message.
for sets, message in ((["parallel.zero=3", "compression.inter_node={codec: int8}", "topology.ranks_per_node=2"],
                       "ZeRO-3 (parallel.zero: 3) reduce-scatters, uncompressed"),
                      (["parallel.zero=2", "topology.ranks_per_node=1", "topology.nodes_per_pod=2",
                        "sync.outer={tier: inter_pod, every: 4}"], "parallel.zero 2 with sync.outer"),
                      (["parallel.zero=1", "parallel.order=dp-tp-pp", "parallel.dp=2", "parallel.tp=2",
                        "topology.ranks_per_node=1", "parallel.shard_within=node"],
                       "parallel.shard_within: model replica 0 spans several nodes"),
                      (["parallel.zero=1", "topology.ranks_per_node=2", "parallel.shard_within=node",
                        "compression.inter_node={codec: powersgd}"], "HSDP's all-reduce sends a segment"),
                      (["parallel.zero=1", "topology.ranks_per_node=2", "parallel.shard_within=node",
                        "compression.intra_node={codec: fp16}"], "only the all-reduce across the nodes takes a codec")):
    p = train(sets, os.path.join(tmp, "refused.h5"))
    check(p.returncode == 2 and message in p.stderr, f"{sets}: exit {p.returncode}\n{p.stderr}")
# Idle, not wrong (another key's override may be what makes them so): a warning, and the run
# goes on as without the key (with ZeRO-0 every replica still averages with every other).
plain = os.path.join(tmp, "plain.h5")
check(train(["topology.ranks_per_node=2"], plain).returncode == 0, "plain dp 4 failed")
for i, (sets, message) in enumerate(((["topology.ranks_per_node=2", "parallel.shard_within=node"],
                                      "parallel.shard_within node has no effect"),
                                     (["parallel.zero=2", "parallel.reshard=step"],
                                      "parallel.reshard step has no effect"))):
    out = os.path.join(tmp, f"idle-{i}.h5")
    p = train(sets, out)
    check(p.returncode == 0 and message in p.stderr, f"{sets}: exit {p.returncode}\n{p.stderr}")
    if p.returncode == 0 and "parallel.zero=2" not in sets:
        with h5py.File(plain) as a, h5py.File(out) as b:
            for col in ("loss", "grad_norm"):
                check(np.array_equal(a[f"steps/{col}"][:], b[f"steps/{col}"][:]),
                      f"{sets}: {col} {b[f'steps/{col}'][:]} against plain dp 4's {a[f'steps/{col}'][:]}")
finish()
