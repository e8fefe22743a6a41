// Gradient codecs: what one tier's step of the data-parallel all-reduce puts on the wire
// instead of fp32, and how that step then reduces. Each codec is one file in comm/codecs/
// holding all it is: its config keys and defaults, the levels it may compress and where
// its work runs, its wire size, encode and decode, and its feedback state. The
// registry (codecs/registry.cpp) is the only list of them: config validation, the docs of
// the compression keys and the all-reduce all read it.
//
//   codec       on the wire, n elements                          reduces
//   none        fp32, 4n bytes                                   dense ring
//   fp16        IEEE half, 2n (beyond +-65504 clamped)           ring on a 16-bit wire, at any level
//   bf16        bfloat16, 2n                                     ring on a 16-bit wire, at any level
//   int8        per block of B: fp32 scale + B int8             ring or gathered; top level only
//   int4        per block of B: fp32 scale + B/2 bytes          ring or gathered; top level only
//   fp8         per block of B: fp32 scale + B e4m3 or e5m2     ring or gathered; top level only
//   topk        the k largest |x| as (u32 index, fp32)           gathered; top level only
//   sign        1 bit each + fp32 mean |x| per block             gathered; top level only
//   sparseloco  per chunk: the top k, n-bit values, packed index gathered; top level only
//   powersgd    rank-r factors P, Q of each 2-D matrix           P and Q all-reduced; top level only
//
// What a message carries is the codec's wire format (wire.h). Linear payloads (the casts,
// PowerSGD's factors) are summed in the compressed domain. The quantizers (int8, int4, fp8)
// reduce in the ring too (compression.<tier>.reduce: ring): each hop decodes, adds in fp32
// and encodes the partial sum again, and the reduced segments go round once more, encoded:
// about 2 (p - 1) / p of the payload per member at any p. Or they are gathered, as the
// sparse codecs always are: every member's payload goes to every member, (p - 1) payloads,
// and each decodes and sums them all in rank order, so every rank holds the same bits.
// Feedback, so that what a lossy codec fails to send is delayed rather than lost:
// `residual` (ErrorFeedback) adds decay x what it kept to the next input and keeps input -
// what it sent; `difference` (gathered codecs) sends input - reference, where the reference
// is the sum of what this member sent so far, and every member outputs the running sum of
// all payloads, an estimate that follows the inputs without the residual's bursts.
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
#include "comm/wire.h"

namespace ft {

// What becomes of what a lossy codec did not send (see above).
enum class Feedback { none, residual, difference };
const std::vector<std::string>& feedback_names();    // by the enum's values
Feedback feedback_from_name(std::string_view name);  // throws std::invalid_argument for another

// A codec's configured parameters: its name, its keys' values (defaults filled in), and
// what every lossy codec takes.
enum class Reduce { best, ring, gather };  // how a quantizer's payloads reduce (best: the ring above 2 members)
const std::vector<std::string>& reduce_names();  // by the enum's values
Reduce reduce_from_name(std::string_view name);  // throws std::invalid_argument for another

struct CodecSpec {
  std::string name = "none";
  std::map<std::string, double> params;
  Feedback feedback = Feedback::residual;
  double decay = 1.0;  // of what residual feedback kept, before it is added to the next input
  Reduce reduce = Reduce::best;
  std::uint64_t seed = 1;  // for codecs that draw random numbers (the same on every rank)

  bool lossy() const { return name != "none"; }
  double param(const std::string& key) const;  // throws std::logic_error when the codec has no such key
};

// A tensor inside a compressed region: offset and shape (cols = 0: a vector).
struct Matrix {
  std::size_t offset = 0, rows = 0, cols = 0;
};

// How a ring phase puts elements on the wire: in a format (wire.h; null: as the buffer holds
// them), and how many logical bytes each of the buffer's bytes stands for (payloads and
// factors carry more than their size).
struct Wire {
  const WireFormat* format = nullptr;
  double logical_per_byte = 1.0;
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

// One ring phase of a codec's top-level all-reduce: `count` elements on `wire`,
// reduce-scattered (`reduce`) or all-gathered over the tier's ring. What the step
// simulator prices a codec by, without running it.
struct RingPhase {
  std::size_t count = 0;
  const WireFormat* wire = &fp32_wire();
  bool reduce = true;
};

// Residual feedback: what a codec did not send, carried into its next input with a decay
// (SparseLoCo's decayed error accumulator; decay 1 keeps it all). The one mechanism every
// lossy codec uses.
class ErrorFeedback {
 public:
  ErrorFeedback(Feedback mode, double decay) : on_(mode == Feedback::residual), decay_(static_cast<float>(decay)) {}
  bool on() const { return on_; }
  // x[0 .. n) += decay x residual (a fresh or resized residual starts at zero).
  void add_to(float* x, std::size_t n);
  // residual = x - sent.
  void keep(const float* x, const float* sent, std::size_t n);
  std::vector<float>& residual() { return residual_; }

 private:
  bool on_;
  float decay_;
  std::vector<float> residual_;
};

// One codec instance per (tier, bucket) and rank: it holds that stream's state.
class Codec {
 public:
  explicit Codec(CodecSpec spec) : spec_(std::move(spec)) {}
  virtual ~Codec() = default;
  const CodecSpec& spec() const { return spec_; }

  // Levels below the top (casts only): the ring there carries wire(), after prepare() has
  // rounded what this member sends (`region`, in the ring's memory), with its feedback.
  virtual const WireFormat& wire() const { return fp32_wire(); }
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
  virtual bool restore(const std::string& what, std::vector<float> values);

 protected:
  // Runs `fn` on a host copy of `region`, copied back after.
  static void on_host(Buffer region, TierRing& ring, const std::function<void(float*, std::size_t)>& fn);
  // Timed as codec work on the tier.
  static void timed(TierRing& ring, const std::function<void()>& fn);

 private:
  CodecSpec spec_;
};

// The element-wise codecs: a wire format (wire.h) and what becomes of what it does not carry.
// Reduced in the ring (the casts always, the quantizers by spec().reduce): each member first
// rounds its input to what the wire carries (the residual keeps the rest), then the ring
// runs on the wire. Gathered: each member encodes its input once (the residual applied, or
// the reference subtracted), and the top level gathers every member's payload and decodes
// and sums them all (into the running estimate, with `difference`).
class ElementCodec : public Codec {
 public:
  ElementCodec(CodecSpec spec, std::shared_ptr<const WireFormat> wire);
  const WireFormat& wire() const override { return *wire_; }
  std::size_t payload_bytes(std::size_t n) const { return wire_->bytes(n); }
  void encode(const float* x, std::size_t n, std::vector<std::uint8_t>& payload);
  // out[0..n) += decode(payload).
  void decode_add(const std::uint8_t* payload, std::size_t n, float* out) const { wire_->decode(payload, n, out, true); }
  // The elements a decode touches (topk: only those it kept).
  std::size_t decoded(std::size_t n) const { return wire_->decoded(n); }
  // Whether it reduces in the ring over p members (else its payloads are gathered).
  bool rings(int p) const;
  // Replaces x by what survives the wire, keeping the rest as residual.
  void round_in_place(float* x, std::size_t n);
  void prepare(Buffer region, TierRing& ring) override;
  void all_reduce(Buffer region, TierRing& ring, const std::vector<Matrix>& tensors) override;
  // The ring: a reduce-scatter and an all-gather on the wire; gathered: every member's payload.
  std::vector<RingPhase> phases(std::size_t n, int p, const std::vector<Matrix>& tensors) const override;
  double work(std::size_t n, int p, const std::vector<Matrix>& tensors) const override;
  std::vector<std::pair<std::string, std::vector<float>*>> state() override;
  std::vector<float>& residual() { return feedback_.residual(); }
  std::vector<float>& reference() { return reference_; }

 private:
  // work = x with the residual added, x - reference, or x alone, by the feedback.
  void apply_feedback(const float* x, std::size_t n, std::vector<float>& work);
  void gather(Buffer region, TierRing& ring);

  std::shared_ptr<const WireFormat> wire_;
  ErrorFeedback feedback_;
  std::vector<float> reference_, estimate_;  // feedback: difference
};

// A registry entry's maker for an element-wise codec on `Format` (constructed from the spec),
// and one on a format that is always the same (fp32, the casts).
template <class Format> std::unique_ptr<Codec> make_element_codec(const CodecSpec& s) {
  return std::make_unique<ElementCodec>(s, std::make_shared<Format>(s));
}
template <const WireFormat& (*Fixed)()> std::unique_ptr<Codec> make_element_codec(const CodecSpec& s) {
  return std::make_unique<ElementCodec>(s, std::shared_ptr<const WireFormat>(&Fixed(), [](const WireFormat*) {}));
}

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
  bool gathered = false;       // an ElementCodec whose payloads may be gathered: may take feedback: difference
  bool rings = false;          // ... and may reduce in the ring instead (compression.<tier>.reduce)
  double decay = 1.0;          // its residual feedback's default decay
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
