"""The in-process pacer against the cost model, on 8 ranks = 2 pods x 2 nodes x 2 ranks
with the inter-pod uplinks emulated.

Cost model of a hierarchical all-reduce: T = T0 + B / bw + latency x steps, where B is
what crosses one pod's uplink (its 4 ranks' inter-pod bytes, read from the counters), bw
the emulated rate, steps the sequential inter-pod ring steps (2 (k - 1) = 2 for 2 pods),
and T0 everything else, measured in the same run with no link emulated. Bound: 10%. The
model is an upper bound up to noise: the pacer lets the real copy of one chunk overlap the
emulated transfer of the next, which saves at most one chunk's real copy (~3% of T at
1 Gbit here); the rest is CPU contention among 8 ranks on 2 cores.

Latency: 4 KiB messages cost almost nothing on the wire, so their time grows by latency x
steps when latency is emulated (checked within 25%, or 1 ms). A millisecond is within the
scheduling noise of 8 ranks on 2 cores, in either run of the pair, so the pair is measured
up to three times and the closest attempt counts: a latency that is
missing (0 ms added) or applied per chunk or per rank (a multiple) fails every attempt.

`test_pacer_accuracy.py nccl`: the same over comm: nccl on the CPU model of NCCL's rules,
whose hierarchical all-reduce is NCCL's collective per level, held on its stream as the
ring's messages would be (comm/ring.cpp). The model's collectives are MPI's nonblocking
ones, moved on by polls between sleeps, so its T0 is twice MPI's and swings by a quarter from
one run to the next (83 to 110 ms, 2026-12-06, 2-core Intel Xeon), more than the bound above
allows. There the rate is checked without T0: the 200 Mbit/s run exceeds the 1 Gbit/s run by
what B takes at the one rate and not the other, within 10% (measured 0-4%; a missing or
doubled hold is off by 100%). Its 4 KiB all-reduce swings by a millisecond, so the latency
there is 10 ms, checked within 25%."""
import sys

from ftest import check, finish, run

TOPO = ["--set", "topology.ranks_per_node=2", "--set", "topology.nodes_per_pod=2"]
NCCL = len(sys.argv) > 1 and sys.argv[1] == "nccl"
LATENCY = 0.010 if NCCL else 0.002
if NCCL:
    TOPO += ["--set", "comm=nccl", "--set", "device=cpu-async"]


def bench(link, sizes=("4KiB", "16MiB"), iters=3):
    args = ["bench", "collectives", *TOPO, "--algos", "hierarchical", "--min", sizes[0], "--max", sizes[-1],
            "--factor", "4096", "--warmup", "1", "--iters", str(iters)]
    if link:
        args += ["--set", f"links.inter_pod={link}"]
    p = run(args, ranks=8)
    check(p.returncode == 0, f"bench {link} failed:\n{p.stderr}")
    rows = {}
    for line in p.stdout.splitlines():
        f = line.split()
        if len(f) == 11 and f[0].isdigit():
            rows[int(f[0])] = {"time": float(f[3]) * 1e-6, "inter_pod": float(f[8]), "ok": f[10] == "yes"}
    check(set(rows) == ({4096, 16 << 20} if len(sizes) == 2 else {4096}), f"rows {sorted(rows)}")
    check(all(r["ok"] for r in rows.values()), "results check")
    return rows


base = bench(None)
paced = {}  # 16 MiB time by rate, without latency
for rate_bits, latency in ((200e6, 0.0), (1e9, 0.0), (1e9, LATENCY)):
    link = f"{{bandwidth: {int(rate_bits / 1e6)}Mbit, latency: {latency * 1e3:g}ms}}"
    rows = bench(link)
    big = rows[16 << 20]
    uplink_bytes = 4 * big["inter_pod"]  # 4 ranks behind each pod's uplink
    if not latency:
        paced[rate_bits] = big["time"]
    model = base[16 << 20]["time"] + uplink_bytes * 8 / rate_bits + 2 * latency
    err = abs(big["time"] - model) / model
    print(f"{link}: 16 MiB measured {big['time'] * 1e3:.1f} ms, model {model * 1e3:.1f} ms ({err * 100:.1f}%)")
    if not NCCL:
        check(err <= 0.10, f"{link}: measured {big['time']:.4f} s vs model {model:.4f} s")
    elif not latency and len(paced) == 2:
        slower = paced[200e6] - paced[1e9]
        expect = uplink_bytes * 8 / 200e6 - uplink_bytes * 8 / 1e9
        print(f"200 Mbit/s took {slower * 1e3:.1f} ms longer than 1 Gbit/s, B at the two rates differs by "
              f"{expect * 1e3:.1f} ms ({abs(slower - expect) / expect * 100:.1f}%)")
        check(abs(slower - expect) <= 0.10 * expect, f"rate: {slower:.4f} s more at 200 Mbit/s, expected {expect:.4f} s")
    if latency:
        tolerance = max(0.25 * 2 * latency, 0.001)
        attempts = []
        for _ in range(3):
            small = ("4KiB",)
            added = bench(link, small)[4096]["time"] - bench(None, small)[4096]["time"]
            attempts.append(added)
            if abs(added - 2 * latency) <= tolerance:
                break
        added = min(attempts, key=lambda a: abs(a - 2 * latency))
        print(f"{link}: 4 KiB took {added * 1e3:.2f} ms longer than without the link "
              f"(attempts: {', '.join(f'{a * 1e3:.2f}' for a in attempts)} ms)")
        check(abs(added - 2 * latency) <= tolerance,
              f"latency per message: 4 KiB grew by {added:.4f} s, expected {2 * latency:.4f} s")
finish()
