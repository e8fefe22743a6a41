// The simulator's device profile: from a step log, what one rank's forward, backward and
// update ran at, and what its messages cost; or stated in a YAML file.
#include <algorithm>
#include <cmath>
#include <map>
#include <thread>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "comm/codec.h"
#include "comm/error.h"
#include "comm/grid.h"
#include "comm/log.h"
#include "models/gpt.h"
#include "trainer/claims/simulator.h"
#include "trainer/io/config.h"
#include "trainer/io/h5.h"
#include "trainer/io/metrics.h"
#include "trainer/io/yaml_file.h"
#include "trainer/loop/outer_sync.h"
#include "trainer/loop/pipeline.h"

namespace ft {
namespace {

// Per rank, the median over steps [skip, steps) of a [step, rank] dataset (`busy_only`: of
// the steps where it is above 0; 0 when none is).
// `left_out`, by step: steps whose values stand for something else.
std::vector<double> rank_medians(const h5::File& f, const std::string& name, std::size_t skip, bool busy_only = false,
                                 const std::vector<bool>& left_out = {}) {
  auto shape = f.shape("/steps/" + name);
  auto data = f.read<double>("/steps/" + name);
  const std::size_t ranks = shape.size() > 1 ? shape[1] : 1;
  std::vector<double> out;
  for (std::size_t r = 0; r < ranks; ++r) {
    std::vector<double> v;
    for (std::size_t s = skip; s < shape[0]; ++s)
      if ((!busy_only || data[s * ranks + r] > 0) && !(s < left_out.size() && left_out[s])) v.push_back(data[s * ranks + r]);
    out.push_back(v.empty() ? 0 : median(v));
  }
  return out;
}

// Each codec the run used: per tier, the slowest rank's codec time per step (of the steps it
// coded in: PowerSGD's first `start` go dense) over the work the simulator counts for the
// busiest rank (Codec::work), with a core to itself; the median over the tiers it ran at.
void fit_codecs(const h5::File& f, const Config& cfg, std::size_t skip, double crowding, DeviceProfile& d) {
  DeviceProfile unit = d;
  for (Tier t : kAllTiers)
    if (cfg.compression.tier[t] && cfg.compression.tier[t]->codec != "none") unit.codec_seconds[cfg.compression.tier[t]->codec] = 1;
  if (unit.codec_seconds.empty()) return;
  Simulation per_unit;
  try {
    per_unit = simulate(cfg, unit);
  } catch (const UserError& e) {
    log::warn("{}: no codec costs taken from this step log: its run cannot be laid out to count its codecs' work ({})",
              d.source, e.what());
    return;
  }
  // The simulated work is per step; under sync.outer its tier and those above code only on
  // the steps an outer sync starts (with no delay, inside them): their work per such step.
  Tier outer = Tier::inter_site;
  double per_coded_step = 1;
  if (const auto& o = cfg.sync.outer) {
    outer = *tier_from_name(o->tier);
    int coded = 0;
    for (int s = 0; s < o->every; ++s) coded += outer_due(*o, o->fragments, s).empty() ? 0 : 1;
    per_coded_step = static_cast<double>(o->every) / coded;
  }
  std::map<std::string, std::vector<double>> rates;
  for (Tier t : kAllTiers) {
    if (per_unit.codec_work[t] <= 0) continue;
    const double work = per_unit.codec_work[t] * (cfg.sync.outer && t >= outer ? per_coded_step : 1);
    const auto seconds = rank_medians(f, "codec_time/" + std::string(tier_name(t)), skip, true);
    const double slowest = *std::max_element(seconds.begin(), seconds.end());
    if (slowest > 0) rates[cfg.compression.tier[t]->codec].push_back(slowest / crowding / work);
  }
  for (auto& [name, r] : rates) d.codec_seconds[name] = median(r);
}

DeviceProfile from_step_log(const std::string& path) {
  h5::File f(path, h5::Mode::read);
  const Config cfg = step_log_config(f, path);
  const std::size_t steps = f.rows("/steps/step");
  const std::size_t skip = steps > 4 ? 2 : 0;  // the first steps warm caches and connections
  if (steps <= skip) throw UserError(fmt::format("'{}' holds no steps", path));
  const auto& p = cfg.parallel;
  const Grid grid(p.tp, p.pp, p.dp, p.order);
  DeviceProfile d;
  d.source = path;
  d.host_cores = f.has_attr("/", "host_cores") ? static_cast<int>(f.attr_int("/", "host_cores"))
                                               : static_cast<int>(std::thread::hardware_concurrency());
  if (cfg.device == "cuda") d.host_cores = 0;
  const int host_ranks = f.has_attr("/", "host_ranks") ? static_cast<int>(f.attr_int("/", "host_ranks")) : grid.world();
  // The rate a rank would have had with a core to itself.
  const double crowding = host_crowding(d, host_ranks);
  // ZeRO shards the update over the group inside one unit of the split tier, if any.
  int sharded = p.dp;
  try {
    sharded = sharded_dp(cfg);
  } catch (const UserError&) {
    // a run placed by its hosts: no outer split to follow
  }
  // A step that runs an outer sync books its outer step as optimizer time: the inner
  // optimizer's cost is read from the steps without one (when any are left).
  std::vector<bool> outer_steps;
  if (f.exists("/steps/outer_sync")) {
    for (double v : f.read<double>("/steps/outer_sync")) outer_steps.push_back(v > 0);
    if (std::count(outer_steps.begin() + static_cast<std::ptrdiff_t>(std::min(skip, outer_steps.size())), outer_steps.end(),
                   false) == 0)
      outer_steps.clear();
  }
  const auto fwd = rank_medians(f, "forward_time", skip), bwd = rank_medians(f, "backward_time", skip),
             opt = rank_medians(f, "optimizer_time", skip, false, outer_steps);
  const double tokens = static_cast<double>(cfg.train.batch) / p.dp * cfg.model.context;
  std::vector<double> fwd_rate, bwd_rate, opt_cost;
  for (int r = 0; r < grid.world(); ++r) {
    const StagePlan plan = stage_plan(cfg, grid.coord(r));
    const double flops = gpt_stage_forward_flops(cfg.model, plan, tokens);
    const auto i = static_cast<std::size_t>(r);
    if (fwd[i] > 0) fwd_rate.push_back(flops / fwd[i] * crowding);
    if (bwd[i] > 0) bwd_rate.push_back(2 * flops / bwd[i] * crowding);
    const double owned = static_cast<double>(gpt_stage_params(cfg.model, plan).numel()) / (p.zero >= 1 ? sharded : 1);
    opt_cost.push_back(opt[i] / owned / crowding);
  }
  d.forward_flops = median(fwd_rate);
  d.backward_flops = median(bwd_rate);
  d.optimizer_seconds_per_parameter = median(opt_cost);
  d.peak_flops = static_cast<double>(f.attr_int("/", "peak_flops_per_rank"));
  // busy = messages x per-message + bytes / copy rate, least squares over every step and rank
  // of the tiers no link emulation paces.
  double mm = 0, mb = 0, bb = 0, my = 0, by = 0;
  for (Tier t : kAllTiers) {
    // Paced tiers, and those whose ring may code a codec's wire (that time is codec time).
    const auto& codec = cfg.compression.tier[t];
    if (cfg.links.tier[t] || (codec && codec->codec != "none")) continue;
    const std::string tier(tier_name(t));
    auto busy = f.read<double>("/steps/busy/" + tier);
    auto msgs = f.read<double>("/steps/messages/" + tier);
    auto bytes = f.read<double>("/steps/bytes_wire/" + tier);
    const std::size_t start = skip * static_cast<std::size_t>(grid.world());
    for (std::size_t i = start; i < busy.size(); ++i) {
      if (msgs[i] <= 0) continue;
      mm += msgs[i] * msgs[i];
      mb += msgs[i] * bytes[i];
      bb += bytes[i] * bytes[i];
      my += msgs[i] * busy[i];
      by += bytes[i] * busy[i];
    }
  }
  double alpha = 0, gamma = 0;
  const double det = mm * bb - mb * mb;
  if (det > 0) {
    alpha = (my * bb - by * mb) / det;
    gamma = (mm * by - mb * my) / det;
  }
  if (alpha < 0 || gamma < 0 || det <= 0) {
    alpha = mm > 0 ? std::max(0.0, my / mm) : 0;
    gamma = 0;
  }
  d.message_seconds = alpha;
  d.copy_bytes_per_second = gamma > 0 ? 1 / gamma : 0;
  fit_codecs(f, cfg, skip, crowding, d);
  return d;
}

DeviceProfile from_yaml(const std::string& path) {
  const YAML::Node n = read_yaml_file(path, "device profile");
  DeviceProfile d;
  d.source = path;
  auto number = [&](const char* key, double& out, bool required) {
    if (!n[key]) {
      if (required) throw UserError(fmt::format("device profile '{}' lacks {}", path, key));
      return;
    }
    try {
      out = n[key].as<double>();
    } catch (const YAML::Exception&) {
      throw UserError(fmt::format("device profile '{}': {} is not a number", path, key));
    }
    if (!std::isfinite(out) || out < 0) throw UserError(fmt::format("device profile '{}': {} must be >= 0", path, key));
  };
  double cores = 0;
  number("forward_flops", d.forward_flops, true);
  number("backward_flops", d.backward_flops, true);
  number("optimizer_seconds_per_parameter", d.optimizer_seconds_per_parameter, false);
  number("message_seconds", d.message_seconds, false);
  number("copy_bytes_per_second", d.copy_bytes_per_second, false);
  number("host_cores", cores, false);
  number("peak_flops", d.peak_flops, false);
  d.host_cores = static_cast<int>(cores);
  if (const YAML::Node codecs = n["codec_seconds"]) {
    if (!codecs.IsMap())
      throw UserError(fmt::format("device profile '{}': codec_seconds is a map from codec name to seconds per element "
                                  "handled",
                                  path));
    for (const auto& kv : codecs) {
      const auto name = kv.first.as<std::string>();
      if (!find_codec(name)) throw UserError(fmt::format("device profile '{}': codec_seconds: no codec named {}", path, name));
      double& v = d.codec_seconds[name];
      try {
        v = kv.second.as<double>();
      } catch (const YAML::Exception&) {
        throw UserError(fmt::format("device profile '{}': codec_seconds.{} is not a number", path, name));
      }
      if (!std::isfinite(v) || v < 0) throw UserError(fmt::format("device profile '{}': codec_seconds.{} must be >= 0", path, name));
    }
  }
  for (const auto& kv : n) {
    const auto key = kv.first.as<std::string>();
    static const char* known[] = {"forward_flops", "backward_flops", "optimizer_seconds_per_parameter", "message_seconds",
                                  "copy_bytes_per_second", "host_cores", "peak_flops", "codec_seconds"};
    if (std::none_of(std::begin(known), std::end(known), [&](const char* k) { return key == k; }))
      throw UserError(fmt::format("device profile '{}': unknown key '{}'", path, key));
  }
  return d;
}

}  // namespace

DeviceProfile load_device_profile(const std::string& path) {
  const bool yaml = path.ends_with(".yaml") || path.ends_with(".yml");
  return yaml ? from_yaml(path) : from_step_log(path);
}

}  // namespace ft
