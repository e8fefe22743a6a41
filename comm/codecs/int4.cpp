// int4: per block of B elements, one fp32 scale (max|x| / 7) and B 4-bit integers in
// [-7, 7], two to a byte: ceil(n / 2) + 4 ceil(n / B) bytes. Reduces in the ring or
// gathered. Error feedback carries what the 15 levels miss into the next step.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "comm/codec.h"

namespace ft {
namespace {

class Int4Wire final : public WireFormat {
 public:
  explicit Int4Wire(const CodecSpec& s) : block_(static_cast<std::size_t>(s.param("block"))) {}
  std::string_view name() const override { return "int4"; }
  std::size_t bytes(std::size_t n) const override { return (n + 1) / 2 + 4 * scaled_blocks(n, block_); }
  std::size_t block() const override { return block_; }

  void encode(const float* x, std::size_t n, std::uint8_t* p) const override {
    std::uint8_t* q = p + 4 * scaled_blocks(n, block_);
    std::memset(q, 0, (n + 1) / 2);
    // Stored offset by 8: 1..15 for -7..7 (0 unused).
    encode_scaled_blocks(x, n, block_, p, [](float amax) { return amax / 7.0f; }, [q](std::size_t i, float v) {
      const int code = static_cast<int>(std::clamp(std::nearbyint(v), -7.0f, 7.0f)) + 8;
      q[i / 2] |= static_cast<std::uint8_t>(code << (4 * (i % 2)));
    });
  }

  void decode(const std::uint8_t* p, std::size_t n, float* out, bool add) const override {
    const std::uint8_t* q = p + 4 * scaled_blocks(n, block_);
    decode_scaled_blocks(p, n, block_, out, add,
                         [q](std::size_t i) { return static_cast<float>(((q[i / 2] >> (4 * (i % 2))) & 0xF) - 8); });
  }

 private:
  std::size_t block_;
};

}  // namespace

CodecInfo int4_codec() {
  return {"int4", "4-bit integers in [-7, 7] with an fp32 scale per block",
          {{"block", "elements per scale", 128, 1, 1 << 24}}, false, "the host",
          make_element_codec<Int4Wire>, /*whole_tensors=*/false, /*gathered=*/true, /*rings=*/true};
}

}  // namespace ft
