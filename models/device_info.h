// What the compute backends are: BLAS on the host, CUDA devices when built with them.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "comm/device.h"

namespace ft {

// "OpenBLAS 0.3.21 ... (Haswell)"; the build-time description of the BLAS in use.
std::string blas_info();
// Sets the thread count of this process's CPU compute: OpenBLAS and the CPU kernels' loops.
void set_cpu_threads(int threads);
int cpu_threads();

// Best FLOP/s of an n x n x n fp32 matrix product on `device` (with this process's threads;
// on CUDA through cuBLAS, on the tensor cores in bf16 when bf16 matmuls are on), over
// repeats for about `seconds`: the denominator of MFU when no peak is configured.
double measure_matmul_flops(Device device, int n = 512, double seconds = 0.15);
double measure_cuda_matmul_flops(int n, double seconds);
// The current CUDA device's dense peak from its datasheet (bf16 tensor cores, or fp32), by
// its name; 0 when the device is not in the table or CUDA is not built.
double cuda_datasheet_flops(bool bf16);

// "CUDA runtime 13.0, 1 device: NVIDIA H100 (sm_90)", "not built", or why no device answers.
std::string cuda_info();
// Number of usable CUDA devices; 0 when not built or when none answers.
int cuda_device_count();
// Makes device (local_rank % devices) current for this process and returns it; throws
// UserError when no device answers or the build has no CUDA.
int select_cuda_device(int local_rank);
// Bytes of host memory the kernel says can be allocated without swapping (MemAvailable);
// 0 when unknown.
std::size_t host_memory_available();
// Device memory, zero-filled; throws when CUDA is not built or allocation fails.
std::shared_ptr<void> cuda_allocate(std::size_t bytes);

}  // namespace ft
