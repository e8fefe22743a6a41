// int8: per block of B elements, one fp32 scale (a power of two, at least max|x| / 127) and
// B int8 values: n + 4 ceil(n / B) bytes. Gathered at the top level.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "comm/codec.h"

namespace ft {
namespace {

// Powers of two keep integers (and short binary fractions) exact.
float int8_scale(float amax) {
  if (!(amax > 0)) return 0.0f;
  int e = 0;
  std::frexp(amax / 127.0f, &e);  // amax/127 = f * 2^e with f in [0.5, 1)
  float s = std::ldexp(1.0f, e);
  if (s / 2 >= amax / 127.0f) s /= 2;
  return s;
}

class Int8 final : public ElementCodec {
 public:
  explicit Int8(const CodecSpec& s) : ElementCodec(s), block_(static_cast<std::size_t>(s.param("block"))) {}
  std::size_t payload_bytes(std::size_t n) const override { return n + 4 * blocks(n); }

  void decode_add(const std::uint8_t* p, std::size_t n, float* out) const override {
    const std::size_t nb = blocks(n);
    const auto* q = reinterpret_cast<const std::int8_t*>(p + 4 * nb);
    for (std::size_t b = 0; b < nb; ++b) {
      float s;
      std::memcpy(&s, p + 4 * b, 4);
      for (std::size_t i = b * block_; i < std::min(n, (b + 1) * block_); ++i) out[i] += static_cast<float>(q[i]) * s;
    }
  }

 protected:
  void encode_into(const float* work, std::size_t n, std::uint8_t* p) override {
    const std::size_t nb = blocks(n);
    auto* q = reinterpret_cast<std::int8_t*>(p + 4 * nb);
    for (std::size_t b = 0; b < nb; ++b) {
      std::size_t lo = b * block_, hi = std::min(n, lo + block_);
      float amax = 0;
      for (std::size_t i = lo; i < hi; ++i) amax = std::max(amax, std::abs(work[i]));
      float s = int8_scale(amax);
      std::memcpy(p + 4 * b, &s, 4);
      for (std::size_t i = lo; i < hi; ++i)
        q[i] = s > 0 ? static_cast<std::int8_t>(std::clamp(std::nearbyint(work[i] / s), -127.0f, 127.0f)) : 0;
    }
  }

 private:
  std::size_t blocks(std::size_t n) const { return (n + block_ - 1) / block_; }
  std::size_t block_;
};

}  // namespace

CodecInfo int8_codec() {
  return {"int8", "8-bit integers with an fp32 scale per block",
          {{"block", "elements per scale", 256, 1, 1 << 24}}, false, "the host",
          [](const CodecSpec& s) -> std::unique_ptr<Codec> { return std::make_unique<Int8>(s); },
          /*whole_tensors=*/false, /*gathered=*/true};
}

}  // namespace ft
