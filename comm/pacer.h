// The in-process link emulator. Each throttled tier has a bandwidth and a latency; every
// message the ring, hierarchical and point-to-point algorithms send over that tier waits,
// before it is handed to MPI or NCCL, until it would have crossed the emulated link:
//
//   start   = max(now, link free)          link free = start + bytes / bandwidth
//   release = start + bytes / bandwidth + latency
//
// The link is the sender's uplink at that tier: its node's (intra_node, inter_node), its
// pod's (inter_pod) or its site's (inter_site). Ranks behind one uplink share its "link
// free" time, so they share its bandwidth: through shared memory among the processes of one
// machine, and as an equal static share of the bandwidth across machines. Waiting sleeps
// until shortly before the release and spins only the last moments, leaving the cores to
// compute.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include <mpi.h>

#include "comm/topology.h"

namespace ft {

struct LinkSpec {
  double bytes_per_second = 0;  // 0 = no bandwidth limit
  double latency = 0;           // seconds
  bool throttled() const { return bytes_per_second > 0 || latency > 0; }
};
using LinkSpecs = PerTier<LinkSpec>;

// Steady time in nanoseconds, the same clock in every process of a machine.
std::int64_t monotonic_ns();

class Pacer {
 public:
  // `free_at` holds one "link free" time per (tier, unit): kTiers x world entries, shared
  // with the other processes of this machine (or private, in tests). `machines_behind`
  // gives, per (tier, unit), how many machines share that uplink.
  // `keep` owns the memory behind `free_at`, if anything must.
  Pacer(std::shared_ptr<const Topology> topo, LinkSpecs links, std::atomic<std::int64_t>* free_at,
        std::vector<int> machines_behind, std::shared_ptr<void> keep = {});

  // Collective over `world`: the link state lives in a shared-memory segment per machine
  // (processes that can share memory, by MPI's split). Returns nullptr when no tier is
  // throttled.
  static std::shared_ptr<Pacer> create(MPI_Comm world, std::shared_ptr<const Topology> topo, LinkSpecs links);

  const LinkSpecs& links() const { return links_; }
  // Reserves the uplink that `bytes` sent by world rank `from` over `tier` take, behind
  // what is already reserved on it; returns when the message would have arrived
  // (monotonic ns), or 0 when the tier is not throttled. Reserving a step's chunks before
  // sending the first lets them stream back to back, paying the latency once.
  std::int64_t reserve(int from, Tier tier, std::size_t bytes);
  // Sleeps until `release` (from reserve), spinning only the last moments.
  static void wait_until(std::int64_t release);
  // The uplink a message from `from` over `tier` takes, as an index into free_at.
  std::size_t link_of(int from, Tier tier) const;

 private:
  std::shared_ptr<const Topology> topo_;
  LinkSpecs links_;
  std::atomic<std::int64_t>* free_at_;
  std::vector<int> machines_;
  std::shared_ptr<void> keep_;
};

}  // namespace ft
