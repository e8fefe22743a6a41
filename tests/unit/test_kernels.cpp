// Every op's backward against central finite differences of its forward, in double
// precision on random inputs. The objective is L = sum(R * out) for a fixed random R, so
// dL/dout = R. With h = 1e-5 the central difference has truncation error O(h^2) ~ 1e-10
// and rounding error ~ 1e-16 / 1e-5 = 1e-11 relative to the values here, so 1e-7 relative
// (with a 1e-9 absolute floor) is a bound that only a wrong derivative can break.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "models/cpu/kernels.h"

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

TEST_F(Kernels, AttentionBackwardMatchesFiniteDifferences) {
  const i64 B = 2, T = 5, C = 6, NH = 2;
  Vec qkv = random_vec(B * T * 3 * C, g), R = random_vec(B * T * C, g);
  Vec out(B * T * C), att(B * NH * T * T);
  auto L = [&] {
    attention_forward(out.data(), att.data(), qkv.data(), B, T, C, NH);
    return dot(out, R);
  };
  L();
  Vec dqkv(qkv.size(), 0.0), scratch(T * T);
  attention_backward(dqkv.data(), scratch.data(), R.data(), qkv.data(), att.data(), B, T, C, NH);
  expect_matches_finite_differences("dqkv", qkv, dqkv, L);
}

TEST_F(Kernels, AttentionIsCausal) {
  const i64 B = 1, T = 6, C = 4, NH = 2;
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
    embedding_forward(out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C);
    return dot(out, R);
  };
  Vec dwte(V * C, 0.0), dwpe(T * C, 0.0);
  embedding_backward(dwte.data(), dwpe.data(), R.data(), tokens.data(), B, T, C);
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
  crossentropy_backward(dlogits.data(), probs.data(), targets.data(), dloss, N, V);
  expect_matches_finite_differences("dlogits", logits, dlogits, L);
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

}  // namespace
}  // namespace ft::cpu
