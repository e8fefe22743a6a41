// What the CUDA kernel files share (internal to models/cuda): error checks, the process's
// compute stream and cuBLAS handle, and launch shapes.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "models/cuda/kernels.h"

namespace ft::cuda::detail {

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(e));
}
inline void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw std::runtime_error(std::string("cuBLAS: ") + what + " failed (" + std::to_string(s) + ")");
}
inline void check_launch(const char* what) { check(cudaGetLastError(), what); }

struct Context {
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  double* scalar = nullptr;   // device scratch for reductions
  int sms = 1;                // streaming multiprocessors, to size grid-stride launches
  int smem_optin = 48 << 10;  // the most shared memory a block may ask for
};

// One per process, on the device current at first use: every thread's ops go to the same
// compute stream, so that one event on it orders communication after all the compute
// issued before (a stream per thread would leave a communication thread's reads unordered).
Context& ctx();

constexpr int kThreads = 256;
inline unsigned blocks_for(i64 n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }
// Blocks along x for grid-stride kernels over runs of up to `largest` elements: enough to
// fill the device a few times over, no more.
inline unsigned stride_blocks(i64 largest) {
  return std::max(1u, std::min<unsigned>(blocks_for(largest), 4 * ctx().sms));
}

// Ranges of a flat array are passed to a kernel by value, in tables of up to kMaxRuns: that
// keeps its parameters under the 4 KiB every driver takes.
constexpr int kMaxRuns = 128;

}  // namespace ft::cuda::detail
