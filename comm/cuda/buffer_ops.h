// Device-buffer operations for the communicators: copies between host and device, and the
// element-wise work the ring algorithms do on arrival (add, scale, fp16/bf16 casts), on a
// given stream. Plain declarations, so host-only code can call them.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "comm/device.h"

namespace ft::cuda_buffers {

// The calling thread's current device, and making one current for it.
int current_device();
void set_device(int device);
// The current device's PCI bus id ("0000:18:00.0").
std::string device_bus_id();
void* create_stream();  // non-blocking
void destroy_stream(void* stream);
void* create_event();
void destroy_event(void* event);
void record(void* event, void* stream);
void wait(void* stream, void* event);  // stream waits for event
void synchronize_event(void* event);
void synchronize_stream(void* stream);

// Stream-ordered allocation (cudaMallocAsync): no device-wide wait on release.
void* allocate_async(std::size_t bytes, void* stream);
void release_async(void* p, void* stream);
// Runs `fn` on a host thread of CUDA's when `stream` reaches it (cudaLaunchHostFunc); it
// must not call CUDA.
void launch_host(void* stream, std::function<void()> fn);

void copy(void* dst, const void* src, std::size_t bytes, void* stream);  // any direction; then waits
void copy_async(void* dst, const void* src, std::size_t bytes, void* stream);
void add(Buffer dst, Buffer src, void* stream);                          // dst += src (f32, f64, i32, i64)
void scale(Buffer buf, double factor, void* stream);                     // f32, f64
// dst = src or dst += src, between f32 and f16/bf16 (round to nearest even; fp16 clamps at
// +-65504 like the host codec).
void convert(Buffer dst, Buffer src, bool add, void* stream);

}  // namespace ft::cuda_buffers
