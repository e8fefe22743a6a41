// Where ranks sit: (site, pod, node, local) for each rank, and the tier a message between
// two ranks crosses: the highest level at which their locations differ.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ft {

// The tiers, lowest first. Their names and what each one's link is live in one table
// (topology.cpp); per-tier settings and state are PerTier<T>, indexed by the enum; config
// sections, metrics and reports iterate kAllTiers. A fifth tier is one enum value and one
// table row.
enum class Tier : int { intra_node = 0, inter_node = 1, inter_pod = 2, inter_site = 3 };
inline constexpr int kTiers = 4;
inline constexpr std::array<Tier, kTiers> kAllTiers = {Tier::intra_node, Tier::inter_node, Tier::inter_pod,
                                                       Tier::inter_site};

std::string_view tier_name(Tier t);
// What the tier's link is, for docs and messages: "each node's uplink to its pod".
std::string_view tier_link(Tier t);
// The unit whose members talk to each other below the tier: "node" for inter_node, "pod",
// "site" ("rank" for intra_node).
std::string_view tier_unit(Tier t);
std::optional<Tier> tier_from_name(std::string_view name);
// Every tier's name, lowest first.
std::vector<std::string> tier_names();
inline int index(Tier t) { return static_cast<int>(t); }

// One T per tier, indexed by the tier (and, as an array, by its index).
template <class T> struct PerTier : std::array<T, kTiers> {
  using std::array<T, kTiers>::operator[];
  T& operator[](Tier t) { return (*this)[static_cast<std::size_t>(index(t))]; }
  const T& operator[](Tier t) const { return (*this)[static_cast<std::size_t>(index(t))]; }
};

struct Location {
  int site = 0, pod = 0, node = 0, local = 0;  // pod and node are job-wide indices
};

class Topology {
 public:
  Topology() : Topology(std::vector<int>{0}, 0, 0) {}
  // node_of[r] is rank r's node (numbered 0.. by first appearance); `nodes_per_pod`
  // consecutive nodes form a pod and `pods_per_site` pods a site (0 = all of them).
  Topology(std::vector<int> node_of, int nodes_per_pod, int pods_per_site);
  // An emulated cluster on one machine: ranks_per_node consecutive ranks form a node.
  static Topology emulated(int world, int ranks_per_node, int nodes_per_pod, int pods_per_site);
  // Real machines: ranks on the same host form a node.
  static Topology from_hosts(const std::vector<std::string>& host_of_rank, int nodes_per_pod, int pods_per_site);
  // Nodes from hosts, and each node's pod and each pod's site given (0-based, dense).
  static Topology from_mapping(const std::vector<std::string>& host_of_rank, const std::vector<int>& pod_of_node,
                               const std::vector<int>& site_of_pod);

  int world() const { return static_cast<int>(loc_.size()); }
  const Location& location(int rank) const { return loc_.at(static_cast<std::size_t>(rank)); }
  Tier tier(int a, int b) const;
  // The highest tier between any two of `ranks` (tiers nest, so the first rank's to each
  // other rank's is enough); intra_node for fewer than two.
  Tier span(const std::vector<int>& ranks) const;
  // The unit whose uplink a message from `rank` at `tier` leaves by: its node's (intra and
  // inter node), its pod's or its site's; a job-wide index of that unit.
  int uplink(int rank, Tier tier) const;
  int nodes() const { return nodes_; }
  int pods() const { return pods_; }
  int sites() const { return sites_; }
  // "8 ranks = 2 sites x 2 pods/site x 2 nodes/pod x 1 rank/node"
  std::string describe() const;
  // One line per node: its site, pod and ranks.
  std::string table() const;

 private:
  Topology(std::vector<Location> loc, int nodes, int pods, int sites)
      : loc_(std::move(loc)), nodes_(nodes), pods_(pods), sites_(sites) {}
  std::vector<Location> loc_;
  int nodes_ = 1, pods_ = 1, sites_ = 1;
};

// How a hierarchical all-reduce runs over a group: one level per tier the group spans,
// lowest first. At each level the members split into equal sub-groups that differ only at
// that tier; `color` identifies a member's sub-group and `key` its position in it.
struct HierarchyLevel {
  Tier tier;
  int size;                // members per sub-group
  std::vector<int> color;  // per member (by group rank)
  std::vector<int> key;
};

struct HierarchyPlan {
  bool even = true;        // false: members are unevenly spread; use the flat ring
  std::string why_uneven;  // for the warning
  std::vector<HierarchyLevel> levels;
};

// `members` are world ranks in group-rank order.
HierarchyPlan plan_hierarchy(const Topology& topo, const std::vector<int>& members);

}  // namespace ft
