#include "trainer/claims/sim_network.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include <fmt/format.h>

#include "comm/error.h"
#include "trainer/loop/layout.h"

namespace ft {

SimNetwork::SimNetwork(const Config& cfg, const Topology& topo, const Grid& grid, const DeviceProfile& dev,
                       const TierCodecs& codecs, std::vector<std::vector<int>> dp_groups, Simulation& out)
    : topo_(topo), grid_(grid), dev_(dev), out_(out), links_(link_specs(cfg.links)), dp_groups_(std::move(dp_groups)) {
  for (Tier t : kAllTiers) load_[t].assign(static_cast<std::size_t>(topo.world()), 0.0);
  chunk_bytes_ = std::max<std::size_t>(1, cfg.sync.chunk.value);
  for (Tier t : kAllTiers) codecs_[t] = make_codec(codecs[t]);
}

SimCost SimNetwork::collective(int d, int stage, bool hierarchical, std::size_t n, bool reduce, bool gather, SimKind kind,
                double times, const std::vector<Matrix>* tensors) {
  // Compressed collectives of one size cost the same unless the top codec reads the tensors
  // inside (whole matrices): only then do the bucket's tensors tell them apart.
  const bool reads_tensors = std::any_of(kAllTiers.begin(), kAllTiers.end(),
                                         [&](Tier t) { return find_codec(codec(t).spec().name)->whole_tensors; });
  const void* which = tensors && !reads_tensors ? static_cast<const void*>(&codecs_) : tensors;
  auto key = std::make_tuple(d, stage, hierarchical, n, reduce, gather, which);
  auto it = done_.find(key);
  if (it == done_.end()) {
    const std::vector<CollectivePlan>& groups = plans(d, stage, hierarchical);
    it = done_.emplace(key, work_out(groups, std::vector<std::size_t>(groups.size(), n), reduce, gather, tensors)).first;
  }
  const Worked& w = it->second;
  account(w, stage, kind, times);
  SimCost c = w.cost;
  c.uplinks = &w.uplinks;
  return c;
}

SimCost SimNetwork::collective(const std::vector<CollectivePlan>& groups, const std::vector<std::size_t>& sizes,
                               bool reduce, bool gather, SimKind kind, double times, bool compressed) {
  // What a codec is told of the tensors inside: one vector, as the outer sync sends it.
  const std::vector<Matrix> whole{{0, *std::max_element(sizes.begin(), sizes.end()), 0}};
  given_.push_back(std::make_unique<Worked>(work_out(groups, sizes, reduce, gather, compressed ? &whole : nullptr)));
  const Worked& w = *given_.back();
  account(w, -1, kind, times);
  SimCost c = w.cost;
  c.uplinks = &w.uplinks;
  return c;
}

void SimNetwork::account(const Worked& w, int stage, SimKind kind, double times) {
  for (Tier t : kAllTiers) codec_work_[stage][t] += w.codec_work[t] * times;
  for (Tier t : kAllTiers) out_.bytes[static_cast<std::size_t>(kind)][t] += w.bytes[t] * times;
  for (const auto& [t, unit, bytes] : w.uplinks) load_[t][static_cast<std::size_t>(unit)] += bytes * times;
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
    for (const auto& [stage, work] : codec_work_) out_.codec_work[t] = std::max(out_.codec_work[t], work[t]);
    out_.codec[t] = codec_seconds(t, out_.codec_work[t]);
  }
}

double SimNetwork::codec_seconds(Tier t, double work) const {
  if (work <= 0) return 0;
  const std::string& name = codecs_[t]->spec().name;
  auto rate = dev_.codec_seconds.find(name);
  if (rate == dev_.codec_seconds.end())
    throw UserError(fmt::format("device profile '{}' states no cost for codec {} (compression.{}): profile with a step "
                                "log of a run that used it, or state codec_seconds: {{{}: SECONDS}} in a YAML profile "
                                "(seconds per element it handles)",
                                dev_.source, name, tier_name(t), name));
  return work * rate->second * host_crowding(dev_, topo_.world());  // every rank codes at once
}

const std::vector<CollectivePlan>& SimNetwork::plans(int d, int stage, bool hierarchical) {
  auto& p = plans_[{d, stage, hierarchical}];
  if (!p.empty()) return p;
  if (d >= 0) {
    for (const auto& g : d == static_cast<int>(Dim::dp) ? dp_groups_ : grid_.groups(static_cast<Dim>(d)))
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

SimNetwork::Worked SimNetwork::work_out(const std::vector<CollectivePlan>& groups, const std::vector<std::size_t>& sizes,
                                        bool reduce, bool gather, const std::vector<Matrix>* tensors) {
  Worked w;
  std::map<std::pair<Tier, int>, double> sent;
  PerTier<double> tier_seconds{};
  const CollectivePlan& first = groups.front();
  auto size_of = [&](const CollectivePlan& g) { return sizes[static_cast<std::size_t>(&g - groups.data())]; };
  const int top = static_cast<int>(first.levels().size()) - 1;
  // One ring phase at level l on `wire`, every group at once: member m of group g sends
  // bytes(g, m) = {all its steps', one step's at most}. A phase no member sends in costs
  // nothing (ring_phase sends no message).
  auto phase = [&](int l, const WireFormat& wire, const auto& bytes_of) {
    const int k = first.levels()[static_cast<std::size_t>(l)].size;
    if (k < 2) return;
    Step step;
    double largest = 0, total = 0;
    Tier top_tier = Tier::intra_node;
    for (const CollectivePlan& g : groups) {
      const RingLevel& level = g.levels()[static_cast<std::size_t>(l)];
      for (std::size_t m = 0; m < g.members().size(); ++m) {
        const auto [bytes, per_step] = bytes_of(g, static_cast<int>(m));
        const Tier t = level.tier[m];
        const int unit = topo_.uplink(g.members()[m], t);
        step[t][unit] += per_step;
        sent[{t, unit}] += bytes;
        w.bytes[t] += bytes;
        total += bytes;
        largest = std::max(largest, per_step);
        top_tier = std::max(top_tier, t);
      }
    }
    if (total <= 0) return;
    const double messages = std::ceil(largest / static_cast<double>(wire.bytes(wire.chunk_elements(chunk_bytes_))));
    const double fixed = messages * dev_.message_seconds + copy_time(largest) + latency(step);
    const double seconds = (k - 1) * (link_time(step) + fixed - latency(step));
    tier_seconds[top_tier] += seconds;
    w.cost.seconds += seconds;
    w.cost.fixed += (k - 1) * fixed;
  };
  // Compressed (comm/compressed.cpp): the levels below the top on their codec's wire, segments
  // cut at tensor boundaries when the top codec needs whole matrices, and the top level's
  // codec's own phases on the part it holds. Dense: fp32 at every level.
  const bool compressed = tensors != nullptr;
  const Codec& top_codec = codec(compressed ? first.tier(top) : Tier::intra_node);
  std::vector<std::size_t> cuts;
  if (compressed && find_codec(top_codec.spec().name)->whole_tensors) {
    if (std::adjacent_find(sizes.begin(), sizes.end(), std::not_equal_to<>()) != sizes.end())
      throw std::logic_error("simulate: groups of different sizes cut at tensor boundaries");
    cuts = tensor_cuts(*tensors, sizes.front());
  }
  const std::vector<std::size_t>* cut = cuts.empty() ? nullptr : &cuts;
  auto ring = [&](int l, bool reducing) {
    const double k = first.levels()[static_cast<std::size_t>(l)].size;
    const WireFormat& wire = compressed ? codec(first.tier(l)).wire() : fp32_wire();
    phase(l, wire, [&](const CollectivePlan& g, int m) {
      const std::size_t n = size_of(g);
      const double bytes = static_cast<double>(g.sent_bytes(n, l, m, reducing, wire, chunk_bytes_, cut));
      // Segments cut at tensor boundaries differ: each ring step lasts as long as the largest.
      const double per_step =
          cut ? static_cast<double>(wire.message_bytes(g.largest_segment(n, l, m, cut), wire.chunk_elements(chunk_bytes_)))
              : bytes / (k - 1);
      return std::pair{bytes, per_step};
    });
  };
  // The tensors inside each part a member's ring works on at a level, by (offset, count).
  // Only a codec that needs whole matrices reads them; for the others a part is its size,
  // and the few sizes among hundreds of thousands of members are worked out once each.
  std::map<std::pair<std::size_t, std::size_t>, std::vector<Matrix>> inside;
  auto part = [&](const Segment& r) { return cut ? std::pair{r.offset, r.count} : std::pair{std::size_t{0}, r.count}; };
  auto tensors_in = [&](const Segment& r) -> const std::vector<Matrix>& {
    auto [it, fresh] = inside.try_emplace(part(r));
    if (fresh && cut) it->second = tensors_within(*tensors, r.offset, r.count);
    return it->second;
  };
  // Codec time: the busiest member's work at each level, on the data-parallel worker.
  auto codec_work = [&](int l, const Codec& c) {
    const int k = first.levels()[static_cast<std::size_t>(l)].size;
    double most = 0;
    std::map<std::pair<std::size_t, std::size_t>, double> work;
    for (const CollectivePlan& g : groups)
      for (std::size_t m = 0; m < g.members().size(); ++m) {
        const Segment r = g.region(size_of(g), l, static_cast<int>(m), cut);
        if (r.count == 0) continue;
        auto [it, fresh] = work.try_emplace(part(r));
        if (fresh) it->second = c.work(r.count, k, tensors_in(r));
        most = std::max(most, it->second);
      }
    if (most <= 0) return;
    const Tier t = first.tier(l);
    const double seconds = codec_seconds(t, most);
    w.codec_work[t] += most;
    tier_seconds[t] += seconds;
    w.cost.seconds += seconds;
    w.cost.fixed += seconds;
  };
  if (reduce)
    for (int l = 0; l < top; ++l) {
      if (compressed) codec_work(l, codec(first.tier(l)));
      ring(l, true);
    }
  if (compressed) {
    // Every member's phases, from its part and the tensors inside it (one ring holds one part).
    std::map<std::pair<std::size_t, std::size_t>, std::vector<RingPhase>> by_region;
    const int k = first.levels()[static_cast<std::size_t>(top)].size;
    auto phases_of = [&](const CollectivePlan& g, int m) -> const std::vector<RingPhase>& {
      const Segment r = g.region(size_of(g), top, m, cut);
      auto [it, fresh] = by_region.try_emplace(part(r));
      if (fresh && r.count > 0) it->second = top_codec.phases(r.count, k, tensors_in(r));  // an empty part runs none
      return it->second;
    };
    codec_work(top, top_codec);
    std::size_t most = 0;
    for (const CollectivePlan& g : groups)
      for (std::size_t m = 0; m < g.members().size(); ++m) most = std::max(most, phases_of(g, static_cast<int>(m)).size());
    for (std::size_t i = 0; i < most; ++i) {
      const WireFormat* wire = nullptr;  // the phase's, the same for every member that runs it
      for (const CollectivePlan& g : groups)
        for (std::size_t m = 0; m < g.members().size() && !wire; ++m)
          if (i < phases_of(g, static_cast<int>(m)).size()) wire = phases_of(g, static_cast<int>(m))[i].wire;
      phase(top, *wire, [&](const CollectivePlan& g, int m) {
        const std::vector<RingPhase>& ph = phases_of(g, m);
        if (i >= ph.size()) return std::pair{0.0, 0.0};
        const double bytes = static_cast<double>(g.sent_bytes_of(ph[i].count, top, m, ph[i].reduce, *ph[i].wire, chunk_bytes_));
        return std::pair{bytes, bytes / (k - 1)};
      });
    }
  } else {
    if (reduce) ring(top, true);
    if (gather) ring(top, false);
  }
  if (gather)
    for (int l = top; l-- > 0;) ring(l, false);
  for (const auto& [tu, bytes] : sent) w.uplinks.emplace_back(tu.first, tu.second, bytes);
  for (Tier t : kAllTiers)
    if (tier_seconds[t] > tier_seconds[w.cost.tier]) w.cost.tier = t;
  return w;
}

}  // namespace ft
