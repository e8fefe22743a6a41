// none: fp32 on the wire, 4n bytes, the dense ring.
#include <cstring>

#include "comm/codec.h"

namespace ft {
namespace {

class Dense final : public ElementCodec {
 public:
  using ElementCodec::ElementCodec;
  std::size_t payload_bytes(std::size_t n) const override { return 4 * n; }
  void decode_add(const std::uint8_t* p, std::size_t n, float* out) const override {
    for (std::size_t i = 0; i < n; ++i) {
      float v;
      std::memcpy(&v, p + 4 * i, 4);
      out[i] += v;
    }
  }
  void all_reduce(Buffer region, TierRing& ring, const std::vector<Matrix>&) override {
    ring.reduce_scatter(region, Wire{DType::f32});
    ring.all_gather(region, Wire{DType::f32});
  }
  std::vector<RingPhase> phases(std::size_t n, int, const std::vector<Matrix>&) const override {
    return {{n, DType::f32, true}, {n, DType::f32, false}};
  }
  double work(std::size_t, int, const std::vector<Matrix>&) const override { return 0; }

 protected:
  void encode_into(const float* work, std::size_t n, std::uint8_t* p) override { std::memcpy(p, work, 4 * n); }
};

}  // namespace

CodecInfo none_codec() {
  return {"none", "fp32, uncompressed", {}, true, "the ring, on the buffers' device",
          [](const CodecSpec& s) -> std::unique_ptr<Codec> { return std::make_unique<Dense>(s); }};
}

}  // namespace ft
