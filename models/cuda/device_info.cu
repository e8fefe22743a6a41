// CUDA side of device_info.h: device discovery and allocation. (No fmt in .cu files: its
// compile-time format checks do not pass through nvcc.)
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>


#include <algorithm>
#include <cstdint>
#include <vector>

#include "comm/error.h"
#include "comm/cuda/buffer_ops.h"
#include "models/cuda/kernels.h"
#include "models/device_info.h"
#include "models/tensor.h"

namespace ft {

int cuda_device_count() {
  int n = 0;
  // Without a driver this returns cudaErrorInsufficientDriver, not NoDevice: any failure
  // means no device.
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

std::string cuda_info() {
  int runtime = 0;
  cudaRuntimeGetVersion(&runtime);
  std::string head = "CUDA runtime " + std::to_string(runtime / 1000) + "." + std::to_string((runtime % 1000) / 10);
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return head + ", no device (" + cudaGetErrorString(err) + ")";
  }
  std::string out = head + ", " + std::to_string(n) + (n == 1 ? " device" : " devices");
  for (int d = 0; d < n; ++d) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, d) == cudaSuccess)
      out += std::string(d == 0 ? ": " : ", ") + p.name + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ")";
  }
  return out;
}

int select_cuda_device(int local_rank) {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess || n == 0) {
    cudaGetLastError();
    throw UserError(std::string("device: cuda, but no CUDA device answers (") +
                    (err != cudaSuccess ? cudaGetErrorString(err) : "no devices") + ")");
  }
  int d = local_rank % n;
  if (cudaSetDevice(d) != cudaSuccess) throw UserError("cannot select CUDA device " + std::to_string(d));
  // Memory freed on an NCCL stream (a sent snapshot, old scratch) is reused by another stream
  // only once the free is seen done, never by making that stream wait for it: compute would
  // otherwise wait for a send, which waits for the peer.
  cudaMemPool_t pool;
  int no = 0;
  if (cudaDeviceGetDefaultMemPool(&pool, d) == cudaSuccess)
    cudaMemPoolSetAttribute(pool, cudaMemPoolReuseAllowInternalDependencies, &no);
  return d;
}

double cuda_datasheet_flops(bool bf16) {
  int d = 0;
  cudaDeviceProp p{};
  if (cudaGetDevice(&d) != cudaSuccess || cudaGetDeviceProperties(&p, d) != cudaSuccess) return 0;
  const std::string name = p.name;
  // Dense (no sparsity) bf16 tensor-core and fp32 FLOP/s, from NVIDIA's datasheets.
  struct Row { const char* part; const char* unless; double bf16, fp32; };
  const Row table[] = {
      {"H100", "PCIe", 989.4e12, 66.9e12}, {"H100", "", 756.0e12, 51.2e12}, {"H200", "", 989.4e12, 66.9e12},
      {"GH200", "", 989.4e12, 66.9e12},    {"A100", "", 312.0e12, 19.5e12}, {"L40S", "", 362.05e12, 91.6e12},
  };
  for (const Row& r : table) {
    if (name.find(r.part) == std::string::npos) continue;
    if (*r.unless && name.find(r.unless) != std::string::npos) continue;
    return bf16 ? r.bf16 : r.fp32;
  }
  return 0;
}

double measure_cuda_matmul_flops(int n, double seconds) {
  // Through the same kernels the model uses (cuBLAS, at the configured precision).
  const std::int64_t N = n;
  float *a = nullptr, *b = nullptr, *c = nullptr;
  std::size_t bytes = static_cast<std::size_t>(N * N) * sizeof(float);
  if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess || cudaMalloc(&c, bytes) != cudaSuccess)
    throw std::runtime_error("cudaMalloc for the matmul probe failed");
  std::vector<float> host(static_cast<std::size_t>(N * N));
  for (std::size_t i = 0; i < host.size(); ++i) host[i] = static_cast<float>(i % 97) * 0.01f - 0.4f;  // not zeros
  cuda::from_host(a, host.data(), bytes);
  cuda::from_host(b, host.data(), bytes);
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  auto stream = static_cast<cudaStream_t>(cuda::compute_stream());
  double best = 0, total = 0;
  for (int rep = 0; rep < 200 && total < seconds; ++rep) {
    cudaEventRecord(start, stream);
    cuda::matmul_forward(c, a, b, nullptr, N, N, N);
    cudaEventRecord(stop, stream);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    total += ms * 1e-3;
    if (rep > 0) best = std::max(best, 2.0 * static_cast<double>(N * N * N) / (ms * 1e-3));  // rep 0 warms up
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaFree(a);
  cudaFree(b);
  cudaFree(c);
  return best;
}

std::shared_ptr<void> cuda_allocate(std::size_t bytes) {
  // Stream-ordered, from CUDA's pool on the compute stream: neither allocating nor freeing
  // waits for the whole device, whose NCCL kernels may be waiting for a peer that waits for us.
  void* stream = cuda::compute_stream();
  void* p = nullptr;
  try {
    p = cuda_buffers::allocate_async(bytes, stream);
  } catch (const std::exception&) {
    std::size_t free = 0, total = 0;
    if (cudaGetLastError() == cudaErrorMemoryAllocation || (cudaMemGetInfo(&free, &total) == cudaSuccess && bytes > free)) {
      cudaMemGetInfo(&free, &total);
      throw OutOfMemory("GPU memory: " + gib(bytes) + " needed for one buffer, " + gib(free) + " free of " + gib(total));
    }
    throw;
  }
  // Zeroed on the compute stream, ahead of every kernel and (through its events) every
  // transfer that may touch the memory; cudaMemset would run on the legacy stream, which
  // the non-blocking compute stream does not wait for.
  cuda::zero(p, bytes == 0 ? 256 : bytes);
  return std::shared_ptr<void>(p, [stream](void* q) { cuda_buffers::release_async(q, stream); });
}

}  // namespace ft
