// Every claim of docs/claims.md recomputed by hand, with its inputs written out, against the cost
// model; and the model's building blocks against their definitions.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "trainer/claims/cost_model.h"

namespace ft::cost {
namespace {

// The computed value of the row with this id and claim text prefix.
double row(const std::vector<Claim>& rows, const std::string& id, const std::string& prefix) {
  for (const auto& r : rows)
    if (r.id == id && r.claim.rfind(prefix, 0) == 0) return r.computed;
  ADD_FAILURE() << "no row " << id << " '" << prefix << "'";
  return NAN;
}

void expect_rel(double got, double want) { EXPECT_NEAR(got, want, 1e-9 * std::abs(want)) << "want " << want; }

TEST(Claims, EveryRowMatchesAHandCalculation) {
  const auto rows = claims(Scenario{});
  const double day = 86400, month = 30 * day;
  // C1: N = C / (6 D).
  expect_rel(row(rows, "C1", "model size"), 1e26 / (6 * 30e12));  // 5.56e11
  expect_rel(row(rows, "C1", "..."), 1e26 / (6 * 10e12));          // 1.67e12
  // C2: 1e26 FLOPs / (28e6 h x 3600 s/h) per GPU.
  expect_rel(row(rows, "C2", "per-GPU"), 1e26 / 1.008e11);  // 9.92e14
  // C3: 1e20 / 2e15.
  expect_rel(row(rows, "C3", "H100s"), 50000);
  // C4: one 8192-token sequence on 8 GPUs: 6 x 405e9 x 8192 / (8 x 1e15 x 0.4).
  expect_rel(row(rows, "C4", "Llama"), 6 * 405e9 * 8192 / 3.2e15);  // 6.22 s
  // C5: 16384 / 8 sequences of 8192 tokens; 16e12 tokens / (2048 x 8192) steps.
  expect_rel(row(rows, "C5", "sequences"), 2048);
  expect_rel(row(rows, "C5", "tokens"), 2048.0 * 8192);
  expect_rel(row(rows, "C5", "steps"), 16e12 / 16777216.0);
  // C6: 6 x 405e9 x 16e12.
  expect_rel(row(rows, "C6", "compute"), 3.888e25);
  // C7: 405e9 x 4 bytes; x 8 bits in 1 s.
  expect_rel(row(rows, "C7", "gradient"), 1.62e12);
  expect_rel(row(rows, "C7", "rate"), 1.296e13);
  // C8: 8 pods; the top all-reduce carries 2 x 7/8 x 1.62e12 bytes through 3072 x 400e9 / 7
  // bit/s; latency 14 steps x 20 us.
  double bw = 1.75 * 1.62e12 * 8 / (3072 * 400e9 / 7), lat = 14 * 20e-6;
  expect_rel(row(rows, "C8", "latency"), lat / (lat + bw));  // 0.0022
  // C9: n/3 >= 1e15 / 3e12.
  expect_rel(row(rows, "C9", "matrix"), 1000);
  // C10: 500e3 x 2.5 / 16384; 405e9 x sqrt(76.29); 500e3 / 72; step ratio; 14.2 TB over
  // the window shrunk with the step.
  double r = 1.25e6 / 16384, n = 405e9 * std::sqrt(r);
  double step16k = 6 * 405e9 * 8192 / (8 * 0.4e15), step500k = 6 * n * 8192 / (72 * 0.4 * 2.5e15);
  expect_rel(row(rows, "C10", "compute"), r);
  expect_rel(row(rows, "C10", "model"), n);
  expect_rel(row(rows, "C10", "sequences"), 500e3 / 72);
  expect_rel(row(rows, "C10", "step"), step16k / step500k);
  expect_rel(row(rows, "C10", "cross-site"), n * 4 * 8 / (step500k / step16k));
  // C11: 400e3 x 0.65; 50e3 x 0.4 x 1e15 x 2 and 4 months of 30 days.
  expect_rel(row(rows, "C11", "Trainium2"), 260e3);
  expect_rel(row(rows, "C11", "2 months"), 2e19 * 2 * month);
  expect_rel(row(rows, "C11", "4 months"), 2e19 * 4 * month);
  // C12: 90 x 25e3 / 600e3 days.
  expect_rel(row(rows, "C12", "GPT-4"), 3.75);
  // C13: 2e3 x 0.4 x 1e15 x 30 days.
  expect_rel(row(rows, "C13", "2,000"), 8e17 * month);
  // C14: 50e3 GPUs x 4 x 30 x 24 h x $2.
  expect_rel(row(rows, "C14", "50K"), 288e6);
}

TEST(Claims, EveryComputedValueIsWithinAFactorOfTwoOfTheStatedOne) {
  for (const auto& r : claims(Scenario{})) {
    if (r.id == "C8") continue;  // stated as an upper bound
    EXPECT_GT(r.computed / r.stated, 0.5) << r.id << " " << r.claim;
    EXPECT_LT(r.computed / r.stated, 2.0) << r.id << " " << r.claim;
  }
}

TEST(Claims, FlagsMoveTheRowsThatUseThem) {
  Scenario s;
  s.mfu = 0.8;
  auto rows = claims(s);
  expect_rel(row(rows, "C4", "Llama"), 6 * 405e9 * 8192 / (8 * 1e15 * 0.8));
}

TEST(CostModel, CollectiveBytesFollowTheRingFormula) {
  expect_rel(ring_allreduce_bytes(1000, 4), 1500);
  EXPECT_EQ(ring_allreduce_bytes(1000, 1), 0);
  EXPECT_EQ(ring_steps(8), 14);
}

TEST(CostModel, LinkTimeAndTheKnee) {
  expect_rel(link_seconds(1.25e8, 1e9, 0.001, 4), 1.0 + 0.004);
  // 1e8 bytes hide in 0.5 s (after 0.1 s of fixed cost) down to 8e8 bits / 0.4 s.
  expect_rel(knee_bits_per_second(1e8, 0.5, 0.1), 2e9);
  EXPECT_TRUE(std::isinf(knee_bits_per_second(1e8, 0.1, 0.2)));
}

TEST(CostModel, YourQuestionAnswered) {
  // A 1T model on 100K GPUs over 3 sites at 8:1 compression, syncing in 1 s: each site's
  // uplink carries 2 x 2/3 x 4e12 / 8 bytes = 6.67e11 bytes, 5.33 Tbit/s.
  Scenario s;
  s.params = 1e12;
  s.gpus = 100e3;
  s.sites = 3;
  s.compression = 8;
  Answer a = answer(s);
  expect_rel(a.top_bytes_per_group, 4e12 * 4.0 / 3.0 / 8.0);
  expect_rel(a.top_bits_per_second, 4e12 * 4.0 / 3.0 / 8.0 * 8.0);
  expect_rel(a.step_seconds, 6 * 1e12 * 8192 / (8 * 0.4e15));
}

}  // namespace
}  // namespace ft::cost
