// `fibertrain simulate`: one optimizer step of a config, predicted without running it.
//
// The job is the config's: its rank grid, its topology (emulated nodes, pods, sites) and
// links, its schedule. Every data- or tensor-parallel group runs the same collectives at
// the same moments, so one rank per pipeline stage stands for all; the network is the whole
// job's, so a collective's time is set by the busiest uplink of each tier its rings cross,
// loaded by every rank behind it (as the pacer shares it).
//
//   compute     a stage's matrix-product FLOPs per micro-batch / the profile's rate, split
//               over the units (blocks, embeddings, head) in the order the model uses them;
//               under host_cores, ranks share the machine's cores
//   collectives the ring and hierarchical algorithms' own steps (comm/collective_plan.h):
//               per step, the busiest uplink's bytes / rate + latency, plus the profile's
//               per-message and per-byte costs
//   schedule    the pipeline schedule's actions per stage (make_schedule), each waiting for
//               its input from the neighbouring stage; gradient buckets launched when
//               backward completes their parameters, on a worker that runs one collective at
//               a time; ZeRO-2's two staging buffers; ZeRO-3's all-gather of each unit
//               before its use with the next one prefetched; the tied embedding's all-reduce,
//               the optimizer and the ZeRO parameter all-gather after
//   codecs      a compressed all-reduce's levels on their codecs' wires and the top codec's
//               own phases (Codec::phases); encode and decode time from the profile's
//               seconds per unit of the codec's work
//   host work   the optimizer and codecs, slowed as the machine's ranks share its cores
//   outer sync  (sync.outer) the every-step sync inside the islands; per fragment, each
//               island member's segment all-reduced across the tier on the outer codecs, on
//               a worker that overlaps `delay` inner steps, then gathered in the island; the
//               outer step at the optimizer's cost per parameter; a period's mean step (sim_outer.h)
#pragma once

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "comm/topology.h"
#include "trainer/io/config.h"

namespace ft {

// What a rank's device does per second: measured by a step log, or stated (a YAML profile).
struct DeviceProfile {
  std::string source;
  double forward_flops = 0;   // matrix-product FLOP/s of a rank's forward, its core or device to itself
  double backward_flops = 0;  // ... of its backward
  double optimizer_seconds_per_parameter = 0;  // update (and clipping) per parameter a rank owns, likewise
  double message_seconds = 0;                  // software cost of one message, any tier
  double copy_bytes_per_second = 0;            // moving a byte below the emulated links (0: free)
  int host_cores = 0;                          // cores one machine's ranks share; 0: a device per rank
  double peak_flops = 0;                       // per rank: MFU's denominator
  // Seconds per unit of a codec's work (Codec::work), by codec name, likewise: the codecs
  // its step log ran, or stated.
  std::map<std::string, double> codec_seconds;
};

// How much slower than with a core to itself a rank's host work runs (the optimizer, codecs)
// when `ranks` ranks share the profile's host_cores and work at once; 1 with a device per rank.
inline double host_crowding(const DeviceProfile& d, double ranks) {
  return d.host_cores > 0 ? std::max(1.0, ranks / d.host_cores) : 1.0;
}

// A step log (.h5: rates from its forward, backward and optimizer times, message costs fitted
// to its unthrottled tiers' busy time) or a YAML profile with the fields above. Throws
// UserError.
DeviceProfile load_device_profile(const std::string& path);

// outer: the outer sync's all-reduce across its tier and gather inside the islands.
enum class SimKind : int { gradient = 0, parameter = 1, tensor = 2, pipeline = 3, embedding = 4, outer = 5 };
inline constexpr int kSimKinds = 6;
std::string_view sim_kind_name(SimKind k);

struct Simulation {
  int world = 0;
  // Under sync.outer, the mean over its period of `every` steps: a step whose sync stays in
  // the islands (inner_step) plus what the outer syncs add (outer: waiting for the tier, the
  // islands' gathers, the outer steps). Bytes and exposed times are per step likewise.
  double step_time = 0;
  int period = 1;
  double inner_step = 0, outer = 0;
  double compute = 0;    // forward + backward of the busiest stage's rank, per step
  double optimizer = 0;  // the slowest stage's update
  double bubble = 0;     // idle share of the pipeline's span, the mean over stages (as the trainer's metric)
  double model_flops = 0, mfu = 0;
  PerTier<double> exposed{};  // seconds the compute waited for communication crossing the tier
  // Bytes all ranks send per step, by kind and tier, and through the busiest uplink of each tier.
  std::vector<PerTier<double>> bytes = std::vector<PerTier<double>>(kSimKinds, PerTier<double>{});
  PerTier<double> uplink_bytes{};
  PerTier<int> uplinks{};  // uplinks of the tier in the job
  // The busiest rank's codec work per step at each tier (Codec::work), and its seconds.
  PerTier<double> codec_work{}, codec{};
};

// Throws UserError for what it cannot simulate.
Simulation simulate(const Config& cfg, const DeviceProfile& device);
// The ranks ZeRO shards over in the simulated layout: parallel.dp, or those of one unit of the
// split tier (sync.outer's islands, parallel.shard_within's). Throws UserError as simulate does.
int sharded_dp(const Config& cfg);

// The slowest rate of `tier`'s links (its latency as configured) at which the step takes at
// most 1/utilisation of its time with the tier free (no bandwidth limit, no latency), by
// bisection. Throws UserError when no traffic crosses the tier.
struct RateNeeded {
  Tier tier = Tier::inter_site;
  double utilisation = 0;
  double free_step = 0;     // the step with the tier free
  double latency_step = 0;  // ... with the tier's latency but no bandwidth limit
  bool reachable = false;   // false: the latency alone costs more than 1 - utilisation (or no rate to 1e30 bit/s does)
  double bits_per_second = 0;
  Config at_config;         // the config at that rate
  Simulation at_rate;       // ... and its step
};
RateNeeded rate_needed(const Config& cfg, const DeviceProfile& device, Tier tier, double utilisation);

}  // namespace ft
