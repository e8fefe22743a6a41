// main() for GoogleTest binaries run under mpirun: every rank runs every test; rank 0
// prints the usual report, other ranks print only their failures; the job fails when any
// rank failed. Tests must reach their collectives on every rank (use EXPECT, not ASSERT,
// before a collective), or the job hangs until CTest's timeout.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>

#include "comm/runtime.h"

namespace {

class RankFailurePrinter : public testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_, r.file_name() ? r.file_name() : "?",
                 r.line_number(), r.summary());
  }

 private:
  int rank_;
};

}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  ft::MpiRuntime mpi(&argc, &argv);
  if (mpi.rank() != 0) {
    auto& listeners = testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new RankFailurePrinter(mpi.rank()));
  }
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (mpi.rank() == 0 && any_failed && !failed) std::fprintf(stderr, "FAILED on another rank (see above)\n");
  return any_failed;
}
