#include "comm/transport.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

#ifdef FIBERTRAIN_CUDA
#include "comm/cuda/buffer_ops.h"
#endif

namespace ft {

void Transport::on_backend_memory(Buffer buf, int slot, const std::function<void(Buffer)>& fn, bool write_back) {
  if (buf.device == memory() || buf.count == 0) {
    fn(buf);
    return;
  }
  Buffer there = scratch(slot, buf.bytes(), buf.dtype);
  there.count = buf.count;
  Device device = buf.device == Device::cuda ? buf.device : there.device;
  copy_bytes(there.data, buf.data, buf.bytes(), device);
  fn(there);
  if (write_back) copy_bytes(buf.data, there.data, buf.bytes(), device);
}

void Transport::encode(Buffer dst, Buffer src, const WireFormat& wire) {
  if (auto t = wire.dtype()) return convert(Buffer{dst.data, src.count, *t, dst.device}, src, false);
  on_host_bytes(dst, src, [&wire, n = src.count](void* d, const void* s) {
    wire.encode(static_cast<const float*>(s), n, static_cast<std::uint8_t*>(d));
  });
}

void Transport::decode(Buffer dst, Buffer src, const WireFormat& wire, bool add) {
  if (auto t = wire.dtype()) return convert(dst, Buffer{src.data, dst.count, *t, src.device}, add);
  on_host_bytes(dst, src, [&wire, n = dst.count, add](void* d, const void* s) {
    wire.decode(static_cast<const std::uint8_t*>(s), n, static_cast<float*>(d), add);
  });
}

std::shared_ptr<void> Transport::snapshot(Buffer buf) {
  const std::size_t bytes = buf.bytes();
  const Device device = buf.device;
  void* p = nullptr;
  if (device == Device::cuda) {
#ifdef FIBERTRAIN_CUDA
    // Stream-ordered memory: a plain cudaMalloc or cudaFree would wait for the whole device,
    // NCCL's kernels (which may wait on a peer that waits on us) included.
    void* stream = producer_ ? producer_->native() : nullptr;
    p = cuda_buffers::allocate_async(bytes, stream);
    if (stream)
      cuda_buffers::copy_async(p, buf.data, bytes, stream);
    else
      cuda_buffers::copy(p, buf.data, bytes, nullptr);  // no stream to order it by: done on return
#else
    throw std::logic_error("device buffer in a build without CUDA");
#endif
  } else {
    p = std::malloc(bytes == 0 ? 1 : bytes);
    if (!p) throw std::bad_alloc();
    auto take = [p, src = buf.data, bytes] { std::memcpy(p, src, bytes); };
    if (producer_)
      producer_->launch(take);
    else
      take();
  }
  return std::shared_ptr<void>(p, [this, device](void* q) { release_snapshot(q, device); });
}

void Transport::release_snapshot(void* p, Device device) {
  if (device == Device::cpu) return std::free(p);
#ifdef FIBERTRAIN_CUDA
  cuda_buffers::release_async(p, producer_ ? producer_->native() : nullptr);
#endif
}

int Transport::worker_device() const {
#ifdef FIBERTRAIN_CUDA
  // CUDA's current device is per thread: a worker uses the one of the thread that starts it.
  if (memory() == Device::cuda || (producer_ && producer_->kind() == StreamKind::cuda)) return cuda_buffers::current_device();
#endif
  return -1;
}

}  // namespace ft
