#include "trainer/claims/calibration.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <fmt/format.h>

#include "comm/error.h"
#include "trainer/io/config.h"
#include "trainer/claims/cost_model.h"
#include "trainer/io/h5.h"
#include "trainer/io/metrics.h"

namespace ft {
namespace {

// Rows [skip, n) of a [step, rank] dataset, reduced over ranks by `f`.
template <class F> std::vector<double> per_step(const h5::File& f, const std::string& name, std::size_t skip, F reduce) {
  auto shape = f.shape("/steps/" + name);
  auto data = f.read<double>("/steps/" + name);
  std::size_t ranks = shape.size() > 1 ? shape[1] : 1;
  std::vector<double> out;
  for (std::size_t s = skip; s < shape[0]; ++s)
    out.push_back(reduce(std::vector<double>(data.begin() + static_cast<std::ptrdiff_t>(s * ranks),
                                             data.begin() + static_cast<std::ptrdiff_t>((s + 1) * ranks))));
  return out;
}

double max_of(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }

}  // namespace

double Calibration::predict(double bps) const {
  double link = cost::link_seconds(uplink_bytes, bps, latency, latency_steps);
  double tail = cost::link_seconds(tail_bytes, bps, 0, 0) + fixed / std::max(1, buckets);
  return flat + std::max(tail, link + fixed - hideable);
}

double Calibration::knee() const {
  return cost::knee_bits_per_second(uplink_bytes, hideable, latency * latency_steps + fixed);
}

Calibration calibrate(const std::string& path) {
  h5::File f(path, h5::Mode::read);
  const Config cfg = step_log_config(f, path);
  Calibration c;
  c.run = path;
  // The emulated tier with the lowest rate is the bottleneck a sweep varies.
  bool found = false;
  for (Tier t : kAllTiers) {
    const auto& l = cfg.links.tier[t];
    if (!l || l->bandwidth.bits_per_second <= 0) continue;
    if (!found || l->bandwidth.bits_per_second < c.bits_per_second) {
      c.tier = t;
      c.bits_per_second = l->bandwidth.bits_per_second;
      c.latency = l->latency.seconds;
      found = true;
    }
  }
  if (!found) throw UserError(fmt::format("'{}' has no emulated link (links.<tier>.bandwidth) to calibrate against", path));
  if (cfg.parallel.dp < 2) throw UserError(fmt::format("'{}' is not a data-parallel run (parallel.dp < 2)", path));
  if (cfg.parallel.zero >= 2)
    throw UserError(fmt::format("'{}' is a ZeRO-{} run: the calibration models one gradient sync per step, and ZeRO-2 "
                                "and 3 sync every micro-batch (and gather parameters); calibrate on parallel.zero 0 or 1",
                                path, cfg.parallel.zero));
  const std::string tier(tier_name(c.tier));
  const std::size_t steps = f.rows("/steps/step");
  const std::size_t skip = steps > 4 ? 2 : 0;  // the first steps warm caches and connections
  if (steps <= skip) throw UserError(fmt::format("'{}' holds no steps", path));

  // Bytes through one uplink: the ranks behind one unit of the tier send together.
  const char* unit_attr = c.tier == Tier::inter_site ? "rank_site" : c.tier == Tier::inter_pod ? "rank_pod" : "rank_node";
  if (!f.has_attr("/", unit_attr)) throw UserError(fmt::format("'{}' lacks the {} attribute", path, unit_attr));
  std::vector<std::int64_t> unit = f.attr_ints("/", unit_attr);
  auto bytes = f.read<double>("/steps/bytes_wire/" + tier);
  const std::size_t ranks = unit.size();
  std::vector<double> uplink;
  for (std::size_t s = skip; s < steps; ++s) {
    std::map<std::int64_t, double> by_unit;
    for (std::size_t r = 0; r < ranks; ++r) by_unit[unit[r]] += bytes[s * ranks + r];
    double worst = 0;
    for (auto& [u, b] : by_unit) worst = std::max(worst, b);
    uplink.push_back(worst);
  }
  c.uplink_bytes = median(uplink);
  // Latency is paid once per sequential ring step at the tier, in every bucket.
  int fanout = static_cast<int>(std::set<std::int64_t>(unit.begin(), unit.end()).size());
  c.latency_steps = cost::ring_steps(fanout) * static_cast<int>(std::max<std::int64_t>(1, f.attr_int("/", "sync_buckets")));

  c.step_time = median(per_step(f, "step_time", skip, max_of));
  c.exposed = median(per_step(f, "comm_exposed", skip, max_of));
  c.flat = c.step_time - c.exposed;
  auto window = per_step(f, "backward_end", skip, max_of);
  auto start = per_step(f, "sync_start", skip, [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); });
  std::vector<double> hide;
  for (std::size_t i = 0; i < window.size(); ++i) hide.push_back(std::max(0.0, window[i] - start[i]));
  c.hideable = median(hide);
  std::vector<std::int64_t> elements = f.attr_ints("/", "sync_bucket_elements");
  c.buckets = static_cast<int>(elements.size());
  double total = 0;
  for (auto e : elements) total += static_cast<double>(e);
  c.tail_bytes = total > 0 ? c.uplink_bytes * static_cast<double>(elements.back()) / total : 0;
  const double link = cost::link_seconds(c.uplink_bytes, c.bits_per_second, c.latency, c.latency_steps);
  c.hides = link < c.hideable;
  c.fixed = std::max(0.0, c.exposed - link + c.hideable);
  double messages = 0;
  for (Tier t : kAllTiers) messages += median(per_step(f, "messages/" + std::string(tier_name(t)), skip, max_of));
  c.messages = messages;
  const double flops_per_rank = static_cast<double>(f.attr_int("/", "flops_per_token")) * cfg.train.batch *
                                cfg.model.context / static_cast<double>(ranks);
  double compute = median(per_step(f, "forward_time", skip, max_of)) + median(per_step(f, "backward_time", skip, max_of));
  c.compute_rate = compute > 0 ? flops_per_rank / compute : 0;
  return c;
}

}  // namespace ft
