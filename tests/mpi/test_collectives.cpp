// Ring and hierarchical collectives against the MPI library's own, exactly, and the
// traffic counters against the hierarchical traffic formula, on several emulated topologies:
// over MPI, and over the NCCL transport on the CPU model of NCCL (tests/mpi/mpi_world.h),
// where each level is NCCL's collective counted as the ring would send it.
//
// Values are small integers stored as floats, so every sum is exact whatever the order of
// additions: any difference is a wrong result, not rounding.
#include <gtest/gtest.h>
#include <mpi.h>

#include <numeric>

#include "comm/mpi_transport.h"
#include "tests/mpi/mpi_world.h"

namespace ft {
namespace {

using test::world_comm;
using test::world_rank;
using test::world_size;

struct NamedTopology {
  const char* name;
  Topology topo;
};

// The emulated clusters this world size allows.
std::vector<NamedTopology> topologies() {
  int w = world_size();
  std::vector<NamedTopology> out = {{"one node", Topology::emulated(w, 0, 0, 0)},
                                    {"one rank per node", Topology::emulated(w, 1, 0, 0)}};
  if (w == 8) {
    out.push_back({"2 sites x 2 pods x 2 nodes x 1", Topology::emulated(8, 1, 2, 2)});
    out.push_back({"4 nodes x 2 ranks", Topology::emulated(8, 2, 0, 0)});
    out.push_back({"2 pods x 2 nodes x 2 ranks", Topology::emulated(8, 2, 2, 0)});
    out.push_back({"uneven: nodes of 3, 2, 3", Topology({0, 0, 0, 1, 1, 2, 2, 2}, 0, 0)});
  }
  if (w == 4) {
    out.push_back({"2 nodes x 2 ranks", Topology::emulated(4, 2, 0, 0)});
    out.push_back({"2 pods x 2 nodes x 1", Topology::emulated(4, 1, 2, 0)});
  }
  return out;
}

std::vector<std::size_t> edge_counts() {
  std::size_t w = static_cast<std::size_t>(world_size());
  return {0, 1, 2, 3, w - 1, w, w + 1, 7 * w + 3, 1000, 4099, 65536 + 5};
}

template <class T> std::vector<T> inputs(std::size_t n, int rank) {
  std::vector<T> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<T>((static_cast<int>(i * 7) + rank * 13) % 31 - 15);
  return v;
}

template <class T> std::vector<T> reference_sum(const std::vector<T>& mine) {
  std::vector<T> out(mine.size());
  MPI_Datatype t = std::is_same_v<T, float> ? MPI_FLOAT : std::is_same_v<T, double> ? MPI_DOUBLE
                   : std::is_same_v<T, std::int32_t> ? MPI_INT32_T : MPI_INT64_T;
  MPI_Allreduce(mine.data(), out.data(), static_cast<int>(mine.size()), t, MPI_SUM, MPI_COMM_WORLD);
  return out;
}

template <class T> void all_reduce_matches_mpi(Communicator& c, Algorithm algo, const char* where) {
  for (std::size_t n : edge_counts()) {
    std::vector<T> mine = inputs<T>(n, world_rank());
    std::vector<T> expect = reference_sum(mine);
    std::vector<T> got = mine;
    c.all_reduce(host_buffer(got.data(), n), ReduceOp::sum, algo);
    EXPECT_EQ(got, expect) << where << ", " << algorithm_name(algo) << ", " << to_string(dtype_of<T>()) << ", n=" << n;
  }
}

TEST(Collectives, AllReduceEqualsMpiAllreduceExactly) {
  for (auto& [name, topo] : topologies()) {
    auto c = world_comm(topo);
    for (std::size_t chunk : {std::size_t{64}, std::size_t{1} << 20}) {
      c->set_chunk_bytes(chunk);
      for (Algorithm a : {Algorithm::native, Algorithm::ring, Algorithm::hierarchical}) {
        all_reduce_matches_mpi<float>(*c, a, name);
        all_reduce_matches_mpi<double>(*c, a, name);
        all_reduce_matches_mpi<std::int32_t>(*c, a, name);
        all_reduce_matches_mpi<std::int64_t>(*c, a, name);
      }
    }
  }
}

TEST(Collectives, AverageIsTheSumOverTheGroupSize) {
  auto c = world_comm(Topology::emulated(world_size(), 1, 0, 0));
  for (Algorithm a : {Algorithm::native, Algorithm::ring, Algorithm::hierarchical}) {
    std::vector<double> v = inputs<double>(1001, world_rank());
    std::vector<double> expect = reference_sum(v);
    for (auto& x : expect) x /= world_size();
    c->all_reduce(host_buffer(v.data(), v.size()), ReduceOp::avg, a);
    EXPECT_EQ(v, expect) << algorithm_name(a);
  }
}

TEST(Collectives, ReduceScatterAndAllGatherEqualMpisExactly) {
  for (auto& [name, topo] : topologies()) {
    auto c = world_comm(topo);
    c->set_chunk_bytes(128);
    for (std::size_t n : edge_counts()) {
      std::vector<float> mine = inputs<float>(n, world_rank());
      std::vector<float> sum = reference_sum(mine);
      for (Algorithm a : {Algorithm::native, Algorithm::ring, Algorithm::hierarchical}) {
        Segment seg = c->owned(n, a);
        std::vector<float> buf = mine;
        c->reduce_scatter(host_buffer(buf.data(), n), ReduceOp::sum, a);
        EXPECT_TRUE(std::equal(buf.begin() + static_cast<std::ptrdiff_t>(seg.offset),
                               buf.begin() + static_cast<std::ptrdiff_t>(seg.offset + seg.count),
                               sum.begin() + static_cast<std::ptrdiff_t>(seg.offset)))
            << name << " reduce_scatter " << algorithm_name(a) << " n=" << n;
        // Scribble outside the owned part: all_gather must not depend on it.
        for (std::size_t i = 0; i < n; ++i)
          if (i < seg.offset || i >= seg.offset + seg.count) buf[i] = -99.f;
        c->all_gather(host_buffer(buf.data(), n), a);
        EXPECT_EQ(buf, sum) << name << " all_gather " << algorithm_name(a) << " n=" << n;
      }
    }
  }
}

TEST(Collectives, OwnedPartsTileTheBuffer) {
  for (auto& [name, topo] : topologies()) {
    auto c = world_comm(topo);
    for (Algorithm a : {Algorithm::native, Algorithm::ring, Algorithm::hierarchical}) {
      for (std::size_t n : edge_counts()) {
        Segment s = c->owned(n, a);
        std::vector<std::uint64_t> mine(n, 0), all(n, 0);
        for (std::size_t i = s.offset; i < s.offset + s.count; ++i) mine[i] = 1;
        MPI_Allreduce(mine.data(), all.data(), static_cast<int>(n), MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
        EXPECT_TRUE(std::all_of(all.begin(), all.end(), [](std::uint64_t v) { return v == 1; }))
            << name << " " << algorithm_name(a) << " n=" << n;
      }
    }
  }
}

TEST(Collectives, AsyncAllReduceRunsInIssueOrder) {
  auto c = world_comm(Topology::emulated(world_size(), 1, 0, 0));
  std::vector<std::vector<float>> bufs, expect;
  for (int i = 0; i < 4; ++i) {
    bufs.push_back(inputs<float>(5000 + static_cast<std::size_t>(i), world_rank() + i));
    expect.push_back(reference_sum(bufs.back()));
  }
  std::vector<Work> work;
  for (auto& b : bufs) work.push_back(c->all_reduce_async(host_buffer(b.data(), b.size()), ReduceOp::sum, Algorithm::ring));
  std::vector<float> sync_buf = inputs<float>(77, world_rank());
  std::vector<float> sync_expect = reference_sum(sync_buf);
  c->all_reduce(host_buffer(sync_buf.data(), sync_buf.size()), ReduceOp::sum, Algorithm::ring);  // waits for the queue
  for (std::size_t i = 0; i < work.size(); ++i) {
    EXPECT_TRUE(work[i].done());
    EXPECT_EQ(bufs[i], expect[i]);
    if (i > 0) {
      EXPECT_GE(work[i].started(), work[i - 1].finished());
    }
  }
  EXPECT_EQ(sync_buf, sync_expect);
}

// At tier t a rank sends 2 (k_t - 1) / k_t x S / (k_0 ... k_{t-1}) bytes, where
// k_t is the group's fan-out at tier t. A flat ring sends 2 (p - 1) / p x S, all on the
// tier of its link to the next rank.
TEST(Traffic, CountersEqualTheFormulaExactly) {
  for (auto& [name, topo] : topologies()) {
    auto c = world_comm(topo);
    c->set_chunk_bytes(4096);
    const HierarchyPlan& plan = c->hierarchy();
    const int p = world_size();
    // Divisible by every product of fan-outs, so the formula has no remainder.
    const std::size_t n = 64 * 3 * 5 * 7 * 8;
    const std::uint64_t S = n * sizeof(float);
    std::vector<float> v(n, 1.0f);
    for (Algorithm a : {Algorithm::ring, Algorithm::hierarchical}) {
      TrafficSnapshot before = traffic().snapshot();
      c->all_reduce(host_buffer(v.data(), n), ReduceOp::sum, a);
      TrafficSnapshot d = traffic().snapshot() - before;
      std::array<std::uint64_t, kTiers> expect{};
      if (a == Algorithm::hierarchical && plan.even && plan.levels.size() > 1) {
        std::uint64_t below = 1;
        for (const auto& l : plan.levels) {
          expect[static_cast<std::size_t>(index(l.tier))] = 2 * (l.size - 1) * S / (l.size * below);
          below *= static_cast<std::uint64_t>(l.size);
        }
      } else {
        Tier t = topo.tier(world_rank(), (world_rank() + 1) % p);
        expect[static_cast<std::size_t>(index(t))] = 2 * static_cast<std::uint64_t>(p - 1) * S / static_cast<std::uint64_t>(p);
      }
      for (Tier t : kAllTiers) {
        EXPECT_EQ(d.logical_at(t), expect[static_cast<std::size_t>(index(t))])
            << name << " " << algorithm_name(a) << " tier " << tier_name(t);
        EXPECT_EQ(d.wire_at(t), d.logical_at(t));
      }
      EXPECT_EQ(v[0], static_cast<float>(p));
      std::fill(v.begin(), v.end(), 1.0f);
    }
  }
}

TEST(Traffic, UnevenNumbersOfElementsAreCountedSegmentBySegment) {
  auto c = world_comm(Topology::emulated(world_size(), 1, 0, 0));
  const int p = world_size(), r = world_rank();
  for (std::size_t n : edge_counts()) {
    std::vector<std::int32_t> v(n, 1);
    TrafficSnapshot before = traffic().snapshot();
    c->all_reduce(host_buffer(v.data(), n), ReduceOp::sum, Algorithm::ring);
    TrafficSnapshot d = traffic().snapshot() - before;
    // Reduce-scatter sends every segment but its own, all-gather every segment but the next's.
    std::uint64_t elems = p == 1 || n == 0 ? 0 : 2 * n - segment(n, p, r).count - segment(n, p, (r + 1) % p).count;
    EXPECT_EQ(d.logical_at(Tier::inter_node), elems * sizeof(std::int32_t)) << "n=" << n;
  }
}

}  // namespace
}  // namespace ft
