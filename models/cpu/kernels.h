// CPU kernels, one forward/backward pair per op, on raw row-major arrays. Templated on the
// element type: float for training, double for the finite-difference checks of the
// backward passes. Every backward ACCUMULATES (+=) into its gradient outputs, so residual
// branches and micro-batches add up without extra passes; callers zero them when needed.
#pragma once

#include <cstdint>

namespace ft::cpu {

using i64 = std::int64_t;

// C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C, row-major with leading dimensions.
template <class T>
void gemm(bool trans_a, bool trans_b, i64 M, i64 N, i64 K, T alpha, const T* A, i64 lda, const T* B, i64 ldb,
          T beta, T* C, i64 ldc);

// out[n,o] = sum_c inp[n,c] w[o,c] + bias[o]   (bias may be null)
template <class T> void matmul_forward(T* out, const T* inp, const T* w, const T* bias, i64 N, i64 C, i64 OC);
// dinp += dout @ w; dw += dout^T @ inp; dbias += column sums of dout. Any of dinp, dw,
// dbias may be null to skip it.
template <class T>
void matmul_backward(T* dinp, T* dw, T* dbias, const T* dout, const T* inp, const T* w, i64 N, i64 C, i64 OC);

// out = (inp - mean) * rstd * w + b per row of C; mean and rstd [N] are saved for backward.
template <class T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* inp, const T* w, const T* b, i64 N, i64 C);
template <class T>
void layernorm_backward(T* dinp, T* dw, T* db, const T* dout, const T* inp, const T* w, const T* mean,
                        const T* rstd, i64 N, i64 C);

// Causal multi-head attention over qkv [B,T,3*C] laid out [Q | K | V], each C = NH * hs wide.
// out [B,T,C]; att [B,NH,T,T] saves the softmax probabilities (zero above the diagonal).
template <class T> void attention_forward(T* out, T* att, const T* qkv, i64 B, i64 T_, i64 C, i64 NH);
// dqkv += gradient through attention.
template <class T>
void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* att, i64 B, i64 T_, i64 C, i64 NH);

// GELU, tanh approximation (GPT-2).
template <class T> void gelu_forward(T* out, const T* inp, i64 N);
template <class T> void gelu_backward(T* dinp, const T* inp, const T* dout, i64 N);

// out = a + b; its backward is da += dout, db += dout (add_into).
template <class T> void residual_forward(T* out, const T* a, const T* b, i64 N);
template <class T> void add_into(T* dst, const T* src, i64 N);

// out[b,t,:] = wte[tokens[b,t] - v0,:] + wpe[t,:]: wte holds the Vl rows of the vocabulary from
// v0 on (all of it: v0 = 0, Vl = V), and a token outside them contributes zeros; wpe may be null.
template <class T>
void embedding_forward(T* out, const std::int32_t* tokens, const T* wte, const T* wpe, i64 B, i64 T_, i64 C, i64 v0,
                       i64 Vl);
// dwte[tokens[b,t] - v0,:] += dout[b,t,:] (within its Vl rows); dwpe[t,:] += dout[b,t,:]  (either may be null)
template <class T>
void embedding_backward(T* dwte, T* dwpe, const T* dout, const std::int32_t* tokens, i64 B, i64 T_, i64 C, i64 v0, i64 Vl);

// Softmax over V logits per row, then cross-entropy against targets: losses [N], probs [N,V].
// probs may be logits: the softmax then replaces them, and the [N,V] array is held once.
template <class T> void crossentropy_forward(T* losses, T* probs, const T* logits, const std::int32_t* targets, i64 N, i64 V);
// The same over a vocabulary split across ranks, each holding Vl logits per row from v0 on,
// in two halves around an all-gather of each rank's [3, N] statistics: (1) per row its
// largest logit, the sum of exp(logit - that), and the target's logit where this rank holds
// it (else 0); (2) from every rank's, the row's largest logit M, its softmax sum S and the
// target's logit, whence losses = M + log S - z_target and probs = exp(logits - M) / S.
template <class T>
void crossentropy_shard_stats(T* stats, const T* logits, const std::int32_t* targets, i64 N, i64 Vl, i64 v0);
template <class T>
void crossentropy_shard_finish(T* losses, T* probs, const T* logits, const T* all_stats, int ranks, i64 N, i64 Vl);
// dlogits = (probs - onehot(target - v0)) * dloss, the fused softmax + cross-entropy
// backward over Vl logits per row from v0 on; dloss is the same for every position (1 /
// tokens for a mean loss). Written, not added, so that dlogits may be probs.
template <class T>
void crossentropy_backward(T* dlogits, const T* probs, const std::int32_t* targets, T dloss, i64 N, i64 Vl, i64 v0);

// One AdamW step (decoupled weight decay) on n elements: g = grad * grad_scale;
// m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr (m/c1 / (sqrt(v/c2) + eps) + wd p),
// with c1 = 1 - b1^t and c2 = 1 - b2^t given by the caller.
template <class T>
void adamw_update(T* param, const T* grad, T* m, T* v, i64 n, double lr, double beta1, double beta2, double eps,
                  double weight_decay, double c1, double c2, double grad_scale);

// One SGD step on n elements: g = grad * grad_scale; with momentum mu > 0 (m holds it):
// m = mu m + g, and the step is g + mu m (Nesterov) or m; with mu = 0 the step is g and m is
// not touched (may be null). param -= lr * (step + weight_decay * param).
template <class T>
void sgd_update(T* param, const T* grad, T* m, i64 n, double lr, double mu, bool nesterov, double weight_decay,
                double grad_scale, bool sign);

// out[n, o] += bias[o]
template <class T> void add_bias(T* out, const T* bias, i64 N, i64 OC);

}  // namespace ft::cpu
