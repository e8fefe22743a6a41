#include "models/ops.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

#include "models/cpu/kernels.h"
#include "models/cuda/kernels.h"

namespace ft::ops {
namespace {

// Device tensors go to the CUDA kernels (fp32); in a build without CUDA they cannot exist.
#ifdef FIBERTRAIN_CUDA
#define FT_ON_CUDA(t, ...)                                                                            \
  if ((t).device() == Device::cuda) {                                                                 \
    if ((t).dtype() != DType::f32) throw std::logic_error("CUDA kernels take f32 tensors");           \
    __VA_ARGS__;                                                                                      \
    return;                                                                                           \
  }
#else
#define FT_ON_CUDA(t, ...) \
  if ((t).device() == Device::cuda) throw std::logic_error("a CUDA tensor in a build without CUDA");
#endif

float* f(const Tensor& t) { return t.data<float>(); }
float* f(const Tensor* t) { return t ? t->data<float>() : nullptr; }
const std::int32_t* ints(const Tensor& t) { return t.data<std::int32_t>(); }

// An optional tensor argument as a value a queued kernel can keep (undefined for null).
Tensor opt(const Tensor* t) { return t ? *t : Tensor(); }
template <class T> T* ptr(const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; }

std::unique_ptr<Stream>& cpu_stream() {
  static std::unique_ptr<Stream> s;
  return s;
}

// Runs f.template operator()<T>() with T the element type of `t` (float or double) on the
// CPU compute stream: now, or queued under cpu-async. So `f` captures by value (tensors
// keep their storage alive): it may run after the caller has returned. Device tensors
// arrive with the CUDA kernels.
template <class F> void on_cpu(const Tensor& t, F f) {
  if (t.device() != Device::cpu)
    throw std::logic_error("a CUDA tensor reached a CPU-only op (device: cuda needs the CUDA kernels)");
  Stream& stream = compute_stream(Device::cpu);
  switch (t.dtype()) {
    case DType::f32: stream.launch([f] { f.template operator()<float>(); }); return;
    case DType::f64: stream.launch([f] { f.template operator()<double>(); }); return;
    default: throw std::logic_error(fmt::format("no CPU kernel for {} tensors", to_string(t.dtype())));
  }
}

}  // namespace

Stream& compute_stream(Device device) {
#ifdef FIBERTRAIN_CUDA
  if (device == Device::cuda) {
    static Stream cuda_stream(StreamKind::cuda, cuda::compute_stream());
    return cuda_stream;
  }
#endif
  if (device == Device::cuda) throw std::logic_error("a CUDA stream in a build without CUDA");
  if (!cpu_stream()) set_cpu_async(false);
  return *cpu_stream();
}

void synchronize(Device device) { compute_stream(device).synchronize(); }

void set_cpu_async(bool on) {
  auto& s = cpu_stream();
  StreamKind kind = on ? StreamKind::cpu_async : StreamKind::host;
  if (s && s->kind() == kind) return;
  if (s) s->synchronize();
  s = std::make_unique<Stream>(kind);
}

void set_bf16_matmuls(bool on) {
#ifdef FIBERTRAIN_CUDA
  cuda::set_bf16_matmuls(on);
#else
  if (on) throw std::logic_error("bf16 matmuls need the CUDA build");
#endif
}

void zero(const Tensor& t) {
#ifdef FIBERTRAIN_CUDA
  if (t.device() == Device::cuda) return cuda::zero(t.raw(), t.bytes());
#endif
  if (t.device() != Device::cpu) throw std::logic_error("zero: a CUDA tensor in a build without CUDA");
  compute_stream(Device::cpu).launch([t] { std::memset(t.raw(), 0, t.bytes()); });
}

void copy(const Tensor& dst, const Tensor& src) {
  if (dst.bytes() != src.bytes() || dst.dtype() != src.dtype() || dst.device() != src.device())
    throw std::logic_error(fmt::format("copy of {} into {}", to_string(src.shape()), to_string(dst.shape())));
#ifdef FIBERTRAIN_CUDA
  if (dst.device() == Device::cuda) return cuda::copy(dst.raw(), src.raw(), dst.bytes());
#endif
  compute_stream(Device::cpu).launch([dst, src] { std::memcpy(dst.raw(), src.raw(), dst.bytes()); });
}

// The host memory may be reused or read as soon as these return. upload queues a copy of
// the host bytes, so that it waits for nothing (under cpu-async, compute stays queued
// across micro-batches, and a missing wait stays visible).
void upload(const Tensor& dst, const void* host) {
#ifdef FIBERTRAIN_CUDA
  if (dst.device() == Device::cuda) return cuda::from_host(dst.raw(), host, dst.bytes());
#endif
  auto bytes = std::make_shared<std::vector<char>>(static_cast<const char*>(host),
                                                   static_cast<const char*>(host) + dst.bytes());
  compute_stream(Device::cpu).launch([dst, bytes] { std::memcpy(dst.raw(), bytes->data(), bytes->size()); });
}

void download(void* host, const Tensor& src) {
#ifdef FIBERTRAIN_CUDA
  if (src.device() == Device::cuda) return cuda::to_host(host, src.raw(), src.bytes());
#endif
  synchronize(Device::cpu);
  std::memcpy(host, src.raw(), src.bytes());
}

void scale(const Tensor& t, double factor) {
  FT_ON_CUDA(t, cuda::scale(f(t), t.numel(), static_cast<float>(factor)));
  on_cpu(t, [=]<class T>() {
    T* p = t.data<T>();
    for (i64 i = 0; i < t.numel(); ++i) p[i] *= static_cast<T>(factor);
  });
}

std::vector<double> to_host(const Tensor& t) {
  std::vector<double> out(static_cast<std::size_t>(t.numel()));
  if (t.device() == Device::cuda) {
    if (t.dtype() != DType::f32) throw std::logic_error("to_host: CUDA tensors are f32");
    std::vector<float> host(out.size());
    download(host.data(), t);
    std::copy(host.begin(), host.end(), out.begin());
    return out;
  }
  synchronize(Device::cpu);
  auto read = [&]<class T>() {
    const T* p = t.data<T>();
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<double>(p[i]);
  };
  switch (t.dtype()) {
    case DType::f32: read.operator()<float>(); break;
    case DType::f64: read.operator()<double>(); break;
    default: throw std::logic_error(fmt::format("to_host: no conversion from {}", to_string(t.dtype())));
  }
  return out;
}

void from_host(const Tensor& t, const std::vector<double>& values) {
  if (static_cast<i64>(values.size()) != t.numel()) throw std::logic_error("from_host: size mismatch");
  if (t.device() == Device::cuda) {
    std::vector<float> host(values.begin(), values.end());
    upload(t, host.data());
    return;
  }
  synchronize(Device::cpu);
  auto write = [&]<class T>() {
    T* p = t.data<T>();
    for (std::size_t i = 0; i < values.size(); ++i) p[i] = static_cast<T>(values[i]);
  };
  switch (t.dtype()) {
    case DType::f32: write.operator()<float>(); break;
    case DType::f64: write.operator()<double>(); break;
    default: throw std::logic_error(fmt::format("from_host: no conversion to {}", to_string(t.dtype())));
  }
}

void matmul_forward(const Tensor& out, const Tensor& inp, const Tensor& w, const Tensor* bias, i64 N, i64 C, i64 OC) {
  FT_ON_CUDA(out, cuda::matmul_forward(f(out), f(inp), f(w), f(bias), N, C, OC));
  on_cpu(out, [=, bias = opt(bias)]<class T>() {
    cpu::matmul_forward<T>(out.data<T>(), inp.data<T>(), w.data<T>(), ptr<T>(bias), N, C, OC);
  });
}

void matmul_backward(const Tensor* dinp, const Tensor* dw, const Tensor* dbias, const Tensor& dout, const Tensor& inp,
                     const Tensor& w, i64 N, i64 C, i64 OC) {
  FT_ON_CUDA(dout, cuda::matmul_backward(f(dinp), f(dw), f(dbias), f(dout), f(inp), f(w), N, C, OC));
  on_cpu(dout, [=, dinp = opt(dinp), dw = opt(dw), dbias = opt(dbias)]<class T>() {
    cpu::matmul_backward<T>(ptr<T>(dinp), ptr<T>(dw), ptr<T>(dbias), dout.data<T>(), inp.data<T>(), w.data<T>(), N, C, OC);
  });
}

void add_bias(const Tensor& out, const Tensor& bias, i64 N, i64 OC) {
  FT_ON_CUDA(out, cuda::add_bias(f(out), f(bias), N, OC));
  on_cpu(out, [=]<class T>() { cpu::add_bias<T>(out.data<T>(), bias.data<T>(), N, OC); });
}

void layernorm_forward(const Tensor& out, const Tensor& mean, const Tensor& rstd, const Tensor& inp, const Tensor& w,
                       const Tensor& b, i64 N, i64 C) {
  FT_ON_CUDA(out, cuda::layernorm_forward(f(out), f(mean), f(rstd), f(inp), f(w), f(b), N, C));
  on_cpu(out, [=]<class T>() {
    cpu::layernorm_forward<T>(out.data<T>(), mean.data<T>(), rstd.data<T>(), inp.data<T>(), w.data<T>(), b.data<T>(), N, C);
  });
}

void layernorm_backward(const Tensor& dinp, const Tensor& dw, const Tensor& db, const Tensor& dout, const Tensor& inp,
                        const Tensor& w, const Tensor& mean, const Tensor& rstd, i64 N, i64 C) {
  FT_ON_CUDA(dinp, cuda::layernorm_backward(f(dinp), f(dw), f(db), f(dout), f(inp), f(w), f(mean), f(rstd), N, C));
  on_cpu(dinp, [=]<class T>() {
    cpu::layernorm_backward<T>(dinp.data<T>(), dw.data<T>(), db.data<T>(), dout.data<T>(), inp.data<T>(), w.data<T>(),
                               mean.data<T>(), rstd.data<T>(), N, C);
  });
}

void attention_forward(const Tensor& out, const Tensor& att, const Tensor& qkv, i64 B, i64 T, i64 C, i64 NH) {
  FT_ON_CUDA(out, cuda::attention_forward(f(out), f(att), f(qkv), B, T, C, NH));
  on_cpu(out, [=]<class E>() { cpu::attention_forward<E>(out.data<E>(), att.data<E>(), qkv.data<E>(), B, T, C, NH); });
}

void attention_backward(const Tensor& dqkv, const Tensor& scratch, const Tensor& dout, const Tensor& qkv,
                        const Tensor& att, i64 B, i64 T, i64 C, i64 NH) {
  FT_ON_CUDA(dqkv, cuda::attention_backward(f(dqkv), f(scratch), f(dout), f(qkv), f(att), B, T, C, NH));
  on_cpu(dqkv, [=]<class E>() {
    cpu::attention_backward<E>(dqkv.data<E>(), dout.data<E>(), qkv.data<E>(), att.data<E>(), B, T, C, NH);
  });
}

void gelu_forward(const Tensor& out, const Tensor& inp, i64 N) {
  FT_ON_CUDA(out, cuda::gelu_forward(f(out), f(inp), N));
  on_cpu(out, [=]<class T>() { cpu::gelu_forward<T>(out.data<T>(), inp.data<T>(), N); });
}

void gelu_backward(const Tensor& dinp, const Tensor& inp, const Tensor& dout, i64 N) {
  FT_ON_CUDA(dinp, cuda::gelu_backward(f(dinp), f(inp), f(dout), N));
  on_cpu(dinp, [=]<class T>() { cpu::gelu_backward<T>(dinp.data<T>(), inp.data<T>(), dout.data<T>(), N); });
}

void residual_forward(const Tensor& out, const Tensor& a, const Tensor& b, i64 N) {
  FT_ON_CUDA(out, cuda::residual_forward(f(out), f(a), f(b), N));
  on_cpu(out, [=]<class T>() { cpu::residual_forward<T>(out.data<T>(), a.data<T>(), b.data<T>(), N); });
}

void add_into(const Tensor& dst, const Tensor& src, i64 N) {
  FT_ON_CUDA(dst, cuda::add_into(f(dst), f(src), N));
  on_cpu(dst, [=]<class T>() { cpu::add_into<T>(dst.data<T>(), src.data<T>(), N); });
}

void embedding_forward(const Tensor& out, const Tensor& tokens, const Tensor& wte, const Tensor* wpe, i64 B, i64 T,
                       i64 C, i64 v0) {
  const i64 Vl = wte.shape()[0];
  FT_ON_CUDA(out, cuda::embedding_forward(f(out), ints(tokens), f(wte), f(wpe), B, T, C, v0, Vl));
  on_cpu(out, [=, wpe = opt(wpe)]<class E>() {
    cpu::embedding_forward<E>(out.data<E>(), tokens.data<std::int32_t>(), wte.data<E>(), ptr<E>(wpe), B, T, C, v0, Vl);
  });
}

void embedding_backward(const Tensor* dwte, const Tensor* dwpe, const Tensor& dout, const Tensor& tokens, i64 B, i64 T,
                        i64 C, i64 v0) {
  const i64 Vl = dwte ? dwte->shape()[0] : 0;
  FT_ON_CUDA(dout, cuda::embedding_backward(f(dwte), f(dwpe), f(dout), ints(tokens), B, T, C, v0, Vl));
  on_cpu(dout, [=, dwte = opt(dwte), dwpe = opt(dwpe)]<class E>() {
    cpu::embedding_backward<E>(ptr<E>(dwte), ptr<E>(dwpe), dout.data<E>(), tokens.data<std::int32_t>(), B, T, C, v0, Vl);
  });
}

void crossentropy_forward(const Tensor& losses, const Tensor& probs, const Tensor& logits, const Tensor& targets, i64 N,
                          i64 V) {
  FT_ON_CUDA(losses, cuda::crossentropy_forward(f(losses), f(probs), f(logits), ints(targets), N, V));
  on_cpu(losses, [=]<class T>() {
    cpu::crossentropy_forward<T>(losses.data<T>(), probs.data<T>(), logits.data<T>(), targets.data<std::int32_t>(), N, V);
  });
}

void crossentropy_shard_stats(const Tensor& stats, const Tensor& logits, const Tensor& targets, i64 N, i64 Vl, i64 v0) {
  FT_ON_CUDA(stats, cuda::crossentropy_shard_stats(f(stats), f(logits), ints(targets), N, Vl, v0));
  on_cpu(stats, [=]<class T>() {
    cpu::crossentropy_shard_stats<T>(stats.data<T>(), logits.data<T>(), targets.data<std::int32_t>(), N, Vl, v0);
  });
}

void crossentropy_shard_finish(const Tensor& losses, const Tensor& probs, const Tensor& logits, const Tensor& all_stats,
                               int ranks, i64 N, i64 Vl) {
  FT_ON_CUDA(losses, cuda::crossentropy_shard_finish(f(losses), f(probs), f(logits), f(all_stats), ranks, N, Vl));
  on_cpu(losses, [=]<class T>() {
    cpu::crossentropy_shard_finish<T>(losses.data<T>(), probs.data<T>(), logits.data<T>(), all_stats.data<T>(), ranks, N,
                                      Vl);
  });
}

void crossentropy_backward(const Tensor& dlogits, const Tensor& probs, const Tensor& targets, double dloss, i64 N,
                           i64 Vl, i64 v0) {
  FT_ON_CUDA(dlogits,
             cuda::crossentropy_backward(f(dlogits), f(probs), ints(targets), static_cast<float>(dloss), N, Vl, v0));
  on_cpu(dlogits, [=]<class T>() {
    cpu::crossentropy_backward<T>(dlogits.data<T>(), probs.data<T>(), targets.data<std::int32_t>(), static_cast<T>(dloss),
                                  N, Vl, v0);
  });
}

namespace {
void check_range(const FlatRange& r, i64 n, const char* what) {
  if (r.begin < 0 || r.begin > r.end || r.end > n)
    throw std::logic_error(fmt::format("{}: range [{}, {}) outside [0, {})", what, r.begin, r.end, n));
}

#ifdef FIBERTRAIN_CUDA
std::vector<cuda::UpdateRun> cuda_runs(const std::vector<UpdateRun>& runs) {
  std::vector<cuda::UpdateRun> out;
  out.reserve(runs.size());
  for (const UpdateRun& r : runs) out.push_back({r.range.begin, r.range.size(), r.state, static_cast<float>(r.weight_decay)});
  return out;
}
#endif
}  // namespace

void adamw_update(const Tensor& params, const Tensor& grads, const Tensor& m, const Tensor& v,
                  const std::vector<UpdateRun>& runs, const AdamWStep& st) {
  for (const UpdateRun& r : runs) {
    check_range(r.range, std::min(params.numel(), grads.numel()), "adamw_update");
    check_range({r.state, r.state + r.range.size()}, std::min(m.numel(), v.numel()), "adamw_update state");
  }
#ifdef FIBERTRAIN_CUDA
  if (params.device() == Device::cuda) {
    if (params.dtype() != DType::f32) throw std::logic_error("CUDA kernels take f32 tensors");
    cuda::adamw_update(f(params), f(grads), f(m), f(v), cuda_runs(runs), st.lr, st.beta1, st.beta2, st.eps, st.c1, st.c2,
                       st.grad_scale);
    return;
  }
#endif
  on_cpu(params, [=]<class T>() {
    for (const UpdateRun& r : runs)
      cpu::adamw_update<T>(params.data<T>() + r.range.begin, grads.data<T>() + r.range.begin, m.data<T>() + r.state,
                           v.data<T>() + r.state, r.range.size(), st.lr, st.beta1, st.beta2, st.eps, r.weight_decay,
                           st.c1, st.c2, st.grad_scale);
  });
}

void sgd_update(const Tensor& params, const Tensor& grads, const Tensor* momentum, const std::vector<UpdateRun>& runs,
                const SgdStep& st) {
  const bool with_m = st.momentum > 0;
  if (with_m && !momentum) throw std::logic_error("sgd_update: momentum > 0 needs a momentum tensor");
  for (const UpdateRun& r : runs) {
    check_range(r.range, std::min(params.numel(), grads.numel()), "sgd_update");
    if (with_m) check_range({r.state, r.state + r.range.size()}, momentum->numel(), "sgd_update state");
  }
#ifdef FIBERTRAIN_CUDA
  if (params.device() == Device::cuda) {
    if (params.dtype() != DType::f32) throw std::logic_error("CUDA kernels take f32 tensors");
    cuda::sgd_update(f(params), f(grads), with_m ? f(momentum) : nullptr, cuda_runs(runs), st.lr, st.momentum, st.nesterov,
                     st.grad_scale, st.sign);
    return;
  }
#endif
  const Tensor m = with_m ? *momentum : Tensor();
  on_cpu(params, [=]<class T>() {
    for (const UpdateRun& r : runs)
      cpu::sgd_update<T>(params.data<T>() + r.range.begin, grads.data<T>() + r.range.begin,
                         with_m ? m.data<T>() + r.state : nullptr, r.range.size(), st.lr, st.momentum, st.nesterov,
                         r.weight_decay, st.grad_scale, st.sign);
  });
}

namespace {
double host_sum_squares(const Tensor& t, i64 begin, i64 end) {
  double s = 0;
  auto add = [&]<class T>() {
    const T* p = t.data<T>();
    for (i64 i = begin; i < end; ++i) s += static_cast<double>(p[i]) * static_cast<double>(p[i]);
  };
  switch (t.dtype()) {
    case DType::f32: add.operator()<float>(); break;
    case DType::f64: add.operator()<double>(); break;
    default: throw std::logic_error(fmt::format("sum_squares: no kernel for {}", to_string(t.dtype())));
  }
  return s;
}
}  // namespace

double sum_squares(const Tensor& t) { return sum_squares(t, {FlatRange{0, t.numel()}}); }

double sum_squares(const Tensor& flat, const std::vector<FlatRange>& ranges) {
  for (const FlatRange& r : ranges) check_range(r, flat.numel(), "sum_squares");
#ifdef FIBERTRAIN_CUDA
  if (flat.device() == Device::cuda) return cuda::sum_squares(f(flat), ranges);
#endif
  synchronize(Device::cpu);
  double total = 0;
  for (const FlatRange& r : ranges) total += host_sum_squares(flat, r.begin, r.end);
  return total;
}

}  // namespace ft::ops
