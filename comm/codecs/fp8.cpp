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
  std::size_t bytes(std::size_t n) const override { return n + 4 * blocks(n); }
  std::size_t block() const override { return block_; }

  void encode(const float* x, std::size_t n, std::uint8_t* p) const override {
    const std::size_t nb = blocks(n);
    std::uint8_t* q = p + 4 * nb;
    for (std::size_t b = 0; b < nb; ++b) {
      const std::size_t lo = b * block_, hi = std::min(n, lo + block_);
      const float s = pow2_scale(block_amax(x, lo, hi), top_);
      std::memcpy(p + 4 * b, &s, 4);
      for (std::size_t i = lo; i < hi; ++i) q[i] = s > 0 ? to_fp8(x[i] / s) : 0;
    }
  }

  void decode(const std::uint8_t* p, std::size_t n, float* out, bool add) const override {
    const std::size_t nb = blocks(n);
    const std::uint8_t* q = p + 4 * nb;
    for (std::size_t b = 0; b < nb; ++b) {
      float s;
      std::memcpy(&s, p + 4 * b, 4);
      for (std::size_t i = b * block_; i < std::min(n, (b + 1) * block_); ++i)
        out[i] = (add ? out[i] : 0.0f) + from_fp8(q[i]) * s;
    }
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
  std::size_t blocks(std::size_t n) const { return (n + block_ - 1) / block_; }
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
