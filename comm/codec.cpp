#include "comm/codec.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

namespace ft {

double CodecSpec::param(const std::string& key) const {
  auto it = params.find(key);
  if (it == params.end()) throw std::logic_error(fmt::format("codec {} has no key {}", name, key));
  return it->second;
}

void Codec::on_host(Buffer region, TierRing& ring, const std::function<void(float*, std::size_t)>& fn) {
  std::vector<float> x(region.count);
  ring.copy(x.data(), region.data, region.bytes(), region.device);
  fn(x.data(), x.size());
  ring.copy(region.data, x.data(), region.bytes(), region.device);
}

void Codec::timed(TierRing& ring, const std::function<void()>& fn) {
  auto t0 = std::chrono::steady_clock::now();
  fn();
  ring.codec_time(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

bool Codec::restore(const std::string& what, std::vector<float> values) {
  for (auto& [name, v] : state())
    if (name == what) {
      *v = std::move(values);
      return true;
    }
  return false;
}

// ---- feedback ----

const std::vector<std::string>& feedback_names() {
  static const std::vector<std::string> names = {"none", "residual", "difference"};  // in Feedback's order
  return names;
}

Feedback feedback_from_name(std::string_view name) {
  const auto& names = feedback_names();
  auto it = std::find(names.begin(), names.end(), name);
  if (it == names.end()) throw std::invalid_argument(fmt::format("no feedback named {}", name));
  return static_cast<Feedback>(it - names.begin());
}

const std::vector<std::string>& reduce_names() {
  static const std::vector<std::string> names = {"best", "ring", "gather"};  // in Reduce's order
  return names;
}

Reduce reduce_from_name(std::string_view name) {
  const auto& names = reduce_names();
  auto it = std::find(names.begin(), names.end(), name);
  if (it == names.end()) throw std::invalid_argument(fmt::format("no reduction named {}", name));
  return static_cast<Reduce>(it - names.begin());
}

void ErrorFeedback::add_to(float* x, std::size_t n) {
  if (!on_) return;
  if (residual_.size() != n) residual_.assign(n, 0.0f);
  for (std::size_t i = 0; i < n; ++i) x[i] += decay_ * residual_[i];
}

void ErrorFeedback::keep(const float* x, const float* sent, std::size_t n) {
  if (!on_) return;
  residual_.resize(n);
  for (std::size_t i = 0; i < n; ++i) residual_[i] = x[i] - sent[i];
}

// ---- element-wise codecs ----

ElementCodec::ElementCodec(CodecSpec spec, std::shared_ptr<const WireFormat> wire)
    : Codec(spec), wire_(std::move(wire)), feedback_(spec.lossy() ? spec.feedback : Feedback::none, spec.decay) {}

bool ElementCodec::rings(int p) const {
  const CodecInfo* info = find_codec(spec().name);
  if (!info || !info->gathered) return true;  // fp32 and the casts: linear
  if (!info->rings) return false;             // sparse payloads do not add
  if (spec().reduce != Reduce::best) return spec().reduce == Reduce::ring;
  // Through the ring 2 (p - 1) / p payloads go out, gathered p - 1: at 2 members the same
  // bytes, without the hops' second rounding.
  return spec().feedback != Feedback::difference && p > 2;
}

void ElementCodec::apply_feedback(const float* x, std::size_t n, std::vector<float>& work) {
  work.assign(x, x + n);
  if (!spec().lossy()) return;
  feedback_.add_to(work.data(), n);
  if (spec().feedback == Feedback::difference) {
    if (reference_.size() != n || estimate_.size() != n) {  // fresh or reset: both start from zero together
      reference_.assign(n, 0.0f);
      estimate_.assign(n, 0.0f);
    }
    for (std::size_t i = 0; i < n; ++i) work[i] -= reference_[i];
  }
}

void ElementCodec::encode(const float* x, std::size_t n, std::vector<std::uint8_t>& payload) {
  std::vector<float> work;
  apply_feedback(x, n, work);
  payload.assign(payload_bytes(n), 0);
  wire_->encode(work.data(), n, payload.data());
  if (!spec().lossy()) return;
  if (feedback_.on()) {
    std::vector<float> sent(n, 0.0f);
    decode_add(payload.data(), n, sent.data());
    feedback_.keep(work.data(), sent.data(), n);
  } else if (spec().feedback == Feedback::difference) {
    decode_add(payload.data(), n, reference_.data());
  }
}

void ElementCodec::round_in_place(float* x, std::size_t n) {
  if (!spec().lossy()) return;
  std::vector<std::uint8_t> payload;
  encode(x, n, payload);
  wire_->decode(payload.data(), n, x, false);
}

void ElementCodec::prepare(Buffer region, TierRing& ring) {
  if (!spec().lossy()) return;
  // Error feedback keeps its residual on the host; device data makes a round trip.
  on_host(region, ring, [&](float* x, std::size_t n) { timed(ring, [&] { round_in_place(x, n); }); });
}

void ElementCodec::all_reduce(Buffer region, TierRing& ring, const std::vector<Matrix>&) {
  if (!rings(ring.size())) return gather(region, ring);
  // Rounded first, block by block from the region's start as the ring's segments are cut,
  // so that the residual keeps what this member's own rounding lost: the first hop sends
  // these values again. The hops' roundings of partial sums are no one member's; they are lost.
  prepare(region, ring);
  ring.reduce_scatter(region, Wire{wire_.get()});
  ring.all_gather(region, Wire{wire_.get()});
}

// Payloads that cannot be summed are gathered: every member encodes its part once, all
// payloads go to every member, and each decodes and sums them in rank order, so all
// members hold the same bits. With feedback: difference the payloads are added to the
// estimate every member keeps, which is the output.
void ElementCodec::gather(Buffer region, TierRing& ring) {
  const std::size_t n = region.count;
  std::vector<float> x(n);
  ring.copy(x.data(), region.data, region.bytes(), region.device);
  std::vector<std::uint8_t> payload;
  timed(ring, [&] { encode(x.data(), n, payload); });
  const std::size_t P = payload.size(), p = static_cast<std::size_t>(ring.size());
  Buffer all = ring.scratch(p * P, DType::u8);
  ring.copy(static_cast<std::uint8_t*>(all.data) + static_cast<std::size_t>(ring.rank()) * P, payload.data(), P,
            all.device);
  // Logical bytes: what a dense ring all-reduce of the part would have sent.
  const double dense = 2.0 * static_cast<double>(p - 1) / static_cast<double>(p) * 4.0 * static_cast<double>(n);
  const double wire = static_cast<double>((p - 1) * P);
  ring.all_gather(Buffer{all.data, p * P, DType::u8, all.device}, Wire{nullptr, wire > 0 ? dense / wire : 1.0});
  std::vector<std::uint8_t> payloads(p * P);
  ring.copy(payloads.data(), all.data, p * P, all.device);
  timed(ring, [&] {
    if (spec().feedback == Feedback::difference) {
      for (std::size_t j = 0; j < p; ++j) decode_add(payloads.data() + j * P, n, estimate_.data());
      x = estimate_;
    } else {
      std::fill(x.begin(), x.end(), 0.0f);
      for (std::size_t j = 0; j < p; ++j) decode_add(payloads.data() + j * P, n, x.data());
    }
  });
  ring.copy(region.data, x.data(), region.bytes(), region.device);
}

double ElementCodec::work(std::size_t n, int p, const std::vector<Matrix>&) const {
  if (!spec().lossy()) return 0;
  const double x = static_cast<double>(n), d = static_cast<double>(decoded(n));
  // Encoding: the feedback's pass over the input, the encoding, and with feedback the payload
  // decoded back and the residual or reference updated.
  const double feedback = spec().feedback == Feedback::residual ? 2 * x + d : spec().feedback == Feedback::difference ? x + d : 0;
  // The ring: that rounding, then each phase codes what its steps send and receive, 2 (p - 1)
  // / p of n. Gathered: the output cleared and every member's payload decoded.
  if (rings(p)) return 2 * x + feedback + 4 * x * (p - 1) / p;
  return 2 * x + feedback + x + p * d;
}

std::vector<RingPhase> ElementCodec::phases(std::size_t n, int p, const std::vector<Matrix>&) const {
  if (rings(p)) return {{n, wire_.get(), true}, {n, wire_.get(), false}};
  return {{static_cast<std::size_t>(p) * payload_bytes(n), &bytes_wire(), false}};
}

std::vector<std::pair<std::string, std::vector<float>*>> ElementCodec::state() {
  if (spec().feedback == Feedback::difference) return {{"reference", &reference_}, {"estimate", &estimate_}};
  return {{"residual", &feedback_.residual()}};
}

std::vector<Matrix> tensors_within(const std::vector<Matrix>& tensors, std::size_t offset, std::size_t count) {
  std::vector<Matrix> inside;
  for (const Matrix& m : tensors)
    if (m.offset >= offset && m.offset < offset + count) inside.push_back({m.offset - offset, m.rows, m.cols});
  return inside;
}

std::vector<std::size_t> tensor_cuts(const std::vector<Matrix>& tensors, std::size_t n) {
  std::vector<std::size_t> cuts;
  for (const Matrix& m : tensors) cuts.push_back(m.offset);
  cuts.push_back(n);
  return cuts;
}

// ---- the registry's look-ups ----

const CodecInfo* find_codec(std::string_view name) {
  for (const CodecInfo& c : codec_registry())
    if (c.name == name) return &c;
  return nullptr;
}

CodecSpec default_spec(std::string_view name) {
  const CodecInfo* info = find_codec(name);
  if (!info) throw std::invalid_argument(fmt::format("no codec named {}", name));
  CodecSpec s;
  s.name = std::string(name);
  for (const CodecKey& k : info->keys) s.params[std::string(k.name)] = k.default_value;
  s.decay = info->decay;
  return s;
}

std::unique_ptr<Codec> make_codec(const CodecSpec& spec) {
  const CodecInfo* info = find_codec(spec.name);
  if (!info) throw std::invalid_argument(fmt::format("no codec named {}", spec.name));
  if (spec.feedback == Feedback::difference && !info->gathered)
    throw std::invalid_argument(fmt::format("codec {} cannot take feedback: difference", spec.name));
  if (spec.reduce != Reduce::best && !info->rings)
    throw std::invalid_argument(fmt::format("codec {} cannot choose how it reduces", spec.name));
  if (spec.reduce == Reduce::ring && spec.feedback == Feedback::difference)
    throw std::invalid_argument("feedback: difference needs its payloads gathered");
  return info->make(spec);
}

}  // namespace ft
