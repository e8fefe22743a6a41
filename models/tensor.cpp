#include "models/tensor.h"

#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include "comm/error.h"
#include "models/device_info.h"

namespace ft {

std::int64_t numel_of(const Shape& s) {
  std::int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

std::string to_string(const Shape& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

std::string gib(std::size_t bytes) { return fmt::format("{:.2f} GiB", static_cast<double>(bytes) / (1 << 30)); }

std::shared_ptr<void> allocate(Device device, std::size_t bytes) {
  if (device == Device::cuda) return cuda_allocate(bytes);
  std::size_t rounded = (bytes + 63) / 64 * 64;
  // Zero-filling touches every page: a buffer larger than the memory left would bring the
  // kernel's OOM killer, not an error. Large ones are checked first.
  if (rounded >= (std::size_t{64} << 20)) {
    std::size_t available = host_memory_available();
    if (available > 0 && rounded > available)
      throw OutOfMemory(fmt::format("host memory: {} needed for one buffer, {} available", gib(rounded), gib(available)));
  }
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (!p) throw OutOfMemory(fmt::format("host memory: allocating {} failed", gib(rounded)));
  std::memset(p, 0, rounded == 0 ? 64 : rounded);
  return std::shared_ptr<void>(p, [](void* q) { std::free(q); });
}

Tensor::Tensor(Shape shape, DType dtype, Device device)
    : shape_(std::move(shape)), numel_(numel_of(shape_)), dtype_(dtype), device_(device) {
  for (auto d : shape_)
    if (d < 0) throw std::invalid_argument("negative dimension in shape " + to_string(shape_));
  storage_ = allocate(device_, bytes());
}

Tensor Tensor::view_of(const Tensor& base, std::int64_t offset, Shape shape) {
  Tensor t;
  t.storage_ = base.storage_;
  t.offset_ = base.offset_ + offset;
  t.shape_ = std::move(shape);
  t.numel_ = numel_of(t.shape_);
  t.dtype_ = base.dtype_;
  t.device_ = base.device_;
  if (offset < 0 || offset + t.numel_ > base.numel_)
    throw std::out_of_range(fmt::format("view {} at {} does not fit in {}", to_string(t.shape_), offset,
                                        to_string(base.shape_)));
  return t;
}

void Tensor::check_dtype(DType want) const {
  if (want != dtype_)
    throw std::logic_error(fmt::format("tensor of {} read as {}", ft::to_string(dtype_), ft::to_string(want)));
}

}  // namespace ft
