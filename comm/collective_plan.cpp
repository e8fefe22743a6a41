#include "comm/collective_plan.h"

#include <algorithm>
#include <map>

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

std::size_t CollectivePlan::region(std::size_t n, int level, int m) const {
  for (int l = 0; l < level; ++l) {
    const RingLevel& r = levels_[static_cast<std::size_t>(l)];
    n = segment(n, r.size, r.key[static_cast<std::size_t>(m)]).count;
  }
  return n;
}

std::size_t CollectivePlan::sent(std::size_t n, int level, int m, bool reduce) const {
  const RingLevel& r = levels_[static_cast<std::size_t>(level)];
  if (r.size < 2) return 0;
  const std::size_t whole = region(n, level, m);
  // Steps 0 .. size-2 send; the index step size-1 would send is the one kept.
  const int kept = ring_send_index(r.key[static_cast<std::size_t>(m)], r.size - 1, r.size, reduce);
  return whole - segment(whole, r.size, kept).count;
}

}  // namespace ft
