// Causal self-attention with the matrix products in BLAS, one (batch, head) per task on the
// kernel threads (BLAS serial inside). Per (batch, head), rows are taken in blocks of kRows
// queries: a block attends to keys [0, end of block) only, so the products
// skip the part above the diagonal (about 40% of the work at T = 256), and the stored
// probabilities are zero there. Q, K and V of one head are strided views into the fused qkv
// rows, so nothing is copied.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "models/cpu/kernels.h"
#include "models/cpu/parallel.h"
#include "models/cpu/vec_math.h"

namespace ft::cpu {
namespace {

constexpr i64 kRows = 64;

// Row i of the scores, in place: softmax over [0, i], zero over (i, T).
template <class T> void causal_softmax_row(T* pi, i64 i, i64 T_) {
  T mx = -std::numeric_limits<T>::infinity();
  for (i64 j = 0; j <= i; ++j) mx = std::max(mx, pi[j]);
  T sum = 0;
  for (i64 j = 0; j <= i; ++j) {
    pi[j] = vexp(pi[j] - mx);
    sum += pi[j];
  }
  const T inv = T(1) / sum;
  for (i64 j = 0; j <= i; ++j) pi[j] *= inv;
  std::fill(pi + i + 1, pi + T_, T(0));
}

}  // namespace

template <class T> void attention_forward(T* out, T* att, const T* qkv, i64 B, i64 T_, i64 C, i64 NH) {
  const i64 hs = C / NH;
  const i64 row = 3 * C;
  const T scale = T(1) / std::sqrt(static_cast<T>(hs));
  SerialBlas serial;
  parallel_for(B * NH, 1, [=](i64 t0, i64 t1) {
    for (i64 task = t0; task < t1; ++task) {
      const i64 b = task / NH, h = task % NH;
      const T* q = qkv + b * T_ * row + h * hs;
      const T* k = q + C;
      const T* v = q + 2 * C;
      T* p = att + (b * NH + h) * T_ * T_;
      T* o = out + b * T_ * C + h * hs;
      for (i64 r0 = 0; r0 < T_; r0 += kRows) {
        const i64 rows = std::min(kRows, T_ - r0), keys = r0 + rows;
        T* pr = p + r0 * T_;
        gemm<T>(false, true, rows, keys, hs, scale, q + r0 * row, row, k, row, T(0), pr, T_);
        for (i64 i = 0; i < rows; ++i) causal_softmax_row(pr + i * T_, r0 + i, T_);
        gemm<T>(false, false, rows, hs, keys, T(1), pr, T_, v, row, T(0), o + r0 * C, C);
      }
    }
  });
}

template <class T>
void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* att, i64 B, i64 T_, i64 C, i64 NH) {
  const i64 hs = C / NH;
  const i64 row = 3 * C;
  const T scale = T(1) / std::sqrt(static_cast<T>(hs));
  SerialBlas serial;
  parallel_for(B * NH, 1, [=](i64 t0, i64 t1) {
    thread_local std::vector<T> scratch;  // dS of one block of rows, kept between calls
    scratch.resize(static_cast<std::size_t>(kRows * T_));
    for (i64 task = t0; task < t1; ++task) {
      const i64 b = task / NH, h = task % NH;
      const T* q = qkv + b * T_ * row + h * hs;
      const T* k = q + C;
      const T* v = q + 2 * C;
      T* dq = dqkv + b * T_ * row + h * hs;
      T* dk = dq + C;
      T* dv = dq + 2 * C;
      const T* p = att + (b * NH + h) * T_ * T_;
      const T* d_o = dout + b * T_ * C + h * hs;
      for (i64 r0 = 0; r0 < T_; r0 += kRows) {
        const i64 rows = std::min(kRows, T_ - r0), keys = r0 + rows;
        const T* pr = p + r0 * T_;
        T* ds = scratch.data();
        // dP = dO V^T, then dS = P * (dP - rowsum(P * dP)) on and below the diagonal.
        gemm<T>(false, true, rows, keys, hs, T(1), d_o + r0 * C, C, v, row, T(0), ds, T_);
        for (i64 i = 0; i < rows; ++i) {
          const T* pi = pr + i * T_;
          T* di = ds + i * T_;
          const i64 last = r0 + i;
          T dot = 0;
          for (i64 j = 0; j <= last; ++j) dot += pi[j] * di[j];
          for (i64 j = 0; j <= last; ++j) di[j] = pi[j] * (di[j] - dot);
          std::fill(di + last + 1, di + keys, T(0));
        }
        gemm<T>(true, false, keys, hs, rows, T(1), pr, T_, d_o + r0 * C, C, T(1), dv, row);     // dV += P^T dO
        gemm<T>(false, false, rows, hs, keys, scale, ds, T_, k, row, T(1), dq + r0 * row, row);  // dQ += s dS K
        gemm<T>(true, false, keys, hs, rows, scale, ds, T_, q + r0 * row, row, T(1), dk, row);   // dK += s dS^T Q
      }
    }
  });
}

template void attention_forward<float>(float*, float*, const float*, i64, i64, i64, i64);
template void attention_forward<double>(double*, double*, const double*, i64, i64, i64, i64);
template void attention_backward<float>(float*, const float*, const float*, const float*, i64, i64, i64, i64);
template void attention_backward<double>(double*, const double*, const double*, const double*, i64, i64, i64, i64);

}  // namespace ft::cpu
