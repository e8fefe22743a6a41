// What the ring and hierarchical collectives send, rank by rank, without running them: the
// levels the communicator runs (plan_hierarchy), each level's ring over its sub-groups, and
// the segments each ring step passes (segment, ring_send_index). The step simulator's
// traffic comes from here; tests hold it to the traffic counters of real runs.
#pragma once

#include <cstddef>
#include <vector>

#include "comm/segment.h"
#include "comm/topology.h"
#include "comm/wire.h"

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
  // nested segment the levels below left it; with `cuts`, the tensor boundaries from 0 to n,
  // segments end on them, as a codec that needs whole matrices has them cut).
  Segment region(std::size_t n, int level, int m, const std::vector<std::size_t>* cuts = nullptr) const;
  // Bytes member m sends at `level` in one reduce-scatter (`reduce`) or all-gather phase on
  // `wire`: every segment of its region but the one its ring never passes on (ring_sends), in
  // messages of about `chunk_bytes` (ring_step_bytes), summed.
  std::size_t sent_bytes(std::size_t n, int level, int m, bool reduce, const WireFormat& wire, std::size_t chunk_bytes,
                         const std::vector<std::size_t>* cuts = nullptr) const;
  // ... in one phase on `whole` elements of its own (a codec's payloads or factors) at `level`.
  std::size_t sent_bytes_of(std::size_t whole, int level, int m, bool reduce, const WireFormat& wire,
                            std::size_t chunk_bytes) const;
  // The largest segment of member m's region at `level`: what its ring's slowest step passes.
  std::size_t largest_segment(std::size_t n, int level, int m, const std::vector<std::size_t>* cuts = nullptr) const;
  // The highest tier a level's rings cross: the tier whose codec it runs.
  Tier tier(int level) const;

 private:
  std::vector<int> members_;
  std::vector<RingLevel> levels_;
};

}  // namespace ft
