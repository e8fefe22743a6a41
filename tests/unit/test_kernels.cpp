// Every op's backward against central finite differences of its forward, in double
// precision on random inputs. The objective is L = sum(R * out) for a fixed random R, so
// dL/dout = R. With h = 1e-5 the central difference has truncation error O(h^2) ~ 1e-10
// and rounding error ~ 1e-16 / 1e-5 = 1e-11 relative to the values here, so 1e-7 relative
// (with a 1e-9 absolute floor) is a bound that only a wrong derivative can break.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "models/cpu/kernels.h"
#include "models/cpu/parallel.h"
#include "models/cpu/vec_math.h"

namespace ft::cpu {
namespace {

using Vec = std::vector<double>;
constexpr double kStep = 1e-5;
constexpr double kRelTol = 1e-7;
constexpr double kAbsTol = 1e-9;

Vec random_vec(std::size_t n, std::mt19937_64& g, double scale = 1.0) {
  std::normal_distribution<double> d(0.0, scale);
  Vec v(n);
  for (auto& x : v) x = d(g);
  return v;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Compares `analytic` = dL/dx with central differences, where objective() recomputes L.
void expect_matches_finite_differences(const char* what, Vec& x, const Vec& analytic,
                                       const std::function<double()>& objective) {
  ASSERT_EQ(x.size(), analytic.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    double keep = x[i];
    x[i] = keep + kStep;
    double up = objective();
    x[i] = keep - kStep;
    double down = objective();
    x[i] = keep;
    double numeric = (up - down) / (2 * kStep);
    EXPECT_NEAR(analytic[i], numeric, kAbsTol + kRelTol * std::abs(numeric)) << what << "[" << i << "]";
  }
}

class Kernels : public ::testing::Test {
 protected:
  std::mt19937_64 g{42};
};

TEST_F(Kernels, MatmulBackwardMatchesFiniteDifferences) {
  const i64 N = 5, C = 4, OC = 3;
  Vec inp = random_vec(N * C, g), w = random_vec(OC * C, g), bias = random_vec(OC, g), R = random_vec(N * OC, g);
  Vec out(N * OC);
  auto L = [&] {
    matmul_forward(out.data(), inp.data(), w.data(), bias.data(), N, C, OC);
    return dot(out, R);
  };
  Vec dinp(N * C, 0.0), dw(OC * C, 0.0), dbias(OC, 0.0);
  matmul_backward(dinp.data(), dw.data(), dbias.data(), R.data(), inp.data(), w.data(), N, C, OC);
  expect_matches_finite_differences("dinp", inp, dinp, L);
  expect_matches_finite_differences("dw", w, dw, L);
  expect_matches_finite_differences("dbias", bias, dbias, L);
}

TEST_F(Kernels, MatmulBackwardAccumulates) {
  const i64 N = 3, C = 2, OC = 2;
  Vec inp = random_vec(N * C, g), w = random_vec(OC * C, g), R = random_vec(N * OC, g);
  Vec once(OC * C, 0.0), twice(OC * C, 0.0);
  matmul_backward<double>(nullptr, once.data(), nullptr, R.data(), inp.data(), w.data(), N, C, OC);
  matmul_backward<double>(nullptr, twice.data(), nullptr, R.data(), inp.data(), w.data(), N, C, OC);
  matmul_backward<double>(nullptr, twice.data(), nullptr, R.data(), inp.data(), w.data(), N, C, OC);
  for (std::size_t i = 0; i < once.size(); ++i) EXPECT_DOUBLE_EQ(twice[i], 2 * once[i]);
}

TEST_F(Kernels, LayerNormBackwardMatchesFiniteDifferences) {
  const i64 N = 4, C = 6;
  Vec inp = random_vec(N * C, g, 2.0), w = random_vec(C, g), b = random_vec(C, g), R = random_vec(N * C, g);
  Vec out(N * C), mean(N), rstd(N);
  auto L = [&] {
    layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), w.data(), b.data(), N, C);
    return dot(out, R);
  };
  L();
  Vec dinp(N * C, 0.0), dw(C, 0.0), db(C, 0.0);
  layernorm_backward(dinp.data(), dw.data(), db.data(), R.data(), inp.data(), w.data(), mean.data(), rstd.data(), N, C);
  expect_matches_finite_differences("dinp", inp, dinp, L);
  expect_matches_finite_differences("dw", w, dw, L);
  expect_matches_finite_differences("db", b, db, L);
}

void expect_attention_gradient_matches(i64 B, i64 T, i64 C, i64 NH, std::mt19937_64& g) {
  Vec qkv = random_vec(B * T * 3 * C, g), R = random_vec(B * T * C, g);
  Vec out(B * T * C), att(B * NH * T * T);
  auto L = [&] {
    attention_forward(out.data(), att.data(), qkv.data(), B, T, C, NH);
    return dot(out, R);
  };
  L();
  Vec dqkv(qkv.size(), 0.0);
  attention_backward(dqkv.data(), R.data(), qkv.data(), att.data(), B, T, C, NH);
  expect_matches_finite_differences("dqkv", qkv, dqkv, L);
}

TEST_F(Kernels, AttentionBackwardMatchesFiniteDifferences) { expect_attention_gradient_matches(2, 5, 6, 2, g); }

// Past 64 positions the kernels take rows in blocks that skip the keys above the diagonal.
TEST_F(Kernels, AttentionBackwardMatchesFiniteDifferencesOverBlocksOfRows) {
  expect_attention_gradient_matches(1, 70, 4, 2, g);
}

TEST_F(Kernels, AttentionIsCausal) {
  const i64 B = 1, T = 70, C = 4, NH = 2;
  Vec qkv = random_vec(B * T * 3 * C, g), out(B * T * C), att(B * NH * T * T);
  attention_forward(out.data(), att.data(), qkv.data(), B, T, C, NH);
  Vec before = out;
  for (i64 c = 0; c < 3 * C; ++c) qkv[(T - 1) * 3 * C + c] += 1.0;  // change only the last position
  attention_forward(out.data(), att.data(), qkv.data(), B, T, C, NH);
  for (i64 i = 0; i < (T - 1) * C; ++i) EXPECT_EQ(out[i], before[i]) << "position " << i / C << " saw the future";
  for (i64 h = 0; h < NH; ++h)
    for (i64 i = 0; i < T; ++i) {
      double row = 0;
      for (i64 j = 0; j < T; ++j) row += att[(h * T + i) * T + j];
      EXPECT_NEAR(row, 1.0, 1e-12);
      for (i64 j = i + 1; j < T; ++j) EXPECT_EQ(att[(h * T + i) * T + j], 0.0) << "row " << i << " key " << j;
    }
}

TEST_F(Kernels, GeluBackwardMatchesFiniteDifferences) {
  const i64 N = 20;
  Vec inp = random_vec(N, g, 2.0), R = random_vec(N, g), out(N);
  auto L = [&] {
    gelu_forward(out.data(), inp.data(), N);
    return dot(out, R);
  };
  Vec dinp(N, 0.0);
  gelu_backward(dinp.data(), inp.data(), R.data(), N);
  expect_matches_finite_differences("dinp", inp, dinp, L);
}

TEST_F(Kernels, ResidualBackwardMatchesFiniteDifferences) {
  const i64 N = 7;
  Vec a = random_vec(N, g), b = random_vec(N, g), R = random_vec(N, g), out(N);
  auto L = [&] {
    residual_forward(out.data(), a.data(), b.data(), N);
    return dot(out, R);
  };
  Vec da(N, 0.0), db(N, 0.0);
  add_into(da.data(), R.data(), N);
  add_into(db.data(), R.data(), N);
  expect_matches_finite_differences("da", a, da, L);
  expect_matches_finite_differences("db", b, db, L);
}

TEST_F(Kernels, EmbeddingBackwardMatchesFiniteDifferences) {
  const i64 B = 2, T = 3, C = 4, V = 5;
  std::vector<std::int32_t> tokens = {1, 4, 1, 0, 2, 4};  // repeats must accumulate
  Vec wte = random_vec(V * C, g), wpe = random_vec(T * C, g), R = random_vec(B * T * C, g), out(B * T * C);
  auto L = [&] {
    embedding_forward(out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C, 0, V);
    return dot(out, R);
  };
  Vec dwte(V * C, 0.0), dwpe(T * C, 0.0);
  embedding_backward(dwte.data(), dwpe.data(), R.data(), tokens.data(), B, T, C, 0, V);
  expect_matches_finite_differences("dwte", wte, dwte, L);
  expect_matches_finite_differences("dwpe", wpe, dwpe, L);
}

TEST_F(Kernels, CrossEntropyBackwardMatchesFiniteDifferences) {
  const i64 N = 4, V = 7;
  std::vector<std::int32_t> targets = {0, 6, 3, 3};
  Vec logits = random_vec(N * V, g, 3.0), losses(N), probs(N * V);
  const double dloss = 0.37;
  auto L = [&] {
    crossentropy_forward(losses.data(), probs.data(), logits.data(), targets.data(), N, V);
    double s = 0;
    for (double l : losses) s += l * dloss;
    return s;
  };
  L();
  Vec dlogits(N * V, 0.0);
  crossentropy_backward(dlogits.data(), probs.data(), targets.data(), dloss, N, V, 0);
  expect_matches_finite_differences("dlogits", logits, dlogits, L);
}

// The vocabulary split in two (rows 0-2 and 3-6), as tensor-parallel ranks hold it: the
// lookups summed, and the cross-entropy from both halves' statistics, are the whole's.
TEST_F(Kernels, VocabularyShardsMakeTheWholeEmbeddingAndCrossEntropy) {
  const i64 B = 2, T = 2, C = 3, V = 7, N = B * T, cut = 3;
  std::vector<std::int32_t> tokens = {1, 4, 6, 0};
  Vec wte = random_vec(V * C, g), wpe = random_vec(T * C, g), whole(N * C), lo(N * C), hi(N * C);
  embedding_forward(whole.data(), tokens.data(), wte.data(), wpe.data(), B, T, C, 0, V);
  embedding_forward(lo.data(), tokens.data(), wte.data(), wpe.data(), B, T, C, 0, cut);
  embedding_forward(hi.data(), tokens.data(), wte.data() + cut * C, static_cast<const double*>(nullptr), B, T, C, cut, V - cut);
  for (i64 i = 0; i < N * C; ++i) EXPECT_NEAR(lo[i] + hi[i], whole[i], 1e-15);
  Vec dwhole(V * C, 0.0), dshards(V * C, 0.0), R = random_vec(N * C, g);
  embedding_backward(dwhole.data(), static_cast<double*>(nullptr), R.data(), tokens.data(), B, T, C, 0, V);
  embedding_backward(dshards.data(), static_cast<double*>(nullptr), R.data(), tokens.data(), B, T, C, 0, cut);
  embedding_backward(dshards.data() + cut * C, static_cast<double*>(nullptr), R.data(), tokens.data(), B, T, C, cut, V - cut);
  for (i64 i = 0; i < V * C; ++i) EXPECT_NEAR(dshards[i], dwhole[i], 1e-15);

  std::vector<std::int32_t> targets = {0, 6, 3, 2};
  Vec logits = random_vec(N * V, g, 3.0), losses(N), probs(N * V);
  crossentropy_forward(losses.data(), probs.data(), logits.data(), targets.data(), N, V);
  const i64 widths[2] = {cut, V - cut}, firsts[2] = {0, cut};
  Vec part[2], stats(2 * 3 * N);
  for (int r = 0; r < 2; ++r) {
    part[r].resize(static_cast<std::size_t>(N * widths[r]));
    for (i64 n = 0; n < N; ++n)
      for (i64 v = 0; v < widths[r]; ++v) part[r][n * widths[r] + v] = logits[n * V + firsts[r] + v];
    crossentropy_shard_stats(stats.data() + 3 * N * r, part[r].data(), targets.data(), N, widths[r], firsts[r]);
  }
  for (int r = 0; r < 2; ++r) {
    Vec shard_losses(N), shard_probs(part[r].size()), dshard(part[r].size()), dref(N * V);
    crossentropy_shard_finish(shard_losses.data(), shard_probs.data(), part[r].data(), stats.data(), 2, N, widths[r]);
    crossentropy_backward(dshard.data(), shard_probs.data(), targets.data(), 0.37, N, widths[r], firsts[r]);
    crossentropy_backward(dref.data(), probs.data(), targets.data(), 0.37, N, V, 0);
    for (i64 n = 0; n < N; ++n) {
      EXPECT_NEAR(shard_losses[n], losses[n], 1e-12);
      for (i64 v = 0; v < widths[r]; ++v) {
        EXPECT_NEAR(shard_probs[n * widths[r] + v], probs[n * V + firsts[r] + v], 1e-12);
        EXPECT_NEAR(dshard[n * widths[r] + v], dref[n * V + firsts[r] + v], 1e-12);
      }
    }
  }
}

TEST_F(Kernels, CrossEntropyOfUniformLogitsIsLogV) {
  const i64 N = 3, V = 256;
  Vec logits(N * V, 0.25), losses(N), probs(N * V);
  std::vector<std::int32_t> targets = {0, 100, 255};
  crossentropy_forward(losses.data(), probs.data(), logits.data(), targets.data(), N, V);
  for (double l : losses) EXPECT_NEAR(l, std::log(256.0), 1e-12);
}

TEST_F(Kernels, AdamWStepMatchesTheFormula) {
  Vec p = {1.0, -2.0}, grad = {0.5, 0.1}, m = {0.1, 0.0}, v = {0.01, 0.0};
  const double lr = 0.1, b1 = 0.9, b2 = 0.99, eps = 1e-8, wd = 0.01, c1 = 1 - std::pow(b1, 3), c2 = 1 - std::pow(b2, 3),
               scale = 0.5;
  Vec expect = p;
  for (int i = 0; i < 2; ++i) {
    double gi = grad[i] * scale;
    double mi = b1 * m[i] + (1 - b1) * gi, vi = b2 * v[i] + (1 - b2) * gi * gi;
    expect[i] = p[i] - lr * ((mi / c1) / (std::sqrt(vi / c2) + eps) + wd * p[i]);
  }
  adamw_update(p.data(), grad.data(), m.data(), v.data(), 2, lr, b1, b2, eps, wd, c1, c2, scale);
  EXPECT_DOUBLE_EQ(p[0], expect[0]);
  EXPECT_DOUBLE_EQ(p[1], expect[1]);
}

// SGD with and without (Nesterov) momentum: PyTorch's formula, with decoupled weight decay.
TEST(SgdKernel, StepMatchesTheFormula) {
  const double lr = 0.7, mu = 0.9, wd = 0.01, scale = 0.5;
  for (int nesterov = 0; nesterov < 2; ++nesterov) {
    Vec p = {1.0, -2.0}, grad = {0.5, 0.1}, m = {0.1, -0.3};
    Vec expect = p, expect_m = m;
    for (int i = 0; i < 2; ++i) {
      double gi = grad[i] * scale;
      expect_m[i] = mu * m[i] + gi;
      double step = nesterov ? gi + mu * expect_m[i] : expect_m[i];
      expect[i] = p[i] - lr * (step + wd * p[i]);
    }
    sgd_update(p.data(), grad.data(), m.data(), 2, lr, mu, nesterov == 1, wd, scale, false);
    for (int i = 0; i < 2; ++i) {
      EXPECT_DOUBLE_EQ(p[i], expect[i]);
      EXPECT_DOUBLE_EQ(m[i], expect_m[i]);
    }
  }
  Vec p = {1.0}, grad = {0.5};
  sgd_update<double>(p.data(), grad.data(), nullptr, 1, 0.1, 0.0, false, 0.0, 1.0, false);  // plain: no state
  EXPECT_DOUBLE_EQ(p[0], 1.0 - 0.1 * 0.5);
  // Sign: the gradient's sign (0 for 0), then decoupled weight decay.
  Vec q = {1.0, -2.0, 3.0}, g = {0.25, -7.0, 0.0};
  sgd_update<double>(q.data(), g.data(), nullptr, 3, 0.1, 0.0, false, 0.5, 2.0, true);
  EXPECT_DOUBLE_EQ(q[0], 1.0 - 0.1 * (1.0 + 0.5 * 1.0));
  EXPECT_DOUBLE_EQ(q[1], -2.0 - 0.1 * (-1.0 + 0.5 * -2.0));
  EXPECT_DOUBLE_EQ(q[2], 3.0 - 0.1 * (0.0 + 0.5 * 3.0));
  // Sign with momentum: the sign goes into the momentum.
  Vec r = {1.0, -2.0}, gr = {-3.0, 0.5}, mr = {0.5, 0.25};
  sgd_update<double>(r.data(), gr.data(), mr.data(), 2, 0.1, 0.5, false, 0.0, 1.0, true);
  EXPECT_DOUBLE_EQ(mr[0], 0.5 * 0.5 - 1.0);
  EXPECT_DOUBLE_EQ(mr[1], 0.5 * 0.25 + 1.0);
  EXPECT_DOUBLE_EQ(r[0], 1.0 - 0.1 * mr[0]);
  EXPECT_DOUBLE_EQ(r[1], -2.0 - 0.1 * mr[1]);
}

// Each variant's vectorised loop (sign or not, momentum or none: a null state is never read)
// over a long float run, against the formula element by element.
TEST(SgdKernel, LongFloatRunsMatchTheFormula) {
  const i64 n = 70000;  // past parallel_for's grain, and not a multiple of a vector
  std::vector<float> p(n), g(n), m(n, 0.25f);
  for (i64 i = 0; i < n; ++i) {
    p[i] = static_cast<float>(i % 13) - 6.0f;
    g[i] = static_cast<float>(i % 7) - 3.0f;
  }
  for (int variant = 0; variant < 4; ++variant) {
    const bool sign = variant & 1, momentum = variant & 2;
    std::vector<float> q = p, mq = m;
    sgd_update<float>(q.data(), g.data(), momentum ? mq.data() : nullptr, n, 0.5, momentum ? 0.5 : 0.0, false, 0.0,
                      1.0, sign);
    for (i64 i = 0; i < n; ++i) {
      float step = sign ? static_cast<float>((g[i] > 0) - (g[i] < 0)) : g[i];
      if (momentum) step = 0.5f * m[i] + step;
      ASSERT_FLOAT_EQ(q[i], p[i] - 0.5f * step) << "variant " << variant << " at " << i;
    }
  }
}

// The float kernels' exp (GELU, softmaxes) against the double-precision one.
TEST(FloatExp, IsWithinThreeUlpAndClamps) {
  double worst = 0;
  for (int i = 0; i <= 200000; ++i) {
    const float x = -87.0f + 175.0f * static_cast<float>(i) / 200000.0f;
    const double exact = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::abs(static_cast<double>(vexp(x)) - exact) / exact);
  }
  EXPECT_LT(worst, 3 * 0x1p-24) << "worst relative error " << worst;
  EXPECT_EQ(vexp(0.0f), 1.0f);
  EXPECT_GT(vexp(-1000.0f), 0.0f);
  EXPECT_LT(vexp(-1000.0f), 1.3e-38f);  // e^-87.3
  EXPECT_TRUE(std::isfinite(vexp(1000.0f)));
}

// Every kernel with a loop of its own gives the same bits on 1 and 2 threads: each element
// is computed in the serial loop's order, as OpenBLAS's sgemm does.
TEST(KernelThreads, TwoThreadsGiveTheBitsOfOne) {
  using F = std::vector<float>;
  std::mt19937_64 g{7};
  auto rnd = [&](std::size_t n) {
    std::normal_distribution<float> d(0.0f, 1.0f);
    F v(n);
    for (auto& x : v) x = d(g);
    return v;
  };
  const i64 B = 2, T = 70, C = 32, NH = 4, N = B * T, E = 40000, V = 256;
  const F x = rnd(N * C), w = rnd(C), b = rnd(C), dy = rnd(N * C), qkv = rnd(N * 3 * C), big = rnd(E),
          dbig = rnd(E), logits = rnd(N * V), wmat = rnd(C * C);
  std::vector<std::int32_t> targets(N);
  for (i64 n = 0; n < N; ++n) targets[n] = static_cast<std::int32_t>((n * 37) % V);
  auto run = [&](int threads) {
    set_threads(threads);
    std::vector<F> out;
    F ln(N * C), mean(N), rstd(N), dx(N * C, 0.f), dw(C, 0.f), db(C, 0.f);
    layernorm_forward(ln.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C);
    layernorm_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(), mean.data(), rstd.data(), N, C);
    F att_out(N * C), att(B * NH * T * T), dqkv(N * 3 * C, 0.f);
    attention_forward(att_out.data(), att.data(), qkv.data(), B, T, C, NH);
    attention_backward(dqkv.data(), dy.data(), qkv.data(), att.data(), B, T, C, NH);
    F gl(E), dgl(E, 0.f), res(E);
    gelu_forward(gl.data(), big.data(), E);
    gelu_backward(dgl.data(), big.data(), dbig.data(), E);
    residual_forward(res.data(), big.data(), dbig.data(), E);
    F losses(N), probs(N * V), dlogits(N * V, 0.f);
    crossentropy_forward(losses.data(), probs.data(), logits.data(), targets.data(), N, V);
    crossentropy_backward(dlogits.data(), probs.data(), targets.data(), 0.01f, N, V, 0);
    F mm(N * C), mdx(N * C, 0.f), mdw(C * C, 0.f), mdb(C, 0.f), p = big, m(E, 0.f), v(E, 0.f);
    matmul_forward(mm.data(), x.data(), wmat.data(), b.data(), N, C, C);
    add_bias(mm.data(), b.data(), N, C);
    matmul_backward(mdx.data(), mdw.data(), mdb.data(), dy.data(), x.data(), wmat.data(), N, C, C);
    adamw_update(p.data(), dbig.data(), m.data(), v.data(), E, 1e-3, 0.9, 0.95, 1e-8, 0.1, 0.1, 0.05, 0.5);
    set_threads(1);
    return std::vector<F>{ln, mean, rstd, dx, dw, db, att_out, att, dqkv, gl, dgl, res, losses, probs, dlogits,
                          mm, mdx, mdw, mdb, p, m, v};
  };
  const auto one = run(1), two = run(2);
  ASSERT_EQ(one.size(), two.size());
  for (std::size_t i = 0; i < one.size(); ++i)
    EXPECT_EQ(std::memcmp(one[i].data(), two[i].data(), one[i].size() * sizeof(float)), 0) << "output " << i;
}

}  // namespace
}  // namespace ft::cpu
