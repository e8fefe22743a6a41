#include "trainer/claims/sim_outer.h"

#include <algorithm>
#include <map>

#include "comm/segment.h"
#include "trainer/loop/outer_sync.h"

namespace ft {

void simulate_outer_periods(const OuterSyncConfig& o, const DeviceProfile& dev, const Grid& grid, const Topology& topo,
                            const TierSplit& split, const std::vector<std::vector<FlatRange>>& fragments,
                            bool hierarchical, bool compressed, SimNetwork& net, Simulation& out) {
  const std::size_t count = static_cast<std::size_t>(o.fragments);
  std::map<int, int> position;  // a rank's in its island
  for (const std::vector<int>& g : split.inner)
    for (std::size_t i = 0; i < g.size(); ++i) position[g[i]] = static_cast<int>(i);
  const int k = static_cast<int>(split.inner.front().size());
  std::vector<CollectivePlan> across_plans, island_plans;
  for (const std::vector<int>& g : split.across) across_plans.emplace_back(topo, g, hierarchical);
  if (k > 1)
    for (const std::vector<int>& g : split.inner) island_plans.emplace_back(topo, g, false);
  auto elements = [&](const std::vector<int>& g, std::size_t f) {
    return static_cast<std::size_t>(fragments[static_cast<std::size_t>(grid.coord(g.front()).pp)][f].size());
  };
  const double per_step = 1.0 / o.every;
  std::vector<SimCost> across(count), gather(count);
  std::vector<double> update(count);
  for (std::size_t f = 0; f < count; ++f) {
    std::vector<std::size_t> segments, whole;
    for (const std::vector<int>& g : split.across) segments.push_back(segment(elements(g, f), k, position[g.front()]).count);
    across[f] = net.collective(across_plans, segments, true, true, SimKind::outer, per_step, compressed);
    if (k > 1) {
      for (const std::vector<int>& g : split.inner) whole.push_back(elements(g, f));
      gather[f] = net.collective(island_plans, whole, false, true, SimKind::outer, per_step, false);
    }
    for (const std::vector<FlatRange>& stage : fragments)
      update[f] = std::max(update[f], static_cast<double>(stage[f].size()) * dev.optimizer_seconds_per_parameter *
                                          host_crowding(dev, grid.world()));
  }
  const double inner = out.inner_step;
  double t = 0, worker = 0, period_start = 0;
  PerTier<double> exposed{};
  std::vector<int> started(count, -1);
  std::vector<double> lands(count, 0);
  for (int step = 0; step < 3 * o.every; ++step) {
    if (step == 2 * o.every) {
      period_start = t;
      exposed = {};
    }
    t += inner;
    for (int f : outer_due(o, o.fragments, step)) {
      const std::size_t i = static_cast<std::size_t>(f);
      worker = std::max(t, worker) + across[i].seconds;
      lands[i] = worker;
      started[i] = step;
    }
    for (std::size_t i = 0; i < count; ++i) {
      if (started[i] < 0 || started[i] + o.delay > step) continue;
      const double wait = std::max(0.0, lands[i] - t);
      exposed[across[i].tier] += wait;
      exposed[gather[i].tier] += gather[i].seconds;
      t += wait + gather[i].seconds + update[i];
      started[i] = -1;
    }
  }
  out.period = o.every;
  out.step_time = (t - period_start) / o.every;
  out.outer = out.step_time - inner;
  for (Tier tier : kAllTiers) out.exposed[tier] += exposed[tier] / o.every;
}

}  // namespace ft
