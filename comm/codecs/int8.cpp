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
  std::size_t bytes(std::size_t n) const override { return n + 4 * scaled_blocks(n, block_); }
  std::size_t block() const override { return block_; }

  void encode(const float* x, std::size_t n, std::uint8_t* p) const override {
    auto* q = reinterpret_cast<std::int8_t*>(p + 4 * scaled_blocks(n, block_));
    // Powers of two keep integers (and short binary fractions) exact.
    encode_scaled_blocks(x, n, block_, p, [](float amax) { return pow2_scale(amax, 127.0f); },
                         [q](std::size_t i, float v) { q[i] = static_cast<std::int8_t>(std::clamp(std::nearbyint(v), -127.0f, 127.0f)); });
  }

  void decode(const std::uint8_t* p, std::size_t n, float* out, bool add) const override {
    const auto* q = reinterpret_cast<const std::int8_t*>(p + 4 * scaled_blocks(n, block_));
    decode_scaled_blocks(p, n, block_, out, add, [q](std::size_t i) { return static_cast<float>(q[i]); });
  }

 private:
  std::size_t block_;
};

}  // namespace

CodecInfo int8_codec() {
  return {"int8", "8-bit integers with an fp32 scale per block",
          {{"block", "elements per scale", 256, 1, 1 << 24}}, false, "the host",
          make_element_codec<Int8Wire>, /*whole_tensors=*/false, /*gathered=*/true, /*rings=*/true};
}

}  // namespace ft
