#include "models/ops.h"

#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include "models/cpu/kernels.h"

namespace ft::ops {
namespace {

// Runs f.template operator()<T>() with T the element type of `t` (float or double), on
// the CPU. Device tensors arrive with the CUDA kernels.
template <class F> void on_cpu(const Tensor& t, F&& f) {
  if (t.device() != Device::cpu)
    throw std::logic_error("a CUDA tensor reached a CPU-only op (device: cuda needs the CUDA kernels)");
  switch (t.dtype()) {
    case DType::f32: f.template operator()<float>(); return;
    case DType::f64: f.template operator()<double>(); return;
    default: throw std::logic_error(fmt::format("no CPU kernel for {} tensors", to_string(t.dtype())));
  }
}

template <class T> T* ptr(const Tensor* t) { return t ? t->data<T>() : nullptr; }

}  // namespace

void zero(const Tensor& t) {
  if (t.device() != Device::cpu) throw std::logic_error("zero: CUDA tensor in a CPU-only build path");
  std::memset(t.raw(), 0, t.bytes());
}

void copy(const Tensor& dst, const Tensor& src) {
  if (dst.bytes() != src.bytes() || dst.dtype() != src.dtype())
    throw std::logic_error(fmt::format("copy of {} into {}", to_string(src.shape()), to_string(dst.shape())));
  std::memcpy(dst.raw(), src.raw(), dst.bytes());
}

void scale(const Tensor& t, double factor) {
  on_cpu(t, [&]<class T>() {
    T* p = t.data<T>();
    for (i64 i = 0; i < t.numel(); ++i) p[i] *= static_cast<T>(factor);
  });
}

std::vector<double> to_host(const Tensor& t) {
  std::vector<double> out(static_cast<std::size_t>(t.numel()));
  on_cpu(t, [&]<class T>() {
    const T* p = t.data<T>();
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<double>(p[i]);
  });
  return out;
}

void from_host(const Tensor& t, const std::vector<double>& values) {
  if (static_cast<i64>(values.size()) != t.numel()) throw std::logic_error("from_host: size mismatch");
  on_cpu(t, [&]<class T>() {
    T* p = t.data<T>();
    for (std::size_t i = 0; i < values.size(); ++i) p[i] = static_cast<T>(values[i]);
  });
}

void matmul_forward(const Tensor& out, const Tensor& inp, const Tensor& w, const Tensor* bias, i64 N, i64 C, i64 OC) {
  on_cpu(out, [&]<class T>() { cpu::matmul_forward<T>(out.data<T>(), inp.data<T>(), w.data<T>(), ptr<T>(bias), N, C, OC); });
}

void matmul_backward(const Tensor* dinp, const Tensor* dw, const Tensor* dbias, const Tensor& dout, const Tensor& inp,
                     const Tensor& w, i64 N, i64 C, i64 OC) {
  on_cpu(dout, [&]<class T>() {
    cpu::matmul_backward<T>(ptr<T>(dinp), ptr<T>(dw), ptr<T>(dbias), dout.data<T>(), inp.data<T>(), w.data<T>(), N, C, OC);
  });
}

void add_bias(const Tensor& out, const Tensor& bias, i64 N, i64 OC) {
  on_cpu(out, [&]<class T>() { cpu::add_bias<T>(out.data<T>(), bias.data<T>(), N, OC); });
}

void layernorm_forward(const Tensor& out, const Tensor& mean, const Tensor& rstd, const Tensor& inp, const Tensor& w,
                       const Tensor& b, i64 N, i64 C) {
  on_cpu(out, [&]<class T>() {
    cpu::layernorm_forward<T>(out.data<T>(), mean.data<T>(), rstd.data<T>(), inp.data<T>(), w.data<T>(), b.data<T>(), N, C);
  });
}

void layernorm_backward(const Tensor& dinp, const Tensor& dw, const Tensor& db, const Tensor& dout, const Tensor& inp,
                        const Tensor& w, const Tensor& mean, const Tensor& rstd, i64 N, i64 C) {
  on_cpu(dinp, [&]<class T>() {
    cpu::layernorm_backward<T>(dinp.data<T>(), dw.data<T>(), db.data<T>(), dout.data<T>(), inp.data<T>(), w.data<T>(),
                               mean.data<T>(), rstd.data<T>(), N, C);
  });
}

void attention_forward(const Tensor& out, const Tensor& att, const Tensor& qkv, i64 B, i64 T, i64 C, i64 NH) {
  on_cpu(out, [&]<class E>() { cpu::attention_forward<E>(out.data<E>(), att.data<E>(), qkv.data<E>(), B, T, C, NH); });
}

void attention_backward(const Tensor& dqkv, const Tensor& scratch, const Tensor& dout, const Tensor& qkv,
                        const Tensor& att, i64 B, i64 T, i64 C, i64 NH) {
  on_cpu(dqkv, [&]<class E>() {
    cpu::attention_backward<E>(dqkv.data<E>(), scratch.data<E>(), dout.data<E>(), qkv.data<E>(), att.data<E>(), B, T, C, NH);
  });
}

void gelu_forward(const Tensor& out, const Tensor& inp, i64 N) {
  on_cpu(out, [&]<class T>() { cpu::gelu_forward<T>(out.data<T>(), inp.data<T>(), N); });
}

void gelu_backward(const Tensor& dinp, const Tensor& inp, const Tensor& dout, i64 N) {
  on_cpu(dinp, [&]<class T>() { cpu::gelu_backward<T>(dinp.data<T>(), inp.data<T>(), dout.data<T>(), N); });
}

void residual_forward(const Tensor& out, const Tensor& a, const Tensor& b, i64 N) {
  on_cpu(out, [&]<class T>() { cpu::residual_forward<T>(out.data<T>(), a.data<T>(), b.data<T>(), N); });
}

void add_into(const Tensor& dst, const Tensor& src, i64 N) {
  on_cpu(dst, [&]<class T>() { cpu::add_into<T>(dst.data<T>(), src.data<T>(), N); });
}

void embedding_forward(const Tensor& out, const Tensor& tokens, const Tensor& wte, const Tensor& wpe, i64 B, i64 T,
                       i64 C) {
  on_cpu(out, [&]<class E>() {
    cpu::embedding_forward<E>(out.data<E>(), tokens.data<std::int32_t>(), wte.data<E>(), wpe.data<E>(), B, T, C);
  });
}

void embedding_backward(const Tensor* dwte, const Tensor* dwpe, const Tensor& dout, const Tensor& tokens, i64 B, i64 T,
                        i64 C) {
  on_cpu(dout, [&]<class E>() {
    cpu::embedding_backward<E>(ptr<E>(dwte), ptr<E>(dwpe), dout.data<E>(), tokens.data<std::int32_t>(), B, T, C);
  });
}

void crossentropy_forward(const Tensor& losses, const Tensor& probs, const Tensor& logits, const Tensor& targets, i64 N,
                          i64 V) {
  on_cpu(losses, [&]<class T>() {
    cpu::crossentropy_forward<T>(losses.data<T>(), probs.data<T>(), logits.data<T>(), targets.data<std::int32_t>(), N, V);
  });
}

void crossentropy_backward(const Tensor& dlogits, const Tensor& probs, const Tensor& targets, double dloss, i64 N,
                           i64 V) {
  on_cpu(dlogits, [&]<class T>() {
    cpu::crossentropy_backward<T>(dlogits.data<T>(), probs.data<T>(), targets.data<std::int32_t>(), static_cast<T>(dloss),
                                  N, V);
  });
}

void adamw_update(const Tensor& params, const Tensor& grads, const Tensor& m, const Tensor& v, i64 begin, i64 n,
                  double lr, double beta1, double beta2, double eps, double weight_decay, double c1, double c2,
                  double grad_scale, i64 state_offset) {
  on_cpu(params, [&]<class T>() {
    cpu::adamw_update<T>(params.data<T>() + begin, grads.data<T>() + begin, m.data<T>() + state_offset,
                         v.data<T>() + state_offset, n, lr, beta1, beta2, eps, weight_decay, c1, c2, grad_scale);
  });
}

double sum_squares(const Tensor& t) {
  double s = 0;
  on_cpu(t, [&]<class T>() {
    const T* p = t.data<T>();
    for (i64 i = 0; i < t.numel(); ++i) s += static_cast<double>(p[i]) * static_cast<double>(p[i]);
  });
  return s;
}

}  // namespace ft::ops
