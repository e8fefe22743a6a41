// The simulated job's network (simulator.h): what a collective costs when every group along
// a dimension runs it at once, and what it sends. A collective's time is set, step by step
// of its rings (comm/collective_plan.h), by the busiest uplink of each tier it crosses,
// loaded by every rank behind it as the pacer shares it, plus the profile's per-message and
// per-byte costs. Collectives of one size repeat (buckets, blocks), so each is worked out once.
#pragma once

#include <cstddef>
#include <map>
#include <tuple>
#include <utility>
#include <vector>

#include "comm/collective_plan.h"
#include "comm/grid.h"
#include "comm/pacer.h"
#include "trainer/claims/simulator.h"

namespace ft {

inline constexpr std::size_t kSimWireBytes = 4;  // every exchange carries fp32

using UplinkBytes = std::vector<std::tuple<Tier, int, double>>;  // (tier, uplink, bytes)

// A collective's or transfer's duration, the tier most of it was spent on, and for sharing
// emulated links with what else runs: the bytes through each uplink and the duration's part
// that is not bandwidth (latency, per-message costs).
struct SimCost {
  double seconds = 0;
  Tier tier = Tier::intra_node;
  double fixed = 0;
  const UplinkBytes* uplinks = nullptr;
};

class SimNetwork {
 public:
  // Adds what it sends to `out`'s bytes; finish() sets its busiest uplinks.
  SimNetwork(const Config& cfg, const Topology& topo, const Grid& grid, const DeviceProfile& dev, Simulation& out);

  // Every group along `d` of pipeline stage `stage` (or, for d = -1, every pair of first and
  // last stage: the tied embedding) runs the collective on n elements; `times` per step.
  SimCost collective(int d, int stage, bool hierarchical, std::size_t n, bool reduce, bool gather, SimKind kind,
                     double times);
  // Every pipeline sends n elements from stage `from` to `to`, `times` per step.
  SimCost transfer(int from, int to, std::size_t n, double times);
  // A collective started at `start` that shares its emulated uplinks with the collectives of
  // other stages: each uplink carries one at a time (as the pacer reserves it). Returns its end.
  double occupy(const SimCost& c, double start);
  void finish();

 private:
  using Step = PerTier<std::map<int, double>>;  // one step of concurrent messages: bytes per uplink
  struct Worked {
    SimCost cost;
    PerTier<double> bytes{};
    UplinkBytes uplinks;  // per call
  };
  const std::vector<CollectivePlan>& plans(int d, int stage, bool hierarchical);
  double copy_time(double bytes) const { return dev_.copy_bytes_per_second > 0 ? bytes / dev_.copy_bytes_per_second : 0; }
  // The busiest uplink of each tier sets a step's time.
  double link_time(const Step& step) const;
  // The latency a step pays: its slowest tier's.
  double latency(const Step& step) const;
  Worked work_out(const std::vector<CollectivePlan>& groups, std::size_t n, bool reduce, bool gather);

  const Topology& topo_;
  const Grid& grid_;
  const DeviceProfile& dev_;
  Simulation& out_;
  LinkSpecs links_;
  std::size_t chunk_;
  std::map<std::tuple<int, int, bool>, std::vector<CollectivePlan>> plans_;
  std::map<std::tuple<int, int, bool, std::size_t, bool, bool>, Worked> done_;
  PerTier<std::vector<double>> load_;       // bytes per step through each uplink
  // Each emulated uplink's busy intervals, sorted and merged. Collectives reserve them as
  // their workers issue them, not in time order: a later reservation may start earlier, in a
  // gap, as the pacer would have sent it.
  using Busy = std::vector<std::pair<double, double>>;
  static double reserve(Busy& busy, double start, double seconds);
  PerTier<std::map<int, Busy>> busy_;
};

}  // namespace ft
