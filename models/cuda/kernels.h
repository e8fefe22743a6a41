// CUDA kernels: the same ops and the same accumulate-into-gradients contract as
// cpu/kernels.h (crossentropy_backward writes), on float device arrays, enqueued on the compute stream. Matmuls go through
// cuBLAS; with bf16 precision they run on the tensor cores with inputs rounded to bf16 and
// fp32 accumulation, while weights, activations and gradients stay fp32 in memory.
// (Declarations only: plain C++ so host code can call them; no CUDA headers.)
#pragma once

#include <cstdint>
#include <vector>

#include "models/tensor.h"

namespace ft::cuda {

using i64 = std::int64_t;

// The stream every op runs on (created on first use), and the matmul precision.
void* compute_stream();
void set_bf16_matmuls(bool on);
// Waits for everything enqueued on the compute stream.
void synchronize();

void zero(void* p, std::size_t bytes);
void copy(void* dst, const void* src, std::size_t bytes);  // device to device
void to_host(void* dst, const void* src, std::size_t bytes);
void from_host(void* dst, const void* src, std::size_t bytes);
void scale(float* p, i64 n, float factor);
// Over the ranges of a flat array, in one kernel launch and one wait.
double sum_squares(const float* flat, const std::vector<FlatRange>& ranges);

void matmul_forward(float* out, const float* inp, const float* w, const float* bias, i64 N, i64 C, i64 OC);
void matmul_backward(float* dinp, float* dw, float* dbias, const float* dout, const float* inp, const float* w, i64 N, i64 C,
                     i64 OC);
void add_bias(float* out, const float* bias, i64 N, i64 OC);
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* w, const float* b, i64 N, i64 C);
void layernorm_backward(float* dinp, float* dw, float* db, const float* dout, const float* inp, const float* w,
                        const float* mean, const float* rstd, i64 N, i64 C);
void attention_forward(float* out, float* att, const float* qkv, i64 B, i64 T, i64 C, i64 NH);
void attention_backward(float* dqkv, float* scratch, const float* dout, const float* qkv, const float* att, i64 B, i64 T,
                        i64 C, i64 NH);
void gelu_forward(float* out, const float* inp, i64 N);
void gelu_backward(float* dinp, const float* inp, const float* dout, i64 N);
void residual_forward(float* out, const float* a, const float* b, i64 N);
void add_into(float* dst, const float* src, i64 N);
void embedding_forward(float* out, const std::int32_t* tokens, const float* wte, const float* wpe, i64 B, i64 T, i64 C,
                       i64 v0, i64 Vl);
void embedding_backward(float* dwte, float* dwpe, const float* dout, const std::int32_t* tokens, i64 B, i64 T, i64 C,
                        i64 v0, i64 Vl);
// As in cpu/kernels.h: probs may be logits; dlogits are written, and may be probs.
void crossentropy_forward(float* losses, float* probs, const float* logits, const std::int32_t* targets, i64 N, i64 V);
void crossentropy_shard_stats(float* stats, const float* logits, const std::int32_t* targets, i64 N, i64 Vl, i64 v0);
void crossentropy_shard_finish(float* losses, float* probs, const float* logits, const float* all_stats, int ranks, i64 N,
                               i64 Vl);
void crossentropy_backward(float* dlogits, const float* probs, const std::int32_t* targets, float dloss, i64 N, i64 Vl,
                           i64 v0);
// AdamW over runs of flat arrays: param and grad at [begin, begin + size), m and v at
// [state, state + size), each run with its own weight decay; one launch for many runs.
struct UpdateRun {
  i64 begin, size, state;
  float weight_decay;
};
void adamw_update(float* param, const float* grad, float* m, float* v, const std::vector<UpdateRun>& runs, double lr,
                  double beta1, double beta2, double eps, double c1, double c2, double grad_scale);

// SGD over runs, as in cpu/kernels.h; m (at each run's state) only when mu > 0.
void sgd_update(float* param, const float* grad, float* m, const std::vector<UpdateRun>& runs, double lr, double mu,
                bool nesterov, double grad_scale, bool sign);

// The attention backward needs B * NH * T * T floats of scratch (one dS per head).
inline i64 attention_scratch_elements(i64 B, i64 T, i64 NH) { return B * NH * T * T; }

}  // namespace ft::cuda
