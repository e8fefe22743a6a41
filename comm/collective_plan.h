// What the ring and hierarchical collectives send, rank by rank, without running them: the
// levels the communicator runs (plan_hierarchy), each level's ring over its sub-groups, and
// the segments each ring step passes (segment, ring_send_index). The step simulator's
// traffic comes from here; tests hold it to the traffic counters of real runs.
#pragma once

#include <cstddef>
#include <vector>

#include "comm/topology.h"

namespace ft {

struct RingLevel {
  int size = 1;            // ranks in each ring of the level
  std::vector<Tier> tier;  // by member: the tier its messages to the next in its ring cross
  std::vector<int> key;    // by member: its position in its ring
};

class CollectivePlan {
 public:
  // `members` are world ranks in group-rank order; `hierarchical`: level by level across the
  // tiers the group spans when it is evenly spread (else, like the communicator, one ring).
  CollectivePlan(const Topology& topo, std::vector<int> members, bool hierarchical);

  const std::vector<int>& members() const { return members_; }
  const std::vector<RingLevel>& levels() const { return levels_; }
  // The elements of an n-element buffer that member m's ring works on at `level` (the
  // nested segment the levels below left it).
  std::size_t region(std::size_t n, int level, int m) const;
  // Elements member m sends at `level` in one reduce-scatter (`reduce`) or all-gather phase:
  // every segment of its region but the one its ring never passes on.
  std::size_t sent(std::size_t n, int level, int m, bool reduce) const;

 private:
  std::vector<int> members_;
  std::vector<RingLevel> levels_;
};

}  // namespace ft
