// sign: one bit per element and, per block of B, the fp32 mean |x|:
// ceil(n / 8) + 4 ceil(n / B) bytes. Gathered at the top level.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "comm/codec.h"

namespace ft {
namespace {

class SignWire final : public WireFormat {
 public:
  explicit SignWire(const CodecSpec& s) : block_(static_cast<std::size_t>(s.param("block"))) {}
  std::string_view name() const override { return "sign"; }
  std::size_t bytes(std::size_t n) const override { return (n + 7) / 8 + 4 * blocks(n); }
  std::size_t block() const override { return block_; }
  bool reduces() const override { return false; }

  void decode(const std::uint8_t* p, std::size_t n, float* out, bool add) const override {
    if (!add) std::fill(out, out + n, 0.0f);
    const std::size_t nb = blocks(n);
    const std::uint8_t* bits = p + 4 * nb;
    for (std::size_t b = 0; b < nb; ++b) {
      float s;
      std::memcpy(&s, p + 4 * b, 4);
      for (std::size_t i = b * block_; i < std::min(n, (b + 1) * block_); ++i) out[i] += (bits[i / 8] >> (i % 8)) & 1u ? s : -s;
    }
  }

  void encode(const float* work, std::size_t n, std::uint8_t* p) const override {
    const std::size_t nb = blocks(n);
    std::uint8_t* bits = p + 4 * nb;
    std::memset(bits, 0, (n + 7) / 8);
    for (std::size_t b = 0; b < nb; ++b) {
      std::size_t lo = b * block_, hi = std::min(n, lo + block_);
      double l1 = 0;
      for (std::size_t i = lo; i < hi; ++i) l1 += std::abs(work[i]);
      float s = static_cast<float>(l1 / static_cast<double>(hi - lo));
      std::memcpy(p + 4 * b, &s, 4);
      for (std::size_t i = lo; i < hi; ++i)
        if (work[i] >= 0) bits[i / 8] = static_cast<std::uint8_t>(bits[i / 8] | (1u << (i % 8)));
    }
  }

 private:
  std::size_t blocks(std::size_t n) const { return (n + block_ - 1) / block_; }
  std::size_t block_;
};

}  // namespace

CodecInfo sign_codec() {
  return {"sign", "1 bit per element with an fp32 scale (mean |x|) per block",
          {{"block", "elements per scale", 256, 1, 1 << 24}}, false, "the host",
          make_element_codec<SignWire>,
          /*whole_tensors=*/false, /*gathered=*/true};
}

}  // namespace ft
