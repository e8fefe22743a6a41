// Compressed all-reduce through the hierarchy: linear codecs equal the dense sum to their
// precision, topk of everything and int8 on integers equal it exactly, PowerSGD of full
// rank reconstructs it, every rank ends with the same bits, and the counters carry wire
// bytes against dense logical bytes.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>

#include "comm/mpi_transport.h"
#include "tests/mpi/mpi_world.h"

namespace ft {
namespace {

using test::world_rank;
using test::world_size;

// Clusters with the data-parallel group spanning several tiers when the world allows it.
std::vector<std::pair<const char*, Topology>> topologies() {
  int w = world_size();
  std::vector<std::pair<const char*, Topology>> out = {{"one rank per node", Topology::emulated(w, 1, 0, 0)}};
  if (w == 8) out.emplace_back("2 pods x 2 nodes x 2 ranks", Topology::emulated(8, 2, 2, 0));
  if (w == 4) out.emplace_back("2 pods x 2 nodes x 1", Topology::emulated(4, 1, 2, 0));
  return out;
}

std::unique_ptr<Communicator> world_comm(const Topology& topo) {
  auto c = test::world_comm(topo, Traffic::dp);
  c->set_chunk_bytes(1024);
  return c;
}

Tier top_tier(const Topology& t) {
  Tier top = Tier::intra_node;
  for (int r = 0; r < t.world(); ++r) top = std::max(top, t.tier(0, r));
  return top;
}

std::vector<float> dense_sum(const std::vector<float>& x) {
  std::vector<double> in(x.begin(), x.end()), out(x.size());
  MPI_Allreduce(in.data(), out.data(), static_cast<int>(in.size()), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  return {out.begin(), out.end()};
}

double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

// True when every rank holds exactly the bits rank 0 holds.
bool same_on_every_rank(const std::vector<float>& v) {
  std::vector<float> root = v;
  MPI_Bcast(root.data(), static_cast<int>(root.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);
  int mine = std::memcmp(root.data(), v.data(), v.size() * sizeof(float)) == 0 ? 1 : 0, all = 0;
  MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return all == 1;
}

std::vector<float> random_data(std::size_t n, int rank) {
  std::mt19937 g(static_cast<unsigned>(1000 + rank));
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

TierCodecs codecs_at(std::initializer_list<std::pair<Tier, CodecSpec>> list) {
  TierCodecs c{};
  for (auto& [t, s] : list) c[static_cast<std::size_t>(index(t))] = s;
  return c;
}

CodecSpec make(const std::string& name) { return default_spec(name); }

TEST(Compression, LinearCodecsEqualTheDenseSumToTheirPrecision) {
  for (auto& [name, topo] : topologies()) {
    auto c = world_comm(topo);
    for (Algorithm a : {Algorithm::ring, Algorithm::hierarchical}) {
      for (std::string k : {"fp16", "bf16"}) {
        // Every tier compressed: each rounding is within half an ulp of a partial sum.
        TierCodecs all{};
        for (auto& s : all) s = make(k);
        BucketCodecs state(all);
        std::vector<float> x = random_data(3001, world_rank()), expect = dense_sum(x);
        c->all_reduce_compressed(host_buffer(x.data(), x.size()), ReduceOp::sum, a, state, {});
        double err = relative_error(x, expect), bound = k == "fp16" ? 2e-3 : 1.5e-2;
        EXPECT_LT(err, bound) << name << " " << algorithm_name(a) << " " << k;
        EXPECT_GT(err, 0.0) << "a lossy codec left no trace";
        EXPECT_TRUE(same_on_every_rank(x)) << name << " " << k;
      }
    }
  }
}

TEST(Compression, TopkOfEverythingAndInt8OnIntegersAreExact) {
  for (auto& [name, topo] : topologies()) {
    auto c = world_comm(topo);
    Tier top = top_tier(topo);
    CodecSpec all = make("topk");
    all.params["ratio"] = 1.0;
    CodecSpec ring = make("int8"), gathered = make("int8");
    ring.reduce = Reduce::ring;  // partial sums of integers stay integers: every hop is exact too
    gathered.reduce = Reduce::gather;
    for (const CodecSpec& s : {all, ring, gathered}) {
      for (Algorithm a : {Algorithm::ring, Algorithm::hierarchical}) {
        BucketCodecs state(codecs_at({{top, s}}));
        std::vector<float> x(2049);
        for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(static_cast<int>((i * 7 + static_cast<std::size_t>(world_rank()) * 3) % 21) - 10);
        std::vector<float> expect = dense_sum(x);
        c->all_reduce_compressed(host_buffer(x.data(), x.size()), ReduceOp::sum, a, state, {});
        EXPECT_EQ(x, expect) << name << " " << algorithm_name(a) << " " << s.name << " " << reduce_names()[static_cast<std::size_t>(s.reduce)];
      }
    }
  }
}

// Feedback by difference: every rank outputs the same running estimate, and on a constant
// input it converges to the dense sum.
TEST(Compression, DifferenceFeedbackEstimateConvergesToTheSum) {
  for (auto& [name, topo] : topologies()) {
    auto c = world_comm(topo);
    CodecSpec s = make("int4");
    s.feedback = Feedback::difference;
    for (Algorithm a : {Algorithm::ring, Algorithm::hierarchical}) {
      BucketCodecs state(codecs_at({{top_tier(topo), s}}));
      const std::vector<float> x = random_data(3001, world_rank()), expect = dense_sum(x);
      std::vector<double> errs;
      std::vector<float> y;
      for (int step = 0; step < 12; ++step) {
        y = x;
        c->all_reduce_compressed(host_buffer(y.data(), y.size()), ReduceOp::sum, a, state, {});
        ASSERT_TRUE(same_on_every_rank(y)) << name << " step " << step;
        errs.push_back(relative_error(y, expect));
      }
      EXPECT_GT(errs.front(), 1e-3) << name << ": int4 loses something at first";
      EXPECT_LT(errs.back(), 1e-5) << name << " " << algorithm_name(a);
      // Checkpoints carry the reference and the estimate, not a residual.
      std::vector<std::string> names;
      for (auto& [what, v] : state.state()) names.push_back(what);
      std::string top(tier_name(top_tier(topo)));
      EXPECT_EQ(names, (std::vector<std::string>{top + "/reference", top + "/estimate"})) << name;
    }
  }
}

// As training uses it: averaged, on inputs that change every step. Every rank outputs the
// estimate over p, and the estimate is the sum of what every rank has sent (its reference).
TEST(Compression, DifferenceFeedbackEstimateIsTheSumOfTheReferences) {
  auto topo = Topology::emulated(world_size(), 1, 0, 0);
  auto c = world_comm(topo);
  CodecSpec s = make("sign");
  s.feedback = Feedback::difference;
  BucketCodecs state(codecs_at({{Tier::inter_node, s}}));
  const int p = world_size();
  std::vector<float> y;
  for (int step = 0; step < 10; ++step) {
    y = random_data(2000, world_rank() + 100 * step);
    c->all_reduce_compressed(host_buffer(y.data(), y.size()), ReduceOp::avg, Algorithm::ring, state, {});
    ASSERT_TRUE(same_on_every_rank(y)) << "step " << step;
  }
  std::vector<float>*reference = nullptr, *estimate = nullptr;
  for (auto& [what, v] : state.state()) (what.ends_with("/reference") ? reference : estimate) = v;
  ASSERT_TRUE(reference && estimate);
  ASSERT_EQ(estimate->size(), y.size());
  for (std::size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i] * p, (*estimate)[i], 1e-6 * (1 + std::abs((*estimate)[i])));
  EXPECT_LT(relative_error(*estimate, dense_sum(*reference)), 1e-5);  // the same sums, in another order
}

TEST(Compression, GatheredPayloadsCountWireBytesAgainstDenseLogicalBytes) {
  auto topo = Topology::emulated(world_size(), 1, 0, 0);
  auto c = world_comm(topo);
  const int p = world_size();
  CodecSpec s = make("int8");
  s.params["block"] = 128;
  s.reduce = Reduce::gather;
  BucketCodecs state(codecs_at({{Tier::inter_node, s}}));
  const std::size_t n = 128 * 64;
  std::vector<float> x = random_data(n, world_rank());
  TrafficSnapshot before = traffic().snapshot();
  c->all_reduce_compressed(host_buffer(x.data(), n), ReduceOp::sum, Algorithm::ring, state, {});
  TrafficSnapshot d = traffic().snapshot() - before;
  const std::uint64_t payload = n + 4 * (n / 128);
  EXPECT_EQ(d.wire_at(Tier::inter_node), static_cast<std::uint64_t>(p - 1) * payload);
  double dense = 2.0 * (p - 1) / p * 4.0 * n;
  EXPECT_NEAR(static_cast<double>(d.logical_at(Tier::inter_node)), dense, dense * 1e-3 + 64);
}

// A quantizer reduced in the ring: 2 (p - 1) / p of its payload per member, counted message
// by message (segments of whole blocks, messages of whole blocks of about the chunk), against
// (p - 1) payloads gathered. At 8 members int8 sends a quarter of the dense ring's bytes.
TEST(Compression, QuantizedRingSendsTwoPayloadsWhereGatheringSendsPMinusOne) {
  auto c = world_comm(Topology::emulated(world_size(), 1, 0, 0));
  const int p = world_size();
  const std::size_t n = 4096 * static_cast<std::size_t>(p);  // 16 blocks of 256 per member
  auto wire_bytes = [&](const CodecSpec& s) {
    BucketCodecs state(codecs_at({{Tier::inter_node, s}}));
    std::vector<float> x = random_data(n, world_rank());
    TrafficSnapshot before = traffic().snapshot();
    c->all_reduce_compressed(host_buffer(x.data(), n), ReduceOp::sum, Algorithm::ring, state, {});
    EXPECT_TRUE(same_on_every_rank(x)) << s.name;
    return (traffic().snapshot() - before).wire_at(Tier::inter_node);
  };
  CodecSpec ring = make("int8"), gathered = make("int8");
  ring.reduce = Reduce::ring;
  gathered.reduce = Reduce::gather;
  // Chunks of 1024 bytes hold 3 blocks (3 x 260 bytes): a member's 4096 elements go as 5 such
  // messages and one of a block, 4160 bytes, at each of the p - 1 steps of both phases.
  EXPECT_EQ(wire_bytes(ring), 2 * static_cast<std::uint64_t>(p - 1) * (5 * 780 + 260));
  EXPECT_EQ(wire_bytes(gathered), static_cast<std::uint64_t>(p - 1) * (n + 4 * n / 256));
  const std::uint64_t dense = wire_bytes(make("none"));
  EXPECT_EQ(dense, 2 * static_cast<std::uint64_t>(p - 1) * 4096 * 4);
  if (p == 8) {
    EXPECT_LE(static_cast<double>(wire_bytes(ring)), 0.3 * static_cast<double>(dense));
  }
}

// The ring rounds the partial sums of its p - 2 middle hops and the reduced segments again,
// which no member's feedback keeps; gathered, the only roundings are each member's own.
TEST(Compression, QuantizedRingErrorIsTheMembersRoundingPlusTheHops) {
  auto c = world_comm(Topology::emulated(world_size(), 1, 0, 0));
  const std::size_t n = 8192;
  for (std::string k : {"int8", "int4", "fp8"}) {
    double err[2] = {};
    for (Reduce r : {Reduce::gather, Reduce::ring}) {
      CodecSpec s = make(k);
      s.reduce = r;
      s.feedback = Feedback::none;
      BucketCodecs state(codecs_at({{Tier::inter_node, s}}));
      std::vector<float> x = random_data(n, world_rank()), expect = dense_sum(x);
      c->all_reduce_compressed(host_buffer(x.data(), n), ReduceOp::sum, Algorithm::ring, state, {});
      err[r == Reduce::ring] = relative_error(x, expect);
      EXPECT_TRUE(same_on_every_rank(x)) << k;
    }
    if (world_rank() == 0)
      std::printf("%s at p = %d: relative error of one sum, gathered %.3g, ring %.3g\n", k.c_str(), world_size(), err[0],
                  err[1]);
    EXPECT_GT(err[0], 0.0) << k;
    EXPECT_LT(err[1], 3.0 * err[0]) << k;
  }
}

TEST(Compression, CastsHalveTheWireBytes) {
  auto c = world_comm(Topology::emulated(world_size(), 1, 0, 0));
  BucketCodecs state(codecs_at({{Tier::inter_node, make("fp16")}}));
  const std::size_t n = 4096 * static_cast<std::size_t>(world_size());
  std::vector<float> x = random_data(n, world_rank());
  TrafficSnapshot before = traffic().snapshot();
  c->all_reduce_compressed(host_buffer(x.data(), n), ReduceOp::sum, Algorithm::ring, state, {});
  TrafficSnapshot d = traffic().snapshot() - before;
  EXPECT_EQ(2 * d.wire_at(Tier::inter_node), d.logical_at(Tier::inter_node));
  EXPECT_EQ(d.logical_at(Tier::inter_node), 2 * static_cast<std::uint64_t>(world_size() - 1) * 4096 * 4);
}

// Rank >= the smaller side spans the whole column space: P Q^T reproduces the sum.
TEST(Compression, PowerSgdOfFullRankReconstructsTheSum) {
  for (auto& [name, topo] : topologies()) {
    auto c = world_comm(topo);
    Tier top = top_tier(topo);
    CodecSpec s = make("powersgd");
    s.params["rank"] = 4;
    for (Algorithm a : {Algorithm::ring, Algorithm::hierarchical}) {
      BucketCodecs state(codecs_at({{top, s}}));
      // Two matrices (12 x 4 and 4 x 6) and two vectors, laid out back to back.
      std::vector<Matrix> tensors = {{0, 12, 4}, {48, 5, 0}, {53, 4, 6}, {77, 3, 0}};
      std::vector<float> x = random_data(80, world_rank()), expect = dense_sum(x);
      c->all_reduce_compressed(host_buffer(x.data(), x.size()), ReduceOp::sum, a, state, tensors);
      EXPECT_LT(relative_error(x, expect), 1e-5) << name << " " << algorithm_name(a);
      EXPECT_TRUE(same_on_every_rank(x)) << name;
    }
  }
}

// Below full rank the residual keeps exactly what the approximation left out of this
// rank's matrix: its input = P Q_local^T + residual.
TEST(Compression, PowerSgdLowRankKeepsTheRestAsResidual) {
  auto c = world_comm(Topology::emulated(world_size(), 1, 0, 0));
  CodecSpec s = make("powersgd");
  s.params["rank"] = 1;
  BucketCodecs state(codecs_at({{Tier::inter_node, s}}));
  std::vector<Matrix> tensors = {{0, 16, 8}};
  std::vector<float> sum_in(128, 0.0f), sum_out(128, 0.0f);
  for (int step = 0; step < 3; ++step) {
    std::vector<float> x = random_data(128, world_rank() + 10 * step), expect = dense_sum(x);
    for (std::size_t i = 0; i < x.size(); ++i) sum_in[i] += expect[i];
    c->all_reduce_compressed(host_buffer(x.data(), x.size()), ReduceOp::sum, Algorithm::ring, state, tensors);
    for (std::size_t i = 0; i < x.size(); ++i) sum_out[i] += x[i];
  }
  // Everything sent so far plus what every rank still holds back is everything put in.
  std::vector<float>* residual = nullptr;
  for (auto& [what, v] : state.codec(Tier::inter_node).state())
    if (what == "residual") residual = v;
  ASSERT_NE(residual, nullptr);
  std::vector<float> held = dense_sum(*residual);
  double worst = 0;
  for (std::size_t i = 0; i < sum_in.size(); ++i) worst = std::max(worst, std::abs(static_cast<double>(sum_out[i]) + held[i] - sum_in[i]));
  EXPECT_LT(worst, 1e-3);
}

}  // namespace
}  // namespace ft
