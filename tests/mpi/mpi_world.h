// This process's place in MPI_COMM_WORLD, for the MPI tests, and the communicator over the
// world that they test: over MPI, or with FT_TEST_COMM=nccl-model (or nccl-model-strict) over
// the NCCL transport on the CPU model of NCCL's rules, every send a rendezvous.
#pragma once

#include <mpi.h>

#include <cstdlib>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/mpi_transport.h"
#include "comm/nccl_transport.h"

namespace ft::test {

inline int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

inline int world_size() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

// The CPU model of NCCL the tests run over, or null for MPI.
inline std::shared_ptr<NcclApi> nccl_under_test() {
  static std::shared_ptr<NcclApi> api = [] () -> std::shared_ptr<NcclApi> {
    const char* comm = std::getenv("FT_TEST_COMM");
    const std::string name = comm ? comm : "mpi";
    if (name == "mpi") return nullptr;
    if (name != "nccl-model" && name != "nccl-model-strict") std::abort();
    return nccl_model(NcclRules{0, name == "nccl-model-strict"});
  }();
  return api;
}

// A communicator over every rank of the world, its hierarchy prepared.
inline std::unique_ptr<Communicator> world_comm(const Topology& topo, Traffic kind = Traffic::other) {
  static std::shared_ptr<WorkQueue> lane = std::make_shared<WorkQueue>();  // NCCL's: one per process
  std::vector<int> all(static_cast<std::size_t>(world_size()));
  std::iota(all.begin(), all.end(), 0);
  auto shared = std::make_shared<const Topology>(topo);
  auto mpi = std::make_unique<MpiTransport>(MPI_COMM_WORLD, 0, world_rank());
  std::unique_ptr<Communicator> c;
  if (auto nccl = nccl_under_test())
    c = std::make_unique<Communicator>(shared, all, world_rank(), kind, std::make_unique<NcclTransport>(nccl, std::move(mpi)),
                                       lane);
  else
    c = std::make_unique<Communicator>(shared, all, world_rank(), kind, std::move(mpi));
  c->prepare_hierarchy();
  return c;
}

}  // namespace ft::test
