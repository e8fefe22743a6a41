"""The outer sync (sync.outer, DiLoCo) across pods: its construction (plain SGD with an outer
step of lr 1 and no momentum after every step is synchronous data parallelism; one island
changes nothing), its traffic (the pod tier carries bytes on outer-sync steps only), a
bit-exact resume between outer syncs, the delayed outer all-reduce (overlapped with inner
steps, resumed bit-exact while in flight), and refusals of what cannot run."""
import os

import h5py
import numpy as np

from ftest import check, finish, run, tempdir

tmp = tempdir()
# 4 ranks = 2 pods x 2 nodes x 1 rank.
TWO_PODS = ["parallel.dp=4", "topology.ranks_per_node=1", "topology.nodes_per_pod=2"]


def train(sets, out, steps=10, ranks=4, resume=None):
    args = ["train", "configs/tiny.yaml", "--set", f"train.steps={steps}", "--out", out, "-q"]
    for s in sets:
        args += ["--set", s]
    if resume:
        args += ["--resume", resume]
    return run(args, ranks=ranks)


def steps(path):
    with h5py.File(path) as f:
        return {k: f["steps"][k][:] for k in ("loss", "outer_sync", "bytes_wire/inter_pod")}


def params(path):
    with h5py.File(path) as f:
        return {k: f["params"][k][:] for k in f["params"]}


# 1. SGD, no clipping, outer lr 1 and momentum 0 every step: each pod steps on its own mean
# gradient, the outer step averages those steps, which is the job-wide mean's step. Equal
# to synchronous data parallelism up to float rounding (theta - (theta - lr g) is not lr g
# exactly), with and without ZeRO-1, and with replicas split by tensor or pipeline
# parallelism (the tied embedding then lives on two stages).
SGD = ["train.optimizer=sgd", "train.clip=0", "train.lr=0.05", "train.warmup=0"]
LAYOUTS = {"zero0": (TWO_PODS, 1), "zero1": (TWO_PODS + ["parallel.zero=1"], 1), "fragments3": (TWO_PODS, 3),
           "tp2": (["parallel.dp=2", "parallel.tp=2", "topology.ranks_per_node=1", "topology.nodes_per_pod=2"], 1),
           "pp2": (["parallel.dp=2", "parallel.pp=2", "topology.ranks_per_node=1", "topology.nodes_per_pod=2"], 1)}
for name, (layout, fragments) in LAYOUTS.items():
    sets = layout + SGD
    a, b = os.path.join(tmp, f"dp-{name}.h5"), os.path.join(tmp, f"outer-{name}.h5")
    cka, ckb = os.path.join(tmp, f"dp-{name}.ck"), os.path.join(tmp, f"outer-{name}.ck")
    p = train(sets + [f"checkpoint.path={cka}"], a)
    check(p.returncode == 0, f"{name}: data-parallel run failed:\n{p.stderr}")
    outer = f"sync.outer={{tier: inter_pod, every: 1, lr: 1, momentum: 0, fragments: {fragments}}}"
    p = train(sets + [f"checkpoint.path={ckb}", outer], b)
    check(p.returncode == 0, f"{name}: outer-sync run failed:\n{p.stderr}")
    la, lb = steps(a)["loss"], steps(b)["loss"]
    check(np.allclose(la, lb, rtol=1e-6, atol=0), f"{name}: losses differ beyond rounding:\n{la}\n{lb}")
    check((steps(b)["outer_sync"] == fragments).all(), f"{name}: every step syncs every fragment")
    pa, pb = params(cka), params(ckb)
    worst = max(np.abs(pa[k] - pb[k]).max() / max(np.abs(pa[k]).max(), 1e-30) for k in pa)
    check(worst < 1e-5, f"{name}: final parameters differ by {worst:.2e} (relative)")

# 2. One pod holds every replica: nothing crosses inter_pod, so sync.outer (with its default
# lr 0.7 and Nesterov momentum 0.9) changes nothing, bit for bit.
ONE_POD = ["parallel.dp=4", "topology.ranks_per_node=1", "topology.nodes_per_pod=4"]
a, b = os.path.join(tmp, "onepod.h5"), os.path.join(tmp, "onepod-outer.h5")
p = train(ONE_POD, a)
check(p.returncode == 0, f"one-pod run failed:\n{p.stderr}")
p = train(ONE_POD + ["sync.outer={tier: inter_pod, every: 3}"], b)
check(p.returncode == 0 and "nothing to synchronise across inter_pod" in p.stderr, f"one-pod outer run:\n{p.stderr}")
check(list(steps(a)["loss"]) == list(steps(b)["loss"]), "one island: sync.outer changed the losses")

# 3. AdamW inside the pods, int8 outer gradient every 5 steps, a checkpoint at step 7 (between
# outer syncs, where the pods' parameters differ): the resumed run repeats steps 7..11 bit
# for bit, with the optimizer state whole or in ZeRO-1 shards (and two streamed fragments).
# The pod tier carries bytes only on the outer-sync steps.
for zero in (0, 1):
    ck = os.path.join(tmp, f"ck{zero}-{{step}}.h5")
    fragments = zero + 1  # the ZeRO-1 run also streams two fragments
    sets = TWO_PODS + [f"sync.outer={{tier: inter_pod, every: 5, fragments: {fragments}}}", "compression.inter_pod={codec: int8}",
                       f"checkpoint.path={ck}", "checkpoint.every=7", f"parallel.zero={zero}"]
    a, b = os.path.join(tmp, f"diloco{zero}.h5"), os.path.join(tmp, f"diloco{zero}-resumed.h5")
    p = train(sets, a, steps=12)
    check(p.returncode == 0, f"zero={zero}: DiLoCo run failed:\n{p.stderr}")
    s = steps(a)
    due = [sum((i + 1 + f * 5 // fragments) % 5 == 0 for f in range(fragments)) for i in range(12)]
    check(list(s["outer_sync"]) == due, f"outer_sync {s['outer_sync']}, expected {due}")
    pod_bytes = s["bytes_wire/inter_pod"].sum(axis=1)
    check(((pod_bytes > 0) == (s["outer_sync"] == 1)).all(), f"inter_pod bytes per step {pod_bytes}")
    p = train(sets, b, steps=12, resume=ck.format(step=7))
    check(p.returncode == 0 and "warn" not in p.stderr, f"zero={zero}: DiLoCo resume:\n{p.stderr}")
    check(list(s["loss"][7:]) == list(steps(b)["loss"]), f"zero={zero}: resumed losses differ from the uninterrupted run")
    # Another layout (here the optimizer state in ZeRO-1 shards or not) resumes from replica 0's, saying so.
    p = train(sets[:-1] + [f"parallel.zero={1 - zero}"], os.path.join(tmp, f"other{zero}.h5"), steps=12,
              resume=ck.format(step=7))
    check(p.returncode == 0 and "every island resumes from replica 0's" in p.stderr, f"zero={zero}: other layout:\n{p.stderr}")

# 4. Streaming: 4 fragments, every 4 steps, each fragment on its own step of the period. Every
# step syncs one fragment; the pod tier's peak bytes per step fall to about a quarter of the
# whole model's, and its total over 12 steps (3 periods) is the same.
runs = {}
for name, outer in (("whole", "{tier: inter_pod, every: 4}"), ("streamed", "{tier: inter_pod, every: 4, fragments: 4}")):
    out = os.path.join(tmp, f"{name}.h5")
    p = train(TWO_PODS + [f"sync.outer={outer}"], out, steps=12)
    check(p.returncode == 0, f"{name}:\n{p.stderr}")
    runs[name] = steps(out)
whole, streamed = (runs[k]["bytes_wire/inter_pod"].sum(axis=1) for k in ("whole", "streamed"))
check((runs["streamed"]["outer_sync"] == 1).all(), f"streamed outer_sync {runs['streamed']['outer_sync']}")
check(streamed.max() < 0.4 * whole.max(), f"streamed peak bytes {streamed.max()} vs whole {whole.max()}")
check(abs(streamed.sum() / whole.sum() - 1) < 0.01, f"streamed total bytes {streamed.sum()} vs whole {whole.sum()}")

# 5. Delay: the outer all-reduce runs behind the next inner steps. Synced after steps 3 and 7
# (every 4) and applied after 6 and 10 (delay 3): the losses equal the undelayed run's up to
# step 4, the first that sees a sync land there; the pod tier carries the same bytes; and
# the inner steps hide part of the transfer (100 Mbit/s: the int8 model, 1.7 MB, takes
# about 130 ms; three inner steps here about as long), so less of it is exposed. The pacer
# holds the transfer to its time however loaded the machine, and a slower inner step only
# hides more. Keeping half the inner progress (mix 0.5) changes the losses from step 7 on.
SLOW = TWO_PODS + ["compression.inter_pod={codec: int8}", "links.inter_pod={bandwidth: 100Mbit, latency: 1ms}"]
runs = {}
for name, outer in (("d0", "delay: 0"), ("d3", "delay: 3"), ("d3mix", "delay: 3, mix: 0.5")):
    out = os.path.join(tmp, f"{name}.h5")
    p = train(SLOW + [f"sync.outer={{tier: inter_pod, every: 4, {outer}}}"], out, steps=11)
    check(p.returncode == 0, f"{name}:\n{p.stderr}")
    with h5py.File(out) as f:
        runs[name] = {"bytes": f["steps"]["bytes_wire/inter_pod"][:].sum(),
                      "exposed": f["steps"]["outer_sync_time"][:].max(axis=1).sum(),
                      "syncs": list(f["steps"]["outer_sync"][:]), "loss": list(f["steps"]["loss"][:])}
d0, d3, mix = runs["d0"], runs["d3"], runs["d3mix"]
check(d0["loss"][:4] == d3["loss"][:4] and d0["loss"][4] != d3["loss"][4],
      f"delay 3 lands 3 steps later:\n{d0['loss']}\n{d3['loss']}")
check(d3["loss"][:7] == mix["loss"][:7] and d3["loss"][7] != mix["loss"][7],
      f"mix 0.5 changes the steps after the first landing:\n{d3['loss']}\n{mix['loss']}")
check(d0["bytes"] == d3["bytes"] > 0, f"pod bytes with delay 0 and 3: {d0['bytes']} and {d3['bytes']}")
check(d0["syncs"] == d3["syncs"], f"the syncs start after the same steps: {d0['syncs']} and {d3['syncs']}")
check(d3["exposed"] < 0.8 * d0["exposed"], f"exposed outer-sync seconds with delay 3: {d3['exposed']:.3f}, with none: {d0['exposed']:.3f}")

# A checkpoint while a sync is in flight (2 fragments, int4, every 4, delay 2: fragment 1
# starts after step 5 and lands after step 7; the checkpoint is after step 6) holds its
# outer gradient and when it started; the resumed run lands it when due and repeats the
# uninterrupted run bit for bit, and so does a resume of a checkpoint that run writes.
# Under another delay it lands by that delay; under another cut of the fragments it is
# dropped, saying so.
ck = os.path.join(tmp, "delayed-{step}.h5")
ck2 = os.path.join(tmp, "delayed2-{step}.h5")
sets = TWO_PODS + ["sync.outer={tier: inter_pod, every: 4, fragments: 2, delay: 2, mix: 0.5}",
                   "compression.inter_pod={codec: int4}", f"checkpoint.path={ck}", "checkpoint.every=6"]
a, b, c = (os.path.join(tmp, f"delayed-{k}.h5") for k in "abc")
p = train(sets, a, steps=12)
check(p.returncode == 0, f"delayed run failed:\n{p.stderr}")
p = train(sets[:-2] + [f"checkpoint.path={ck2}", "checkpoint.every=7"], b, steps=12, resume=ck.format(step=6))
check(p.returncode == 0 and "warn" not in p.stderr, f"delayed resume:\n{p.stderr}")
check(list(steps(a)["loss"][6:]) == list(steps(b)["loss"]), "delayed: resumed losses differ from the uninterrupted run")
p = train(sets[:-2], c, steps=12, resume=ck2.format(step=7))
check(p.returncode == 0 and "warn" not in p.stderr, f"second delayed resume:\n{p.stderr}")
check(list(steps(a)["loss"][7:]) == list(steps(c)["loss"]), "delayed: a resumed run's checkpoint resumes differently")
p = train([s.replace("delay: 2", "delay: 1") for s in sets], os.path.join(tmp, "delay1.h5"), steps=12,
          resume=ck.format(step=6))
check(p.returncode == 0 and "warn" not in p.stderr, f"another delay:\n{p.stderr}")
p = train([s.replace("fragments: 2", "fragments: 1") for s in sets], os.path.join(tmp, "fragments1.h5"), steps=12,
          resume=ck.format(step=6))
check(p.returncode == 0 and "1 fragment of them are dropped" in p.stderr, f"another cut:\n{p.stderr}")

# 6. Refusals, each in one line with its reason.
for ranks, extra, message in (
        (4, ["parallel.dp=2", "parallel.tp=2", "topology.ranks_per_node=1", "topology.nodes_per_pod=1"],
         "model replica 0 spans several pods"),
        (4, TWO_PODS + ["compression.inter_pod={codec: powersgd}"], "not whole matrices"),
        (4, TWO_PODS + ["sync.outer.delay=2"], "sync.outer.delay (2) must be less than sync.outer.every (2)")):
    p = train(["sync.outer={tier: inter_pod, every: 2}"] + extra, os.path.join(tmp, "x.h5"), steps=1, ranks=ranks)
    check(p.returncode == 2 and message in p.stderr, f"{extra}: expected exit 2 with '{message}', got {p.returncode}:\n{p.stderr}")
finish()
