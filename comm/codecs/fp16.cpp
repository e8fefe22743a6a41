// fp16: IEEE half on the wire, round to nearest even; values beyond +-65504 are clamped
// and counted. Linear: the ring sums on the 16-bit wire, at any level of the hierarchy.
#include "comm/codec.h"

namespace ft {
namespace {

class Fp16 final : public CastCodec {
 public:
  using CastCodec::CastCodec;

 protected:
  DType wire_type() const override { return DType::f16; }
  std::uint16_t to_wire(float x) override { return to_fp16(x, &clamped_); }
  float from_wire(std::uint16_t h) const override { return from_fp16(h); }

 private:
  std::uint64_t clamped_ = 0;
};

}  // namespace

CodecInfo fp16_codec() {
  return {"fp16", "IEEE half, 2 bytes per element", {}, true,
          "rounding with error feedback on the host; the wire conversion on the buffers' device",
          [](const CodecSpec& s) -> std::unique_ptr<Codec> { return std::make_unique<Fp16>(s); }};
}

}  // namespace ft
