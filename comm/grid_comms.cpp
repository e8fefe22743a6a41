// The grid's communicators, over MPI or NCCL.
#include <algorithm>

#include "comm/grid.h"
#include "comm/grid_comms.h"
#ifdef FIBERTRAIN_CUDA
#include "comm/nccl_transport.h"
#endif

namespace ft {

void GridComms::set_producer_stream(Stream* stream) {
  for (Communicator* c : {tp.get(), pp.get(), dp.get(), embed.get()})
    if (c) c->set_producer_stream(stream);
}

GridComms make_grid_comms(const Grid& grid, std::shared_ptr<const Topology> topo, bool nccl) {
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  std::vector<int> all(static_cast<std::size_t>(world));
  for (int r = 0; r < world; ++r) all[static_cast<std::size_t>(r)] = r;
  // A group of the world's ranks with the same `color`, ordered by `key`, over MPI or NCCL.
  auto group = [&](int color, int key, std::vector<int> members, Traffic kind) -> std::unique_ptr<Communicator> {
    auto mpi = std::make_unique<MpiTransport>(MPI_COMM_WORLD, color, key);
    std::unique_ptr<Transport> transport;
#ifdef FIBERTRAIN_CUDA
    if (nccl) transport = std::make_unique<NcclTransport>(std::move(mpi));
#else
    if (nccl) throw std::logic_error("NCCL requested in a build without CUDA");
#endif
    if (!transport) transport = std::move(mpi);
    return std::make_unique<Communicator>(topo, std::move(members), key, kind, std::move(transport));
  };
#ifdef FIBERTRAIN_CUDA
  if (nccl) {  // before any communicator exists, so that every rank stops with the one message
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
  c.dp = make(Dim::dp, Traffic::dp);
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
  c.dp->prepare_hierarchy();
  c.world->prepare_hierarchy();
  return c;
}

}  // namespace ft
