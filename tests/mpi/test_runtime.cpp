// run_phase: a failure on any rank stops every rank with one message and one exit code.
#include <csignal>

#include <gtest/gtest.h>
#include <mpi.h>

#include "comm/error.h"
#include "comm/runtime.h"
#include "comm/watchdog.h"
#include "tests/mpi/mpi_world.h"

namespace ft {
namespace {

using test::world_rank;
using test::world_size;

int exit_code_of_phase(const std::function<void()>& phase) {
  try {
    run_phase(MPI_COMM_WORLD, phase);
  } catch (const JobStopped& s) {
    return s.code();
  }
  return 0;
}

TEST(RunPhase, SuccessOnEveryRankReturns) { EXPECT_EQ(exit_code_of_phase([] {}), 0); }

TEST(RunPhase, UserErrorOnOneRankStopsEveryRankWithCode2) {
  int last = world_size() - 1;
  EXPECT_EQ(exit_code_of_phase([&] {
              if (world_rank() == last) throw UserError("data file missing on the last rank");
            }),
            kExitUserError);
}

TEST(RunPhase, InternalErrorOutranksUserError) {
  EXPECT_EQ(exit_code_of_phase([&] {
              if (world_rank() == 0) throw UserError("bad config");
              if (world_rank() == 1) throw std::logic_error("bug");
            }),
            world_size() > 1 ? kExitInternalError : kExitUserError);
}

TEST(GatherToRoot, RootGetsEveryRanksValuesRankMajor) {
  std::vector<double> mine = {1.0 * world_rank(), 10.0 + world_rank()};
  auto all = gather_to_root(MPI_COMM_WORLD, mine);
  if (world_rank() == 0) {
    ASSERT_EQ(all.size(), 2u * static_cast<std::size_t>(world_size()));
    for (int r = 0; r < world_size(); ++r) {
      EXPECT_EQ(all[2 * static_cast<std::size_t>(r)], r);
      EXPECT_EQ(all[2 * static_cast<std::size_t>(r) + 1], 10 + r);
    }
  } else {
    EXPECT_TRUE(all.empty());
  }
}

TEST(StopSignals, ALaunchersRelaysAreReadAsTheSignalsTheyStandFor) {
  using Pairs = std::vector<std::pair<int, int>>;
  EXPECT_EQ(relayed_stop_signals(nullptr), Pairs{});
  EXPECT_EQ(relayed_stop_signals("SIGUSR1=SIGINT,SIGUSR2=SIGTERM,SIGALRM=SIGHUP"),
            (Pairs{{SIGUSR1, SIGINT}, {SIGUSR2, SIGTERM}, {SIGALRM, SIGHUP}}));
  EXPECT_EQ(relayed_stop_signals("SIGUSR1=SIGNOPE,junk,=SIGINT,SIGUSR2=SIGTERM"), (Pairs{{SIGUSR2, SIGTERM}}));
  EXPECT_EQ(signal_name(SIGINT), "SIGINT");
  EXPECT_EQ(signal_name(SIGHUP), "SIGHUP");
}

}  // namespace
}  // namespace ft
