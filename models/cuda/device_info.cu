// CUDA side of device_info.h: device discovery and allocation. (No fmt in .cu files: its
// compile-time format checks do not pass through nvcc.)
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>


#include "models/device_info.h"

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

std::shared_ptr<void> cuda_allocate(std::size_t bytes) {
  void* p = nullptr;
  std::size_t n = bytes == 0 ? 256 : bytes;
  if (cudaMalloc(&p, n) != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error("cudaMalloc of " + std::to_string(n) + " bytes failed");
  }
  cudaMemset(p, 0, n);
  return std::shared_ptr<void>(p, [](void* q) { cudaFree(q); });
}

}  // namespace ft
