// The simulated job's network (simulator.h): what a collective costs when every group along
// a dimension runs it at once, and what it sends. A collective's time is set, step by step
// of its rings (comm/collective_plan.h), by the busiest uplink of each tier it crosses,
// loaded by every rank behind it as the pacer shares it, plus the profile's per-message and
// per-byte costs. Collectives of one size repeat (buckets, blocks), so each is worked out once.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <tuple>
#include <utility>
#include <vector>

#include "comm/collective_plan.h"
#include "comm/compression.h"
#include "comm/grid.h"
#include "comm/pacer.h"
#include "trainer/claims/simulator.h"

namespace ft {

inline constexpr std::size_t kSimWireBytes = 4;  // fp32: every exchange but a codec's

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
  // Adds what it sends to `out`'s bytes; finish() sets its busiest uplinks and codec work.
  // `codecs`: each tier's, for the compressed all-reduces. `dp_groups`: the groups the
  // every-step data-parallel sync runs in (the grid's, or the islands under sync.outer).
  SimNetwork(const Config& cfg, const Topology& topo, const Grid& grid, const DeviceProfile& dev, const TierCodecs& codecs,
             std::vector<std::vector<int>> dp_groups, Simulation& out);

  // Every group along `d` of pipeline stage `stage` (or, for d = -1, every pair of first and
  // last stage: the tied embedding) runs the collective on n elements; `times` per step.
  // `tensors`: an all-reduce through the config's codecs (comm/compressed.cpp), of a bucket
  // with these tensors inside.
  SimCost collective(int d, int stage, bool hierarchical, std::size_t n, bool reduce, bool gather, SimKind kind,
                     double times, const std::vector<Matrix>* tensors = nullptr);
  // Every group of `groups` (of any stages) runs the collective at once, group i on sizes[i]
  // elements, through the codecs when `compressed`; `times` per step. Accounted apart from the
  // stages' collectives (codec work: the busiest member of any group).
  SimCost collective(const std::vector<CollectivePlan>& groups, const std::vector<std::size_t>& sizes, bool reduce,
                     bool gather, SimKind kind, double times, bool compressed);
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
    PerTier<double> codec_work{};  // the busiest member's, per call
  };
  const std::vector<CollectivePlan>& plans(int d, int stage, bool hierarchical);
  // Adds what one collective sends `times` per step to the job's bytes, uplinks and codec
  // work (`stage`'s; -1 for the collectives over groups given).
  void account(const Worked& w, int stage, SimKind kind, double times);
  double copy_time(double bytes) const { return dev_.copy_bytes_per_second > 0 ? bytes / dev_.copy_bytes_per_second : 0; }
  // The busiest uplink of each tier sets a step's time.
  double link_time(const Step& step) const;
  // The latency a step pays: its slowest tier's.
  double latency(const Step& step) const;
  // Group i on sizes[i] elements (cut at tensor boundaries, for a codec that needs whole
  // matrices, only when every size is the same).
  Worked work_out(const std::vector<CollectivePlan>& groups, const std::vector<std::size_t>& sizes, bool reduce,
                  bool gather, const std::vector<Matrix>* tensors);
  // The codec a tier's level runs (none: the dense fp32 ring), and what `work` of it costs.
  const Codec& codec(Tier t) const { return *codecs_[t]; }
  double codec_seconds(Tier t, double work) const;

  const Topology& topo_;
  const Grid& grid_;
  const DeviceProfile& dev_;
  Simulation& out_;
  LinkSpecs links_;
  std::size_t chunk_bytes_;
  PerTier<std::unique_ptr<Codec>> codecs_;
  std::map<std::tuple<int, int, bool>, std::vector<CollectivePlan>> plans_;
  std::vector<std::vector<int>> dp_groups_;
  std::map<std::tuple<int, int, bool, std::size_t, bool, bool, const void*>, Worked> done_;
  std::vector<std::unique_ptr<Worked>> given_;  // the collectives over groups given (their costs point into them)
  std::map<int, PerTier<double>> codec_work_;  // by stage, per step
  PerTier<std::vector<double>> load_;       // bytes per step through each uplink
  // Each emulated uplink's busy intervals, sorted and merged. Collectives reserve them as
  // their workers issue them, not in time order: a later reservation may start earlier, in a
  // gap, as the pacer would have sent it.
  using Busy = std::vector<std::pair<double, double>>;
  static double reserve(Busy& busy, double start, double seconds);
  PerTier<std::map<int, Busy>> busy_;
};

}  // namespace ft
