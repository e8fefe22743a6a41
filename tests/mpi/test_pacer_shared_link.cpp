// Ranks behind one emulated uplink share its bandwidth across processes: two ranks of a
// node sending across nodes at once take twice as long as one alone.
#include <gtest/gtest.h>
#include <mpi.h>

#include <numeric>

#include "comm/mpi_transport.h"
#include "comm/runtime.h"

namespace ft {
namespace {

TEST(PacerSharedLink, TwoRanksOfANodeCrossingTogetherTakeTwiceAsLongAsOne) {
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  ASSERT_EQ(size, 4) << "run with 4 ranks: 2 nodes x 2";
  auto topo = std::make_shared<const Topology>(Topology::emulated(4, 2, 0, 0));
  LinkSpecs links{};
  links[static_cast<std::size_t>(index(Tier::inter_node))] = {50e6, 0};  // 400 Mbit/s
  auto pacer = Pacer::create(MPI_COMM_WORLD, topo, links);
  std::vector<int> all = {0, 1, 2, 3};
  MpiCommunicator c(MPI_COMM_WORLD, 0, rank, all, topo, Traffic::other);
  c.set_pacer(pacer);
  std::vector<float> buf(1 << 19);  // 2 MiB: 42 ms at 400 Mbit/s

  // Node 0 (ranks 0, 1) sends to node 1 (ranks 2, 3); `senders` of node 0's ranks take part.
  auto transfer = [&](int senders) {
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = now_seconds();
    if (rank < senders) c.exchange(host_buffer(buf.data(), buf.size()), rank + 2, Buffer{}, -1).wait();
    if (rank >= 2 && rank - 2 < senders) c.exchange(Buffer{}, -1, host_buffer(buf.data(), buf.size()), rank - 2).wait();
    return max_over(MPI_COMM_WORLD, now_seconds() - t0);
  };
  transfer(1);  // warm-up: first-touch of buffers and connections
  double one = transfer(1), two = transfer(2);
  if (rank == 0) std::printf("one rank: %.1f ms, two ranks: %.1f ms, ratio %.2f\n", one * 1e3, two * 1e3, two / one);
  // Expected 2.0; the real copy (~1 ms) and scheduling jitter on a shared machine move it by
  // a few per cent, far from the 1.0 an unshared uplink would give.
  EXPECT_GT(two / one, 1.8);
  EXPECT_LT(two / one, 2.2);
  EXPECT_NEAR(one, static_cast<double>(buf.size() * sizeof(float)) / 50e6, 0.2 * 0.042);
}

}  // namespace
}  // namespace ft
