#include "comm/host_buffers.h"

#include <cstdint>
#include <stdexcept>

#include <fmt/format.h>

#include "comm/half.h"

namespace ft::host_buffers {
namespace {

template <class T> void add_elements(void* dst, const void* src, std::size_t n) {
  T* d = static_cast<T*>(dst);
  const T* s = static_cast<const T*>(src);
  for (std::size_t i = 0; i < n; ++i) d[i] += s[i];
}

template <class T> void scale_elements(void* buf, std::size_t n, double f) {
  T* d = static_cast<T*>(buf);
  for (std::size_t i = 0; i < n; ++i) d[i] = static_cast<T>(d[i] * f);
}

}  // namespace

void add(Buffer dst, Buffer src) {
  switch (dst.dtype) {
    case DType::f32: add_elements<float>(dst.data, src.data, dst.count); return;
    case DType::f64: add_elements<double>(dst.data, src.data, dst.count); return;
    case DType::i8: add_elements<std::int8_t>(dst.data, src.data, dst.count); return;
    case DType::u8: add_elements<std::uint8_t>(dst.data, src.data, dst.count); return;
    case DType::i32: add_elements<std::int32_t>(dst.data, src.data, dst.count); return;
    case DType::u32: add_elements<std::uint32_t>(dst.data, src.data, dst.count); return;
    case DType::i64: add_elements<std::int64_t>(dst.data, src.data, dst.count); return;
    default: throw std::invalid_argument(fmt::format("cannot add {} buffers on the host", to_string(dst.dtype)));
  }
}

void scale(Buffer buf, double f) {
  switch (buf.dtype) {
    case DType::f32: scale_elements<float>(buf.data, buf.count, f); return;
    case DType::f64: scale_elements<double>(buf.data, buf.count, f); return;
    default: throw std::invalid_argument(fmt::format("average of {} buffers is not defined", to_string(buf.dtype)));
  }
}

void convert(Buffer dst, Buffer src, bool add) {
  if (dst.count != src.count) throw std::invalid_argument("convert: counts differ");
  if (src.dtype == DType::f32 && (dst.dtype == DType::f16 || dst.dtype == DType::bf16) && !add) {
    const float* s = src.as<float>();
    auto* d = dst.as<std::uint16_t>();
    if (dst.dtype == DType::f16)
      for (std::size_t i = 0; i < src.count; ++i) d[i] = to_fp16(s[i]);
    else
      for (std::size_t i = 0; i < src.count; ++i) d[i] = to_bf16(s[i]);
    return;
  }
  if (dst.dtype == DType::f32 && (src.dtype == DType::f16 || src.dtype == DType::bf16)) {
    const auto* s = src.as<std::uint16_t>();
    float* d = dst.as<float>();
    bool half = src.dtype == DType::f16;
    for (std::size_t i = 0; i < src.count; ++i) {
      float v = half ? from_fp16(s[i]) : from_bf16(s[i]);
      d[i] = add ? d[i] + v : v;
    }
    return;
  }
  throw std::invalid_argument(fmt::format("convert: {} to {} is not a codec cast", to_string(src.dtype),
                                          to_string(dst.dtype)));
}

}  // namespace ft::host_buffers
