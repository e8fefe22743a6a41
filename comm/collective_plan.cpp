#include "comm/collective_plan.h"

#include <algorithm>
#include <map>
#include <numeric>

#include "comm/segment.h"

namespace ft {

CollectivePlan::CollectivePlan(const Topology& topo, std::vector<int> members, bool hierarchical)
    : members_(std::move(members)) {
  const int p = static_cast<int>(members_.size());
  const HierarchyPlan plan = plan_hierarchy(topo, members_);
  if (hierarchical && plan.even && plan.levels.size() >= 2) {
    for (const HierarchyLevel& h : plan.levels) {
      RingLevel level;
      level.size = h.size;
      level.key = h.key;
      level.tier.resize(static_cast<std::size_t>(p));
      std::map<std::pair<int, int>, int> at;  // (color, key) -> member
      for (int m = 0; m < p; ++m) at[{h.color[static_cast<std::size_t>(m)], h.key[static_cast<std::size_t>(m)]}] = m;
      for (int m = 0; m < p; ++m) {
        const auto i = static_cast<std::size_t>(m);
        const int next = at.at({h.color[i], (h.key[i] + 1) % h.size});
        level.tier[i] = topo.tier(members_[i], members_[static_cast<std::size_t>(next)]);
      }
      levels_.push_back(std::move(level));
    }
    return;
  }
  RingLevel ring;
  ring.size = p;
  for (int m = 0; m < p; ++m) {
    ring.key.push_back(m);
    ring.tier.push_back(topo.tier(members_[static_cast<std::size_t>(m)], members_[static_cast<std::size_t>((m + 1) % p)]));
  }
  levels_.push_back(std::move(ring));
}

Segment CollectivePlan::region(std::size_t n, int level, int m, const std::vector<std::size_t>* cuts) const {
  Segment at{0, n};
  for (int l = 0; l < level; ++l) {
    const RingLevel& r = levels_[static_cast<std::size_t>(l)];
    const int key = r.key[static_cast<std::size_t>(m)];
    Segment s;
    if (cuts) {
      s = aligned_segment(at.count, r.size, key, cuts_within(*cuts, at.offset, at.count));
    } else {
      s = segment(at.count, r.size, key);
    }
    at = {at.offset + s.offset, s.count};
  }
  return at;
}

namespace {

// What ring rank `rank` of p sends in one phase over n elements on `wire`: every segment's
// messages but the one it never passes on (its own in a reduce-scatter, its successor's in
// an all-gather), the sum of ring_step_bytes(ring_sends(...)) without walking the segments:
// they take at most three sizes (segment(n, p, i, block): whole blocks, the last one short).
std::size_t ring_phase_bytes(std::size_t n, int p, int rank, bool reduce, const WireFormat& wire, std::size_t chunk_bytes) {
  const std::size_t chunk = wire.chunk_elements(chunk_bytes), align = wire.block();
  const auto k = static_cast<std::size_t>(p);
  const std::size_t blocks = (n + align - 1) / align, base = blocks / k, extra = blocks % k;
  auto bytes = [&](std::size_t elems) { return wire.message_bytes(elems, chunk); };
  std::size_t total = 0;
  if (blocks < k) {  // a block each, the last one short, the rest empty
    if (blocks > 0) total = (blocks - 1) * bytes(align) + bytes(n - (blocks - 1) * align);
  } else {  // extra segments of base + 1 blocks, then base; the last holds the short block
    total = extra * bytes((base + 1) * align) + (k - 1 - extra) * bytes(base * align) +
            bytes(segment(n, p, p - 1, align).count);
  }
  const int skipped = reduce ? rank : (rank + 1) % p;
  return total - bytes(segment(n, p, skipped, align).count);
}

}  // namespace

std::size_t CollectivePlan::sent_bytes(std::size_t n, int level, int m, bool reduce, const WireFormat& wire,
                                       std::size_t chunk_bytes, const std::vector<std::size_t>* cuts) const {
  const RingLevel& r = levels_[static_cast<std::size_t>(level)];
  const Segment at = region(n, level, m, cuts);
  if (!cuts) return ring_phase_bytes(at.count, r.size, r.key[static_cast<std::size_t>(m)], reduce, wire, chunk_bytes);
  const std::vector<std::size_t> local = cuts_within(*cuts, at.offset, at.count);
  const std::vector<std::size_t> steps =
      ring_step_bytes(ring_sends(at.count, r.size, r.key[static_cast<std::size_t>(m)], reduce, &local), wire, chunk_bytes);
  return std::accumulate(steps.begin(), steps.end(), std::size_t{0});
}

std::size_t CollectivePlan::sent_bytes_of(std::size_t whole, int level, int m, bool reduce, const WireFormat& wire,
                                          std::size_t chunk_bytes) const {
  const RingLevel& r = levels_[static_cast<std::size_t>(level)];
  return ring_phase_bytes(whole, r.size, r.key[static_cast<std::size_t>(m)], reduce, wire, chunk_bytes);
}

std::size_t CollectivePlan::largest_segment(std::size_t n, int level, int m, const std::vector<std::size_t>* cuts) const {
  const RingLevel& r = levels_[static_cast<std::size_t>(level)];
  const Segment at = region(n, level, m, cuts);
  if (!cuts) return (at.count + static_cast<std::size_t>(r.size) - 1) / static_cast<std::size_t>(r.size);
  const std::vector<std::size_t> local = cuts_within(*cuts, at.offset, at.count);
  std::size_t most = 0;
  for (int i = 0; i < r.size; ++i) most = std::max(most, aligned_segment(at.count, r.size, i, local).count);
  return most;
}

Tier CollectivePlan::tier(int level) const {
  const RingLevel& r = levels_[static_cast<std::size_t>(level)];
  return *std::max_element(r.tier.begin(), r.tier.end());
}

}  // namespace ft
