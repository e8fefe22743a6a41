// Traffic counters: what this process sent, per tier and per kind of traffic, before
// compression (logical) and as it went on the wire; how many messages; and how long each
// tier was busy. Updated from any thread; read as snapshots and differenced per step.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>

#include "comm/topology.h"

namespace ft {

// Why bytes move: data-parallel gradient sync, tensor-parallel activations, pipeline
// activations, and everything else (metrics, checkpoints, benchmarks).
enum class Traffic : int { dp = 0, tp = 1, pp = 2, other = 3 };
inline constexpr int kTrafficKinds = 4;
std::string_view traffic_name(Traffic k);

struct TrafficSnapshot {
  std::array<PerTier<std::uint64_t>, kTrafficKinds> logical{}, wire{}, messages{};
  PerTier<double> busy{};                                   // seconds
  PerTier<double> codec{};                                  // seconds encoding and decoding
  std::array<std::uint64_t, kTrafficKinds> native_bytes{};  // payload of the MPI/NCCL library's own collectives

  std::uint64_t logical_at(Tier t) const;  // summed over kinds
  std::uint64_t wire_at(Tier t) const;
  TrafficSnapshot operator-(const TrafficSnapshot& earlier) const;
};

class TrafficCounters {
 public:
  // One message of `wire` bytes standing for `logical` bytes of data.
  void count(Traffic kind, Tier tier, std::uint64_t logical, std::uint64_t wire);
  void busy(Tier tier, double seconds);
  void codec(Tier tier, double seconds);
  void native(Traffic kind, std::uint64_t bytes);
  TrafficSnapshot snapshot() const;

 private:
  std::array<PerTier<std::atomic<std::uint64_t>>, kTrafficKinds> logical_{}, wire_{}, messages_{};
  PerTier<std::atomic<double>> busy_{}, codec_{};
  std::array<std::atomic<std::uint64_t>, kTrafficKinds> native_{};
};

// The process's counters, shared by every communicator.
TrafficCounters& traffic();

}  // namespace ft
