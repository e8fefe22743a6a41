// The communicators of the rank grid: one per dimension, over MPI or NCCL.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "comm/mpi_transport.h"
#include "comm/nccl_api.h"

namespace ft {

// One communicator per dimension of the rank grid, plus the world (always MPI: metrics,
// checkpoints, benchmarks).
struct GridComms {
  std::unique_ptr<MpiCommunicator> world;
  std::unique_ptr<Communicator> tp, pp;
  // The data-parallel group; null when split at a tier (dp_inner and dp_outer below).
  std::unique_ptr<Communicator> dp;
  // The first and last pipeline stages of one (tp, dp) position, which both hold the tied
  // token embedding; null elsewhere and when pp == 1.
  std::unique_ptr<Communicator> embed;
  // With a split tier (sync.outer, parallel.shard_within), the data-parallel group split at
  // it: dp_inner holds the members in this rank's unit below the tier (its node, pod or
  // site), dp_outer the members at this rank's position in every unit; `island` is every
  // rank of this unit. Null without.
  std::unique_ptr<Communicator> dp_inner, dp_outer;
  std::unique_ptr<MpiCommunicator> island;
  // The compute stream whose work produces and consumes the buffers the grid's
  // communicators are given (see communicator.h's ordering rule).
  void set_producer_stream(Stream* stream);
};

class Grid;

// The data-parallel groups split at `tier` (sync.outer's islands, parallel.shard_within's
// shard groups): every DP group's members in each unit below the tier, in DP order, and
// across its units the members at each position in them. Throws UserError, naming `key`,
// when a model replica spans several units or a DP group is spread unevenly over them. The
// trainer's communicators and the step simulator's groups.
struct TierSplit {
  std::vector<std::vector<int>> inner;   // per DP group and unit
  std::vector<std::vector<int>> across;  // per DP group and position in a unit
};
TierSplit split_at_tier(const Grid& grid, const Topology& topo, Tier tier, std::string_view key);

// Collective over MPI_COMM_WORLD: tp, pp, dp and embed over MPI, or over `nccl` when given
// (NCCL on the current device, one GPU per rank; or the CPU model of its rules). The DP group's hierarchy is prepared. With
// `split`, the split at that tier instead of the DP group, asked for by `split_key`; throws UserError (on every
// rank alike) when a model replica spans several units or the DP group is spread unevenly.
GridComms make_grid_comms(const Grid& grid, std::shared_ptr<const Topology> topo,
                          std::shared_ptr<NcclApi> nccl = nullptr, std::optional<Tier> split = std::nullopt,
                          std::string_view split_key = "sync.outer");

}  // namespace ft
