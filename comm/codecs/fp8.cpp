// fp8: per block of B elements, one fp32 scale (a power of two, at least max|x| / the
// format's largest value) and B 8-bit floats, e4m3 (4 exponent bits, largest 448) or e5m2
// (5, largest 57344), round to nearest even: n + 4 ceil(n / B) bytes. Reduces in the ring
// or gathered.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "comm/codec.h"

namespace ft {
namespace {

class Fp8Wire final : public WireFormat {
 public:
  explicit Fp8Wire(const CodecSpec& s)
      : block_(static_cast<std::size_t>(s.param("block"))), e5m2_(s.param("exponent") == 5),
        mant_(e5m2_ ? 2 : 3), bias_(e5m2_ ? 15 : 7), top_(e5m2_ ? 57344.0f : 448.0f) {}
  std::string_view name() const override { return e5m2_ ? "fp8 e5m2" : "fp8 e4m3"; }
  std::size_t bytes(std::size_t n) const override { return n + 4 * scaled_blocks(n, block_); }
  std::size_t block() const override { return block_; }

  void encode(const float* x, std::size_t n, std::uint8_t* p) const override {
    std::uint8_t* q = p + 4 * scaled_blocks(n, block_);
    encode_scaled_blocks(x, n, block_, p, [this](float amax) { return pow2_scale(amax, top_); },
                         [this, q](std::size_t i, float v) { q[i] = to_fp8(v); });
  }

  void decode(const std::uint8_t* p, std::size_t n, float* out, bool add) const override {
    const std::uint8_t* q = p + 4 * scaled_blocks(n, block_);
    decode_scaled_blocks(p, n, block_, out, add, [this, q](std::size_t i) { return from_fp8(q[i]); });
  }

  // |v| <= top_ (the scale sees to it; NaN becomes 0): sign, exponent, mantissa.
  std::uint8_t to_fp8(float v) const {
    const std::uint8_t sign = std::signbit(v) ? 0x80 : 0;
    float a = std::min(std::abs(v), top_);
    if (!(a > 0)) return sign;
    int e = 0;
    std::frexp(a, &e);                        // a = f 2^e, f in [0.5, 1): its exponent is e - 1
    const int exp = std::max(e - 1, 1 - bias_);  // below the normal range: the subnormals' spacing
    const float quantum = std::ldexp(1.0f, exp - mant_);
    a = std::min(std::nearbyint(a / quantum) * quantum, top_);  // to nearest, ties to an even mantissa
    if (a == 0) return sign;
    std::frexp(a, &e);
    if (e - 1 < 1 - bias_)  // subnormal: exponent field 0
      return static_cast<std::uint8_t>(sign | static_cast<int>(a / std::ldexp(1.0f, 1 - bias_ - mant_)));
    const int m = static_cast<int>(a / std::ldexp(1.0f, e - 1 - mant_)) - (1 << mant_);
    return static_cast<std::uint8_t>(sign | ((e - 1 + bias_) << mant_) | m);
  }
  float from_fp8(std::uint8_t h) const {
    const int field = (h & 0x7F) >> mant_, m = h & ((1 << mant_) - 1);
    const float a = field == 0 ? std::ldexp(static_cast<float>(m), 1 - bias_ - mant_)
                               : std::ldexp(static_cast<float>((1 << mant_) + m), field - bias_ - mant_);
    return h & 0x80 ? -a : a;
  }

 private:
  std::size_t block_;
  bool e5m2_;
  int mant_, bias_;
  float top_;
};

}  // namespace

CodecInfo fp8_codec() {
  return {"fp8", "8-bit floats (e4m3 or e5m2) with an fp32 power-of-two scale per block",
          {{"block", "elements per scale", 256, 1, 1 << 24},
           {"exponent", "exponent bits of fp8: 4 (e4m3, 3 mantissa bits) or 5 (e5m2, 2)", 4, 4, 5}},
          false, "the host", make_element_codec<Fp8Wire>, /*whole_tensors=*/false, /*gathered=*/true,
          /*rings=*/true};
}

}  // namespace ft
