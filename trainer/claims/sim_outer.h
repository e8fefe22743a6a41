// The outer sync (sync.outer) in the step simulator (simulator.h), as
// trainer/loop/outer_sync.h runs it: after each step the fragments due start their
// all-reduce across the tier (each island member's segment, every group of every stage at
// once, on the outer codecs) on a worker that runs one at a time; `delay` steps later each
// lands: the step waits for what is still on the wire, the island all-gathers the segments
// (a flat ring), and the outer step runs at the profile's update cost per parameter.
#pragma once

#include <vector>

#include "comm/grid.h"
#include "comm/grid_comms.h"
#include "models/tensor.h"
#include "trainer/claims/sim_network.h"

namespace ft {

// The periods after a step of out.inner_step seconds whose every-step sync stays in the
// islands of `split`; `fragments`: each pipeline stage's (cut_fragments). Sets out's step
// time to a period's mean step, its outer time and exposed shares, and accounts the outer
// bytes (per step) in `net`. The third period stands for all: the first two fill the worker.
void simulate_outer_periods(const OuterSyncConfig& o, const DeviceProfile& dev, const Grid& grid, const Topology& topo,
                            const TierSplit& split, const std::vector<std::vector<FlatRange>>& fragments,
                            bool hierarchical, bool compressed, SimNetwork& net, Simulation& out);

}  // namespace ft
