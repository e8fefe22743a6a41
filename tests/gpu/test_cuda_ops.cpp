// CUDA against CPU, on the same inputs: every op in fp32 (to 1e-5, cuBLAS's fp32 path
// reorders sums), the whole model's loss and gradients (fp32: 1e-4 relative, as llm.c
// checks; bf16 matmuls: 2e-2), and AdamW. Skipped, saying so, when no GPU answers.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "models/device_info.h"
#include "models/gpt.h"
#include "models/ops.h"

namespace ft {
namespace {

#define REQUIRE_GPU()                                                                         \
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device answers: " << cuda_info(); \
  select_cuda_device(0)

Tensor random_tensor(Shape s, std::uint64_t seed, double scale = 1.0) {
  Tensor t(std::move(s));
  std::mt19937_64 g(seed);
  std::normal_distribution<double> d(0.0, scale);
  std::vector<double> v(static_cast<std::size_t>(t.numel()));
  for (auto& x : v) x = d(g);
  ops::from_host(t, v);
  return t;
}

Tensor on_gpu(const Tensor& cpu) {
  ops::synchronize(Device::cpu);  // the CPU ops that wrote it have run
  Tensor g(cpu.shape(), cpu.dtype(), Device::cuda);
  ops::upload(g, cpu.raw());
  return g;
}

double rel_diff(const Tensor& a, const Tensor& b) {
  auto x = ops::to_host(a), y = ops::to_host(b);
  double num = 0, den = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    num += (x[i] - y[i]) * (x[i] - y[i]);
    den += y[i] * y[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

TEST(CudaOps, MatmulLayernormAttentionGeluAgreeWithCpu) {
  REQUIRE_GPU();
  const std::int64_t B = 2, T = 16, C = 32, NH = 4, N = B * T, OC = 48;
  Tensor inp = random_tensor({N, C}, 1), w = random_tensor({OC, C}, 2), bias = random_tensor({OC}, 3);
  Tensor out_c({N, OC}), out_g({N, OC}, DType::f32, Device::cuda);
  Tensor gi = on_gpu(inp), gw = on_gpu(w), gb = on_gpu(bias);
  ops::matmul_forward(out_c, inp, w, &bias, N, C, OC);
  ops::matmul_forward(out_g, gi, gw, &gb, N, C, OC);
  EXPECT_LT(rel_diff(out_g, out_c), 1e-5);

  Tensor dout = random_tensor({N, OC}, 4);
  Tensor dinp_c({N, C}), dw_c({OC, C}), db_c({OC});
  Tensor dinp_g({N, C}, DType::f32, Device::cuda), dw_g({OC, C}, DType::f32, Device::cuda), db_g({OC}, DType::f32, Device::cuda);
  Tensor gdout = on_gpu(dout);
  ops::matmul_backward(&dinp_c, &dw_c, &db_c, dout, inp, w, N, C, OC);
  ops::matmul_backward(&dinp_g, &dw_g, &db_g, gdout, gi, gw, N, C, OC);
  EXPECT_LT(rel_diff(dinp_g, dinp_c), 1e-5);
  EXPECT_LT(rel_diff(dw_g, dw_c), 1e-5);
  EXPECT_LT(rel_diff(db_g, db_c), 1e-5);

  Tensor qkv = random_tensor({B, T, 3 * C}, 5), att_c({B, NH, T, T}), y_c({B, T, C});
  Tensor gq = on_gpu(qkv), att_g({B, NH, T, T}, DType::f32, Device::cuda), y_g({B, T, C}, DType::f32, Device::cuda);
  ops::attention_forward(y_c, att_c, qkv, B, T, C, NH);
  ops::attention_forward(y_g, att_g, gq, B, T, C, NH);
  EXPECT_LT(rel_diff(y_g, y_c), 1e-5);
  Tensor dy = random_tensor({B, T, C}, 6), dq_c({B, T, 3 * C}), scratch_c({T, T});
  Tensor dq_g({B, T, 3 * C}, DType::f32, Device::cuda), scratch_g({B, NH, T, T}, DType::f32, Device::cuda);
  ops::attention_backward(dq_c, scratch_c, dy, qkv, att_c, B, T, C, NH);
  ops::attention_backward(dq_g, scratch_g, on_gpu(dy), gq, att_g, B, T, C, NH);
  EXPECT_LT(rel_diff(dq_g, dq_c), 1e-5);

  Tensor x = random_tensor({N, C}, 7), lw = random_tensor({C}, 8), lb = random_tensor({C}, 9);
  Tensor ln_c({N, C}), m_c({N}), r_c({N}), ln_g({N, C}, DType::f32, Device::cuda), m_g({N}, DType::f32, Device::cuda),
      r_g({N}, DType::f32, Device::cuda);
  Tensor gx = on_gpu(x), glw = on_gpu(lw), glb = on_gpu(lb);
  ops::layernorm_forward(ln_c, m_c, r_c, x, lw, lb, N, C);
  ops::layernorm_forward(ln_g, m_g, r_g, gx, glw, glb, N, C);
  EXPECT_LT(rel_diff(ln_g, ln_c), 1e-5);

  Tensor ge_c({N, C}), ge_g({N, C}, DType::f32, Device::cuda);
  ops::gelu_forward(ge_c, x, N * C);
  ops::gelu_forward(ge_g, gx, N * C);
  EXPECT_LT(rel_diff(ge_g, ge_c), 1e-5);
}

// The model on the GPU and on the CPU from the same initialisation and batch.
void compare_model(bool bf16, double loss_tol, double grad_tol) {
  const GptShape s{64, 32, 2, 4, 64};
  const int B = 4;
  GptStage cpu(s, StagePlan::whole(s), B, 1), gpu(s, StagePlan::whole(s), B, 1, DType::f32, Device::cuda);
  cpu.init(3);
  gpu.init(3);
  Tensor tok({B, s.context}, DType::i32), tgt({B, s.context}, DType::i32);
  std::mt19937 g(4);
  for (std::int64_t i = 0; i < tok.numel(); ++i) {
    tok.data<std::int32_t>()[i] = static_cast<std::int32_t>(g() % 64);
    tgt.data<std::int32_t>()[i] = static_cast<std::int32_t>(g() % 64);
  }
  Tensor gtok(tok.shape(), DType::i32, Device::cuda), gtgt(tgt.shape(), DType::i32, Device::cuda);
  ops::upload(gtok, tok.raw());
  ops::upload(gtgt, tgt.raw());
  ops::set_bf16_matmuls(bf16);
  ops::zero(cpu.params().flat_grads());
  ops::zero(gpu.params().flat_grads());
  double lc = cpu.forward(0, &tok, nullptr, &tgt), lg = gpu.forward(0, &gtok, nullptr, &gtgt);
  cpu.backward(0, nullptr, 1.0);
  gpu.backward(0, nullptr, 1.0);
  ops::set_bf16_matmuls(false);
  EXPECT_NEAR(lg, lc, loss_tol * lc);
  for (std::size_t i = 0; i < cpu.params().infos().size(); ++i)
    EXPECT_LT(rel_diff(gpu.params().grad(static_cast<int>(i)), cpu.params().grad(static_cast<int>(i))), grad_tol)
        << cpu.params().infos()[i].name;
}

TEST(CudaModel, Fp32LossAndGradientsMatchTheCpu) {
  REQUIRE_GPU();
  compare_model(false, 1e-5, 1e-4);
}

TEST(CudaModel, Bf16MatmulsStayWithinBf16Precision) {
  REQUIRE_GPU();
  compare_model(true, 1e-2, 5e-2);
}

// Runs with different weight decay at state offsets, more of them than one launch takes.
TEST(CudaOps, AdamWOverRunsAgreesWithCpu) {
  REQUIRE_GPU();
  Tensor p = random_tensor({40000}, 10), g = random_tensor({40000}, 11), m({30000}), v({30000});
  Tensor gp = on_gpu(p), gg = on_gpu(g), gm({30000}, DType::f32, Device::cuda), gv({30000}, DType::f32, Device::cuda);
  std::vector<ops::UpdateRun> runs;
  for (std::int64_t i = 0; i < 300; ++i)  // 100 elements of every 133, decay on every other run
    runs.push_back({{i * 133, i * 133 + 100}, i * 100, i % 2 ? 0.1 : 0.0});
  for (int t = 1; t <= 3; ++t) {
    const ops::AdamWStep st{1e-3, 0.9, 0.95, 1e-8, 1 - std::pow(0.9, t), 1 - std::pow(0.95, t), 0.5};
    ops::adamw_update(p, g, m, v, runs, st);
    ops::adamw_update(gp, gg, gm, gv, runs, st);
  }
  EXPECT_LT(rel_diff(gp, p), 1e-6);
  EXPECT_LT(rel_diff(gm, m), 1e-6);
  EXPECT_LT(rel_diff(gv, v), 1e-6);
}

// SGD over runs with Nesterov momentum (the outer step), and plain.
TEST(CudaOps, SgdOverRunsAgreesWithCpu) {
  REQUIRE_GPU();
  Tensor p = random_tensor({5000}, 28), g = random_tensor({5000}, 29), m({4000});
  Tensor gp = on_gpu(p), gg = on_gpu(g), gm({4000}, DType::f32, Device::cuda);
  const std::vector<ops::UpdateRun> runs{{{0, 2000}, 0, 0.1}, {{3000, 5000}, 2000, 0.0}};
  for (int t = 0; t < 3; ++t) {
    ops::sgd_update(p, g, &m, runs, {0.7, 0.9, true, 0.5});
    ops::sgd_update(gp, gg, &gm, runs, {0.7, 0.9, true, 0.5});
    ops::sgd_update(p, g, nullptr, runs, {0.01});
    ops::sgd_update(gp, gg, nullptr, runs, {0.01});
    ops::sgd_update(p, g, nullptr, runs, {0.01, 0.0, false, 1.0, true});  // sign
    ops::sgd_update(gp, gg, nullptr, runs, {0.01, 0.0, false, 1.0, true});
  }
  EXPECT_LT(rel_diff(gp, p), 1e-6);
  EXPECT_LT(rel_diff(gm, m), 1e-6);
}

// The softmax over the logits in place, and the gradient over it in place.
TEST(CudaOps, CrossEntropyInPlaceAgreesWithCpu) {
  REQUIRE_GPU();
  const std::int64_t N = 70, V = 1000;
  Tensor z = random_tensor({N, V}, 23, 3.0), tgt({N}, DType::i32), losses({N});
  for (std::int64_t i = 0; i < N; ++i) tgt.data<std::int32_t>()[i] = static_cast<std::int32_t>((i * 37) % V);
  Tensor gz = on_gpu(z), gt = on_gpu(tgt), gl({N}, DType::f32, Device::cuda);
  ops::crossentropy_forward(losses, z, z, tgt, N, V);
  ops::crossentropy_forward(gl, gz, gz, gt, N, V);
  EXPECT_LT(rel_diff(gl, losses), 1e-5);
  EXPECT_LT(rel_diff(gz, z), 1e-5);
  ops::crossentropy_backward(z, z, tgt, 0.25, N, V);
  ops::crossentropy_backward(gz, gz, gt, 0.25, N, V);
  EXPECT_LT(rel_diff(gz, z), 1e-5);
}

// A rank's share of a split vocabulary (rows 300 to 699 of 1000): the statistics, the
// cross-entropy from two ranks' of them, and its backward, as the CPU computes them.
TEST(CudaOps, VocabularyShardCrossEntropyMatchesTheCpu) {
  REQUIRE_GPU();
  const std::int64_t N = 70, Vl = 400, v0 = 300;
  Tensor z = random_tensor({N, Vl}, 29, 3.0), tgt({N}, DType::i32), stats({2, 3, N}), losses({N});
  for (std::int64_t i = 0; i < N; ++i) tgt.data<std::int32_t>()[i] = static_cast<std::int32_t>((i * 37) % 1000);
  Tensor gz = on_gpu(z), gt = on_gpu(tgt), gstats = on_gpu(stats), gl({N}, DType::f32, Device::cuda);
  ops::crossentropy_shard_stats(Tensor::view_of(stats, 0, {3 * N}), z, tgt, N, Vl, v0);
  ops::crossentropy_shard_stats(Tensor::view_of(gstats, 0, {3 * N}), gz, gt, N, Vl, v0);
  EXPECT_LT(rel_diff(Tensor::view_of(gstats, 0, {3 * N}), Tensor::view_of(stats, 0, {3 * N})), 1e-5);
  ops::copy(Tensor::view_of(stats, 3 * N, {3 * N}), Tensor::view_of(stats, 0, {3 * N}));  // the other rank's, alike
  ops::copy(Tensor::view_of(gstats, 3 * N, {3 * N}), Tensor::view_of(gstats, 0, {3 * N}));
  ops::crossentropy_shard_finish(losses, z, z, stats, 2, N, Vl);
  ops::crossentropy_shard_finish(gl, gz, gz, gstats, 2, N, Vl);
  EXPECT_LT(rel_diff(gl, losses), 1e-5);
  EXPECT_LT(rel_diff(gz, z), 1e-5);
  ops::crossentropy_backward(z, z, tgt, 0.25, N, Vl, v0);
  ops::crossentropy_backward(gz, gz, gt, 0.25, N, Vl, v0);
  EXPECT_LT(rel_diff(gz, z), 1e-5);
}

// More ranges than one launch takes, of uneven sizes.
TEST(CudaOps, SumOfSquaresOverRangesAgreesWithCpu) {
  REQUIRE_GPU();
  Tensor x = random_tensor({100000}, 12);
  std::vector<FlatRange> ranges;
  for (std::int64_t b = 0; b + 300 <= 100000; b += 331) ranges.push_back({b, b + 1 + b % 300});
  ASSERT_GT(ranges.size(), 256u);
  const double cpu = ops::sum_squares(x, ranges), gpu = ops::sum_squares(on_gpu(x), ranges);
  EXPECT_NEAR(gpu, cpu, 1e-9 * cpu);
  EXPECT_NEAR(ops::sum_squares(on_gpu(x)), ops::sum_squares(x), 1e-9 * ops::sum_squares(x));
}

// Shapes that exercise the reductions' edges: rows beyond one grid pass, columns that are
// not a multiple of 32, and gradients that accumulate onto what is there.
TEST(CudaOps, BiasAndLayernormGradientsAgreeWithCpu) {
  REQUIRE_GPU();
  const std::int64_t N = 3000, C = 100;
  Tensor dout = random_tensor({N, C}, 13), x = random_tensor({N, C}, 14), lw = random_tensor({C}, 15),
         lb = random_tensor({C}, 16);
  Tensor db_c = random_tensor({C}, 17), db_g = on_gpu(db_c);
  Tensor inp = random_tensor({N, 8}, 18), w = random_tensor({C, 8}, 19);
  ops::matmul_backward(nullptr, nullptr, &db_c, dout, inp, w, N, 8, C);
  ops::matmul_backward(nullptr, nullptr, &db_g, on_gpu(dout), on_gpu(inp), on_gpu(w), N, 8, C);
  EXPECT_LT(rel_diff(db_g, db_c), 1e-5);

  Tensor ln({N, C}), mean({N}), rstd({N});
  ops::layernorm_forward(ln, mean, rstd, x, lw, lb, N, C);
  Tensor dx_c = random_tensor({N, C}, 20), dw_c = random_tensor({C}, 21), dlb_c = random_tensor({C}, 22);
  Tensor dx_g = on_gpu(dx_c), dw_g = on_gpu(dw_c), dlb_g = on_gpu(dlb_c);
  ops::layernorm_backward(dx_c, dw_c, dlb_c, dout, x, lw, mean, rstd, N, C);
  ops::layernorm_backward(dx_g, dw_g, dlb_g, on_gpu(dout), on_gpu(x), on_gpu(lw), on_gpu(mean), on_gpu(rstd), N, C);
  EXPECT_LT(rel_diff(dx_g, dx_c), 1e-5);
  EXPECT_LT(rel_diff(dw_g, dw_c), 1e-5);
  EXPECT_LT(rel_diff(dlb_g, dlb_c), 1e-5);
}

// A width whose dw and db do not fit in a block's shared memory (8C bytes) takes the
// kernel that adds every row into the global arrays.
TEST(CudaOps, LayernormBackwardOfAVeryWideRowAgreesWithCpu) {
  REQUIRE_GPU();
  const std::int64_t N = 16, C = 60000;
  Tensor dout = random_tensor({N, C}, 24), x = random_tensor({N, C}, 25), lw = random_tensor({C}, 26),
         lb = random_tensor({C}, 27);
  Tensor ln({N, C}), mean({N}), rstd({N}), dx_c({N, C}), dw_c({C}), db_c({C});
  ops::layernorm_forward(ln, mean, rstd, x, lw, lb, N, C);
  Tensor dx_g = on_gpu(dx_c), dw_g = on_gpu(dw_c), db_g = on_gpu(db_c);
  ops::layernorm_backward(dx_c, dw_c, db_c, dout, x, lw, mean, rstd, N, C);
  ops::layernorm_backward(dx_g, dw_g, db_g, on_gpu(dout), on_gpu(x), on_gpu(lw), on_gpu(mean), on_gpu(rstd), N, C);
  EXPECT_LT(rel_diff(dx_g, dx_c), 1e-5);
  EXPECT_LT(rel_diff(dw_g, dw_c), 1e-5);
  EXPECT_LT(rel_diff(db_g, db_c), 1e-5);
}

}  // namespace
}  // namespace ft
