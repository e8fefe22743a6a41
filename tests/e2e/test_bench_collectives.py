"""`fibertrain bench collectives` on 8 ranks over an emulated 2-site cluster: every row
checks its result, the per-tier bytes follow the hierarchical formula, and the HDF5 group
holds the table."""
import os

import h5py

from ftest import check, finish, run, tempdir

out = os.path.join(tempdir(), "coll.h5")
p = run(["bench", "collectives", "--set", "topology.ranks_per_node=1", "--set", "topology.nodes_per_pod=2",
         "--set", "topology.pods_per_site=2", "--min", "64KiB", "--max", "1MiB", "--factor", "16",
         "--warmup", "1", "--iters", "2", "--out", out], ranks=8)
check(p.returncode == 0, f"bench failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
rows = [l.split() for l in p.stdout.splitlines() if l.strip() and l.split()[0].isdigit() and len(l.split()) == 11]
check(len(rows) == 6, f"expected 6 rows (2 sizes x 3 algorithms), got {len(rows)}:\n{p.stdout}")
check(all(r[-1] == "yes" for r in rows), "every row's result checks")
for r in rows:
    if r[2] == "hierarchical":
        size = int(r[0])
        # 2 (k-1)/k of S / (product of the fan-outs below) per tier, k = 2 at each tier.
        check([float(x) for x in r[7:10]] == [size, size / 2, size / 4], f"hierarchical tier bytes {r[7:10]}")
with h5py.File(out, "r") as f:
    g = f["bench/collectives/all_reduce/hierarchical"]
    check(list(g["size"][:]) == [65536.0, 1048576.0], f"sizes {list(g['size'][:])}")
    check(list(g["bytes_wire/inter_site"][:]) == [16384.0, 262144.0], "inter-site bytes per rank")
    check(all(t > 0 for t in g["time"][:]), "times recorded")

p = run(["bench", "collectives", "--algos", "ring,warp"], ranks=2)
check(p.returncode == 2 and "unknown algorithm 'warp'" in p.stderr, f"bad algorithm: {p.stderr}")
finish()
