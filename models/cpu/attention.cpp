// Causal self-attention with the matrix products in BLAS: per (batch, head), S = Q K^T
// over the full T x T block, masked softmax, then P V. Q, K and V of one head are strided
// views into the fused qkv rows, so nothing is copied.
#include <algorithm>
#include <cmath>
#include <limits>

#include "models/cpu/kernels.h"

namespace ft::cpu {

template <class T> void attention_forward(T* out, T* att, const T* qkv, i64 B, i64 T_, i64 C, i64 NH) {
  const i64 hs = C / NH;
  const i64 row = 3 * C;
  const T scale = T(1) / std::sqrt(static_cast<T>(hs));
  for (i64 b = 0; b < B; ++b) {
    for (i64 h = 0; h < NH; ++h) {
      const T* q = qkv + b * T_ * row + h * hs;
      const T* k = q + C;
      const T* v = q + 2 * C;
      T* p = att + (b * NH + h) * T_ * T_;
      gemm<T>(false, true, T_, T_, hs, scale, q, row, k, row, T(0), p, T_);
      for (i64 i = 0; i < T_; ++i) {
        T* pi = p + i * T_;
        T mx = -std::numeric_limits<T>::infinity();
        for (i64 j = 0; j <= i; ++j) mx = std::max(mx, pi[j]);
        T sum = 0;
        for (i64 j = 0; j <= i; ++j) {
          pi[j] = std::exp(pi[j] - mx);
          sum += pi[j];
        }
        T inv = T(1) / sum;
        for (i64 j = 0; j <= i; ++j) pi[j] *= inv;
        std::fill(pi + i + 1, pi + T_, T(0));
      }
      gemm<T>(false, false, T_, hs, T_, T(1), p, T_, v, row, T(0), out + b * T_ * C + h * hs, C);
    }
  }
}

template <class T>
void attention_backward(T* dqkv, T* scratch, const T* dout, const T* qkv, const T* att, i64 B, i64 T_, i64 C,
                        i64 NH) {
  const i64 hs = C / NH;
  const i64 row = 3 * C;
  const T scale = T(1) / std::sqrt(static_cast<T>(hs));
  for (i64 b = 0; b < B; ++b) {
    for (i64 h = 0; h < NH; ++h) {
      const T* q = qkv + b * T_ * row + h * hs;
      const T* k = q + C;
      const T* v = q + 2 * C;
      T* dq = dqkv + b * T_ * row + h * hs;
      T* dk = dq + C;
      T* dv = dq + 2 * C;
      const T* p = att + (b * NH + h) * T_ * T_;
      const T* d_o = dout + b * T_ * C + h * hs;
      T* ds = scratch;
      // dP = dO V^T, then dS = P * (dP - rowsum(P * dP)) below the diagonal.
      gemm<T>(false, true, T_, T_, hs, T(1), d_o, C, v, row, T(0), ds, T_);
      for (i64 i = 0; i < T_; ++i) {
        const T* pi = p + i * T_;
        T* di = ds + i * T_;
        T dot = 0;
        for (i64 j = 0; j <= i; ++j) dot += pi[j] * di[j];
        for (i64 j = 0; j <= i; ++j) di[j] = pi[j] * (di[j] - dot);
        std::fill(di + i + 1, di + T_, T(0));
      }
      gemm<T>(true, false, T_, hs, T_, T(1), p, T_, d_o, C, T(1), dv, row);      // dV += P^T dO
      gemm<T>(false, false, T_, hs, T_, scale, ds, T_, k, row, T(1), dq, row);   // dQ += s dS K
      gemm<T>(true, false, T_, hs, T_, scale, ds, T_, q, row, T(1), dk, row);    // dK += s dS^T Q
    }
  }
}

template void attention_forward<float>(float*, float*, const float*, i64, i64, i64, i64);
template void attention_forward<double>(double*, double*, const double*, i64, i64, i64, i64);
template void attention_backward<float>(float*, float*, const float*, const float*, const float*, i64, i64, i64, i64);
template void attention_backward<double>(double*, double*, const double*, const double*, const double*, i64, i64, i64,
                                         i64);

}  // namespace ft::cpu
