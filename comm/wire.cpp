#include "comm/wire.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "comm/half.h"

namespace ft {
namespace {

// The buffer's own elements: copied as they are.
class Plain final : public WireFormat {
 public:
  Plain(std::string_view name, DType dtype) : name_(name), dtype_(dtype) {}
  std::string_view name() const override { return name_; }
  std::size_t bytes(std::size_t n) const override { return n * dtype_size(dtype_); }
  std::optional<DType> dtype() const override { return dtype_; }
  // (The ring never codes a buffer's own type; as fp32, for completeness.)
  void encode(const float* x, std::size_t n, std::uint8_t* out) const override { std::memcpy(out, x, bytes(n)); }
  void decode(const std::uint8_t* in, std::size_t n, float* out, bool add) const override {
    if (!add || dtype_ != DType::f32) return static_cast<void>(std::memcpy(out, in, bytes(n)));
    for (std::size_t i = 0; i < n; ++i) {
      float v;
      std::memcpy(&v, in + 4 * i, 4);
      out[i] += v;
    }
  }

 private:
  std::string_view name_;
  DType dtype_;
};

// A 16-bit float, round to nearest even.
class Cast16 final : public WireFormat {
 public:
  Cast16(std::string_view name, DType dtype, std::uint16_t (*to)(float), float (*from)(std::uint16_t))
      : name_(name), dtype_(dtype), to_(to), from_(from) {}
  std::string_view name() const override { return name_; }
  std::size_t bytes(std::size_t n) const override { return 2 * n; }
  std::optional<DType> dtype() const override { return dtype_; }
  void encode(const float* x, std::size_t n, std::uint8_t* out) const override {
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint16_t h = to_(x[i]);
      std::memcpy(out + 2 * i, &h, 2);
    }
  }
  void decode(const std::uint8_t* in, std::size_t n, float* out, bool add) const override {
    for (std::size_t i = 0; i < n; ++i) {
      std::uint16_t h;
      std::memcpy(&h, in + 2 * i, 2);
      out[i] = (add ? out[i] : 0.0f) + from_(h);
    }
  }

 private:
  std::string_view name_;
  DType dtype_;
  std::uint16_t (*to_)(float);
  float (*from_)(std::uint16_t);
};

std::uint16_t fp16_of(float x) { return to_fp16(x); }

}  // namespace

std::size_t WireFormat::chunk_elements(std::size_t chunk_bytes) const {
  const std::size_t b = block();
  return std::max<std::size_t>(1, chunk_bytes / std::max<std::size_t>(1, bytes(b))) * b;
}

std::size_t WireFormat::message_bytes(std::size_t elems, std::size_t chunk) const {
  return elems / chunk * bytes(chunk) + (elems % chunk ? bytes(elems % chunk) : 0);
}

const WireFormat& fp32_wire() {
  static const Plain wire("fp32", DType::f32);
  return wire;
}

const WireFormat& bytes_wire() {
  static const Plain wire("bytes", DType::u8);
  return wire;
}

const WireFormat& fp16_wire() {
  static const Cast16 wire("fp16", DType::f16, fp16_of, from_fp16);
  return wire;
}

const WireFormat& bf16_wire() {
  static const Cast16 wire("bf16", DType::bf16, to_bf16, from_bf16);
  return wire;
}

float pow2_scale(float amax, float top) {
  if (!(amax > 0)) return 0.0f;
  int e = 0;
  std::frexp(amax / top, &e);  // amax / top = f 2^e, f in [0.5, 1)
  float s = std::ldexp(1.0f, e);
  if (s / 2 >= amax / top) s /= 2;
  return s;
}

float block_amax(const float* x, std::size_t lo, std::size_t hi) {
  float amax = 0;
  for (std::size_t i = lo; i < hi; ++i) amax = std::max(amax, std::abs(x[i]));
  return amax;
}

void largest_k(const float* x, std::size_t n, std::size_t k, std::vector<std::uint32_t>& idx) {
  idx.resize(n);
  for (std::size_t i = 0; i < n; ++i) idx[i] = static_cast<std::uint32_t>(i);
  auto larger = [x](std::uint32_t a, std::uint32_t b) {
    const float fa = std::abs(x[a]), fb = std::abs(x[b]);
    return fa > fb || (fa == fb && a < b);
  };
  std::nth_element(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(k), idx.end(), larger);
  idx.resize(k);
  std::sort(idx.begin(), idx.end());
}

void BitStream::put(std::uint32_t v, int width) {
  for (int b = 0; b < width; ++b, ++at)
    if ((v >> b) & 1u) p[at / 8] = static_cast<std::uint8_t>(p[at / 8] | (1u << (at % 8)));
}

std::uint32_t BitStream::get(int width) {
  std::uint32_t v = 0;
  for (int b = 0; b < width; ++b, ++at) v |= static_cast<std::uint32_t>((p[at / 8] >> (at % 8)) & 1u) << b;
  return v;
}

std::vector<std::size_t> ring_step_bytes(const std::vector<std::size_t>& step_elems, const WireFormat& wire,
                                         std::size_t chunk_bytes) {
  const std::size_t chunk = wire.chunk_elements(chunk_bytes);
  std::vector<std::size_t> out;
  for (std::size_t e : step_elems) out.push_back(wire.message_bytes(e, chunk));
  return out;
}

}  // namespace ft
