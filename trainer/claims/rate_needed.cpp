// The rate a tier needs for a share of the pace its links would allow if free: a search
// over simulated steps (`fibertrain simulate --utilisation`).
#include <cmath>
#include <utility>

#include <fmt/format.h>

#include "comm/error.h"
#include "trainer/claims/simulator.h"

namespace ft {

RateNeeded rate_needed(const Config& cfg, const DeviceProfile& device, Tier tier, double utilisation) {
  if (!(utilisation > 0 && utilisation < 1)) throw UserError(fmt::format("utilisation {}: expected a share in (0, 1)", utilisation));
  RateNeeded r;
  r.tier = tier;
  r.utilisation = utilisation;
  Config c = cfg;
  auto& link = c.links.tier[tier];
  const Duration latency = link ? link->latency : Duration{};
  link.reset();
  const Simulation free = simulate(c, device);
  if (free.uplink_bytes[tier] <= 0)
    throw UserError(fmt::format("no traffic crosses {} in this layout: no rate of it matters", tier_name(tier)));
  r.free_step = free.step_time;
  const double target = r.free_step / utilisation;
  auto at = [&](double bits) {
    link = LinkConfig{BitRate{bits}, latency};
    return simulate(c, device);
  };
  r.latency_step = at(0).step_time;
  if (r.latency_step > target) return r;
  // Found by bisection, assuming the step does not grow as the rate rises (test_simulator
  // checks that on the 405B layout): bracket the rate by decades, then halve the bracket in
  // log space to within 0.5%. `pass` holds the step at `hi`, which keeps the bound.
  double hi = 1e9, lo = 0;
  Simulation pass = at(hi);
  if (pass.step_time <= target) {
    for (lo = hi / 10;; lo /= 10) {
      Simulation s = at(lo);
      if (s.step_time > target) break;
      hi = lo;
      pass = std::move(s);
      if (lo <= 1) {  // a bit per second keeps the bound: no finer answer is of use
        lo = hi;
        break;
      }
    }
  } else {
    do {
      lo = hi;
      hi *= 10;
      pass = at(hi);
    } while (pass.step_time > target && hi < 1e30);
    if (pass.step_time > target) return r;
  }
  while (hi / lo > 1.005) {
    const double mid = std::sqrt(hi * lo);
    Simulation s = at(mid);
    if (s.step_time <= target) {
      hi = mid;
      pass = std::move(s);
    } else {
      lo = mid;
    }
  }
  r.reachable = true;
  r.bits_per_second = hi;
  link = LinkConfig{BitRate{hi}, latency};
  r.at_config = c;
  r.at_rate = std::move(pass);
  return r;
}

}  // namespace ft
