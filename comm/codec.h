// Gradient codecs: what a tier's all-reduce puts on the wire instead of fp32.
//
//   none      fp32                                  4n bytes
//   fp16      IEEE half, round to nearest even;     2n bytes   (values beyond 65504 are
//             clamped and counted)
//   bf16      bfloat16, round to nearest even       2n bytes
//   int8      per block of B: fp32 scale + B int8   n + 4 ceil(n/B)
//   topk      the k largest |x| as (u32 index,      8k bytes   (k = count, or ratio x n)
//             fp32 value)
//   sign      1 bit per element + fp32 scale        ceil(n/8) + 4 ceil(n/B)
//             (mean |x|) per block of B
//   powersgd  rank-r factors P (rows x r) and       4 r (rows + cols) per matrix;
//             Q (cols x r) of each 2-D matrix       vectors dense
//
// fp16, bf16 and PowerSGD's factors are linear: sums can be formed from them, so they
// reduce in the compressed domain. int8, topk and sign are not: their payloads are
// gathered and each rank decodes and sums all of them.
//
// Error feedback: a lossy codec keeps what it failed to send (input + residual - decoded)
// and adds it to the next input, so nothing is lost, only delayed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ft {

enum class CodecKind { none, fp16, bf16, int8, topk, sign, powersgd };
std::string_view codec_name(CodecKind k);
std::optional<CodecKind> codec_from_name(std::string_view name);

struct CodecSpec {
  CodecKind kind = CodecKind::none;
  int block = 256;             // int8, sign: elements per scale
  double ratio = 0.01;         // topk: fraction of elements kept (when count == 0)
  std::int64_t count = 0;      // topk: elements kept
  int rank = 4;                // powersgd
  int start = 0;               // powersgd: dense sync for the first `start` steps
  bool error_feedback = true;  // lossy codecs only
  std::uint64_t seed = 1;      // powersgd's initial Q

  bool lossy() const { return kind != CodecKind::none; }
};

// fp32 <-> 16-bit, round to nearest even. to_fp16 clamps finite values beyond the half
// range to +-65504 and counts them in `clamped`.
std::uint16_t to_bf16(float x);
float from_bf16(std::uint16_t h);
std::uint16_t to_fp16(float x, std::uint64_t* clamped = nullptr);
float from_fp16(std::uint16_t h);

// The element-wise codecs (not powersgd). One instance per (tier, bucket) and rank: it
// holds the error-feedback residual of the data it encodes.
class ElementCodec {
 public:
  explicit ElementCodec(const CodecSpec& spec) : spec_(spec) {}
  const CodecSpec& spec() const { return spec_; }

  // Exact payload size for n elements.
  std::size_t payload_bytes(std::size_t n) const;
  // Encodes x[0..n) (plus the residual, with error feedback) into payload (resized to
  // payload_bytes(n)) and updates the residual.
  void encode(const float* x, std::size_t n, std::vector<std::uint8_t>& payload);
  // out[0..n) += decode(payload).
  void decode_add(const std::uint8_t* payload, std::size_t n, float* out) const;
  // Replaces x by what survives encoding it (and keeps the rest as residual): the linear
  // codecs' entry into a reduction in the compressed domain.
  void round_in_place(float* x, std::size_t n);

  std::vector<float>& residual() { return residual_; }
  std::uint64_t clamped() const { return clamped_; }

 private:
  void add_residual(const float* x, std::size_t n, std::vector<float>& work);
  CodecSpec spec_;
  std::vector<float> residual_;
  std::uint64_t clamped_ = 0;
};

// PowerSGD state of one (tier, bucket): a warm-started Q per matrix, and the residual.
struct Matrix {
  std::size_t offset = 0, rows = 0, cols = 0;  // within the compressed region; cols 0 = a vector
};

class PowerSgdState {
 public:
  explicit PowerSgdState(const CodecSpec& spec) : spec_(spec) {}
  const CodecSpec& spec() const { return spec_; }
  // Q of matrix i (cols x r, row-major), created from the seed on first use: the same on
  // every rank, so every rank's P = M Q is in the same basis.
  std::vector<float>& q(std::size_t i, const Matrix& m);
  std::size_t matrices() const { return q_.size(); }
  std::vector<float>& q_at(std::size_t i) { return q_.at(i); }
  void set_q(std::size_t i, std::vector<float> q) {
    if (q_.size() <= i) q_.resize(i + 1);
    q_[i] = std::move(q);
  }
  std::vector<float>& residual() { return residual_; }
  int steps = 0;  // compressed steps taken, for `start`

 private:
  CodecSpec spec_;
  std::vector<std::vector<float>> q_;
  std::vector<float> residual_;
};

// Orthonormalises the r columns of P (rows x r, row-major) in place (modified
// Gram-Schmidt); a column that vanishes is left zero.
void orthonormalize(float* p, std::size_t rows, std::size_t r);

}  // namespace ft
