// int8: per block of B elements, one fp32 scale (a power of two, at least max|x| / 127) and
// B int8 values: n + 4 ceil(n / B) bytes. Reduces in the ring or gathered.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "comm/codec.h"

namespace ft {
namespace {

class Int8Wire final : public WireFormat {
 public:
  explicit Int8Wire(const CodecSpec& s) : block_(static_cast<std::size_t>(s.param("block"))) {}
  std::string_view name() const override { return "int8"; }
  std::size_t bytes(std::size_t n) const override { return n + 4 * blocks(n); }
  std::size_t block() const override { return block_; }

  void encode(const float* x, std::size_t n, std::uint8_t* p) const override {
    const std::size_t nb = blocks(n);
    auto* q = reinterpret_cast<std::int8_t*>(p + 4 * nb);
    for (std::size_t b = 0; b < nb; ++b) {
      const std::size_t lo = b * block_, hi = std::min(n, lo + block_);
      // Powers of two keep integers (and short binary fractions) exact.
      const float s = pow2_scale(block_amax(x, lo, hi), 127.0f);
      std::memcpy(p + 4 * b, &s, 4);
      for (std::size_t i = lo; i < hi; ++i)
        q[i] = s > 0 ? static_cast<std::int8_t>(std::clamp(std::nearbyint(x[i] / s), -127.0f, 127.0f)) : 0;
    }
  }

  void decode(const std::uint8_t* p, std::size_t n, float* out, bool add) const override {
    const std::size_t nb = blocks(n);
    const auto* q = reinterpret_cast<const std::int8_t*>(p + 4 * nb);
    for (std::size_t b = 0; b < nb; ++b) {
      float s;
      std::memcpy(&s, p + 4 * b, 4);
      for (std::size_t i = b * block_; i < std::min(n, (b + 1) * block_); ++i)
        out[i] = (add ? out[i] : 0.0f) + static_cast<float>(q[i]) * s;
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
          make_element_codec<Int8Wire>, /*whole_tensors=*/false, /*gathered=*/true, /*rings=*/true};
}

}  // namespace ft
