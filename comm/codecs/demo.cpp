// demo (DeMo, Peng et al., "Decoupled Momentum Optimization"): the synchronisation of a tier
// by its fast momentum components. Each member's residual feedback is its momentum: the
// gradient is added to decay x the momentum (0.999 by default), each chunk of C elements (`dct`) goes
// through an orthonormal DCT, the k largest coefficients per chunk (`coefficients`) are sent as packed
// indices (ceil(log2 C) bits) and fp32 values, 4k + ceil(k log2 C / 8) bytes per chunk, and
// what they carry leaves the momentum. The payloads are gathered and the inverse transforms
// of every member's coefficients summed; the optimizer then steps by their sign
// (train.optimizer: sign). DeMo transforms 2-D blocks of each matrix; this takes 1-D chunks
// of the flat parameters.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "comm/codec.h"

namespace ft {
namespace {

class DctTopKWire final : public WireFormat {
 public:
  explicit DctTopKWire(const CodecSpec& s)
      : chunk_(static_cast<std::size_t>(s.param("dct"))), k_(static_cast<std::size_t>(s.param("coefficients"))),
        basis_(cosines(chunk_)) {
    while ((std::size_t{1} << index_bits_) < chunk_) ++index_bits_;
  }
  std::string_view name() const override { return "demo"; }
  std::size_t bytes(std::size_t n) const override {
    return n / chunk_ * chunk_bytes(chunk_) + (n % chunk_ ? chunk_bytes(n % chunk_) : 0);
  }
  bool reduces() const override { return false; }
  // Decoding adds k basis vectors of C elements per chunk.
  std::size_t decoded(std::size_t n) const override { return n * std::min(k_, chunk_); }

  void encode(const float* x, std::size_t n, std::uint8_t* p) const override {
    std::vector<float> coef;
    std::vector<std::uint32_t> idx;
    for (std::size_t lo = 0; lo < n; lo += chunk_) {
      const std::size_t len = std::min(chunk_, n - lo), k = std::min(k_, len);
      const std::vector<float>& basis = len == chunk_ ? basis_ : cosines(len);
      coef.assign(len, 0.0f);
      for (std::size_t f = 0; f < len; ++f) {
        double sum = 0;
        for (std::size_t i = 0; i < len; ++i) sum += static_cast<double>(basis[f * len + i]) * x[lo + i];
        coef[f] = static_cast<float>(sum);
      }
      largest_k(coef.data(), len, k, idx);
      const std::size_t index_bytes = (k * static_cast<std::size_t>(index_bits_) + 7) / 8;
      std::memset(p, 0, index_bytes);
      BitStream out{p};
      for (std::size_t j = 0; j < k; ++j) {
        out.put(idx[j], index_bits_);
        std::memcpy(p + index_bytes + 4 * j, &coef[idx[j]], 4);
      }
      p += chunk_bytes(len);
    }
  }

  void decode(const std::uint8_t* p, std::size_t n, float* out, bool add) const override {
    if (!add) std::fill(out, out + n, 0.0f);
    for (std::size_t lo = 0; lo < n; lo += chunk_) {
      const std::size_t len = std::min(chunk_, n - lo), k = std::min(k_, len);
      const std::vector<float>& basis = len == chunk_ ? basis_ : cosines(len);
      const std::size_t index_bytes = (k * static_cast<std::size_t>(index_bits_) + 7) / 8;
      BitStream in{const_cast<std::uint8_t*>(p)};
      for (std::size_t j = 0; j < k; ++j) {
        const std::uint32_t f = in.get(index_bits_);
        float c;
        std::memcpy(&c, p + index_bytes + 4 * j, 4);
        for (std::size_t i = 0; i < len; ++i) out[lo + i] += c * basis[f * len + i];  // the inverse is the transpose
      }
      p += chunk_bytes(len);
    }
  }

 private:
  // The orthonormal DCT-II of length n, row f: s_f cos(pi (i + 1/2) f / n).
  static std::vector<float> cosines(std::size_t n) {
    std::vector<float> b(n * n);
    for (std::size_t f = 0; f < n; ++f)
      for (std::size_t i = 0; i < n; ++i)
        b[f * n + i] = static_cast<float>(std::sqrt((f == 0 ? 1.0 : 2.0) / static_cast<double>(n)) *
                                          std::cos(M_PI * (static_cast<double>(i) + 0.5) * static_cast<double>(f) /
                                                   static_cast<double>(n)));
    return b;
  }
  std::size_t chunk_bytes(std::size_t len) const {
    const std::size_t k = std::min(k_, len);
    return 4 * k + (k * static_cast<std::size_t>(index_bits_) + 7) / 8;
  }

  std::size_t chunk_, k_;
  int index_bits_ = 0;
  std::vector<float> basis_;
};

// The forward transform's work beside the element codecs'.
class Demo final : public ElementCodec {
 public:
  explicit Demo(const CodecSpec& s)
      : ElementCodec(s, std::make_shared<DctTopKWire>(s)), chunk_(static_cast<std::size_t>(s.param("dct"))) {}
  // The forward transform: C multiply-adds per element, beyond what every element codec does.
  double work(std::size_t n, int p, const std::vector<Matrix>& tensors) const override {
    return ElementCodec::work(n, p, tensors) + static_cast<double>(chunk_) * static_cast<double>(n);
  }

 private:
  std::size_t chunk_;
};

}  // namespace

CodecInfo demo_codec() {
  return {"demo", "DeMo: per chunk, the top k DCT coefficients of the momentum (its residual); the optimizer takes signs",
          {{"dct", "elements per chunk, each transformed alone (the work is this many per element)", 128, 2, 4096},
           {"coefficients", "DCT coefficients kept per chunk", 2, 1, 4096}},
          false, "the host",
          [](const CodecSpec& s) -> std::unique_ptr<Codec> { return std::make_unique<Demo>(s); },
          /*whole_tensors=*/false, /*gathered=*/true, /*rings=*/false, /*decay=*/0.999};
}

}  // namespace ft
