// Tensors: a shape, an element type and a device over shared storage. Views (slices of a
// flat parameter or gradient buffer) share the storage of their parent.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "comm/device.h"

namespace ft {

using Shape = std::vector<std::int64_t>;

std::int64_t numel_of(const Shape& s);
std::string to_string(const Shape& s);

// Raw allocation on a device, zero-filled. CPU memory is 64-byte aligned for vector loads.
// Throws OutOfMemory, with the bytes asked for and those free, when the device cannot hold it.
std::shared_ptr<void> allocate(Device device, std::size_t bytes);
// "1.50 GiB", for memory messages.
std::string gib(std::size_t bytes);

// A range [begin, end) of a flat buffer (the parameters' or the gradients').
struct FlatRange {
  std::int64_t begin = 0, end = 0;
  std::int64_t size() const { return end - begin; }
};

class Tensor {
 public:
  Tensor() = default;
  // A new zero-filled tensor.
  explicit Tensor(Shape shape, DType dtype = DType::f32, Device device = Device::cpu);
  // A view of `shape` starting `offset` elements into `base`'s storage.
  static Tensor view_of(const Tensor& base, std::int64_t offset, Shape shape);

  const Shape& shape() const { return shape_; }
  std::int64_t dim(int i) const { return shape_.at(static_cast<std::size_t>(i < 0 ? i + rank() : i)); }
  int rank() const { return static_cast<int>(shape_.size()); }
  std::int64_t numel() const { return numel_; }
  std::size_t bytes() const { return static_cast<std::size_t>(numel_) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  bool defined() const { return storage_ != nullptr; }

  void* raw() const { return static_cast<char*>(storage_.get()) + offset_ * static_cast<std::int64_t>(dtype_size(dtype_)); }
  // Typed access; checks the element type (not the device: kernels of either kind take it).
  template <class T> T* data() const {
    check_dtype(dtype_of<T>());
    return static_cast<T*>(raw());
  }
  Buffer buffer() const { return Buffer{raw(), static_cast<std::size_t>(numel_), dtype_, device_}; }

 private:
  void check_dtype(DType want) const;

  std::shared_ptr<void> storage_;
  std::int64_t offset_ = 0;
  Shape shape_;
  std::int64_t numel_ = 0;
  DType dtype_ = DType::f32;
  Device device_ = Device::cpu;
};

}  // namespace ft
