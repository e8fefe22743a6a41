#include <cmath>

#include "models/cpu/kernels.h"
#include "models/cpu/parallel.h"

namespace ft::cpu {

constexpr double kLayerNormEps = 1e-5;

template <class T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* inp, const T* w, const T* b, i64 N, i64 C) {
  parallel_for(N, 64, [=](i64 n0, i64 n1) {
    for (i64 n = n0; n < n1; ++n) {
      const T* x = inp + n * C;
      T m = 0;
      for (i64 c = 0; c < C; ++c) m += x[c];
      m /= static_cast<T>(C);
      T v = 0;
      for (i64 c = 0; c < C; ++c) v += (x[c] - m) * (x[c] - m);
      v /= static_cast<T>(C);
      T s = T(1) / std::sqrt(v + static_cast<T>(kLayerNormEps));
      T* o = out + n * C;
      for (i64 c = 0; c < C; ++c) o[c] = (x[c] - m) * s * w[c] + b[c];
      mean[n] = m;
      rstd[n] = s;
    }
  });
}

template <class T>
void layernorm_backward(T* dinp, T* dw, T* db, const T* dout, const T* inp, const T* w, const T* mean,
                        const T* rstd, i64 N, i64 C) {
  // dnorm = d * w; dx = s * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)), row by row.
  parallel_for(N, 64, [=](i64 n0, i64 n1) {
    for (i64 n = n0; n < n1; ++n) {
      const T* x = inp + n * C;
      const T* d = dout + n * C;
      const T m = mean[n], s = rstd[n];
      T dnorm_mean = 0, dnorm_norm_mean = 0;
      for (i64 c = 0; c < C; ++c) {
        T norm = (x[c] - m) * s;
        T dnorm = w[c] * d[c];
        dnorm_mean += dnorm;
        dnorm_norm_mean += dnorm * norm;
      }
      dnorm_mean /= static_cast<T>(C);
      dnorm_norm_mean /= static_cast<T>(C);
      T* dx = dinp + n * C;
      for (i64 c = 0; c < C; ++c) {
        T norm = (x[c] - m) * s;
        dx[c] += s * (w[c] * d[c] - dnorm_mean - norm * dnorm_norm_mean);
      }
    }
  });
  // dw, db: column sums over the rows, each thread a band of columns, rows in order.
  parallel_for(C, 64, [=](i64 c0, i64 c1) {
    for (i64 n = 0; n < N; ++n) {
      const T* x = inp + n * C;
      const T* d = dout + n * C;
      const T m = mean[n], s = rstd[n];
      for (i64 c = c0; c < c1; ++c) {
        db[c] += d[c];
        dw[c] += (x[c] - m) * s * d[c];
      }
    }
  });
}

template void layernorm_forward<float>(float*, float*, float*, const float*, const float*, const float*, i64, i64);
template void layernorm_forward<double>(double*, double*, double*, const double*, const double*, const double*, i64,
                                        i64);
template void layernorm_backward<float>(float*, float*, float*, const float*, const float*, const float*, const float*,
                                        const float*, i64, i64);
template void layernorm_backward<double>(double*, double*, double*, const double*, const double*, const double*,
                                         const double*, const double*, i64, i64);

}  // namespace ft::cpu
