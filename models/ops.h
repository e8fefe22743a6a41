// The op dispatch: each op takes tensors, checks where they live and what they hold, and
// runs the CPU kernel (float or double) or, in CUDA builds, the device kernel. Model code
// calls only these. Gradients accumulate, as in cpu/kernels.h (crossentropy_backward's
// excepted: it writes).
#pragma once

#include <cstdint>

#include "comm/stream.h"
#include "models/tensor.h"

namespace ft::ops {

using i64 = std::int64_t;

// The compute stream of `device`: every op on its tensors runs there, in issue order (see
// comm/stream.h). CUDA tensors: the CUDA stream. CPU tensors: the host stream, where each op
// runs when called, or with set_cpu_async(true) (device: cpu-async) a queue that runs them
// on a thread of its own, only once something waits for them. Ops that hand data to the
// host (to_host, download, sum_squares) and take it from the host (upload, from_host) wait
// for the stream themselves; any other reader or writer of a tensor's memory (the
// communicators) waits for an event of the stream first.
Stream& compute_stream(Device device);
void synchronize(Device device);
// Chosen once, before the first CPU op.
void set_cpu_async(bool on);
// The matmul precision: bf16 tensor-core inputs with fp32 accumulation (CUDA only).
void set_bf16_matmuls(bool on);

void zero(const Tensor& t);
void copy(const Tensor& dst, const Tensor& src);
void scale(const Tensor& t, double factor);
// Raw copies between a tensor (any device) and host memory of its size.
void upload(const Tensor& dst, const void* host);
void download(void* host, const Tensor& src);
// Host copy of a tensor as doubles (any dtype, any device); for tests, checkpoints, metrics.
std::vector<double> to_host(const Tensor& t);
void from_host(const Tensor& t, const std::vector<double>& values);

void matmul_forward(const Tensor& out, const Tensor& inp, const Tensor& w, const Tensor* bias, i64 N, i64 C, i64 OC);
void matmul_backward(const Tensor* dinp, const Tensor* dw, const Tensor* dbias, const Tensor& dout, const Tensor& inp,
                     const Tensor& w, i64 N, i64 C, i64 OC);
void add_bias(const Tensor& out, const Tensor& bias, i64 N, i64 OC);

void layernorm_forward(const Tensor& out, const Tensor& mean, const Tensor& rstd, const Tensor& inp, const Tensor& w,
                       const Tensor& b, i64 N, i64 C);
void layernorm_backward(const Tensor& dinp, const Tensor& dw, const Tensor& db, const Tensor& dout, const Tensor& inp,
                        const Tensor& w, const Tensor& mean, const Tensor& rstd, i64 N, i64 C);

void attention_forward(const Tensor& out, const Tensor& att, const Tensor& qkv, i64 B, i64 T, i64 C, i64 NH);
// `scratch` [B, NH, T, T] is the CUDA kernel's; the CPU kernel keeps its own per thread.
void attention_backward(const Tensor& dqkv, const Tensor& scratch, const Tensor& dout, const Tensor& qkv,
                        const Tensor& att, i64 B, i64 T, i64 C, i64 NH);

void gelu_forward(const Tensor& out, const Tensor& inp, i64 N);
void gelu_backward(const Tensor& dinp, const Tensor& inp, const Tensor& dout, i64 N);

void residual_forward(const Tensor& out, const Tensor& a, const Tensor& b, i64 N);
void add_into(const Tensor& dst, const Tensor& src, i64 N);

// wte holds the vocabulary's rows from v0 on (all of them: v0 = 0); a token outside them
// looks up zeros, and its gradient goes nowhere. wpe may be null (nothing added).
void embedding_forward(const Tensor& out, const Tensor& tokens, const Tensor& wte, const Tensor* wpe, i64 B, i64 T,
                       i64 C, i64 v0 = 0);
void embedding_backward(const Tensor* dwte, const Tensor* dwpe, const Tensor& dout, const Tensor& tokens, i64 B, i64 T,
                        i64 C, i64 v0 = 0);

// probs may be logits (in place). The backward writes dlogits rather than adding to them, so
// dlogits may be probs; dloss is one value for every position (the mean-loss scale).
void crossentropy_forward(const Tensor& losses, const Tensor& probs, const Tensor& logits, const Tensor& targets, i64 N,
                          i64 V);
// Over a vocabulary split across ranks (cpu/kernels.h): stats [3, N] of this rank's Vl logits
// from v0 on; then, from every rank's stats gathered [ranks, 3, N], the losses and probs.
void crossentropy_shard_stats(const Tensor& stats, const Tensor& logits, const Tensor& targets, i64 N, i64 Vl, i64 v0);
void crossentropy_shard_finish(const Tensor& losses, const Tensor& probs, const Tensor& logits, const Tensor& all_stats,
                               int ranks, i64 N, i64 Vl);
// Over Vl logits per row from v0 on (the whole vocabulary: v0 = 0).
void crossentropy_backward(const Tensor& dlogits, const Tensor& probs, const Tensor& targets, double dloss, i64 N,
                           i64 Vl, i64 v0 = 0);

// AdamW on runs of the flat buffers: params and grads over each run's range, m and v from
// its `state` offset on, with the run's weight decay; see cpu/kernels.h. On a GPU the runs
// go to one kernel launch, not one each.
// A run of elements updated alike (AdamW or SGD), with the optimizer state at `state`.
struct UpdateRun {
  FlatRange range;
  i64 state = 0;
  double weight_decay = 0;
};
struct AdamWStep {
  double lr, beta1, beta2, eps;
  double c1, c2;  // bias corrections 1 - beta^t
  double grad_scale;
};
void adamw_update(const Tensor& params, const Tensor& grads, const Tensor& m, const Tensor& v,
                  const std::vector<UpdateRun>& runs, const AdamWStep& step);

// SGD on runs of the flat buffers, as adamw_update: see cpu/kernels.h. `momentum` (indexed by
// each run's state offset) only when step.momentum > 0.
struct SgdStep {
  double lr;
  double momentum = 0;
  bool nesterov = false;
  double grad_scale = 1;
  bool sign = false;  // step by the sign of each gradient (signum; before momentum)
};
void sgd_update(const Tensor& params, const Tensor& grads, const Tensor* momentum, const std::vector<UpdateRun>& runs,
                const SgdStep& step);

// Sum of squares of the elements, accumulated in double: of the whole tensor, or of the
// ranges of a flat one (one pass and one wait on a GPU, however many ranges).
double sum_squares(const Tensor& t);
double sum_squares(const Tensor& flat, const std::vector<FlatRange>& ranges);

}  // namespace ft::ops
