// topk: the k largest |x| as (u32 index, fp32 value) pairs, 8k bytes, k = count or
// ratio x n. Gathered at the top level (sparse payloads do not add).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "comm/codec.h"

namespace ft {
namespace {

class TopKWire final : public WireFormat {
 public:
  explicit TopKWire(const CodecSpec& s) : ratio_(s.param("ratio")), count_(static_cast<std::size_t>(s.param("count"))) {}
  std::string_view name() const override { return "topk"; }
  std::size_t bytes(std::size_t n) const override { return 8 * kept(n); }
  bool reduces() const override { return false; }

  void decode(const std::uint8_t* p, std::size_t n, float* out, bool add) const override {
    if (!add) std::fill(out, out + n, 0.0f);
    const std::size_t k = kept(n);
    for (std::size_t j = 0; j < k; ++j) {
      std::uint32_t i;
      float v;
      std::memcpy(&i, p + 8 * j, 4);
      std::memcpy(&v, p + 8 * j + 4, 4);
      out[i] += v;
    }
  }

  void encode(const float* work, std::size_t n, std::uint8_t* p) const override {
    const std::size_t k = kept(n);
    std::vector<std::uint32_t> idx;
    largest_k(work, n, k, idx);
    for (std::size_t j = 0; j < k; ++j) {
      std::memcpy(p + 8 * j, &idx[j], 4);
      std::memcpy(p + 8 * j + 4, &work[idx[j]], 4);
    }
  }

  std::size_t decoded(std::size_t n) const override { return kept(n); }
  std::size_t kept(std::size_t n) const {
    if (n == 0) return 0;
    if (count_ > 0) return std::min(count_, n);
    auto k = static_cast<std::size_t>(std::llround(ratio_ * static_cast<double>(n)));
    return std::clamp<std::size_t>(k, 1, n);
  }

 private:
  double ratio_;
  std::size_t count_;
};


}  // namespace

CodecInfo topk_codec() {
  return {"topk", "the k largest magnitudes as (index, value) pairs",
          {{"ratio", "fraction of each bucket's elements sent", 0.01, 0, 1, false, "count"},
           {"count", "elements sent per bucket, instead of a ratio", 0, 0, 1e15, true, "ratio"}},
          false, "the host",
          make_element_codec<TopKWire>,
          /*whole_tensors=*/false, /*gathered=*/true};
}

}  // namespace ft
