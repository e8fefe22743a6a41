// Tensor parallelism against the whole model, in double precision: every rank of a
// tp = world group runs its shard (with the all-reduces through a real communicator) and,
// beside it, the unsharded model on the same batch. The shard's loss and each of its
// gradient elements must equal the whole model's, and replicated gradients must be the
// same bits on every rank, so that AdamW keeps replicated weights identical.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <numeric>
#include <random>

#include "comm/mpi_transport.h"
#include "models/gpt.h"
#include "models/ops.h"
#include "tests/mpi/mpi_world.h"

namespace ft {
namespace {

using test::world_rank;
using test::world_size;

TEST(TensorParallel, ShardsComputeTheWholeModelsLossAndGradients) {
  const int tp = world_size(), rank = world_rank();
  const GptShape shape{13, 8, 2, 4, 16};  // heads and width divide by 1, 2 and 4
  const int B = 2;
  std::unique_ptr<Communicator> comm = test::world_comm(Topology::emulated(tp, 0, 0, 0), Traffic::tp);

  GptStage whole(shape, StagePlan::whole(shape), B, 1, DType::f64);
  StagePlan plan = StagePlan::whole(shape);
  plan.tp = tp;
  plan.tp_rank = rank;
  GptStage shard(shape, plan, B, 1, DType::f64);
  StageHooks hooks;
  hooks.tp_all_reduce = [&](const Tensor& t) { comm->all_reduce(t.buffer(), ReduceOp::sum, Algorithm::ring); };
  shard.set_hooks(hooks);
  whole.init(5);
  shard.init(5);

  Tensor tokens({B, shape.context}, DType::i32), targets({B, shape.context}, DType::i32);
  std::mt19937 g(9);
  for (std::int64_t i = 0; i < tokens.numel(); ++i) {
    tokens.data<std::int32_t>()[i] = static_cast<std::int32_t>(g() % 13);
    targets.data<std::int32_t>()[i] = static_cast<std::int32_t>(g() % 13);
  }
  ops::zero(whole.params().flat_grads());
  ops::zero(shard.params().flat_grads());
  double loss_whole = whole.forward(0, &tokens, nullptr, &targets);
  double loss_shard = shard.forward(0, &tokens, nullptr, &targets);
  whole.backward(0, nullptr, 1.0);
  shard.backward(0, nullptr, 1.0);
  EXPECT_NEAR(loss_shard, loss_whole, 1e-12 * loss_whole);

  for (const ParamInfo& p : shard.params().infos()) {
    // EXPECT, not ASSERT: every rank must reach the broadcast below.
    auto full = ops::to_host(whole.params().grad(whole.params().index(p.name)));
    auto mine = ops::to_host(shard.params().grad(shard.params().index(p.name)));
    auto idx = ParamSet::full_indices(p, tp, rank);
    double scale = 0;
    for (double x : full) scale = std::max(scale, std::abs(x));
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < mine.size(); ++i)
      if (std::abs(mine[i] - full[static_cast<std::size_t>(idx[i])]) > 1e-10 * scale + 1e-14) ++wrong;
    EXPECT_EQ(wrong, 0u) << p.name << ": gradient elements that differ from the whole model's";
    if (p.shard == Shard::replicated) {
      // The same bits on every rank: compare with rank 0's copy.
      std::vector<double> root = mine;
      MPI_Bcast(root.data(), static_cast<int>(root.size()), MPI_DOUBLE, 0, MPI_COMM_WORLD);
      EXPECT_EQ(mine, root) << p.name << " differs between tensor-parallel ranks";
    }
  }
}

}  // namespace
}  // namespace ft
