// The grid's communicators, over MPI or NCCL.
#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "comm/error.h"
#include "comm/grid.h"
#include "comm/grid_comms.h"
#include "comm/nccl_transport.h"

namespace ft {

void GridComms::set_producer_stream(Stream* stream) {
  for (Communicator* c : {tp.get(), pp.get(), dp.get(), embed.get(), dp_inner.get(), dp_outer.get()})
    if (c) c->set_producer_stream(stream);
}

TierSplit split_at_tier(const Grid& grid, const Topology& topo, Tier tier, std::string_view key) {
  // Checked alike on every rank before any communicator exists.
  const int world = grid.world();
  for (int r = 0; r < world; ++r) {
    GridCoord root = grid.coord(r);
    root.tp = root.pp = 0;
    const int first = grid.rank(root);
    if (topo.uplink(r, tier) != topo.uplink(first, tier))
      throw UserError(fmt::format("{}: model replica {} spans several {}s (ranks {} and {}); the split at {} "
                                  "needs each replica inside one: change parallel.order or the topology",
                                  key, root.dp, tier_unit(tier), first, r, tier_name(tier)));
  }
  TierSplit split;
  for (const std::vector<int>& g : grid.groups(Dim::dp)) {
    std::map<int, std::vector<int>> by_unit;
    for (int r : g) by_unit[topo.uplink(r, tier)].push_back(r);
    const std::size_t n = by_unit.begin()->second.size();
    for (const auto& [unit, members] : by_unit)
      if (members.size() != n)
        throw UserError(fmt::format("{}: the data-parallel replicas are spread unevenly over the {}s ({} in "
                                    "one, {} in another); the split at {} needs as many in each",
                                    key, tier_unit(tier), n, members.size(), tier_name(tier)));
    for (std::size_t pos = 0; pos < n; ++pos) {
      std::vector<int> across;
      for (const auto& [unit, members] : by_unit) across.push_back(members[pos]);
      split.across.push_back(std::move(across));
    }
    for (auto& [unit, members] : by_unit) split.inner.push_back(std::move(members));
  }
  return split;
}

GridComms make_grid_comms(const Grid& grid, std::shared_ptr<const Topology> topo, std::shared_ptr<NcclApi> nccl,
                          std::optional<Tier> split_tier, std::string_view split_key) {
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  std::vector<int> all(static_cast<std::size_t>(world));
  for (int r = 0; r < world; ++r) all[static_cast<std::size_t>(r)] = r;
  std::optional<TierSplit> split;
  if (split_tier) split = split_at_tier(grid, *topo, *split_tier, split_key);  // before any communicator exists
  // Every NCCL communicator of the process issues from one lane (communicator.h).
  std::shared_ptr<WorkQueue> nccl_lane = nccl ? std::make_shared<WorkQueue>() : nullptr;
  // A group of the world's ranks with the same `color`, ordered by `key`, over MPI or NCCL.
  auto group = [&](int color, int key, std::vector<int> members, Traffic kind) -> std::unique_ptr<Communicator> {
    auto mpi = std::make_unique<MpiTransport>(MPI_COMM_WORLD, color, key);
    if (!nccl) return std::make_unique<Communicator>(topo, std::move(members), key, kind, std::move(mpi));
    return std::make_unique<Communicator>(topo, std::move(members), key, kind,
                                          std::make_unique<NcclTransport>(nccl, std::move(mpi)), nccl_lane);
  };
#ifdef FIBERTRAIN_CUDA
  // Before any communicator exists, so that every rank stops with the one message.
  if (nccl && nccl->memory() == Device::cuda) {
    std::vector<std::vector<int>> groups;
    for (Dim d : {Dim::tp, Dim::pp, Dim::dp})
      for (auto& g : grid.groups(d)) groups.push_back(std::move(g));
    if (grid.size(Dim::pp) > 1)
      for (const auto& g : grid.groups(Dim::pp)) groups.push_back({g.front(), g.back()});  // the tied embedding
    check_one_gpu_per_rank(groups);
  }
#endif
  GridComms c;
  c.world = std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, 0, rank, all, topo, Traffic::other);
  auto make = [&](Dim d, Traffic kind) {
    std::vector<int> members = grid.group(d, rank);
    int key = grid.coord(rank)[d];
    int color = *std::min_element(members.begin(), members.end());
    return group(color, key, members, kind);
  };
  c.tp = make(Dim::tp, Traffic::tp);
  c.pp = make(Dim::pp, Traffic::pp);
  if (!split_tier) c.dp = make(Dim::dp, Traffic::dp);  // split, dp_inner and dp_outer stand for it
  if (grid.size(Dim::pp) > 1) {
    GridCoord me = grid.coord(rank);
    int last = grid.size(Dim::pp) - 1;
    if (me.pp == 0 || me.pp == last) {
      GridCoord first_c = me, last_c = me;
      first_c.pp = 0;
      last_c.pp = last;
      std::vector<int> members = {grid.rank(first_c), grid.rank(last_c)};
      c.embed = group(members[0], me.pp == 0 ? 0 : 1, members, Traffic::pp);
    } else {
      MPI_Comm none;  // the split is collective over the world; middle stages take no part
      MPI_Comm_split(MPI_COMM_WORLD, MPI_UNDEFINED, rank, &none);
    }
  }
  if (split_tier) {
    const int unit = topo->uplink(rank, *split_tier);
    auto containing = [&](const std::vector<std::vector<int>>& groups) -> const std::vector<int>& {
      return *std::find_if(groups.begin(), groups.end(), [&](const std::vector<int>& g) {
        return std::find(g.begin(), g.end(), rank) != g.end();
      });
    };
    auto position = [&](const std::vector<int>& g) {
      return static_cast<int>(std::find(g.begin(), g.end(), rank) - g.begin());
    };
    const std::vector<int>& inner = containing(split->inner);
    const std::vector<int>& across = containing(split->across);
    c.dp_inner = group(inner.front(), position(inner), inner, Traffic::dp);
    c.dp_outer = group(across.front(), position(across), across, Traffic::dp);
    std::vector<int> island;
    for (int r = 0; r < world; ++r)
      if (topo->uplink(r, *split_tier) == unit) island.push_back(r);
    const int island_rank = static_cast<int>(std::find(island.begin(), island.end(), rank) - island.begin());
    c.island = std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, unit, island_rank, island, topo, Traffic::other);
    c.dp_inner->prepare_hierarchy();
    c.dp_outer->prepare_hierarchy();
  }
  if (c.dp) c.dp->prepare_hierarchy();
  c.world->prepare_hierarchy();
  return c;
}

}  // namespace ft
