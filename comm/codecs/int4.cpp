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
  std::size_t bytes(std::size_t n) const override { return (n + 1) / 2 + 4 * blocks(n); }
  std::size_t block() const override { return block_; }

  void encode(const float* x, std::size_t n, std::uint8_t* p) const override {
    const std::size_t nb = blocks(n);
    std::uint8_t* q = p + 4 * nb;
    std::memset(q, 0, (n + 1) / 2);
    for (std::size_t b = 0; b < nb; ++b) {
      const std::size_t lo = b * block_, hi = std::min(n, lo + block_);
      const float s = block_amax(x, lo, hi) / 7.0f;
      std::memcpy(p + 4 * b, &s, 4);
      for (std::size_t i = lo; i < hi; ++i) {
        // Stored offset by 8: 1..15 for -7..7 (0 unused).
        const int v = s > 0 ? static_cast<int>(std::clamp(std::nearbyint(x[i] / s), -7.0f, 7.0f)) : 0;
        q[i / 2] |= static_cast<std::uint8_t>((v + 8) << (4 * (i % 2)));
      }
    }
  }

  void decode(const std::uint8_t* p, std::size_t n, float* out, bool add) const override {
    const std::size_t nb = blocks(n);
    const std::uint8_t* q = p + 4 * nb;
    for (std::size_t b = 0; b < nb; ++b) {
      float s;
      std::memcpy(&s, p + 4 * b, 4);
      for (std::size_t i = b * block_; i < std::min(n, (b + 1) * block_); ++i)
        out[i] = (add ? out[i] : 0.0f) + static_cast<float>(((q[i / 2] >> (4 * (i % 2))) & 0xF) - 8) * s;
    }
  }

 private:
  std::size_t blocks(std::size_t n) const { return (n + block_ - 1) / block_; }
  std::size_t block_;
};

}  // namespace

CodecInfo int4_codec() {
  return {"int4", "4-bit integers in [-7, 7] with an fp32 scale per block",
          {{"block", "elements per scale", 128, 1, 1 << 24}}, false, "the host",
          make_element_codec<Int4Wire>, /*whole_tensors=*/false, /*gathered=*/true, /*rings=*/true};
}

}  // namespace ft
