// CUDA kernels for the ops of cuda/kernels.h. Layouts and contracts follow cpu/kernels.h:
// row-major arrays, gradients accumulate. cuBLAS is column-major, so each product below is
// written for the transposes (a row-major M x N array is a column-major N x M one).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <mutex>
#include <string>

#include "comm/cuda/buffer_ops.h"
#include "models/cuda/kernels.h"
#include "models/cuda/launch.h"

namespace ft::cuda {

detail::Context& detail::ctx() {
  static Context c = [] {
    Context n;
    check(cudaStreamCreateWithFlags(&n.stream, cudaStreamNonBlocking), "stream");
    check(cublasCreate(&n.blas), "cublasCreate");
    check(cublasSetStream(n.blas, n.stream), "cublasSetStream");
    check(cudaMalloc(&n.scalar, sizeof(double)), "cudaMalloc scalar");
    int dev = 0;
    check(cudaGetDevice(&dev), "cudaGetDevice");
    check(cudaDeviceGetAttribute(&n.sms, cudaDevAttrMultiProcessorCount, dev), "SM count");
    check(cudaDeviceGetAttribute(&n.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), "shared memory");
    return n;
  }();
  return c;
}

using namespace detail;

namespace {

bool g_bf16 = false;

// C (m x n, col-major) = alpha op(A) op(B) + beta C, fp32 in memory; tensor cores with
// bf16 inputs when bf16 matmuls are on.
void gemm(cublasOperation_t ta, cublasOperation_t tb, i64 m, i64 n, i64 k, float alpha, const float* A, i64 lda,
          const float* B, i64 ldb, float beta, float* C, i64 ldc) {
  Context& c = ctx();
  check(cublasGemmEx(c.blas, ta, tb, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), &alpha, A, CUDA_R_32F,
                     static_cast<int>(lda), B, CUDA_R_32F, static_cast<int>(ldb), &beta, C, CUDA_R_32F,
                     static_cast<int>(ldc), g_bf16 ? CUBLAS_COMPUTE_32F_FAST_16BF : CUBLAS_COMPUTE_32F,
                     CUBLAS_GEMM_DEFAULT),
        "gemm");
}

void gemm_strided(cublasOperation_t ta, cublasOperation_t tb, i64 m, i64 n, i64 k, float alpha, const float* A, i64 lda,
                  i64 sa, const float* B, i64 ldb, i64 sb, float beta, float* C, i64 ldc, i64 sc, i64 batch) {
  Context& c = ctx();
  check(cublasGemmStridedBatchedEx(c.blas, ta, tb, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), &alpha, A,
                                   CUDA_R_32F, static_cast<int>(lda), sa, B, CUDA_R_32F, static_cast<int>(ldb), sb, &beta, C,
                                   CUDA_R_32F, static_cast<int>(ldc), sc, static_cast<int>(batch),
                                   g_bf16 ? CUBLAS_COMPUTE_32F_FAST_16BF : CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "gemm strided batched");
}

__device__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Ranges of a flat array, passed by value (see kMaxRuns).
struct RangeTable {
  int count;
  i64 begin[kMaxRuns], size[kMaxRuns];
};

// blockIdx.y picks the range; its blocks stride over it. Each warp adds into `out` once.
__global__ void k_sum_squares(const float* p, RangeTable t, double* out) {
  const float* q = p + t.begin[blockIdx.y];
  const i64 n = t.size[blockIdx.y];
  double s = 0;
  for (i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x; i < n; i += static_cast<i64>(gridDim.x) * blockDim.x)
    s += static_cast<double>(q[i]) * q[i];
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  if ((threadIdx.x & 31) == 0 && s != 0) atomicAdd(out, s);
}

__global__ void k_fill_rows(float* out, const float* bias, i64 N, i64 OC) {
  i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x;
  if (i < N * OC) out[i] = bias[i % OC];
}

__global__ void k_add_bias(float* out, const float* bias, i64 N, i64 OC) {
  i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x;
  if (i < N * OC) out[i] += bias[i % OC];
}

// Column sums of dout [N, OC], added to dbias. A block of 32 x 32 threads takes 32 columns:
// each warp reads whole 128-byte rows, 32 rows apart, and the 32 partial sums of a column
// meet in shared memory. The order of the sum is fixed, so the result is deterministic.
constexpr int kBiasRows = 32;
__global__ void __launch_bounds__(32 * kBiasRows) k_bias_grad(float* dbias, const float* dout, i64 N, i64 OC) {
  __shared__ float part[kBiasRows][33];
  const i64 o = blockIdx.x * 32 + threadIdx.x;
  float s = 0;
  if (o < OC)
    for (i64 n = threadIdx.y; n < N; n += kBiasRows) s += dout[n * OC + o];
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y != 0 || o >= OC) return;
  float t = 0;
  for (int y = 0; y < kBiasRows; ++y) t += part[y][threadIdx.x];
  dbias[o] += t;
}

// One warp per row.
__global__ void k_layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* w, const float* b,
                                    i64 N, i64 C) {
  i64 row = (blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x) / 32;
  int lane = threadIdx.x & 31;
  if (row >= N) return;
  const float* x = inp + row * C;
  float s = 0;
  for (i64 c = lane; c < C; c += 32) s += x[c];
  float m = warp_sum(s) / static_cast<float>(C);
  float v = 0;
  for (i64 c = lane; c < C; c += 32) v += (x[c] - m) * (x[c] - m);
  float r = rsqrtf(warp_sum(v) / static_cast<float>(C) + 1e-5f);
  float* o = out + row * C;
  for (i64 c = lane; c < C; c += 32) o[c] = (x[c] - m) * r * w[c] + b[c];
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = r;
  }
}

// One warp per row, rows strided over the grid. With kShared a block adds its rows' dw and
// db in shared memory (dynamic, 2C floats) and then into the global arrays once, instead of
// every row contending for the same C addresses; without (a width too large for shared
// memory) every row adds into the global arrays.
template <bool kShared>
__global__ void k_layernorm_backward(float* dinp, float* dw, float* db, const float* dout, const float* inp, const float* w,
                                     const float* mean, const float* rstd, i64 N, i64 C) {
  extern __shared__ float acc[];
  float* sdw = kShared ? acc : dw;
  float* sdb = kShared ? acc + C : db;
  if (kShared) {
    for (i64 c = threadIdx.x; c < 2 * C; c += blockDim.x) acc[c] = 0.0f;
    __syncthreads();
  }
  const int lane = threadIdx.x & 31, warps = blockDim.x / 32;
  for (i64 row = blockIdx.x * static_cast<i64>(warps) + threadIdx.x / 32; row < N;
       row += static_cast<i64>(gridDim.x) * warps) {
    const float* x = inp + row * C;
    const float* d = dout + row * C;
    const float m = mean[row], r = rstd[row];
    float a = 0, b2 = 0;
    for (i64 c = lane; c < C; c += 32) {
      float norm = (x[c] - m) * r, dn = w[c] * d[c];
      a += dn;
      b2 += dn * norm;
    }
    const float dn_mean = warp_sum(a) / static_cast<float>(C), dnn_mean = warp_sum(b2) / static_cast<float>(C);
    float* dx = dinp + row * C;
    for (i64 c = lane; c < C; c += 32) {
      float norm = (x[c] - m) * r, dn = w[c] * d[c];
      atomicAdd(&sdb[c], d[c]);
      atomicAdd(&sdw[c], norm * d[c]);
      dx[c] += r * (dn - dn_mean - norm * dnn_mean);
    }
  }
  if (!kShared) return;
  __syncthreads();
  for (i64 c = threadIdx.x; c < C; c += blockDim.x) {
    atomicAdd(&db[c], sdb[c]);
    atomicAdd(&dw[c], sdw[c]);
  }
}

// Causal softmax of each row of S [rows, T], in place; one warp per row. Row i of a T x T
// block keeps columns 0..i.
__global__ void k_causal_softmax(float* s, i64 rows, i64 T) {
  i64 row = (blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x) / 32;
  int lane = threadIdx.x & 31;
  if (row >= rows) return;
  i64 i = row % T;
  float* p = s + row * T;
  float mx = -INFINITY;
  for (i64 j = lane; j <= i; j += 32) mx = fmaxf(mx, p[j]);
  mx = warp_max(mx);
  float sum = 0;
  for (i64 j = lane; j <= i; j += 32) {
    float e = __expf(p[j] - mx);
    p[j] = e;
    sum += e;
  }
  float inv = 1.0f / warp_sum(sum);
  for (i64 j = lane; j < T; j += 32) p[j] = j <= i ? p[j] * inv : 0.0f;
}

// dS = P * (dP - rowsum(P * dP)) below the diagonal, in place over dP.
__global__ void k_softmax_backward(float* dp, const float* p, i64 rows, i64 T) {
  i64 row = (blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x) / 32;
  int lane = threadIdx.x & 31;
  if (row >= rows) return;
  i64 i = row % T;
  float* d = dp + row * T;
  const float* pr = p + row * T;
  float dot = 0;
  for (i64 j = lane; j <= i; j += 32) dot += pr[j] * d[j];
  dot = warp_sum(dot);
  for (i64 j = lane; j < T; j += 32) d[j] = j <= i ? pr[j] * (d[j] - dot) : 0.0f;
}

__global__ void k_gelu_forward(float* out, const float* inp, i64 n) {
  i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  float x = inp[i], u = 0.7978845608f * (x + 0.044715f * x * x * x);
  out[i] = x / (1.0f + __expf(-2.0f * u));
}

__global__ void k_gelu_backward(float* dinp, const float* inp, const float* dout, i64 n) {
  i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  float x = inp[i], u = 0.7978845608f * (x + 0.044715f * x * x * x);
  float s = 1.0f / (1.0f + __expf(-2.0f * u));
  float du = 0.7978845608f * (1.0f + 3.0f * 0.044715f * x * x);
  dinp[i] += (s + x * s * (1.0f - s) * 2.0f * du) * dout[i];
}

__global__ void k_residual(float* out, const float* a, const float* b, i64 n) {
  i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = a[i] + b[i];
}

__global__ void k_embedding_forward(float* out, const std::int32_t* tokens, const float* wte, const float* wpe, i64 B,
                                    i64 T, i64 C, i64 v0, i64 Vl) {
  i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x;
  if (i >= B * T * C) return;
  i64 c = i % C, bt = i / C, t = bt % T;
  const i64 row = static_cast<i64>(tokens[bt]) - v0;
  out[i] = (row >= 0 && row < Vl ? wte[row * C + c] : 0.0f) + (wpe ? wpe[t * C + c] : 0.0f);
}

__global__ void k_embedding_backward(float* dwte, float* dwpe, const float* dout, const std::int32_t* tokens, i64 B, i64 T,
                                     i64 C, i64 v0, i64 Vl) {
  i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x;
  if (i >= B * T * C) return;
  i64 c = i % C, bt = i / C, t = bt % T;
  const i64 row = static_cast<i64>(tokens[bt]) - v0;
  if (dwte && row >= 0 && row < Vl) atomicAdd(&dwte[row * C + c], dout[i]);
  if (dwpe) atomicAdd(&dwpe[t * C + c], dout[i]);
}

// A warp's row of V logits: its largest, and the sum of exp(z - largest), in every lane.
__device__ void row_softmax_stats(const float* z, i64 V, int lane, float* mx, float* sum) {
  float m = -INFINITY;
  for (i64 v = lane; v < V; v += 32) m = fmaxf(m, z[v]);
  m = warp_max(m);
  float s = 0;
  for (i64 v = lane; v < V; v += 32) s += __expf(z[v] - m);
  *mx = m;
  *sum = warp_sum(s);
}

// One warp per row of V logits.
__global__ void k_crossentropy_forward(float* losses, float* probs, const float* logits, const std::int32_t* targets, i64 N,
                                       i64 V) {
  i64 row = (blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x) / 32;
  int lane = threadIdx.x & 31;
  if (row >= N) return;
  const float* z = logits + row * V;
  const float z_target = z[targets[row]];  // before probs (which may be logits) are written
  float mx, sum;
  row_softmax_stats(z, V, lane, &mx, &sum);
  float inv = 1.0f / sum;
  float* p = probs + row * V;
  __syncwarp();  // every lane has read z_target before any lane overwrites it
  for (i64 v = lane; v < V; v += 32) p[v] = __expf(z[v] - mx) * inv;
  if (lane == 0) losses[row] = mx + logf(sum) - z_target;
}

// One warp per row of a rank's Vl logits.
__global__ void k_crossentropy_shard_stats(float* stats, const float* logits, const std::int32_t* targets, i64 N, i64 Vl,
                                           i64 v0) {
  i64 row = (blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x) / 32;
  int lane = threadIdx.x & 31;
  if (row >= N) return;
  const float* z = logits + row * Vl;
  float mx, sum;
  row_softmax_stats(z, Vl, lane, &mx, &sum);
  if (lane == 0) {
    const i64 target = static_cast<i64>(targets[row]) - v0;
    stats[row] = mx;
    stats[N + row] = sum;
    stats[2 * N + row] = target >= 0 && target < Vl ? z[target] : 0.0f;
  }
}

__global__ void k_crossentropy_shard_finish(float* losses, float* probs, const float* logits, const float* all_stats,
                                            int ranks, i64 N, i64 Vl) {
  i64 row = (blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x) / 32;
  int lane = threadIdx.x & 31;
  if (row >= N) return;
  float mx = -INFINITY, sum = 0, z_target = 0;
  for (int r = 0; r < ranks; ++r) mx = fmaxf(mx, all_stats[3 * N * r + row]);
  for (int r = 0; r < ranks; ++r) {
    const float* s = all_stats + 3 * N * r;
    sum += s[N + row] * __expf(s[row] - mx);
    z_target += s[2 * N + row];
  }
  const float* z = logits + row * Vl;
  float* p = probs + row * Vl;
  const float inv = 1.0f / sum;
  for (i64 v = lane; v < Vl; v += 32) p[v] = __expf(z[v] - mx) * inv;
  if (lane == 0) losses[row] = mx + logf(sum) - z_target;
}

__global__ void k_crossentropy_backward(float* dlogits, const float* probs, const std::int32_t* targets, float dloss, i64 N,
                                        i64 Vl, i64 v0) {
  i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x;
  if (i >= N * Vl) return;
  i64 n = i / Vl, v = i % Vl;
  dlogits[i] = (probs[i] - (v + v0 == targets[n] ? 1.0f : 0.0f)) * dloss;
}

// One warp per row: the warp-per-row kernels need blocks of whole warps.
unsigned warp_blocks(i64 rows) { return static_cast<unsigned>((rows * 32 + kThreads - 1) / kThreads); }

}  // namespace

void* compute_stream() { return ctx().stream; }
void set_bf16_matmuls(bool on) { g_bf16 = on; }
void synchronize() { check(cudaStreamSynchronize(ctx().stream), "synchronize"); }

void zero(void* p, std::size_t bytes) { check(cudaMemsetAsync(p, 0, bytes, ctx().stream), "memset"); }
void copy(void* dst, const void* src, std::size_t bytes) {
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx().stream), "copy");
}
void to_host(void* dst, const void* src, std::size_t bytes) {
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ctx().stream), "to_host");
  synchronize();
}
void from_host(void* dst, const void* src, std::size_t bytes) {
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx().stream), "from_host");
  synchronize();  // the host buffer may go away after we return
}

// Element-wise scale and add are the communicators' buffer ops, on the compute stream.
void scale(float* p, i64 n, float f) {
  cuda_buffers::scale(Buffer{p, static_cast<std::size_t>(n), DType::f32, Device::cuda}, f, ctx().stream);
}

double sum_squares(const float* flat, const std::vector<FlatRange>& ranges) {
  if (ranges.empty()) return 0.0;
  Context& c = ctx();
  static std::mutex scalar_mutex;  // the one device scalar, between threads
  std::lock_guard lock(scalar_mutex);
  check(cudaMemsetAsync(c.scalar, 0, sizeof(double), c.stream), "memset");
  for (std::size_t first = 0; first < ranges.size(); first += kMaxRuns) {
    RangeTable t{};
    i64 largest = 0;
    for (std::size_t i = first; i < ranges.size() && t.count < kMaxRuns; ++i, ++t.count) {
      t.begin[t.count] = ranges[i].begin;
      t.size[t.count] = ranges[i].size();
      largest = std::max(largest, ranges[i].size());
    }
    if (largest == 0) continue;
    k_sum_squares<<<dim3(stride_blocks(largest), static_cast<unsigned>(t.count)), kThreads, 0, c.stream>>>(flat, t,
                                                                                                              c.scalar);
    check_launch("sum_squares");
  }
  double out = 0;
  to_host(&out, c.scalar, sizeof(double));
  return out;
}

void matmul_forward(float* out, const float* inp, const float* w, const float* bias, i64 N, i64 C, i64 OC) {
  // out^T (OC x N) = w (as C x OC, transposed) x inp^T (C x N)
  if (bias) {
    k_fill_rows<<<blocks_for(N * OC), kThreads, 0, ctx().stream>>>(out, bias, N, OC);
    check_launch("bias");
  }
  gemm(CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, 1.0f, w, C, inp, C, bias ? 1.0f : 0.0f, out, OC);
}

void matmul_backward(float* dinp, float* dw, float* dbias, const float* dout, const float* inp, const float* w, i64 N, i64 C,
                     i64 OC) {
  if (dinp) gemm(CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, 1.0f, w, C, dout, OC, 1.0f, dinp, C);  // dinp^T += w^T dout^T
  if (dw) gemm(CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, 1.0f, inp, C, dout, OC, 1.0f, dw, C);     // dw^T += inp^T dout
  if (dbias) {
    k_bias_grad<<<static_cast<unsigned>((OC + 31) / 32), dim3(32, kBiasRows), 0, ctx().stream>>>(dbias, dout, N, OC);
    check_launch("bias grad");
  }
}

void add_bias(float* out, const float* bias, i64 N, i64 OC) {
  k_add_bias<<<blocks_for(N * OC), kThreads, 0, ctx().stream>>>(out, bias, N, OC);
  check_launch("add_bias");
}

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* w, const float* b, i64 N, i64 C) {
  k_layernorm_forward<<<warp_blocks(N), kThreads, 0, ctx().stream>>>(out, mean, rstd, inp, w, b, N, C);
  check_launch("layernorm_forward");
}

void layernorm_backward(float* dinp, float* dw, float* db, const float* dout, const float* inp, const float* w,
                        const float* mean, const float* rstd, i64 N, i64 C) {
  Context& c = ctx();
  static std::once_flag opt_in;  // once per process: setting it per call would race between threads
  std::call_once(opt_in, [&] {
    check(cudaFuncSetAttribute(k_layernorm_backward<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, c.smem_optin),
          "layernorm backward shared memory");
  });
  const std::size_t smem = 2 * static_cast<std::size_t>(C) * sizeof(float);
  const bool shared = smem <= static_cast<std::size_t>(c.smem_optin);
  // As many blocks as stay resident at once: each strides over the rows.
  int per_sm = 1;
  check(shared ? cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k_layernorm_backward<true>, kThreads, smem)
               : cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k_layernorm_backward<false>, kThreads, 0),
        "occupancy");
  const unsigned grid = std::max(1u, std::min<unsigned>(warp_blocks(N), std::max(1, per_sm) * c.sms));
  if (shared)
    k_layernorm_backward<true><<<grid, kThreads, smem, c.stream>>>(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
  else
    k_layernorm_backward<false><<<grid, kThreads, 0, c.stream>>>(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
  check_launch("layernorm_backward");
}

// Per batch b, over its NH heads at once (strided batches of stride hs): S = scale Q K^T,
// causal softmax into att, out = P V. Q, K, V are views into qkv rows of 3C.
void attention_forward(float* out, float* att, const float* qkv, i64 B, i64 T, i64 C, i64 NH) {
  const i64 hs = C / NH, row = 3 * C;
  const float scale = 1.0f / sqrtf(static_cast<float>(hs));
  for (i64 b = 0; b < B; ++b) {
    const float* q = qkv + b * T * row;
    float* p = att + b * NH * T * T;
    gemm_strided(CUBLAS_OP_T, CUBLAS_OP_N, T, T, hs, scale, q + C, row, hs, q, row, hs, 0.0f, p, T, T * T, NH);
    k_causal_softmax<<<warp_blocks(NH * T), kThreads, 0, ctx().stream>>>(p, NH * T, T);
    check_launch("causal softmax");
    gemm_strided(CUBLAS_OP_N, CUBLAS_OP_N, hs, T, T, 1.0f, q + 2 * C, row, hs, p, T, T * T, 0.0f, out + b * T * C, C, hs, NH);
  }
}

void attention_backward(float* dqkv, float* scratch, const float* dout, const float* qkv, const float* att, i64 B, i64 T,
                        i64 C, i64 NH) {
  const i64 hs = C / NH, row = 3 * C;
  const float scale = 1.0f / sqrtf(static_cast<float>(hs));
  for (i64 b = 0; b < B; ++b) {
    const float* q = qkv + b * T * row;
    float* dq = dqkv + b * T * row;
    const float* p = att + b * NH * T * T;
    const float* d_o = dout + b * T * C;
    float* ds = scratch + b * NH * T * T;
    // dP = dO V^T; dV += P^T dO; dS = softmax backward; dQ += s dS K; dK += s dS^T Q.
    gemm_strided(CUBLAS_OP_T, CUBLAS_OP_N, T, T, hs, 1.0f, q + 2 * C, row, hs, d_o, C, hs, 0.0f, ds, T, T * T, NH);
    gemm_strided(CUBLAS_OP_N, CUBLAS_OP_T, hs, T, T, 1.0f, d_o, C, hs, p, T, T * T, 1.0f, dq + 2 * C, row, hs, NH);
    k_softmax_backward<<<warp_blocks(NH * T), kThreads, 0, ctx().stream>>>(ds, p, NH * T, T);
    check_launch("softmax backward");
    gemm_strided(CUBLAS_OP_N, CUBLAS_OP_N, hs, T, T, scale, q + C, row, hs, ds, T, T * T, 1.0f, dq, row, hs, NH);
    gemm_strided(CUBLAS_OP_N, CUBLAS_OP_T, hs, T, T, scale, q, row, hs, ds, T, T * T, 1.0f, dq + C, row, hs, NH);
  }
}

void gelu_forward(float* out, const float* inp, i64 N) {
  k_gelu_forward<<<blocks_for(N), kThreads, 0, ctx().stream>>>(out, inp, N);
  check_launch("gelu_forward");
}

void gelu_backward(float* dinp, const float* inp, const float* dout, i64 N) {
  k_gelu_backward<<<blocks_for(N), kThreads, 0, ctx().stream>>>(dinp, inp, dout, N);
  check_launch("gelu_backward");
}

void residual_forward(float* out, const float* a, const float* b, i64 N) {
  k_residual<<<blocks_for(N), kThreads, 0, ctx().stream>>>(out, a, b, N);
  check_launch("residual");
}

void add_into(float* dst, const float* src, i64 N) {
  const auto n = static_cast<std::size_t>(N);
  cuda_buffers::add(Buffer{dst, n, DType::f32, Device::cuda}, Buffer{const_cast<float*>(src), n, DType::f32, Device::cuda},
                    ctx().stream);
}

void embedding_forward(float* out, const std::int32_t* tokens, const float* wte, const float* wpe, i64 B, i64 T, i64 C,
                       i64 v0, i64 Vl) {
  k_embedding_forward<<<blocks_for(B * T * C), kThreads, 0, ctx().stream>>>(out, tokens, wte, wpe, B, T, C, v0, Vl);
  check_launch("embedding_forward");
}

void embedding_backward(float* dwte, float* dwpe, const float* dout, const std::int32_t* tokens, i64 B, i64 T, i64 C,
                        i64 v0, i64 Vl) {
  k_embedding_backward<<<blocks_for(B * T * C), kThreads, 0, ctx().stream>>>(dwte, dwpe, dout, tokens, B, T, C, v0, Vl);
  check_launch("embedding_backward");
}

void crossentropy_forward(float* losses, float* probs, const float* logits, const std::int32_t* targets, i64 N, i64 V) {
  k_crossentropy_forward<<<warp_blocks(N), kThreads, 0, ctx().stream>>>(losses, probs, logits, targets, N, V);
  check_launch("crossentropy_forward");
}

void crossentropy_shard_stats(float* stats, const float* logits, const std::int32_t* targets, i64 N, i64 Vl, i64 v0) {
  k_crossentropy_shard_stats<<<warp_blocks(N), kThreads, 0, ctx().stream>>>(stats, logits, targets, N, Vl, v0);
  check_launch("crossentropy_shard_stats");
}

void crossentropy_shard_finish(float* losses, float* probs, const float* logits, const float* all_stats, int ranks, i64 N,
                               i64 Vl) {
  k_crossentropy_shard_finish<<<warp_blocks(N), kThreads, 0, ctx().stream>>>(losses, probs, logits, all_stats, ranks, N,
                                                                               Vl);
  check_launch("crossentropy_shard_finish");
}

void crossentropy_backward(float* dlogits, const float* probs, const std::int32_t* targets, float dloss, i64 N, i64 Vl,
                           i64 v0) {
  k_crossentropy_backward<<<blocks_for(N * Vl), kThreads, 0, ctx().stream>>>(dlogits, probs, targets, dloss, N, Vl, v0);
  check_launch("crossentropy_backward");
}

}  // namespace ft::cuda
