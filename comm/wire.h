// Wire formats: what one message of a collective carries for n fp32 elements, and how it is
// made and read. The ring (comm/ring.cpp), the traffic counters, the collective plans and the
// step simulator all count a message as bytes(n) of its format, so a block-scaled int8 hop
// is counted as it is sent. A codec (codec.h) names its format; the formats that can be
// decoded, added to and encoded again at every hop (the 16-bit casts, int8, int4, fp8) reduce
// in the ring itself, the others (topk, sign, sparseloco) are gathered.
//
// Blocks: a format with per-block scales encodes a message block by block from its first
// element. The ring cuts its segments and chunks at whole blocks (segment(n, p, i, block)),
// so a chunk encodes exactly as the same elements rounded in place from the buffer's start.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>
#include <vector>

#include "comm/device.h"

namespace ft {

class WireFormat {
 public:
  virtual ~WireFormat() = default;
  virtual std::string_view name() const = 0;
  // Bytes one message of n elements takes.
  virtual std::size_t bytes(std::size_t n) const = 0;
  // Elements per block: every message but a segment's last holds whole blocks.
  virtual std::size_t block() const { return 1; }
  // The elements a decode of n touches (a sparse format: only those it kept).
  virtual std::size_t decoded(std::size_t n) const { return n; }
  // Whether a ring may reduce on it: decode, add in fp32, encode again at every hop.
  virtual bool reduces() const { return true; }
  // The element type it is when a backend converts it on the buffers' device (fp32, bytes,
  // the 16-bit casts); none: encoded on the host.
  virtual std::optional<DType> dtype() const { return std::nullopt; }
  // out[0 .. bytes(n)) = x[0 .. n) encoded.
  virtual void encode(const float* x, std::size_t n, std::uint8_t* out) const = 0;
  // out[0 .. n) = decoded, or += decoded when `add`.
  virtual void decode(const std::uint8_t* in, std::size_t n, float* out, bool add) const = 0;
  // Elements per message for messages of about `chunk_bytes`: whole blocks, at least one.
  std::size_t chunk_elements(std::size_t chunk_bytes) const;
  // Bytes of `elems` elements sent as messages of `chunk` elements each (the last shorter).
  std::size_t message_bytes(std::size_t elems, std::size_t chunk) const;
};

// Each element as the buffer holds it: fp32 (4 bytes), or raw bytes (a gathered codec's
// payloads, which the ring forwards untouched).
const WireFormat& fp32_wire();
const WireFormat& bytes_wire();
// IEEE half (clamped at +-65504) and bfloat16, 2 bytes, round to nearest even.
const WireFormat& fp16_wire();
const WireFormat& bf16_wire();

// The smallest power of two s with amax / s <= top: a block's scale that keeps integers and
// short binary fractions exact. 0 for a block of zeros (or NaN).
float pow2_scale(float amax, float top);
// The largest |x| of x[lo, hi).
float block_amax(const float* x, std::size_t lo, std::size_t hi);

// The quantizers' layout: an fp32 scale per block of `block` elements, then the elements' codes.
// Encoding: per block, s = scale_of(its largest |x|), then put(i, x[i] / s) for each element
// (0 for a block of zeros). Decoding: out[i] = (or +=) value(i) x its block's s.
inline std::size_t scaled_blocks(std::size_t n, std::size_t block) { return (n + block - 1) / block; }
template <class Scale, class Put>
void encode_scaled_blocks(const float* x, std::size_t n, std::size_t block, std::uint8_t* p, Scale scale_of, Put put) {
  for (std::size_t b = 0, nb = scaled_blocks(n, block); b < nb; ++b) {
    const std::size_t lo = b * block, hi = std::min(n, lo + block);
    const float s = scale_of(block_amax(x, lo, hi));
    std::memcpy(p + 4 * b, &s, 4);
    for (std::size_t i = lo; i < hi; ++i) put(i, s > 0 ? x[i] / s : 0.0f);
  }
}
template <class Value>
void decode_scaled_blocks(const std::uint8_t* p, std::size_t n, std::size_t block, float* out, bool add, Value value) {
  for (std::size_t b = 0, nb = scaled_blocks(n, block); b < nb; ++b) {
    float s;
    std::memcpy(&s, p + 4 * b, 4);
    for (std::size_t i = b * block, hi = std::min(n, i + block); i < hi; ++i)
      out[i] = (add ? out[i] : 0.0f) + value(i) * s;
  }
}

// The sparse formats' parts: the k largest |x[0 .. n)| in index order (ties go to the lower
// index, so every rank picks alike), and a little-endian bit stream for packed indices and
// codes (write into zeroed bytes).
void largest_k(const float* x, std::size_t n, std::size_t k, std::vector<std::uint32_t>& idx);
struct BitStream {
  std::uint8_t* p;
  std::size_t at = 0;
  void put(std::uint32_t v, int width);
  std::uint32_t get(int width);
};

// Bytes of each of a ring phase's steps (`step_elems`, from ring_sends) on `wire`, in
// messages of about `chunk_bytes`: what the ring sends and the plans and simulator count.
std::vector<std::size_t> ring_step_bytes(const std::vector<std::size_t>& step_elems, const WireFormat& wire,
                                         std::size_t chunk_bytes);

}  // namespace ft
