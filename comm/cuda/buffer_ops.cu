#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include "comm/cuda/buffer_ops.h"

namespace ft::cuda_buffers {
namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(e));
}
cudaStream_t s(void* stream) { return static_cast<cudaStream_t>(stream); }
constexpr int kThreads = 256;
unsigned blocks(std::size_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

template <class T> __global__ void k_add(T* d, const T* x, std::size_t n) {
  std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i < n) d[i] += x[i];
}
template <class T> __global__ void k_scale(T* d, std::size_t n, T f) {
  std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i < n) d[i] *= f;
}
__global__ void k_to_half(__half* d, const float* x, std::size_t n) {
  std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i < n) d[i] = __float2half_rn(fminf(fmaxf(x[i], -65504.0f), 65504.0f));
}
__global__ void k_to_bf16(__nv_bfloat16* d, const float* x, std::size_t n) {
  std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i < n) d[i] = __float2bfloat16_rn(x[i]);
}
__global__ void k_from_half(float* d, const __half* x, std::size_t n, bool add) {
  std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i < n) d[i] = add ? d[i] + __half2float(x[i]) : __half2float(x[i]);
}
__global__ void k_from_bf16(float* d, const __nv_bfloat16* x, std::size_t n, bool add) {
  std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i < n) d[i] = add ? d[i] + __bfloat162float(x[i]) : __bfloat162float(x[i]);
}

}  // namespace

int current_device() {
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  return device;
}
void set_device(int device) { check(cudaSetDevice(device), "cudaSetDevice"); }

std::string device_bus_id() {
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  char id[32] = {};
  check(cudaDeviceGetPCIBusId(id, sizeof id, device), "cudaDeviceGetPCIBusId");
  return id;
}

void* create_stream() {
  cudaStream_t st;
  check(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "stream");
  return st;
}
void destroy_stream(void* stream) { cudaStreamDestroy(s(stream)); }
void* create_event() {
  cudaEvent_t e;
  // Blocking-sync: a host that waits for it sleeps rather than spinning a core.
  check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming | cudaEventBlockingSync), "event");
  return e;
}
void destroy_event(void* event) { cudaEventDestroy(static_cast<cudaEvent_t>(event)); }
void record(void* event, void* stream) { check(cudaEventRecord(static_cast<cudaEvent_t>(event), s(stream)), "record"); }
void wait(void* stream, void* event) { check(cudaStreamWaitEvent(s(stream), static_cast<cudaEvent_t>(event), 0), "wait"); }
void synchronize_event(void* event) { check(cudaEventSynchronize(static_cast<cudaEvent_t>(event)), "event sync"); }
void synchronize_stream(void* stream) { check(cudaStreamSynchronize(s(stream)), "stream sync"); }

void* allocate_async(std::size_t bytes, void* stream) {
  void* p = nullptr;
  check(cudaMallocAsync(&p, bytes == 0 ? 256 : bytes, s(stream)), "cudaMallocAsync");
  return p;
}
void release_async(void* p, void* stream) { cudaFreeAsync(p, s(stream)); }

void launch_host(void* stream, std::function<void()> fn) {
  auto* heap = new std::function<void()>(std::move(fn));
  cudaError_t e = cudaLaunchHostFunc(
      s(stream),
      [](void* arg) {
        std::unique_ptr<std::function<void()>> f(static_cast<std::function<void()>*>(arg));
        try {
          (*f)();
        } catch (const std::exception& err) {  // nothing can take it from here
          std::fprintf(stderr, "fibertrain: host work on a CUDA stream failed: %s\n", err.what());
          std::abort();
        }
      },
      heap);
  if (e != cudaSuccess) delete heap;
  check(e, "cudaLaunchHostFunc");
}

void copy_async(void* dst, const void* src, std::size_t bytes, void* stream) {
  if (bytes == 0) return;
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, s(stream)), "copy");
}

void copy(void* dst, const void* src, std::size_t bytes, void* stream) {
  copy_async(dst, src, bytes, stream);
  if (bytes) synchronize_stream(stream);
}

void add(Buffer dst, Buffer src, void* stream) {
  if (dst.count == 0) return;
  switch (dst.dtype) {
    case DType::f32: k_add<<<blocks(dst.count), kThreads, 0, s(stream)>>>(dst.as<float>(), src.as<float>(), dst.count); break;
    case DType::f64: k_add<<<blocks(dst.count), kThreads, 0, s(stream)>>>(dst.as<double>(), src.as<double>(), dst.count); break;
    case DType::i32: k_add<<<blocks(dst.count), kThreads, 0, s(stream)>>>(dst.as<int>(), src.as<int>(), dst.count); break;
    case DType::i64:
      k_add<<<blocks(dst.count), kThreads, 0, s(stream)>>>(dst.as<long long>(), src.as<long long>(), dst.count);
      break;
    default: throw std::invalid_argument("device add: unsupported element type");
  }
  check(cudaGetLastError(), "add");
}

void scale(Buffer buf, double factor, void* stream) {
  if (buf.count == 0) return;
  if (buf.dtype == DType::f32)
    k_scale<<<blocks(buf.count), kThreads, 0, s(stream)>>>(buf.as<float>(), buf.count, static_cast<float>(factor));
  else if (buf.dtype == DType::f64)
    k_scale<<<blocks(buf.count), kThreads, 0, s(stream)>>>(buf.as<double>(), buf.count, factor);
  else
    throw std::invalid_argument("device scale: average of integer buffers is not defined");
  check(cudaGetLastError(), "scale");
}

void convert(Buffer dst, Buffer src, bool add, void* stream) {
  if (dst.count == 0) return;
  if (src.dtype == DType::f32 && dst.dtype == DType::f16 && !add)
    k_to_half<<<blocks(dst.count), kThreads, 0, s(stream)>>>(static_cast<__half*>(dst.data), src.as<float>(), dst.count);
  else if (src.dtype == DType::f32 && dst.dtype == DType::bf16 && !add)
    k_to_bf16<<<blocks(dst.count), kThreads, 0, s(stream)>>>(static_cast<__nv_bfloat16*>(dst.data), src.as<float>(),
                                                              dst.count);
  else if (dst.dtype == DType::f32 && src.dtype == DType::f16)
    k_from_half<<<blocks(dst.count), kThreads, 0, s(stream)>>>(dst.as<float>(), static_cast<const __half*>(src.data),
                                                                dst.count, add);
  else if (dst.dtype == DType::f32 && src.dtype == DType::bf16)
    k_from_bf16<<<blocks(dst.count), kThreads, 0, s(stream)>>>(dst.as<float>(), static_cast<const __nv_bfloat16*>(src.data),
                                                                dst.count, add);
  else
    throw std::invalid_argument("device convert: not a codec cast");
  check(cudaGetLastError(), "convert");
}

}  // namespace ft::cuda_buffers
