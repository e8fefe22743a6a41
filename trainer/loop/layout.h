// From config and launch to the job's shape: the rank grid, where ranks sit (topology),
// and a communicator per grid dimension.
#pragma once

#include <memory>

#include "comm/grid.h"
#include "comm/grid_comms.h"
#include "comm/nccl_api.h"
#include "comm/runtime.h"
#include "comm/topology.h"
#include "trainer/io/config.h"

namespace ft {

// Emulated nodes when topology.ranks_per_node is set, else the hosts ranks run on; pods and
// sites from nodes_per_pod and pods_per_site. Local; throws UserError when they do not fit.
std::shared_ptr<const Topology> make_topology(const TopologyConfig& t, const MpiRuntime& mpi);

struct Layout {
  Grid grid;
  GridCoord coord;
  std::shared_ptr<const Topology> topo;
  GridComms comms;
  std::shared_ptr<Pacer> pacer;  // null when no link is emulated
};

// Whether the grid's communicators run over NCCL (comm: nccl, or auto on CUDA).
bool uses_nccl(const Config& cfg);
// What they run over then: NCCL on cuda, its CPU model on cpu-async; null for MPI.
std::shared_ptr<NcclApi> nccl_api(const Config& cfg);
// Where the model's tensors live: cuda, or cpu for device cpu and cpu-async (whose
// difference is the compute stream, ops::set_cpu_async).
Device compute_device(const Config& cfg);

// The process's device, before anything allocates or starts CUDA: on cuda this local rank's
// GPU (and, with nccl.strict, one launch queue) and the matmul precision; on cpu-async the
// deferred compute stream. Throws UserError.
void prepare_device(const Config& cfg, const MpiRuntime& mpi);

// The links section as the pacer's per-tier specs.
LinkSpecs link_specs(const LinksConfig& links);

// Collective over the world (builds the communicators, their producer the compute stream of
// cfg's device, and the pacer's shared link state); run after validate_launch and
// prepare_device.
Layout make_layout(const Config& cfg, const MpiRuntime& mpi, std::shared_ptr<const Topology> topo);

// The start-up banner's topology lines: a summary, the per-node table, and the tier each
// grid dimension's traffic crosses.
std::string describe_layout(const Layout& l);

}  // namespace ft
