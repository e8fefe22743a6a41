#include "comm/topology.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <map>
#include <set>
#include <stdexcept>
#include <tuple>

#include <fmt/format.h>

namespace ft {

namespace {
struct TierRow {
  Tier tier;
  std::string_view name, link, unit;
};
constexpr TierRow kTierTable[] = {
    {Tier::intra_node, "intra_node", "the links between ranks of one node (e.g. NVLink)", "rank"},
    {Tier::inter_node, "inter_node", "each node's uplink to its pod", "node"},
    {Tier::inter_pod, "inter_pod", "each pod's uplink to its site (oversubscription: a smaller rate)", "pod"},
    {Tier::inter_site, "inter_site", "each site's link to the other sites", "site"},
};
static_assert(std::size(kTierTable) == kTiers, "one row per tier");
}  // namespace

std::string_view tier_name(Tier t) { return kTierTable[index(t)].name; }
std::string_view tier_link(Tier t) { return kTierTable[index(t)].link; }
std::string_view tier_unit(Tier t) { return kTierTable[index(t)].unit; }

std::optional<Tier> tier_from_name(std::string_view name) {
  for (Tier t : kAllTiers)
    if (tier_name(t) == name) return t;
  return std::nullopt;
}

std::vector<std::string> tier_names() {
  std::vector<std::string> out;
  for (Tier t : kAllTiers) out.emplace_back(tier_name(t));
  return out;
}

Topology::Topology(std::vector<int> node_of, int nodes_per_pod, int pods_per_site) {
  if (node_of.empty()) throw std::invalid_argument("topology of no ranks");
  nodes_ = *std::max_element(node_of.begin(), node_of.end()) + 1;
  int npp = nodes_per_pod > 0 ? nodes_per_pod : nodes_;
  if (nodes_ % npp != 0)
    throw std::invalid_argument(fmt::format("{} nodes do not split into pods of {}", nodes_, npp));
  pods_ = nodes_ / npp;
  int pps = pods_per_site > 0 ? pods_per_site : pods_;
  if (pods_ % pps != 0) throw std::invalid_argument(fmt::format("{} pods do not split into sites of {}", pods_, pps));
  sites_ = pods_ / pps;
  std::vector<int> seen(static_cast<std::size_t>(nodes_), 0);
  for (int n : node_of) {
    Location l;
    l.node = n;
    l.pod = n / npp;
    l.site = l.pod / pps;
    l.local = seen[static_cast<std::size_t>(n)]++;
    loc_.push_back(l);
  }
}

Topology Topology::emulated(int world, int ranks_per_node, int nodes_per_pod, int pods_per_site) {
  int rpn = ranks_per_node > 0 ? ranks_per_node : world;
  if (world % rpn != 0) throw std::invalid_argument(fmt::format("{} ranks do not split into nodes of {}", world, rpn));
  std::vector<int> node_of(static_cast<std::size_t>(world));
  for (int r = 0; r < world; ++r) node_of[static_cast<std::size_t>(r)] = r / rpn;
  return Topology(std::move(node_of), nodes_per_pod, pods_per_site);
}

Topology Topology::from_hosts(const std::vector<std::string>& host_of_rank, int nodes_per_pod, int pods_per_site) {
  std::map<std::string, int> ids;
  std::vector<int> node_of;
  for (const auto& h : host_of_rank) node_of.push_back(ids.emplace(h, static_cast<int>(ids.size())).first->second);
  return Topology(std::move(node_of), nodes_per_pod, pods_per_site);
}

Topology Topology::from_mapping(const std::vector<std::string>& host_of_rank, const std::vector<int>& pod_of_node,
                                const std::vector<int>& site_of_pod) {
  std::map<std::string, int> ids;
  std::vector<Location> loc;
  std::vector<int> seen;
  for (const auto& h : host_of_rank) {
    int node = ids.emplace(h, static_cast<int>(ids.size())).first->second;
    if (node >= static_cast<int>(seen.size())) seen.resize(static_cast<std::size_t>(node) + 1, 0);
    Location l;
    l.node = node;
    l.pod = pod_of_node.at(static_cast<std::size_t>(node));
    l.site = site_of_pod.at(static_cast<std::size_t>(l.pod));
    l.local = seen[static_cast<std::size_t>(node)]++;
    loc.push_back(l);
  }
  int nodes = static_cast<int>(ids.size());
  int pods = pod_of_node.empty() ? 1 : *std::max_element(pod_of_node.begin(), pod_of_node.end()) + 1;
  int sites = site_of_pod.empty() ? 1 : *std::max_element(site_of_pod.begin(), site_of_pod.end()) + 1;
  return Topology(std::move(loc), nodes, pods, sites);
}

Tier Topology::tier(int a, int b) const {
  const Location &x = location(a), &y = location(b);
  if (x.site != y.site) return Tier::inter_site;
  if (x.pod != y.pod) return Tier::inter_pod;
  if (x.node != y.node) return Tier::inter_node;
  return Tier::intra_node;
}

Tier Topology::span(const std::vector<int>& ranks) const {
  Tier top = Tier::intra_node;
  for (int r : ranks) top = std::max(top, tier(ranks.front(), r));
  return top;
}

int Topology::uplink(int rank, Tier tier) const {
  const Location& l = location(rank);
  return tier == Tier::inter_site ? l.site : tier == Tier::inter_pod ? l.pod : l.node;
}

std::string Topology::describe() const {
  // Counts of each unit's children; "a x b" when they are all equal, else a range.
  auto spread = [](const std::vector<std::set<int>>& children) {
    std::size_t lo = SIZE_MAX, hi = 0;
    for (const auto& c : children) {
      if (c.empty()) continue;
      lo = std::min(lo, c.size());
      hi = std::max(hi, c.size());
    }
    return lo == hi ? fmt::format("{}", lo) : fmt::format("{}-{}", lo, hi);
  };
  std::vector<std::set<int>> ranks_of(static_cast<std::size_t>(nodes_)), nodes_of(static_cast<std::size_t>(pods_)),
      pods_of(static_cast<std::size_t>(sites_));
  for (int r = 0; r < world(); ++r) {
    const Location& l = location(r);
    ranks_of[static_cast<std::size_t>(l.node)].insert(r);
    nodes_of[static_cast<std::size_t>(l.pod)].insert(l.node);
    pods_of[static_cast<std::size_t>(l.site)].insert(l.pod);
  }
  std::string rpn = spread(ranks_of);
  return fmt::format("{} ranks = {} site{} x {} pods/site x {} nodes/pod x {} rank{}/node", world(), sites_,
                     sites_ == 1 ? "" : "s", spread(pods_of), spread(nodes_of), rpn, rpn == "1" ? "" : "s");
}

std::string Topology::table() const {
  std::string out = fmt::format("{:<6} {:<5} {:<5} ranks\n", "site", "pod", "node");
  for (int n = 0; n < nodes_; ++n) {
    std::vector<int> ranks;
    Location where{};
    for (int r = 0; r < world(); ++r)
      if (location(r).node == n) {
        ranks.push_back(r);
        where = location(r);
      }
    out += fmt::format("{:<6} {:<5} {:<5} {}\n", where.site, where.pod, n, fmt::join(ranks, " "));
  }
  return out;
}

HierarchyPlan plan_hierarchy(const Topology& topo, const std::vector<int>& members) {
  HierarchyPlan plan;
  const std::size_t n = members.size();
  // Each member's coordinates relative to the group: its index among group members on its
  // node, its node's index among the group's nodes in its pod, and so on up.
  std::vector<std::array<int, kTiers>> rel(n);
  // Component c of a location, with c = 0 (node-local) .. 3 (site).
  auto unit = [&](int m, int c) {
    const Location& l = topo.location(members[static_cast<std::size_t>(m)]);
    return c == 0 ? l.node : c == 1 ? l.pod : c == 2 ? l.site : 0;
  };
  std::array<int, kTiers> sizes{};
  for (int c = 0; c < kTiers; ++c) {
    // Members grouped by the unit that contains them at this level (node, pod, site, all);
    // within it, the distinct sub-units below are numbered in order of first appearance.
    std::map<int, std::vector<int>> distinct_below;  // unit -> list of sub-unit ids
    std::map<int, int> count;
    for (std::size_t m = 0; m < n; ++m) {
      int u = unit(static_cast<int>(m), c);
      int below = c == 0 ? static_cast<int>(m) : unit(static_cast<int>(m), c - 1);
      auto& list = distinct_below[u];
      auto it = std::find(list.begin(), list.end(), below);
      if (it == list.end()) {
        list.push_back(below);
        it = list.end() - 1;
      }
      rel[m][static_cast<std::size_t>(c)] = static_cast<int>(it - list.begin());
    }
    for (const auto& [u, list] : distinct_below) count[u] = static_cast<int>(list.size());
    int first = count.begin()->second;
    for (const auto& [u, k] : count) {
      if (k != first && plan.even) {
        plan.even = false;
        const char* what[] = {"nodes", "pods", "sites", "job"};
        plan.why_uneven = fmt::format("the group's members are spread unevenly over {} ({} vs {})", what[c], first, k);
      }
    }
    sizes[static_cast<std::size_t>(c)] = first;
  }
  if (!plan.even) return plan;
  for (int c = 0; c < kTiers; ++c) {
    int k = sizes[static_cast<std::size_t>(c)];
    if (k <= 1) continue;
    HierarchyLevel level{static_cast<Tier>(c), k, {}, {}};
    // Sub-group: same containing unit at this level and same relative index at every other level.
    std::map<std::vector<int>, int> colors;
    for (std::size_t m = 0; m < n; ++m) {
      std::vector<int> id = {unit(static_cast<int>(m), c)};
      for (int o = 0; o < kTiers; ++o)
        if (o != c) id.push_back(rel[m][static_cast<std::size_t>(o)]);
      level.color.push_back(colors.emplace(id, static_cast<int>(colors.size())).first->second);
      level.key.push_back(rel[m][static_cast<std::size_t>(c)]);
    }
    plan.levels.push_back(std::move(level));
  }
  return plan;
}

}  // namespace ft
