// The compressed all-reduce. Up the hierarchy, each level reduce-scatters the part the
// level below left (fp16/bf16 levels on a 16-bit wire, accumulating in fp32); the top
// level all-reduces its part with its codec (dense, cast, gathered payloads, or PowerSGD);
// then each level all-gathers back down on its wire.
#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "comm/communicator.h"

namespace ft {
namespace {

DType wire_type(CodecKind k) {
  return k == CodecKind::fp16 ? DType::f16 : k == CodecKind::bf16 ? DType::bf16 : DType::f32;
}

// The tensor boundaries inside [offset, offset + count), relative to offset.
std::vector<std::size_t> cuts_within(const std::vector<std::size_t>& cuts, std::size_t offset, std::size_t count) {
  std::vector<std::size_t> out{0};
  for (std::size_t c : cuts)
    if (c > offset && c < offset + count) out.push_back(c - offset);
  out.push_back(count);
  return out;
}

// p = m q: m rows x cols, q cols x r, p rows x r (row-major, accumulating in float).
void mul(const float* m, const float* q, float* p, std::size_t rows, std::size_t cols, std::size_t r) {
  std::fill(p, p + rows * r, 0.0f);
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t k = 0; k < cols; ++k) {
      float a = m[i * cols + k];
      for (std::size_t c = 0; c < r; ++c) p[i * r + c] += a * q[k * r + c];
    }
}

// q = m^T p: m rows x cols, p rows x r, q cols x r.
void mul_t(const float* m, const float* p, float* q, std::size_t rows, std::size_t cols, std::size_t r) {
  std::fill(q, q + cols * r, 0.0f);
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t k = 0; k < cols; ++k) {
      float a = m[i * cols + k];
      for (std::size_t c = 0; c < r; ++c) q[k * r + c] += a * p[i * r + c];
    }
}

}  // namespace

ElementCodec& BucketCodecs::element(Tier t) {
  auto& e = element_[static_cast<std::size_t>(index(t))];
  if (!e) e = std::make_unique<ElementCodec>(spec(t));
  return *e;
}

PowerSgdState& BucketCodecs::powersgd(Tier t) {
  auto& s = powersgd_[static_cast<std::size_t>(index(t))];
  if (!s) s = std::make_unique<PowerSgdState>(spec(t));
  return *s;
}

std::vector<std::pair<std::string, std::vector<float>*>> BucketCodecs::state() {
  std::vector<std::pair<std::string, std::vector<float>*>> out;
  for (Tier t : kAllTiers) {
    auto i = static_cast<std::size_t>(index(t));
    std::string tier(tier_name(t));
    if (element_[i]) out.emplace_back(tier + "/residual", &element_[i]->residual());
    if (powersgd_[i]) {
      out.emplace_back(tier + "/residual", &powersgd_[i]->residual());
      for (std::size_t q = 0; q < powersgd_[i]->matrices(); ++q)
        out.emplace_back(fmt::format("{}/q{}", tier, q), &powersgd_[i]->q_at(q));
    }
  }
  return out;
}

bool BucketCodecs::restore(const std::string& name, std::vector<float> values) {
  auto slash = name.find('/');
  if (slash == std::string::npos) return false;
  auto tier = tier_from_name(name.substr(0, slash));
  if (!tier) return false;
  std::string what = name.substr(slash + 1);
  const CodecSpec& s = spec(*tier);
  if (s.kind == CodecKind::powersgd) {
    if (what == "residual") {
      powersgd(*tier).residual() = std::move(values);
      return true;
    }
    if (what.size() > 1 && what[0] == 'q') {
      powersgd(*tier).set_q(std::stoul(what.substr(1)), std::move(values));
      return true;
    }
    return false;
  }
  if (!s.lossy() || what != "residual") return false;
  element(*tier).residual() = std::move(values);
  return true;
}

Segment aligned_segment(std::size_t n, int p, int i, const std::vector<std::size_t>& cuts) {
  auto boundary = [&](int j) -> std::size_t {
    if (j <= 0) return 0;
    if (j >= p) return n;
    double ideal = static_cast<double>(n) * j / p;
    auto it = std::lower_bound(cuts.begin(), cuts.end(), static_cast<std::size_t>(ideal));
    std::size_t best = it == cuts.end() ? n : *it;
    if (it != cuts.begin() && ideal - static_cast<double>(*(it - 1)) <= static_cast<double>(best) - ideal)
      best = *(it - 1);
    return best;
  };
  // Boundaries must not decrease; with the nearest-cut rule they cannot, as ideals increase.
  std::size_t lo = boundary(i), hi = std::max(lo, boundary(i + 1));
  return {lo, hi - lo};
}

void Communicator::all_reduce_compressed(Buffer whole, ReduceOp op, Algorithm algo, BucketCodecs& codecs,
                                         const std::vector<Matrix>& tensors) {
  if (whole.dtype != DType::f32) throw std::invalid_argument("compressed all-reduce takes fp32 buffers");
  ordered([&] { on_backend_memory(whole, kScratchHost, [&](Buffer buf) {
    if (buf.count == 0 || size() == 1) return;
    // The levels: the hierarchy's, or this whole group as one level at the highest tier it spans.
    std::vector<std::pair<Communicator*, Tier>> levels;
    if (use_levels(algo)) {
      for (std::size_t l = 0; l < levels_.size(); ++l) levels.emplace_back(levels_[l].get(), plan_.levels[l].tier);
    } else {
      levels.emplace_back(this, topo_->span(members_));
    }
    const CodecSpec& top_spec = codecs.spec(levels.back().second);
    std::vector<std::size_t> cuts;  // tensor boundaries, when PowerSGD needs whole matrices on top
    if (top_spec.kind == CodecKind::powersgd) {
      for (const Matrix& m : tensors) cuts.push_back(m.offset);
      cuts.push_back(buf.count);
    }
    std::vector<std::pair<Buffer, std::size_t>> regions{{buf, 0}};  // region and its offset in buf
    for (std::size_t l = 0; l + 1 < levels.size(); ++l) {
      auto [comm, tier] = levels[l];
      const CodecSpec& spec = codecs.spec(tier);
      auto [region, offset] = regions.back();
      if (spec.kind == CodecKind::fp16 || spec.kind == CodecKind::bf16) round_on_host(region, tier, codecs.element(tier));
      std::vector<std::size_t> local = cuts.empty() ? cuts : cuts_within(cuts, offset, region.count);
      comm->ring_phase(region, true, Wire{wire_type(spec.kind)}, cuts.empty() ? nullptr : &local);
      Segment mine = cuts.empty() ? segment(region.count, comm->size(), comm->rank())
                                  : aligned_segment(region.count, comm->size(), comm->rank(), local);
      regions.emplace_back(region.slice(mine.offset, mine.count), offset + mine.offset);
    }
    auto [region, offset] = regions.back();
    std::vector<Matrix> inside;
    for (const Matrix& m : tensors)
      if (m.offset >= offset && m.offset < offset + region.count)
        inside.push_back({m.offset - offset, m.rows, m.cols});
    if (region.count > 0) levels.back().first->top_all_reduce(region, levels.back().second, codecs, inside);
    for (std::size_t l = levels.size() - 1; l-- > 0;) {
      regions.pop_back();
      auto [comm, tier] = levels[l];
      std::vector<std::size_t> local = cuts.empty() ? cuts : cuts_within(cuts, regions.back().second, regions.back().first.count);
      comm->ring_phase(regions.back().first, false, Wire{wire_type(codecs.spec(tier).kind)}, cuts.empty() ? nullptr : &local);
    }
    if (op == ReduceOp::avg) local_scale(buf, 1.0 / size());
  }); });
}

void Communicator::top_all_reduce(Buffer region, Tier tier, BucketCodecs& codecs, const std::vector<Matrix>& tensors) {
  const CodecSpec& spec = codecs.spec(tier);
  switch (spec.kind) {
    case CodecKind::none:
      ring_phase(region, true, Wire{DType::f32});
      ring_phase(region, false, Wire{DType::f32});
      return;
    case CodecKind::fp16:
    case CodecKind::bf16: {
      round_on_host(region, tier, codecs.element(tier));
      ring_phase(region, true, Wire{wire_type(spec.kind)});
      ring_phase(region, false, Wire{wire_type(spec.kind)});
      return;
    }
    case CodecKind::int8:
    case CodecKind::topk:
    case CodecKind::sign: gather_all_reduce(region, tier, codecs.element(tier)); return;
    case CodecKind::powersgd: powersgd_all_reduce(region, tier, codecs.powersgd(tier), tensors); return;
  }
}

// Payloads that cannot be summed are gathered: every rank encodes its part once (with
// error feedback), all payloads go to every rank, and each rank decodes and sums them in
// rank order, so all ranks hold the same bits.
void Communicator::round_on_host(Buffer region, Tier tier, ElementCodec& codec) {
  // Error feedback keeps its residual on the host; device data makes a round trip.
  std::vector<float> x(region.count);
  copy_bytes(x.data(), region.data, region.bytes(), region.device);
  double c0 = now_seconds();
  codec.round_in_place(x.data(), x.size());
  traffic().codec(tier, now_seconds() - c0);
  copy_bytes(region.data, x.data(), region.bytes(), region.device);
}

void Communicator::gather_all_reduce(Buffer region, Tier tier, ElementCodec& codec) {
  const std::size_t n = region.count;
  std::vector<float> x(n);
  copy_bytes(x.data(), region.data, region.bytes(), region.device);
  std::vector<std::uint8_t> payload;
  double c0 = now_seconds();
  codec.encode(x.data(), n, payload);
  traffic().codec(tier, now_seconds() - c0);
  const std::size_t P = payload.size(), p = static_cast<std::size_t>(size());
  Buffer all = scratch(kScratchCodec, p * P, DType::u8);
  copy_bytes(static_cast<std::uint8_t*>(all.data) + static_cast<std::size_t>(rank_) * P, payload.data(), P, all.device);
  // Logical bytes: what a dense ring all-reduce of the part would have sent.
  double dense = 2.0 * static_cast<double>(p - 1) / static_cast<double>(p) * 4.0 * static_cast<double>(n);
  double wire = static_cast<double>((p - 1) * P);
  ring_phase(Buffer{all.data, p * P, DType::u8, all.device}, false, Wire{DType::u8, wire > 0 ? dense / wire : 1.0});
  std::vector<std::uint8_t> payloads(p * P);
  copy_bytes(payloads.data(), all.data, p * P, all.device);
  c0 = now_seconds();
  std::fill(x.begin(), x.end(), 0.0f);
  for (std::size_t j = 0; j < p; ++j) codec.decode_add(payloads.data() + j * P, n, x.data());
  traffic().codec(tier, now_seconds() - c0);
  copy_bytes(region.data, x.data(), region.bytes(), region.device);
}

// PowerSGD (Vogels et al., 2019), rank r, warm-started: for each matrix M (with its
// residual added), P = M Q, all-reduce P, orthonormalise, Q = M^T P, all-reduce Q; the sum
// of every rank's M is approximated by P Q^T, and M - P Q_local^T stays as residual.
// Vectors go dense. All P's, Q's and vectors travel as three packed all-reduces.
void Communicator::powersgd_all_reduce(Buffer region, Tier tier, PowerSgdState& st, const std::vector<Matrix>& tensors) {
  const CodecSpec& spec = st.spec();
  if (st.steps++ < spec.start) {  // dense for the first `start` steps
    ring_phase(region, true, Wire{DType::f32});
    ring_phase(region, false, Wire{DType::f32});
    return;
  }
  // PowerSGD's small products run on the host; device data makes a round trip.
  std::vector<float> host(region.count);
  copy_bytes(host.data(), region.data, region.bytes(), region.device);
  float* x = host.data();
  double c0 = now_seconds();
  std::vector<const Matrix*> mats;
  std::vector<std::pair<std::size_t, std::size_t>> vecs;  // (offset, count)
  for (const Matrix& m : tensors)
    if (m.cols > 0 && m.rows > 0) mats.push_back(&m);
  // Everything of the region not inside a matrix goes dense.
  {
    std::size_t at = 0;
    std::vector<std::pair<std::size_t, std::size_t>> spans;
    for (const Matrix* m : mats) spans.emplace_back(m->offset, m->rows * m->cols);
    std::sort(spans.begin(), spans.end());
    for (auto [off, len] : spans) {
      if (off > at) vecs.emplace_back(at, off - at);
      at = off + len;
    }
    if (at < region.count) vecs.emplace_back(at, region.count - at);
  }
  std::vector<float>& residual = st.residual();
  if (spec.error_feedback && residual.size() != region.count) residual.assign(region.count, 0.0f);
  std::size_t psize = 0, qsize = 0, vsize = 0;
  std::vector<std::size_t> ranks;
  double dense_elems = 0, factor_elems = 0;
  for (const Matrix* m : mats) {
    std::size_t r = std::min<std::size_t>(static_cast<std::size_t>(spec.rank), std::min(m->rows, m->cols));
    ranks.push_back(r);
    psize += m->rows * r;
    qsize += m->cols * r;
    dense_elems += static_cast<double>(m->rows * m->cols);
    factor_elems += static_cast<double>(r * (m->rows + m->cols));
  }
  for (auto [off, len] : vecs) vsize += len;
  std::vector<float> P(psize), Q(qsize), V(vsize);
  std::size_t pa = 0;
  for (std::size_t i = 0; i < mats.size(); ++i) {
    const Matrix& m = *mats[i];
    float* M = x + m.offset;
    if (spec.error_feedback)
      for (std::size_t e = 0; e < m.rows * m.cols; ++e) M[e] += residual[m.offset + e];
    mul(M, st.q(i, m).data(), P.data() + pa, m.rows, m.cols, ranks[i]);
    pa += m.rows * ranks[i];
  }
  std::size_t va = 0;
  for (auto [off, len] : vecs) {
    std::copy(x + off, x + off + len, V.data() + va);
    va += len;
  }
  traffic().codec(tier, now_seconds() - c0);
  const Wire factors{DType::f32, factor_elems > 0 ? dense_elems / factor_elems : 1.0};
  auto all_reduce_host = [&](std::vector<float>& v, Wire w) {
    Buffer b = scratch(kScratchCodec, v.size() * sizeof(float), DType::f32);
    b.count = v.size();
    copy_bytes(b.data, v.data(), v.size() * sizeof(float), b.device);
    ring_phase(b, true, w);
    ring_phase(b, false, w);
    copy_bytes(v.data(), b.data, v.size() * sizeof(float), b.device);
  };
  all_reduce_host(P, factors);
  all_reduce_host(V, Wire{DType::f32});
  c0 = now_seconds();
  std::size_t qa = 0;
  pa = 0;
  for (std::size_t i = 0; i < mats.size(); ++i) {
    const Matrix& m = *mats[i];
    orthonormalize(P.data() + pa, m.rows, ranks[i]);
    mul_t(x + m.offset, P.data() + pa, Q.data() + qa, m.rows, m.cols, ranks[i]);
    if (spec.error_feedback) {  // what this rank's part of P Q^T leaves out
      std::vector<float> approx(m.rows * m.cols);
      std::vector<float> qt(Q.begin() + static_cast<std::ptrdiff_t>(qa), Q.begin() + static_cast<std::ptrdiff_t>(qa + m.cols * ranks[i]));
      for (std::size_t a = 0; a < m.rows; ++a)
        for (std::size_t b = 0; b < m.cols; ++b) {
          float s = 0;
          for (std::size_t c = 0; c < ranks[i]; ++c) s += P[pa + a * ranks[i] + c] * qt[b * ranks[i] + c];
          residual[m.offset + a * m.cols + b] = x[m.offset + a * m.cols + b] - s;
        }
    }
    pa += m.rows * ranks[i];
    qa += m.cols * ranks[i];
  }
  traffic().codec(tier, now_seconds() - c0);
  all_reduce_host(Q, factors);
  c0 = now_seconds();
  qa = 0;
  pa = 0;
  for (std::size_t i = 0; i < mats.size(); ++i) {
    const Matrix& m = *mats[i];
    const std::size_t r = ranks[i];
    float* M = x + m.offset;
    for (std::size_t a = 0; a < m.rows; ++a)
      for (std::size_t b = 0; b < m.cols; ++b) {
        float s = 0;
        for (std::size_t c = 0; c < r; ++c) s += P[pa + a * r + c] * Q[qa + b * r + c];
        M[a * m.cols + b] = s;
      }
    std::vector<float>& q = st.q(i, m);  // the summed Q warm-starts the next step
    std::copy(Q.begin() + static_cast<std::ptrdiff_t>(qa), Q.begin() + static_cast<std::ptrdiff_t>(qa + m.cols * r), q.begin());
    pa += m.rows * r;
    qa += m.cols * r;
  }
  va = 0;
  for (auto [off, len] : vecs) {
    std::copy(V.data() + va, V.data() + va + len, x + off);
    va += len;
  }
  traffic().codec(tier, now_seconds() - c0);
  copy_bytes(region.data, host.data(), region.bytes(), region.device);
}

}  // namespace ft
