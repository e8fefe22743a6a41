// sparseloco (SparseLoCo, Sarfi et al. 2025): per chunk of C elements, the k largest |x|,
// each as its index in the chunk (ceil(log2 C) bits) and an n-bit value (a sign bit and
// n - 1 bits of magnitude, (j + 1) / 2^(n-1) of the chunk's largest kept |x|), packed, with
// that largest |x| as an fp32 scale: 4 + ceil(k (log2 C + n) / 8) bytes per chunk. Gathered
// (sparse payloads do not add). Its residual feedback decays (0.95 by default): the decayed
// accumulator stands in for DiLoCo's outer momentum, so the outer step that follows takes
// momentum 0.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "comm/codec.h"

namespace ft {
namespace {

class SparseLoCoWire final : public WireFormat {
 public:
  explicit SparseLoCoWire(const CodecSpec& s)
      : chunk_(static_cast<std::size_t>(s.param("chunk"))), k_(static_cast<std::size_t>(s.param("k"))),
        bits_(static_cast<int>(s.param("bits"))) {
    while ((std::size_t{1} << index_bits_) < chunk_) ++index_bits_;
  }
  std::string_view name() const override { return "sparseloco"; }
  std::size_t bytes(std::size_t n) const override {
    std::size_t total = 0;
    for (std::size_t lo = 0; lo < n; lo += chunk_) total += chunk_bytes(std::min(chunk_, n - lo));
    return total;
  }
  bool reduces() const override { return false; }
  std::size_t decoded(std::size_t n) const override { return kept(n); }
  std::size_t kept(std::size_t n) const {
    return n / chunk_ * std::min(k_, chunk_) + std::min(k_, n % chunk_);
  }

  void encode(const float* x, std::size_t n, std::uint8_t* p) const override {
    std::vector<std::uint32_t> idx;
    for (std::size_t lo = 0; lo < n; lo += chunk_) {
      const std::size_t len = std::min(chunk_, n - lo), k = std::min(k_, len);
      largest_k(x + lo, len, k, idx);
      float amax = 0;
      for (std::size_t j = 0; j < k; ++j) amax = std::max(amax, std::abs(x[lo + idx[j]]));
      std::memcpy(p, &amax, 4);
      std::memset(p + 4, 0, chunk_bytes(len) - 4);
      BitStream out{p + 4};
      const int levels = 1 << (bits_ - 1);
      for (std::size_t j = 0; j < k; ++j) {
        const float v = x[lo + idx[j]];
        const float step = amax / static_cast<float>(levels);
        const int level = step > 0 ? std::clamp(static_cast<int>(std::nearbyint(std::abs(v) / step)) - 1, 0, levels - 1) : 0;
        out.put(idx[j], index_bits_);
        out.put(v < 0 ? 1u : 0u, 1);
        out.put(static_cast<std::uint32_t>(level), bits_ - 1);
      }
      p += chunk_bytes(len);
    }
  }

  void decode(const std::uint8_t* p, std::size_t n, float* out, bool add) const override {
    if (!add) std::fill(out, out + n, 0.0f);
    const int levels = 1 << (bits_ - 1);
    for (std::size_t lo = 0; lo < n; lo += chunk_) {
      const std::size_t len = std::min(chunk_, n - lo), k = std::min(k_, len);
      float amax;
      std::memcpy(&amax, p, 4);
      BitStream in{const_cast<std::uint8_t*>(p + 4)};
      for (std::size_t j = 0; j < k; ++j) {
        const std::uint32_t i = in.get(index_bits_);
        const bool negative = in.get(1) != 0;
        const float magnitude = static_cast<float>(in.get(bits_ - 1) + 1) * amax / static_cast<float>(levels);
        out[lo + i] += negative ? -magnitude : magnitude;
      }
      p += chunk_bytes(len);
    }
  }

 private:
  std::size_t chunk_bytes(std::size_t len) const {
    return 4 + (std::min(k_, len) * static_cast<std::size_t>(index_bits_ + bits_) + 7) / 8;
  }

  std::size_t chunk_, k_;
  int bits_, index_bits_ = 0;
};


}  // namespace

CodecInfo sparseloco_codec() {
  return {"sparseloco", "per chunk, the top k as packed indices and n-bit values; decayed residual feedback",
          {{"chunk", "elements per chunk, each with its own top k", 4096, 2, 1 << 24},
           {"k", "elements kept per chunk", 64, 1, 1 << 24},
           {"bits", "bits per kept value: a sign and bits - 1 of magnitude", 2, 1, 8}},
          false, "the host",
          make_element_codec<SparseLoCoWire>,
          /*whole_tensors=*/false, /*gathered=*/true, /*rings=*/false, /*decay=*/0.95};
}

}  // namespace ft
