// The whole GPT stage: gradient against finite differences (double precision), the
// initialisation's statistics and reproducibility, and the sharding of parameters.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>

#include "models/gpt.h"
#include "models/ops.h"

namespace ft {
namespace {

GptShape tiny_shape() { return GptShape{11, 6, 2, 2, 8}; }

struct Batch {
  Tensor tokens, targets;
};

Batch random_batch(const GptShape& s, int B, std::uint64_t seed) {
  Batch b{Tensor({B, s.context}, DType::i32), Tensor({B, s.context}, DType::i32)};
  std::mt19937_64 g(seed);
  for (std::int64_t i = 0; i < b.tokens.numel(); ++i) {
    b.tokens.data<std::int32_t>()[i] = static_cast<std::int32_t>(g() % static_cast<unsigned>(s.vocab));
    b.targets.data<std::int32_t>()[i] = static_cast<std::int32_t>(g() % static_cast<unsigned>(s.vocab));
  }
  return b;
}

// Larger weights than GPT-2's 0.02 so that every path carries a gradient well above the
// finite-difference noise.
void randomise(GptStage& m, std::uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> d(0.0, 0.3);
  std::vector<double> v(static_cast<std::size_t>(m.params().numel()));
  for (auto& x : v) x = d(g);
  ops::from_host(m.params().flat_values(), v);
}

// d loss / d theta for sampled elements of every tensor, against central differences.
// Double precision with h = 1e-5: agreement to 1e-6 relative (1e-8 absolute) is far below
// any error a wrong backward makes and far above rounding.
TEST(Gpt, GradientMatchesFiniteDifferencesInEveryTensor) {
  const GptShape s = tiny_shape();
  const int B = 2;
  GptStage m(s, StagePlan::whole(s), B, 1, DType::f64);
  randomise(m, 7);
  Batch batch = random_batch(s, B, 3);
  ops::zero(m.params().flat_grads());
  m.forward(0, &batch.tokens, nullptr, &batch.targets);
  m.backward(0, nullptr, 1.0);
  std::vector<double> grads = ops::to_host(m.params().flat_grads());
  std::vector<double> values = ops::to_host(m.params().flat_values());
  auto loss_at = [&](std::size_t i, double x) {
    double keep = values[i];
    values[i] = x;
    ops::from_host(m.params().flat_values(), values);
    double l = m.forward(0, &batch.tokens, nullptr, &batch.targets);
    values[i] = keep;
    return l;
  };
  std::mt19937_64 g(11);
  const double h = 1e-5;
  for (const ParamInfo& p : m.params().infos()) {
    for (int k = 0; k < 6; ++k) {
      auto i = static_cast<std::size_t>(p.offset + static_cast<std::int64_t>(g() % static_cast<std::uint64_t>(p.numel())));
      double numeric = (loss_at(i, values[i] + h) - loss_at(i, values[i] - h)) / (2 * h);
      EXPECT_NEAR(grads[i], numeric, 1e-8 + 1e-6 * std::abs(numeric)) << p.name << " element " << i - static_cast<std::size_t>(p.offset);
    }
  }
}

TEST(Gpt, InitialLossIsNearLogVocab) {
  GptShape s{256, 32, 2, 4, 64};
  GptStage m(s, StagePlan::whole(s), 4, 1);
  m.init(1);
  Batch batch = random_batch(s, 4, 5);
  double loss = m.forward(0, &batch.tokens, nullptr, &batch.targets);
  EXPECT_NEAR(loss, std::log(256.0), 0.02 * std::log(256.0));
}

TEST(Gpt, InitIsGpt2sAndReproducible) {
  GptShape s{256, 64, 4, 4, 128};
  GptStage a(s, StagePlan::whole(s), 1, 1), b(s, StagePlan::whole(s), 1, 1), c(s, StagePlan::whole(s), 1, 1);
  a.init(1);
  b.init(1);
  c.init(2);
  auto va = ops::to_host(a.params().flat_values());
  EXPECT_EQ(va, ops::to_host(b.params().flat_values()));
  EXPECT_NE(va, ops::to_host(c.params().flat_values()));
  for (const ParamInfo& p : a.params().infos()) {
    auto v = ops::to_host(a.params().value(a.params().index(p.name)));
    double mean = 0, sq = 0;
    for (double x : v) mean += x, sq += x * x;
    mean /= static_cast<double>(v.size());
    double std = std::sqrt(sq / static_cast<double>(v.size()) - mean * mean);
    if (p.init_std > 0) {
      EXPECT_NEAR(std, p.init_std, 0.05 * p.init_std) << p.name;
      EXPECT_NEAR(mean, 0.0, 5 * p.init_std / std::sqrt(static_cast<double>(v.size()))) << p.name;
    } else {
      EXPECT_EQ(std, 0.0) << p.name;
      EXPECT_EQ(mean, p.init_value) << p.name;
    }
  }
  // Residual output projections are scaled by 1/sqrt(2 L).
  const ParamInfo& proj = a.params().infos()[static_cast<std::size_t>(a.params().index("blocks.0.attn.proj.weight"))];
  EXPECT_DOUBLE_EQ(proj.init_std, 0.02 / std::sqrt(8.0));
}

TEST(Params, TensorParallelShardsTileTheFullTensorExactlyOnce) {
  for (Shard shard : {Shard::rows, Shard::cols, Shard::qkv_rows}) {
    for (int tp : {1, 2, 4}) {
      Shape full = shard == Shard::qkv_rows ? Shape{24, 8} : Shape{8, 8};
      std::multiset<std::int64_t> seen;
      for (int r = 0; r < tp; ++r) {
        ParamSet ps;
        ps.add(ParamInfo{"w", full, {}, shard}, tp);
        for (auto i : ParamSet::full_indices(ps.infos()[0], tp, r)) seen.insert(i);
      }
      ASSERT_EQ(seen.size(), static_cast<std::size_t>(numel_of(full)));
      for (std::int64_t i = 0; i < numel_of(full); ++i) EXPECT_EQ(seen.count(i), 1u) << "tp " << tp << " index " << i;
    }
  }
}

TEST(Params, QkvShardHoldsItsHeadsOfQKAndV) {
  // Full [3C, C] with C = 4, tp = 2: rank 1 holds rows 2-3 of Q, K and V.
  ParamSet ps;
  ps.add(ParamInfo{"qkv", {12, 4}, {}, Shard::qkv_rows}, 2);
  EXPECT_EQ(ps.infos()[0].local_shape, (Shape{6, 4}));
  auto idx = ParamSet::full_indices(ps.infos()[0], 2, 1);
  std::vector<std::int64_t> rows;
  for (std::size_t i = 0; i < idx.size(); i += 4) rows.push_back(idx[i] / 4);
  EXPECT_EQ(rows, (std::vector<std::int64_t>{2, 3, 6, 7, 10, 11}));
}

}  // namespace
}  // namespace ft
