// Gradient codecs: what one tier's step of the data-parallel all-reduce puts on the wire
// instead of fp32, and how that step then reduces. Each codec is one file in comm/codecs/
// holding all it is: its config keys and defaults, the levels it may compress and where
// its work runs, its wire size, encode and decode, and its feedback state. The
// registry (codecs/registry.cpp) is the only list of them: config validation, the docs of
// the compression keys and the all-reduce all read it.
//
//   codec     on the wire, n elements                      reduces
//   none      fp32, 4n bytes                               dense ring
//   fp16      IEEE half, 2n (beyond +-65504 clamped)       ring on a 16-bit wire, at any level
//   bf16      bfloat16, 2n                                 ring on a 16-bit wire, at any level
//   int8      per block of B: fp32 scale + B int8          payloads gathered; top level only
//   int4      per block of B: fp32 scale + B/2 bytes       payloads gathered; top level only
//   topk      the k largest |x| as (u32 index, fp32)       payloads gathered; top level only
//   sign      1 bit each + fp32 mean |x| per block         payloads gathered; top level only
//   powersgd  rank-r factors P, Q of each 2-D matrix       P and Q all-reduced; top level only
//
// Linear payloads (the casts, PowerSGD's factors) are summed in the compressed domain; the
// others are gathered and every rank decodes and sums all of them in rank order, so every
// rank holds the same bits. Feedback, so that what a lossy codec fails to send is delayed
// rather than lost: `residual` keeps input + residual - decoded and adds it to the next
// input; `difference` (gathered codecs) sends input - reference, where the reference is
// the sum of what this member sent so far, and every member outputs the running sum of all
// payloads, an estimate that follows the inputs without the residual's bursts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "comm/device.h"
#include "comm/half.h"

namespace ft {

// What becomes of what a lossy codec did not send (see above).
enum class Feedback { none, residual, difference };
const std::vector<std::string>& feedback_names();    // by the enum's values
Feedback feedback_from_name(std::string_view name);  // throws std::invalid_argument for another

// A codec's configured parameters: its name, its keys' values (defaults filled in), and
// what every lossy codec takes.
struct CodecSpec {
  std::string name = "none";
  std::map<std::string, double> params;
  Feedback feedback = Feedback::residual;
  std::uint64_t seed = 1;  // for codecs that draw random numbers (the same on every rank)

  bool lossy() const { return name != "none"; }
  double param(const std::string& key) const;  // throws std::logic_error when the codec has no such key
};

// A tensor inside a compressed region: offset and shape (cols = 0: a vector).
struct Matrix {
  std::size_t offset = 0, rows = 0, cols = 0;
};

// How a ring phase puts elements on the wire: in the buffer's own type, or cast to a 16-bit
// one, and how many logical bytes each wire byte stands for (payloads carry more than their
// size).
struct Wire {
  DType dtype = DType::f32;
  double logical_per_wire_byte = 1.0;
};

// The ring of one tier's step, as a codec sees it: the two ring phases over this tier's
// members, counted and paced per message, plus scratch and copies on the backend's memory.
class TierRing {
 public:
  virtual ~TierRing() = default;
  virtual int size() const = 0;
  virtual int rank() const = 0;
  // In place: afterwards this member's segment(n, size, rank) holds the sum (with `cuts`,
  // segments end on those element boundaries).
  virtual void reduce_scatter(Buffer buf, Wire wire, const std::vector<std::size_t>* cuts = nullptr) = 0;
  // In place: every member's segment to every member.
  virtual void all_gather(Buffer buf, Wire wire) = 0;
  virtual Buffer scratch(std::size_t bytes, DType dtype) = 0;
  // Bytes between host memory and a buffer of the ring's (`device`: where that buffer is).
  virtual void copy(void* dst, const void* src, std::size_t bytes, Device device) = 0;
  virtual void codec_time(double seconds) = 0;
};

// One ring phase of a codec's top-level all-reduce: `count` elements of `dtype`,
// reduce-scattered (`reduce`) or all-gathered over the tier's ring. What the step
// simulator prices a codec by, without running it.
struct RingPhase {
  std::size_t count = 0;
  DType dtype = DType::f32;
  bool reduce = true;
};

// One codec instance per (tier, bucket) and rank: it holds that stream's state.
class Codec {
 public:
  explicit Codec(CodecSpec spec) : spec_(std::move(spec)) {}
  virtual ~Codec() = default;
  const CodecSpec& spec() const { return spec_; }

  // Levels below the top (casts only): the ring there carries wire(), after prepare() has
  // rounded what this member sends (`region`, in the ring's memory), with its feedback.
  virtual DType wire() const { return DType::f32; }
  virtual void prepare(Buffer, TierRing&) {}
  // The top level: all-reduces (sums) `region`, which lies in the ring's memory; `tensors`
  // are the matrices inside it.
  virtual void all_reduce(Buffer region, TierRing& ring, const std::vector<Matrix>& tensors) = 0;
  // The ring phases all_reduce runs on a region of n elements (`tensors` inside) over p
  // members, in order, once past any dense warm-up; tests hold them to the traffic counters.
  virtual std::vector<RingPhase> phases(std::size_t n, int p, const std::vector<Matrix>& tensors) const = 0;
  // The work it books as codec time (codec_time) on a region of n elements (`tensors`
  // inside) over a ring of p members, at the top level or, for a cast, at a level below it:
  // passes over elements, the unit a device profile prices codec time by (PowerSGD's
  // products count rows x cols x rank).
  virtual double work(std::size_t n, int p, const std::vector<Matrix>& tensors) const = 0;
  // Its state for checkpoints by name ("residual", "q0", ...), and setting one back (false
  // when the name means nothing to this codec).
  virtual std::vector<std::pair<std::string, std::vector<float>*>> state() = 0;
  virtual bool restore(const std::string& what, std::vector<float> values) = 0;

 protected:
  // Runs `fn` on a host copy of `region`, copied back after.
  static void on_host(Buffer region, TierRing& ring, const std::function<void(float*, std::size_t)>& fn);
  // Timed as codec work on the tier.
  static void timed(TierRing& ring, const std::function<void()>& fn);

 private:
  CodecSpec spec_;
};

// The element-wise codecs: each element's fate depends only on its block. Encoding applies
// the feedback (adds the residual and keeps what the payload does not carry, or subtracts
// the reference and adds the payload to it); the top level gathers every member's payload
// and decodes and sums them all (into the running estimate, with `difference`).
class ElementCodec : public Codec {
 public:
  using Codec::Codec;
  virtual std::size_t payload_bytes(std::size_t n) const = 0;
  void encode(const float* x, std::size_t n, std::vector<std::uint8_t>& payload);
  // out[0..n) += decode(payload).
  virtual void decode_add(const std::uint8_t* payload, std::size_t n, float* out) const = 0;
  // The elements decode_add touches (topk: only those it kept).
  virtual std::size_t decoded(std::size_t n) const { return n; }
  void all_reduce(Buffer region, TierRing& ring, const std::vector<Matrix>& tensors) override;
  // Every member's payload all-gathered; encoded once, decoded p times.
  std::vector<RingPhase> phases(std::size_t n, int p, const std::vector<Matrix>& tensors) const override;
  double work(std::size_t n, int p, const std::vector<Matrix>& tensors) const override;
  std::vector<std::pair<std::string, std::vector<float>*>> state() override;
  bool restore(const std::string& what, std::vector<float> values) override;
  std::vector<float>& residual() { return residual_; }
  std::vector<float>& reference() { return reference_; }

 protected:
  // Writes payload_bytes(n) bytes for work[0..n) (feedback already applied).
  virtual void encode_into(const float* work, std::size_t n, std::uint8_t* payload) = 0;
  // work = x + residual, x - reference, or x alone, by the feedback.
  void apply_feedback(const float* x, std::size_t n, std::vector<float>& work);

 private:
  std::vector<float> residual_;
  std::vector<float> reference_, estimate_;  // feedback: difference
};

// The 16-bit casts: linear, so they reduce in the ring itself, on a 16-bit wire.
class CastCodec : public ElementCodec {
 public:
  using ElementCodec::ElementCodec;
  DType wire() const override { return wire_type(); }
  void prepare(Buffer region, TierRing& ring) override;
  std::size_t payload_bytes(std::size_t n) const override { return 2 * n; }
  void decode_add(const std::uint8_t* payload, std::size_t n, float* out) const override;
  // Replaces x by what survives the cast, keeping the rest as residual.
  void round_in_place(float* x, std::size_t n);
  // Rounds, then reduce-scatter and all-gather on the 16-bit wire.
  void all_reduce(Buffer region, TierRing& ring, const std::vector<Matrix>& tensors) override;
  std::vector<RingPhase> phases(std::size_t n, int p, const std::vector<Matrix>& tensors) const override;
  // The rounding, and the ring's conversions to and from the wire (comm/ring.cpp).
  double work(std::size_t n, int p, const std::vector<Matrix>& tensors) const override;

 protected:
  virtual DType wire_type() const = 0;
  virtual std::uint16_t to_wire(float x) = 0;
  virtual float from_wire(std::uint16_t h) const = 0;
  void encode_into(const float* work, std::size_t n, std::uint8_t* payload) override;
};

// The tensors inside [offset, offset + count), relative to offset: a region's share of a
// bucket's; and a bucket's tensor boundaries, from 0 to n, where a codec that needs whole
// matrices has the levels below it cut.
std::vector<Matrix> tensors_within(const std::vector<Matrix>& tensors, std::size_t offset, std::size_t count);
std::vector<std::size_t> tensor_cuts(const std::vector<Matrix>& tensors, std::size_t n);

// One config key of a codec: name, meaning, default (taken when the key is left at 0) and
// bounds.
struct CodecKey {
  std::string_view name, doc;
  double default_value = 0, lo = 0, hi = 0;
  bool integer = true;
  std::string_view excludes = {};  // a key of the same codec that may not be given with this one (name it on both)
};

// A registry entry: one per codec file.
struct CodecInfo {
  std::string_view name;
  std::string_view summary;                  // for the docs of compression.<tier>.codec
  std::vector<CodecKey> keys;
  bool below_top = false;                    // may compress the levels below the top one
  std::string_view runs;                     // where its work runs (device, host)
  std::unique_ptr<Codec> (*make)(const CodecSpec&);
  bool whole_tensors = false;  // the top level needs whole matrices: the levels below cut at tensor boundaries
  bool gathered = false;       // an ElementCodec whose payloads are gathered: may take feedback: difference
};

// Every codec, in the order the docs list them.
const std::vector<CodecInfo>& codec_registry();
const CodecInfo* find_codec(std::string_view name);  // null when there is none
// A new instance (fresh state) of the codec `spec` names.
std::unique_ptr<Codec> make_codec(const CodecSpec& spec);
// `name` with every key at its default: what a spec looks like before config.
CodecSpec default_spec(std::string_view name);

// Orthonormalises the r columns of P (rows x r, row-major) in place (modified
// Gram-Schmidt); a column that vanishes is left zero. PowerSGD's; exposed for its test.
void orthonormalize(float* p, std::size_t rows, std::size_t r);

}  // namespace ft
