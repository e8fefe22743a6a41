// Element-wise and row-wise kernels: GELU, residual, embedding, softmax cross-entropy.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "models/cpu/kernels.h"
#include "models/cpu/parallel.h"
#include "models/cpu/vec_math.h"

namespace ft::cpu {

namespace {
template <class T> constexpr T kGeluC = static_cast<T>(0.7978845608028654);  // sqrt(2/pi)
}

// 0.5 x (1 + tanh(u)) = x * sigmoid(2u): one exp instead of tanh, which costs several.
namespace {
// Element-wise loops are worth a second thread from about this many elements.
constexpr i64 kGrain = 1 << 14;
}  // namespace

template <class T> void gelu_forward(T* out, const T* inp, i64 N) {
  parallel_for(N, kGrain, [=](i64 i0, i64 i1) {
    for (i64 i = i0; i < i1; ++i) {
      T x = inp[i];
      T u = kGeluC<T> * (x + T(0.044715) * x * x * x);
      out[i] = x / (T(1) + vexp(T(-2) * u));
    }
  });
}

template <class T> void gelu_backward(T* dinp, const T* inp, const T* dout, i64 N) {
  parallel_for(N, kGrain, [=](i64 i0, i64 i1) {
    for (i64 i = i0; i < i1; ++i) {
      T x = inp[i];
      T u = kGeluC<T> * (x + T(0.044715) * x * x * x);
      T s = T(1) / (T(1) + vexp(T(-2) * u));
      T du = kGeluC<T> * (T(1) + T(3) * T(0.044715) * x * x);
      dinp[i] += (s + x * s * (T(1) - s) * T(2) * du) * dout[i];
    }
  });
}

template <class T> void residual_forward(T* out, const T* a, const T* b, i64 N) {
  parallel_for(N, kGrain, [=](i64 i0, i64 i1) {
    for (i64 i = i0; i < i1; ++i) out[i] = a[i] + b[i];
  });
}

template <class T> void add_into(T* dst, const T* src, i64 N) {
  for (i64 i = 0; i < N; ++i) dst[i] += src[i];
}

template <class T>
void embedding_forward(T* out, const std::int32_t* tokens, const T* wte, const T* wpe, i64 B, i64 T_, i64 C, i64 v0,
                       i64 Vl) {
  for (i64 b = 0; b < B; ++b)
    for (i64 t = 0; t < T_; ++t) {
      const i64 row = static_cast<i64>(tokens[b * T_ + t]) - v0;
      const T* e = row >= 0 && row < Vl ? wte + row * C : nullptr;
      const T* p = wpe ? wpe + t * C : nullptr;
      T* o = out + (b * T_ + t) * C;
      for (i64 c = 0; c < C; ++c) o[c] = (e ? e[c] : T(0)) + (p ? p[c] : T(0));
    }
}

template <class T>
void embedding_backward(T* dwte, T* dwpe, const T* dout, const std::int32_t* tokens, i64 B, i64 T_, i64 C, i64 v0,
                        i64 Vl) {
  for (i64 b = 0; b < B; ++b)
    for (i64 t = 0; t < T_; ++t) {
      const T* d = dout + (b * T_ + t) * C;
      const i64 row = static_cast<i64>(tokens[b * T_ + t]) - v0;
      if (dwte && row >= 0 && row < Vl) add_into(dwte + row * C, d, C);
      if (dwpe) add_into(dwpe + t * C, d, C);
    }
}

template <class T>
void crossentropy_forward(T* losses, T* probs, const T* logits, const std::int32_t* targets, i64 N, i64 V) {
  parallel_for(N, kGrain / V + 1, [=](i64 n0, i64 n1) {
    for (i64 n = n0; n < n1; ++n) {
      const T* z = logits + n * V;
      T* p = probs + n * V;
      const T z_target = z[targets[n]];  // before p (which may be z) is written
      T mx = -std::numeric_limits<T>::infinity();
      for (i64 v = 0; v < V; ++v) mx = std::max(mx, z[v]);
      T sum = 0;
      for (i64 v = 0; v < V; ++v) {
        p[v] = vexp(z[v] - mx);
        sum += p[v];
      }
      T inv = T(1) / sum;
      for (i64 v = 0; v < V; ++v) p[v] *= inv;
      // -log softmax, computed from the logits for accuracy when p[target] is tiny.
      losses[n] = mx + std::log(sum) - z_target;
    }
  });
}

template <class T>
void crossentropy_shard_stats(T* stats, const T* logits, const std::int32_t* targets, i64 N, i64 Vl, i64 v0) {
  parallel_for(N, kGrain / Vl + 1, [=](i64 n0, i64 n1) {
    for (i64 n = n0; n < n1; ++n) {
      const T* z = logits + n * Vl;
      T mx = -std::numeric_limits<T>::infinity();
      for (i64 v = 0; v < Vl; ++v) mx = std::max(mx, z[v]);
      T sum = 0;
      for (i64 v = 0; v < Vl; ++v) sum += vexp(z[v] - mx);
      const i64 target = static_cast<i64>(targets[n]) - v0;
      stats[n] = mx;
      stats[N + n] = sum;
      stats[2 * N + n] = target >= 0 && target < Vl ? z[target] : T(0);
    }
  });
}

template <class T>
void crossentropy_shard_finish(T* losses, T* probs, const T* logits, const T* all_stats, int ranks, i64 N, i64 Vl) {
  parallel_for(N, kGrain / Vl + 1, [=](i64 n0, i64 n1) {
    for (i64 n = n0; n < n1; ++n) {
      T mx = -std::numeric_limits<T>::infinity(), sum = 0, z_target = 0;
      for (int r = 0; r < ranks; ++r) mx = std::max(mx, all_stats[3 * N * r + n]);
      for (int r = 0; r < ranks; ++r) {
        const T* s = all_stats + 3 * N * r;
        sum += s[N + n] * vexp(s[n] - mx);
        z_target += s[2 * N + n];
      }
      const T* z = logits + n * Vl;
      T* p = probs + n * Vl;
      const T inv = T(1) / sum;
      for (i64 v = 0; v < Vl; ++v) p[v] = vexp(z[v] - mx) * inv;
      losses[n] = mx + std::log(sum) - z_target;
    }
  });
}

template <class T>
void crossentropy_backward(T* dlogits, const T* probs, const std::int32_t* targets, T dloss, i64 N, i64 Vl, i64 v0) {
  parallel_for(N, kGrain / Vl + 1, [=](i64 n0, i64 n1) {
    for (i64 n = n0; n < n1; ++n) {
      const T* p = probs + n * Vl;
      T* d = dlogits + n * Vl;
      for (i64 v = 0; v < Vl; ++v) d[v] = p[v] * dloss;
      const i64 target = static_cast<i64>(targets[n]) - v0;
      if (target >= 0 && target < Vl) d[target] -= dloss;
    }
  });
}

template <class T> void add_bias(T* out, const T* bias, i64 N, i64 OC) {
  parallel_for(N, kGrain / OC + 1, [=](i64 n0, i64 n1) {
    for (i64 n = n0; n < n1; ++n) add_into(out + n * OC, bias, OC);
  });
}

template <class T>
void adamw_update(T* param, const T* grad, T* m, T* v, i64 n, double lr, double beta1, double beta2, double eps,
                  double weight_decay, double c1, double c2, double grad_scale) {
  const T b1 = static_cast<T>(beta1), b2 = static_cast<T>(beta2), s = static_cast<T>(grad_scale);
  const T inv_c1 = static_cast<T>(1.0 / c1), inv_c2 = static_cast<T>(1.0 / c2);
  const T lr_t = static_cast<T>(lr), eps_t = static_cast<T>(eps), wd = static_cast<T>(weight_decay);
  parallel_for(n, kGrain, [=](i64 i0, i64 i1) {
    for (i64 i = i0; i < i1; ++i) {
      T g = grad[i] * s;
      m[i] = b1 * m[i] + (T(1) - b1) * g;
      v[i] = b2 * v[i] + (T(1) - b2) * g * g;
      T mhat = m[i] * inv_c1;
      T vhat = v[i] * inv_c2;
      param[i] -= lr_t * (mhat / (std::sqrt(vhat) + eps_t) + wd * param[i]);
    }
  });
}

namespace {

// One loop per variant. With the momentum test inside the loop, GCC reads m through a masked
// load even when m is null, and Zen takes a microcode assist on each one (8x slower).
template <class T, bool Sign, bool Momentum>
void sgd_loop(T* param, const T* grad, T* m, i64 n, T lr, T mu, bool nesterov, T wd, T s) {
  parallel_for(n, kGrain, [=](i64 i0, i64 i1) {
    for (i64 i = i0; i < i1; ++i) {
      T step = grad[i] * s;
      if constexpr (Sign) step = static_cast<T>((step > T(0)) - (step < T(0)));
      if constexpr (Momentum) {
        m[i] = mu * m[i] + step;
        step = nesterov ? step + mu * m[i] : m[i];
      }
      param[i] -= lr * (step + wd * param[i]);
    }
  });
}

}  // namespace

template <class T>
void sgd_update(T* param, const T* grad, T* m, i64 n, double lr, double mu, bool nesterov, double weight_decay,
                double grad_scale, bool sign) {
  const T s = static_cast<T>(grad_scale), lr_t = static_cast<T>(lr), mu_t = static_cast<T>(mu),
          wd = static_cast<T>(weight_decay);
  const bool momentum = mu_t != T(0);
  if (sign && momentum) sgd_loop<T, true, true>(param, grad, m, n, lr_t, mu_t, nesterov, wd, s);
  else if (sign) sgd_loop<T, true, false>(param, grad, m, n, lr_t, mu_t, nesterov, wd, s);
  else if (momentum) sgd_loop<T, false, true>(param, grad, m, n, lr_t, mu_t, nesterov, wd, s);
  else sgd_loop<T, false, false>(param, grad, m, n, lr_t, mu_t, nesterov, wd, s);
}

#define FT_INSTANTIATE(T)                                                                               \
  template void gelu_forward<T>(T*, const T*, i64);                                                     \
  template void gelu_backward<T>(T*, const T*, const T*, i64);                                          \
  template void residual_forward<T>(T*, const T*, const T*, i64);                                       \
  template void add_into<T>(T*, const T*, i64);                                                         \
  template void embedding_forward<T>(T*, const std::int32_t*, const T*, const T*, i64, i64, i64, i64, i64); \
  template void embedding_backward<T>(T*, T*, const T*, const std::int32_t*, i64, i64, i64, i64, i64);      \
  template void crossentropy_forward<T>(T*, T*, const T*, const std::int32_t*, i64, i64);               \
  template void crossentropy_shard_stats<T>(T*, const T*, const std::int32_t*, i64, i64, i64);          \
  template void crossentropy_shard_finish<T>(T*, T*, const T*, const T*, int, i64, i64);              \
  template void crossentropy_backward<T>(T*, const T*, const std::int32_t*, T, i64, i64, i64);        \
  template void add_bias<T>(T*, const T*, i64, i64);                                                   \
  template void adamw_update<T>(T*, const T*, T*, T*, i64, double, double, double, double, double, double, double, \
                                double);                                                                \
  template void sgd_update<T>(T*, const T*, T*, i64, double, double, bool, double, double, bool);
FT_INSTANTIATE(float)
FT_INSTANTIATE(double)
#undef FT_INSTANTIATE

}  // namespace ft::cpu
