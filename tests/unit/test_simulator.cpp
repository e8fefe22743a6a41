// `fibertrain simulate` at scale: links fast enough cost what free links cost, the step does not
// shorten as a link slows, the rate the utilisation search returns is the slowest that keeps
// the step within its bound, and an outer sync sends its bytes once a period and hides its
// all-reduce behind a delay. (Bytes against traffic counters and step times against
// measured runs: tests/e2e/test_simulate.py.)
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "comm/error.h"
#include "trainer/claims/simulator.h"

namespace ft {
namespace {

const std::string kLlama = FIBERTRAIN_SOURCE_DIR "/configs/llama3-405b-16k.yaml";
const std::string kH100 = FIBERTRAIN_SOURCE_DIR "/configs/profiles/h100-claims.yaml";

Config llama(const std::vector<std::string>& sets) {
  std::vector<Override> overrides;
  for (const auto& s : sets) overrides.push_back(parse_override(s));
  return load_config(kLlama, overrides);
}

double step(const std::vector<std::string>& sets) { return simulate(llama(sets), load_device_profile(kH100)).step_time; }

// Collectives reserve a shared uplink when their worker queues them, out of time order; one
// queued for later must not hold back one that runs now. At a rate no transfer notices, the
// step is the step with the tier free.
TEST(Simulator, AnUnnoticeableRateCostsWhatAFreeLinkCosts) {
  const DeviceProfile dev = load_device_profile(kH100);
  for (Tier t : {Tier::inter_node, Tier::inter_pod}) {
    Config c = llama({});
    c.links.tier[t].reset();
    const double free = simulate(c, dev).step_time;
    c.links.tier[t] = LinkConfig{BitRate{1e30}, Duration{}};
    EXPECT_NEAR(simulate(c, dev).step_time, free, 1e-6 * free) << tier_name(t);
  }
}

TEST(Simulator, TheStepDoesNotShortenAsTheTopLinkSlows) {
  double last = 0;
  for (const char* rate : {"1000Tbit", "100Tbit", "10Tbit", "1Tbit"}) {
    const double s = step({"parallel.zero=1", std::string("links.inter_pod.bandwidth=") + rate});
    EXPECT_GE(s, last * (1 - 1e-9)) << rate;
    last = s;
  }
}

TEST(Simulator, TheRateNeededIsTheSlowestThatKeepsTheUtilisation) {
  const Config cfg = llama({"parallel.zero=1"});
  const DeviceProfile dev = load_device_profile(kH100);
  const RateNeeded r = rate_needed(cfg, dev, Tier::inter_pod, 0.9);
  ASSERT_TRUE(r.reachable);
  const double target = r.free_step / 0.9;
  EXPECT_LE(r.at_rate.step_time, target);
  EXPECT_EQ(r.at_config.links.tier[Tier::inter_pod]->bandwidth.bits_per_second, r.bits_per_second);
  Config slower = cfg;
  slower.links.tier[Tier::inter_pod]->bandwidth.bits_per_second = r.bits_per_second / 1.01;
  EXPECT_GT(simulate(slower, dev).step_time, target);
}

TEST(Simulator, LatencyAloneCanPutTheUtilisationOutOfReach) {
  // ZeRO-3 regathering every unit across the pods for every micro-batch: 2 ms per ring step
  // costs more than a tenth of the step whatever the rate.
  const RateNeeded r = rate_needed(llama({"parallel.reshard=use", "links.inter_pod.latency=2ms"}), load_device_profile(kH100),
                                   Tier::inter_pod, 0.9);
  EXPECT_FALSE(r.reachable);
  EXPECT_GT(r.latency_step, r.free_step / 0.9);
}

// Under sync.outer across the pods the every-step sync stays inside them; one copy of a
// fragment per pod and sync crosses, so the outer bytes per step shrink as 1/every, and so
// does the time the syncs add.
TEST(Simulator, TheOuterSyncCrossesTheTierOncePerPeriod) {
  const DeviceProfile dev = load_device_profile(kH100);
  const Simulation s10 = simulate(llama({"parallel.zero=1", "sync.outer={tier: inter_pod, every: 10}"}), dev);
  const Simulation s40 = simulate(llama({"parallel.zero=1", "sync.outer={tier: inter_pod, every: 40, fragments: 4}"}), dev);
  const auto outer = static_cast<std::size_t>(SimKind::outer);
  EXPECT_EQ(s10.bytes[static_cast<std::size_t>(SimKind::gradient)][Tier::inter_pod], 0);
  EXPECT_GT(s10.bytes[outer][Tier::inter_pod], 0);
  EXPECT_NEAR(s10.bytes[outer][Tier::inter_pod] * 10, s40.bytes[outer][Tier::inter_pod] * 40,
              1e-9 * s10.bytes[outer][Tier::inter_pod] * 10);
  EXPECT_EQ(s10.period, 10);
  // Four times the syncs per step, at the same step inside the pods, cost more per step.
  EXPECT_EQ(s10.inner_step, s40.inner_step);
  EXPECT_GT(s10.outer, s40.outer);
  EXPECT_GT(s40.outer, 0);
}

// A delay lets the all-reduce run behind the next inner steps: at a rate where it takes
// less than one inner step, a delay of 3 exposes none of its wire time.
TEST(Simulator, ADelayHidesTheOuterAllReduce) {
  const DeviceProfile dev = load_device_profile(kH100);
  const std::string sets = "sync.outer={tier: inter_pod, every: 20, delay: ";
  const Simulation none = simulate(llama({"parallel.zero=1", "links.inter_pod.bandwidth=2Tbit", sets + "0}"}), dev);
  const Simulation hidden = simulate(llama({"parallel.zero=1", "links.inter_pod.bandwidth=2Tbit", sets + "3}"}), dev);
  EXPECT_GT(none.exposed[Tier::inter_pod], 0);
  EXPECT_EQ(hidden.exposed[Tier::inter_pod], 0);
  EXPECT_LT(hidden.step_time, none.step_time);
  EXPECT_GE(hidden.step_time, hidden.inner_step);
}

TEST(Simulator, RefusesAUtilisationOutsideZeroToOne) {
  EXPECT_THROW(rate_needed(llama({}), load_device_profile(kH100), Tier::inter_pod, 1.0), UserError);
}

}  // namespace
}  // namespace ft
