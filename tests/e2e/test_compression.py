"""Compression in training: per-tier ratios in the step log, feedback state carried
through checkpoints (a resumed compressed run repeats the uninterrupted one bit for bit),
and refusals of what cannot run."""
import os

import h5py

from ftest import check, finish, run, tempdir

tmp = tempdir()
# 4 ranks = 2 pods x 2 nodes x 1 rank: the data-parallel sync runs inter_node, then inter_pod.
TWO_PODS = ["--set", "parallel.dp=4", "--set", "topology.ranks_per_node=1", "--set", "topology.nodes_per_pod=2"]


def train(extra, out, steps=8, ranks=4):
    args = ["train", "configs/tiny.yaml", *TWO_PODS, "--set", f"train.steps={steps}", "--out", out, "-q"]
    for e in extra:
        args += ["--set", e]
    return run(args, ranks=ranks)


# fp16 between nodes halves those bytes exactly; int8 between pods carries 1 byte per value
# plus a 4-byte scale per 256 values, against 4 dense bytes.
out = os.path.join(tmp, "ratios.h5")
p = train(["compression.inter_node={codec: fp16}", "compression.inter_pod={codec: int8}"], out)
check(p.returncode == 0, f"fp16 + int8 run failed:\n{p.stderr}")
with h5py.File(out) as f:
    s = f["steps"]
    check((s["compression_ratio/inter_node"][:] == 2.0).all(), f"fp16 ratio {s['compression_ratio/inter_node'][0]}")
    r = s["compression_ratio/inter_pod"][:]
    check(((r > 3.9) & (r < 4.0)).all(), f"int8 ratio {r[0]}")
    check((s["codec_time/inter_pod"][:] > 0).all(), "codec time logged")

# Resume: the residuals (PowerSGD's Q, the references and estimates of feedback by
# difference) are in the checkpoint.
# DeMo's momentum is its residual; SparseLoCo's decayed accumulator, across the pods of an
# outer sync, is the outer codec's.
for i, (codec, extra) in enumerate((("{codec: powersgd, rank: 2}", []), ("{codec: topk, ratio: 0.05}", []),
                                    ("{codec: sign, feedback: difference}", []),
                                    ("{codec: int8, reduce: ring}", []),
                                    ("{codec: demo}", ["train.optimizer=sign", "train.lr=0.003"]),
                                    ("{codec: sparseloco, chunk: 256, k: 8}",
                                     ["sync.outer={tier: inter_pod, every: 3, momentum: 0, lr: 1}"]))):
    ck = os.path.join(tmp, "ck-{step}.h5")
    a, b = os.path.join(tmp, f"a{i}.h5"), os.path.join(tmp, f"b{i}.h5")
    sets = [f"compression.inter_pod={codec}", f"checkpoint.path={ck}", "checkpoint.every=4", *extra]
    p = train(sets, a)
    check(p.returncode == 0, f"{codec} run failed:\n{p.stderr}")
    p = run(["train", "configs/tiny.yaml", *TWO_PODS, "--set", "train.steps=8", "--resume", ck.format(step=4),
             "--out", b, "-q", *sum([["--set", s] for s in sets], [])], ranks=4)
    check(p.returncode == 0 and "residuals start from zero" not in p.stderr, f"{codec} resume:\n{p.stderr}")
    with h5py.File(a) as fa, h5py.File(b) as fb:
        la, lb = list(fa["steps/loss"][4:]), list(fb["steps/loss"][:])
        check(la == lb, f"{codec}: resumed losses differ:\n{la}\n{lb}")
        loss = fa["steps/loss"][:]
        check(loss[-1] < loss[0], f"{codec}: the loss went from {loss[0]:.3f} to {loss[-1]:.3f}")

# Refusals, each with its reason.
for extra, message in (
        (["compression.inter_node={codec: int8}"], "apply only to the top tier of the data-parallel sync (inter_pod here)"),
        (["compression.inter_pod={codec: fp16}", "parallel.zero=1"], "ZeRO-1"),
        (["compression.inter_pod={codec: fp16, feedback: difference}"],
         "feedback difference applies to the gathered codecs (int8, int4, fp8, topk, sign, sparseloco, demo), not fp16"),
        (["compression.inter_pod={codec: topk, rank: 3}"], "compression.inter_pod.rank applies to codec powersgd, not topk"),
        (["compression.inter_pod={codec: topk, reduce: ring}"],
         "compression.inter_pod.reduce applies to the codecs that reduce in the ring or gathered (int8, int4, fp8), not topk"),
        (["compression.inter_pod={codec: int8, reduce: ring, feedback: difference}"], "it needs reduce gather"),
        (["compression.inter_pod={codec: demo}"], "set train.optimizer: sign, not adamw"),
        (["compression.inter_pod={codec: demo}", "train.optimizer=sign", "sync.outer={tier: inter_pod}"],
         "codec demo synchronises every step"),
        (["compression.inter_pod={codec: zstd}"], "compression.inter_pod.codec must be one of none, fp16"),
        (["compression.inter_pod={codec: fp16}", "sync.algorithm=native"], "compression needs sync.algorithm ring or hierarchical")):
    p = train(extra, os.path.join(tmp, "x.h5"), steps=1)
    check(p.returncode == 2 and message in p.stderr, f"{extra}: expected exit 2 with '{message}', got {p.returncode}:\n{p.stderr}")
finish()
