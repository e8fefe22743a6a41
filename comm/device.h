// Device and element-type tags carried by every buffer and tensor, so that nothing in the
// project assumes host memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ft {

enum class Device : std::uint8_t { cpu, cuda };

enum class DType : std::uint8_t { f32, f64, f16, bf16, i8, u8, i32, u32, i64 };

constexpr std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::f64:
    case DType::i64: return 8;
    case DType::f32:
    case DType::i32:
    case DType::u32: return 4;
    case DType::f16:
    case DType::bf16: return 2;
    case DType::i8:
    case DType::u8: return 1;
  }
  return 0;
}

constexpr std::string_view to_string(Device d) { return d == Device::cpu ? "cpu" : "cuda"; }

constexpr std::string_view to_string(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
    case DType::i8: return "i8";
    case DType::u8: return "u8";
    case DType::i32: return "i32";
    case DType::u32: return "u32";
    case DType::i64: return "i64";
  }
  return "?";
}

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<std::int8_t>() { return DType::i8; }
template <> constexpr DType dtype_of<std::uint8_t>() { return DType::u8; }
template <> constexpr DType dtype_of<std::int32_t>() { return DType::i32; }
template <> constexpr DType dtype_of<std::uint32_t>() { return DType::u32; }
template <> constexpr DType dtype_of<std::int64_t>() { return DType::i64; }

// A non-owning view of `count` elements somewhere in host or device memory.
struct Buffer {
  void* data = nullptr;
  std::size_t count = 0;
  DType dtype = DType::f32;
  Device device = Device::cpu;

  std::size_t bytes() const { return count * dtype_size(dtype); }
  template <class T> T* as() const { return static_cast<T*>(data); }
  // `count` elements from element `offset` on, same type and device.
  Buffer slice(std::size_t offset, std::size_t n) const {
    return Buffer{static_cast<char*>(data) + offset * dtype_size(dtype), n, dtype, device};
  }
};

template <class T> Buffer host_buffer(T* data, std::size_t count) {
  return Buffer{data, count, dtype_of<T>(), Device::cpu};
}

}  // namespace ft
