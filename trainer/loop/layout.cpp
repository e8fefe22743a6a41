#include "trainer/loop/layout.h"

#include <stdexcept>

#include <fmt/format.h>

#include "comm/error.h"
#include "comm/log.h"
#include "models/device_info.h"
#include "models/ops.h"
#include "trainer/io/topology_file.h"

namespace ft {

std::shared_ptr<const Topology> make_topology(const TopologyConfig& t, const MpiRuntime& mpi) {
  if (!t.file.empty()) {
    if (t.ranks_per_node > 0 || t.nodes_per_pod > 0 || t.pods_per_site > 0)
      throw UserError("topology.file places hosts in pods and sites itself: leave topology.ranks_per_node, "
                      "nodes_per_pod and pods_per_site at 0");
    return std::make_shared<const Topology>(topology_from_file(t.file, mpi.hostnames()));
  }
  try {
    if (t.ranks_per_node > 0)
      return std::make_shared<const Topology>(Topology::emulated(mpi.size(), t.ranks_per_node, t.nodes_per_pod, t.pods_per_site));
    return std::make_shared<const Topology>(Topology::from_hosts(mpi.hostnames(), t.nodes_per_pod, t.pods_per_site));
  } catch (const std::invalid_argument& e) {
    throw UserError(fmt::format("topology: {} (topology.ranks_per_node {}, nodes_per_pod {}, pods_per_site {})", e.what(),
                                t.ranks_per_node, t.nodes_per_pod, t.pods_per_site));
  }
}

bool uses_nccl(const Config& cfg) {
  return cfg.comm == "nccl" || (cfg.comm == "auto" && cfg.device == "cuda");
}

std::shared_ptr<NcclApi> nccl_api(const Config& cfg) {
  if (!uses_nccl(cfg)) return nullptr;
  if (cfg.device != "cuda") return nccl_model(NcclRules{cfg.nccl.eager.value, cfg.nccl.strict});
#ifdef FIBERTRAIN_CUDA
  return nccl_library();
#else
  throw UserError("comm nccl on device cuda: this build has no CUDA (configure with the CUDA toolkit and NCCL)");
#endif
}

Device compute_device(const Config& cfg) { return cfg.device == "cuda" ? Device::cuda : Device::cpu; }

void prepare_device(const Config& cfg, const MpiRuntime& mpi) {
  if (cfg.device == "cuda") {
#ifdef FIBERTRAIN_CUDA
    if (cfg.nccl.strict && uses_nccl(cfg)) nccl_one_launch_queue();  // before CUDA starts
#endif
    select_cuda_device(mpi.local_rank());  // one GPU per rank, before any allocation or NCCL
    ops::set_bf16_matmuls(cfg.precision == "bf16");
  }
  ops::set_cpu_async(cfg.device == "cpu-async");
}

LinkSpecs link_specs(const LinksConfig& links) {
  LinkSpecs specs{};
  for (Tier t : kAllTiers)
    if (const auto& l = links.tier[t]) specs[t] = {l->bandwidth.bytes_per_second(), l->latency.seconds};
  return specs;
}

Layout make_layout(const Config& cfg, const MpiRuntime& mpi, std::shared_ptr<const Topology> topo) {
  const auto& p = cfg.parallel;
  Grid grid(p.tp, p.pp, p.dp, p.order);
  GridCoord coord = grid.coord(mpi.rank());
  std::optional<Tier> split;
  if (p.dp > 1) split = dp_split_tier(cfg);
  if (mpi.rank() == 0)
    for (const std::string& w : idle_settings(cfg)) log::warn("{}", w);
  if (dp_split_tier(cfg) && p.dp == 1 && mpi.rank() == 0)
    log::warn("{} has no effect: parallel.dp is 1, so there are no replicas to {}", dp_split_key(cfg),
              cfg.sync.outer ? "synchronise" : "shard");
  GridComms comms = make_grid_comms(grid, topo, nccl_api(cfg), split, dp_split_key(cfg));
  std::shared_ptr<Pacer> pacer = Pacer::create(MPI_COMM_WORLD, topo, link_specs(cfg.links));
  for (Communicator* c : {static_cast<Communicator*>(comms.world.get()), comms.tp.get(), comms.pp.get(), comms.dp.get(),
                          comms.embed.get(), comms.dp_inner.get(), comms.dp_outer.get()})
    if (c) c->set_pacer(pacer);
  comms.set_producer_stream(&ops::compute_stream(compute_device(cfg)));
  return Layout{grid, coord, std::move(topo), std::move(comms), std::move(pacer)};
}

std::string describe_layout(const Layout& l) {
  std::string out = l.topo->describe() + "\n" + l.topo->table();
  if (l.pacer) {
    for (Tier t : kAllTiers) {
      const LinkSpec& s = l.pacer->links()[static_cast<std::size_t>(index(t))];
      if (s.throttled())
        out += fmt::format("emulated {} link: {}, latency {}\n", tier_name(t),
                           s.bytes_per_second > 0 ? format_bitrate(BitRate{s.bytes_per_second * 8}) : "no limit",
                           format_duration(Duration{s.latency}));
    }
  }
  // The highest tier inside any group of each dimension: where that traffic goes.
  for (Dim d : {Dim::tp, Dim::pp, Dim::dp}) {
    Tier worst = Tier::intra_node;
    for (const auto& g : l.grid.groups(d)) worst = std::max(worst, l.topo->span(g));
    const char* name = d == Dim::tp ? "tp" : d == Dim::pp ? "pp" : "dp";
    if (l.grid.size(d) > 1) out += fmt::format("{} groups of {} cross up to {}\n", name, l.grid.size(d), tier_name(worst));
  }
  return out;
}

}  // namespace ft
