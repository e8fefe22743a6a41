#include "trainer/layout.h"

#include <stdexcept>

#include <fmt/format.h>

#include "comm/error.h"

namespace ft {

std::shared_ptr<const Topology> make_topology(const TopologyConfig& t, const MpiRuntime& mpi) {
  try {
    if (t.ranks_per_node > 0)
      return std::make_shared<const Topology>(Topology::emulated(mpi.size(), t.ranks_per_node, t.nodes_per_pod, t.pods_per_site));
    return std::make_shared<const Topology>(Topology::from_hosts(mpi.hostnames(), t.nodes_per_pod, t.pods_per_site));
  } catch (const std::invalid_argument& e) {
    throw UserError(fmt::format("topology: {} (topology.ranks_per_node {}, nodes_per_pod {}, pods_per_site {})", e.what(),
                                t.ranks_per_node, t.nodes_per_pod, t.pods_per_site));
  }
}

Layout make_layout(const Config& cfg, const MpiRuntime& mpi, std::shared_ptr<const Topology> topo) {
  const auto& p = cfg.parallel;
  Grid grid(p.tp, p.pp, p.dp, p.order);
  GridCoord coord = grid.coord(mpi.rank());
  GridComms comms = make_grid_comms(grid, topo);
  return Layout{grid, coord, std::move(topo), std::move(comms)};
}

std::string describe_layout(const Layout& l) {
  std::string out = l.topo->describe() + "\n" + l.topo->table();
  // The highest tier inside any group of each dimension: where that traffic goes.
  for (Dim d : {Dim::tp, Dim::pp, Dim::dp}) {
    Tier worst = Tier::intra_node;
    for (const auto& g : l.grid.groups(d))
      for (int a : g)
        for (int b : g) worst = std::max(worst, l.topo->tier(a, b));
    const char* name = d == Dim::tp ? "tp" : d == Dim::pp ? "pp" : "dp";
    if (l.grid.size(d) > 1) out += fmt::format("{} groups of {} cross up to {}\n", name, l.grid.size(d), tier_name(worst));
  }
  return out;
}

}  // namespace ft
