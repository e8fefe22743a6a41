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

// ---- element-wise codecs ----

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

void ElementCodec::apply_feedback(const float* x, std::size_t n, std::vector<float>& work) {
  work.assign(x, x + n);
  if (!spec().lossy()) return;
  if (spec().feedback == Feedback::residual) {
    if (residual_.size() != n) residual_.assign(n, 0.0f);
    for (std::size_t i = 0; i < n; ++i) work[i] += residual_[i];
  } else if (spec().feedback == Feedback::difference) {
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
  encode_into(work.data(), n, payload.data());
  if (!spec().lossy()) return;
  if (spec().feedback == Feedback::residual) {
    std::vector<float> sent(n, 0.0f);
    decode_add(payload.data(), n, sent.data());
    for (std::size_t i = 0; i < n; ++i) residual_[i] = work[i] - sent[i];
  } else if (spec().feedback == Feedback::difference) {
    decode_add(payload.data(), n, reference_.data());
  }
}

// Payloads that cannot be summed are gathered: every member encodes its part once, all
// payloads go to every member, and each decodes and sums them in rank order, so all
// members hold the same bits. With feedback: difference the payloads are added to the
// estimate every member keeps, which is the output.
void ElementCodec::all_reduce(Buffer region, TierRing& ring, const std::vector<Matrix>&) {
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
  ring.all_gather(Buffer{all.data, p * P, DType::u8, all.device}, Wire{DType::u8, wire > 0 ? dense / wire : 1.0});
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
  // Encoding (encode()): the feedback's pass over the input, the encoding, and with feedback
  // the payload decoded back and the residual or reference updated; then the output cleared
  // and every member's payload decoded into it.
  const double x = static_cast<double>(n), d = static_cast<double>(decoded(n));
  const double feedback = spec().feedback == Feedback::residual ? 2 * x + d : spec().feedback == Feedback::difference ? x + d : 0;
  return 2 * x + feedback + x + p * d;
}

std::vector<RingPhase> ElementCodec::phases(std::size_t n, int p, const std::vector<Matrix>&) const {
  return {{static_cast<std::size_t>(p) * payload_bytes(n), DType::u8, false}};
}

std::vector<std::pair<std::string, std::vector<float>*>> ElementCodec::state() {
  if (spec().feedback == Feedback::difference) return {{"reference", &reference_}, {"estimate", &estimate_}};
  return {{"residual", &residual_}};
}

bool ElementCodec::restore(const std::string& what, std::vector<float> values) {
  for (auto& [name, v] : state())
    if (name == what) {
      *v = std::move(values);
      return true;
    }
  return false;
}

// ---- 16-bit casts ----

void CastCodec::encode_into(const float* work, std::size_t n, std::uint8_t* p) {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint16_t h = to_wire(work[i]);
    std::memcpy(p + 2 * i, &h, 2);
  }
}

void CastCodec::decode_add(const std::uint8_t* p, std::size_t n, float* out) const {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    out[i] += from_wire(h);
  }
}

void CastCodec::round_in_place(float* x, std::size_t n) {
  std::vector<float> work;
  apply_feedback(x, n, work);
  for (std::size_t i = 0; i < n; ++i) {
    float y = from_wire(to_wire(work[i]));
    if (spec().feedback == Feedback::residual) residual()[i] = work[i] - y;
    x[i] = y;
  }
}

void CastCodec::prepare(Buffer region, TierRing& ring) {
  // Error feedback keeps its residual on the host; device data makes a round trip.
  on_host(region, ring, [&](float* x, std::size_t n) { timed(ring, [&] { round_in_place(x, n); }); });
}

void CastCodec::all_reduce(Buffer region, TierRing& ring, const std::vector<Matrix>&) {
  prepare(region, ring);
  ring.reduce_scatter(region, Wire{wire_type()});
  ring.all_gather(region, Wire{wire_type()});
}

double CastCodec::work(std::size_t n, int p, const std::vector<Matrix>&) const {
  // Rounding with its feedback (two passes); each ring phase converts what its steps send and
  // receive, 2 (p - 1) / p of n.
  const double x = static_cast<double>(n);
  return 2 * x + 4 * x * (p - 1) / p;
}

std::vector<RingPhase> CastCodec::phases(std::size_t n, int, const std::vector<Matrix>&) const {
  return {{n, wire_type(), true}, {n, wire_type(), false}};
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
  return s;
}

std::unique_ptr<Codec> make_codec(const CodecSpec& spec) {
  const CodecInfo* info = find_codec(spec.name);
  if (!info) throw std::invalid_argument(fmt::format("no codec named {}", spec.name));
  if (spec.feedback == Feedback::difference && !info->gathered)
    throw std::invalid_argument(fmt::format("codec {} cannot take feedback: difference", spec.name));
  return info->make(spec);
}

}  // namespace ft
