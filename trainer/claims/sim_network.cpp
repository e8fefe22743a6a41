#include "trainer/claims/sim_network.h"

#include <algorithm>
#include <cmath>

#include "trainer/loop/layout.h"

namespace ft {

SimNetwork::SimNetwork(const Config& cfg, const Topology& topo, const Grid& grid, const DeviceProfile& dev,
                       Simulation& out)
    : topo_(topo), grid_(grid), dev_(dev), out_(out), links_(link_specs(cfg.links)) {
  for (Tier t : kAllTiers) load_[t].assign(static_cast<std::size_t>(topo.world()), 0.0);
  chunk_ = std::max<std::size_t>(1, cfg.sync.chunk.value / kSimWireBytes);
}

SimCost SimNetwork::collective(int d, int stage, bool hierarchical, std::size_t n, bool reduce, bool gather, SimKind kind,
                double times) {
  auto key = std::make_tuple(d, stage, hierarchical, n, reduce, gather);
  auto it = done_.find(key);
  if (it == done_.end()) it = done_.emplace(key, work_out(plans(d, stage, hierarchical), n, reduce, gather)).first;
  const Worked& w = it->second;
  for (Tier t : kAllTiers) out_.bytes[static_cast<std::size_t>(kind)][t] += w.bytes[t] * times;
  for (const auto& [t, unit, bytes] : w.uplinks) load_[t][static_cast<std::size_t>(unit)] += bytes * times;
  SimCost c = w.cost;
  c.uplinks = &w.uplinks;
  return c;
}

double SimNetwork::occupy(const SimCost& c, double start) {
  double end = start + c.seconds;
  if (!c.uplinks) return end;
  double links = start;
  for (const auto& [t, unit, bytes] : *c.uplinks) {
    const LinkSpec& l = links_[t];
    if (l.bytes_per_second <= 0 || bytes <= 0) continue;  // a member with no share of a small region
    links = std::max(links, reserve(busy_[t][unit], start, bytes / l.bytes_per_second));
  }
  return std::max(end, links + c.fixed);
}

double SimNetwork::reserve(Busy& busy, double start, double seconds) {
  // The first gap at or after `start` that holds `seconds`.
  auto it = std::lower_bound(busy.begin(), busy.end(), start,
                             [](const std::pair<double, double>& b, double t) { return b.second < t; });
  double at = start;
  for (; it != busy.end() && it->first < at + seconds; ++it) at = std::max(at, it->second);
  // [at, at + seconds] goes before `it`; merge it with the neighbours it touches.
  const double end = at + seconds;
  if (it != busy.begin() && std::prev(it)->second >= at) {
    auto prev = std::prev(it);
    prev->second = end;
    if (it != busy.end() && it->first <= end) {
      prev->second = it->second;
      busy.erase(it);
    }
  } else if (it != busy.end() && it->first <= end) {
    it->first = at;
  } else {
    busy.insert(it, {at, end});
  }
  return end;
}

SimCost SimNetwork::transfer(int from, int to, std::size_t n, double times) {
  Step step;
  double bytes = static_cast<double>(n * kSimWireBytes);
  Tier top = Tier::intra_node;
  for (const auto& g : grid_.groups(Dim::pp)) {
    const int a = g[static_cast<std::size_t>(from)], b = g[static_cast<std::size_t>(to)];
    const Tier t = topo_.tier(a, b);
    top = std::max(top, t);
    step[t][topo_.uplink(a, t)] += bytes;
    out_.bytes[static_cast<std::size_t>(SimKind::pipeline)][t] += bytes * times;
    load_[t][static_cast<std::size_t>(topo_.uplink(a, t))] += bytes * times;
  }
  return {link_time(step) + dev_.message_seconds + copy_time(bytes), top};
}

void SimNetwork::finish() {
  for (Tier t : kAllTiers) {
    out_.uplink_bytes[t] = *std::max_element(load_[t].begin(), load_[t].end());
    int units = 0;
    for (int r = 0; r < topo_.world(); ++r) units = std::max(units, topo_.uplink(r, t) + 1);
    out_.uplinks[t] = units;
  }
}

const std::vector<CollectivePlan>& SimNetwork::plans(int d, int stage, bool hierarchical) {
  auto& p = plans_[{d, stage, hierarchical}];
  if (!p.empty()) return p;
  if (d >= 0) {
    for (auto& g : grid_.groups(static_cast<Dim>(d)))
      if (grid_.coord(g.front()).pp == stage) p.emplace_back(topo_, g, hierarchical);
  } else {
    for (const auto& g : grid_.groups(Dim::pp)) p.emplace_back(topo_, std::vector<int>{g.front(), g.back()}, false);
  }
  return p;
}

double SimNetwork::link_time(const Step& step) const {
  double worst = 0;
  for (Tier t : kAllTiers) {
    if (step[t].empty()) continue;
    const LinkSpec& l = links_[t];
    double busiest = 0;
    for (const auto& [unit, bytes] : step[t]) busiest = std::max(busiest, bytes);
    worst = std::max(worst, (l.bytes_per_second > 0 ? busiest / l.bytes_per_second : 0) + l.latency);
  }
  return worst;
}

double SimNetwork::latency(const Step& step) const {
  double worst = 0;
  for (Tier t : kAllTiers)
    if (!step[t].empty()) worst = std::max(worst, links_[t].latency);
  return worst;
}

SimNetwork::Worked SimNetwork::work_out(const std::vector<CollectivePlan>& groups, std::size_t n, bool reduce, bool gather) {
  Worked w;
  std::map<std::pair<Tier, int>, double> sent;
  PerTier<double> tier_seconds{};
  const std::size_t levels = groups.front().levels().size();
  auto phase = [&](std::size_t l, bool reducing) {
    const int k = groups.front().levels()[l].size;
    if (k < 2) return;
    Step step;
    double largest = 0;
    Tier top = Tier::intra_node;
    for (const CollectivePlan& g : groups) {
      const RingLevel& level = g.levels()[l];
      for (std::size_t m = 0; m < g.members().size(); ++m) {
        const double bytes = static_cast<double>(g.sent(n, static_cast<int>(l), static_cast<int>(m), reducing) * kSimWireBytes);
        const Tier t = level.tier[m];
        const int unit = topo_.uplink(g.members()[m], t);
        step[t][unit] += bytes / (k - 1);
        sent[{t, unit}] += bytes;
        w.bytes[t] += bytes;
        largest = std::max(largest, bytes / (k - 1));
        top = std::max(top, t);
      }
    }
    const double messages = std::ceil(largest / kSimWireBytes / static_cast<double>(chunk_));
    const double fixed = messages * dev_.message_seconds + copy_time(largest) + latency(step);
    const double seconds = (k - 1) * (link_time(step) + fixed - latency(step));
    tier_seconds[top] += seconds;
    w.cost.seconds += seconds;
    w.cost.fixed += (k - 1) * fixed;
  };
  if (reduce)
    for (std::size_t l = 0; l < levels; ++l) phase(l, true);
  if (gather)
    for (std::size_t l = levels; l-- > 0;) phase(l, false);
  for (const auto& [tu, bytes] : sent) w.uplinks.emplace_back(tu.first, tu.second, bytes);
  for (Tier t : kAllTiers)
    if (tier_seconds[t] > tier_seconds[w.cost.tier]) w.cost.tier = t;
  return w;
}

}  // namespace ft
