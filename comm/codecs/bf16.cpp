// bf16: bfloat16 on the wire, round to nearest even. Linear: the ring sums on the 16-bit
// wire, at any level of the hierarchy.
#include "comm/codec.h"

namespace ft {
namespace {

class Bf16 final : public CastCodec {
 public:
  using CastCodec::CastCodec;

 protected:
  DType wire_type() const override { return DType::bf16; }
  std::uint16_t to_wire(float x) override { return to_bf16(x); }
  float from_wire(std::uint16_t h) const override { return from_bf16(h); }
};

}  // namespace

CodecInfo bf16_codec() {
  return {"bf16", "bfloat16, 2 bytes per element", {}, true,
          "rounding with error feedback on the host; the wire conversion on the buffers' device",
          [](const CodecSpec& s) -> std::unique_ptr<Codec> { return std::make_unique<Bf16>(s); }};
}

}  // namespace ft
