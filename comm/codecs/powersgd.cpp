// powersgd (Vogels et al., 2019): each 2-D matrix M as rank-r factors P (rows x r) and Q
// (cols x r), 4 r (rows + cols) bytes per matrix; vectors go dense. Linear in P and Q, so
// they are all-reduced; it runs at the top level only, which must hold whole matrices.
#include <algorithm>
#include <chrono>
#include <cmath>

#include <fmt/format.h>

#include "comm/codec.h"
#include "comm/rng.h"

namespace ft {
namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

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

// The state of one (tier, bucket): a warm-started Q per matrix, and the residual.
class PowerSgd final : public Codec {
 public:
  explicit PowerSgd(const CodecSpec& s)
      : Codec(s), rank_(static_cast<int>(s.param("rank"))), start_(static_cast<int>(s.param("start"))),
        feedback_(s.feedback, s.decay) {}
  void all_reduce(Buffer region, TierRing& ring, const std::vector<Matrix>& tensors) override;
  // P, the vectors, then Q, each reduce-scattered and all-gathered in fp32.
  std::vector<RingPhase> phases(std::size_t n, int, const std::vector<Matrix>& tensors) const override {
    const Layout l = layout(n, tensors);
    std::vector<RingPhase> out;
    for (std::size_t count : {l.psize, l.vsize, l.qsize}) {
      out.push_back({count, &fp32_wire(), true});
      out.push_back({count, &fp32_wire(), false});
    }
    return out;
  }
  // Per matrix: M Q, M^T P and the output's P Q^T, and with residual feedback the residual's
  // P Q^T, each rows x cols x rank; the vectors are only copied.
  double work(std::size_t n, int, const std::vector<Matrix>& tensors) const override {
    const Layout l = layout(n, tensors);
    const double products = spec().feedback == Feedback::residual ? 4 : 3;
    double w = static_cast<double>(l.vsize);
    for (std::size_t i = 0; i < l.mats.size(); ++i)
      w += products * static_cast<double>(l.mats[i]->rows * l.mats[i]->cols * l.ranks[i]);
    return w;
  }

  std::vector<std::pair<std::string, std::vector<float>*>> state() override {
    std::vector<std::pair<std::string, std::vector<float>*>> out{{"residual", &feedback_.residual()}};
    for (std::size_t i = 0; i < q_.size(); ++i) out.emplace_back(fmt::format("q{}", i), &q_[i]);
    return out;
  }
  bool restore(const std::string& what, std::vector<float> values) override {
    if (Codec::restore(what, values)) return true;
    if (what.size() < 2 || what[0] != 'q' || what.find_first_not_of("0123456789", 1) != std::string::npos) return false;
    std::size_t i = std::stoul(what.substr(1));
    if (q_.size() <= i) q_.resize(i + 1);
    q_[i] = std::move(values);
    return true;
  }

 private:
  // A region's matrices (with their ranks) and the spans between them, which go dense; the
  // sizes of the packed P, Q and vectors.
  struct Layout {
    std::vector<const Matrix*> mats;
    std::vector<std::size_t> ranks;
    std::vector<std::pair<std::size_t, std::size_t>> vecs;  // (offset, count)
    std::size_t psize = 0, qsize = 0, vsize = 0;
    double dense_elems = 0, factor_elems = 0;
  };
  Layout layout(std::size_t n, const std::vector<Matrix>& tensors) const {
    Layout l;
    for (const Matrix& m : tensors)
      if (m.cols > 0 && m.rows > 0) l.mats.push_back(&m);
    std::size_t at = 0;
    std::vector<std::pair<std::size_t, std::size_t>> spans;
    for (const Matrix* m : l.mats) spans.emplace_back(m->offset, m->rows * m->cols);
    std::sort(spans.begin(), spans.end());
    for (auto [off, len] : spans) {
      if (off > at) l.vecs.emplace_back(at, off - at);
      at = off + len;
    }
    if (at < n) l.vecs.emplace_back(at, n - at);
    for (const Matrix* m : l.mats) {
      std::size_t r = std::min<std::size_t>(static_cast<std::size_t>(rank_), std::min(m->rows, m->cols));
      l.ranks.push_back(r);
      l.psize += m->rows * r;
      l.qsize += m->cols * r;
      l.dense_elems += static_cast<double>(m->rows * m->cols);
      l.factor_elems += static_cast<double>(r * (m->rows + m->cols));
    }
    for (auto [off, len] : l.vecs) l.vsize += len;
    return l;
  }

  // Q of matrix i (cols x r, row-major), created from the seed on first use: the same on
  // every rank, so every rank's P = M Q is in the same basis.
  std::vector<float>& q(std::size_t i, const Matrix& m) {
    if (q_.size() <= i) q_.resize(i + 1);
    std::vector<float>& q = q_[i];
    const std::size_t r = std::min<std::size_t>(static_cast<std::size_t>(rank_), std::min(m.rows, m.cols));
    if (q.size() != m.cols * r) {
      q.resize(m.cols * r);
      // Counter-based normal draws: every rank starts from the same Q.
      for (std::size_t j = 0; j < q.size(); ++j) {
        const std::uint64_t z = rng::mix((spec().seed - 1) * 0x9e3779b97f4a7c15ull + (i << 32) + j);
        double u1 = (static_cast<double>(z >> 11) + 0.5) * 0x1.0p-53;
        double u2 = (static_cast<double>((z * 0x2545f4914f6cdd1dull) >> 11) + 0.5) * 0x1.0p-53;
        q[j] = static_cast<float>(std::sqrt(-2 * std::log(u1)) * std::cos(6.283185307179586 * u2));
      }
    }
    return q;
  }

  int rank_, start_;
  int steps_ = 0;  // steps taken, for `start`
  std::vector<std::vector<float>> q_;
  ErrorFeedback feedback_;
};

}  // namespace

// For each matrix M (with its residual added): P = M Q, all-reduce P, orthonormalise,
// Q = M^T P, all-reduce Q; the sum of every rank's M is approximated by P Q^T, and
// M - P Q_local^T stays as residual. All P's, Q's and vectors travel as three packed
// all-reduces.
void PowerSgd::all_reduce(Buffer region, TierRing& ring, const std::vector<Matrix>& tensors) {
  if (steps_++ < start_) {  // dense for the first `start` steps
    ring.reduce_scatter(region, Wire{});
    ring.all_gather(region, Wire{});
    return;
  }
  // PowerSGD's small products run on the host; device data makes a round trip.
  std::vector<float> host(region.count);
  ring.copy(host.data(), region.data, region.bytes(), region.device);
  float* x = host.data();
  double c0 = now();
  const Layout l = layout(region.count, tensors);
  const auto& mats = l.mats;
  const auto& ranks = l.ranks;
  const auto& vecs = l.vecs;
  feedback_.add_to(x, region.count);
  std::vector<float> sent;  // what this rank's part of P Q^T carries; the vectors go whole
  if (feedback_.on()) sent.assign(x, x + region.count);
  std::vector<float> P(l.psize), Q(l.qsize), V(l.vsize);
  std::size_t pa = 0;
  for (std::size_t i = 0; i < mats.size(); ++i) {
    const Matrix& m = *mats[i];
    float* M = x + m.offset;
    mul(M, q(i, m).data(), P.data() + pa, m.rows, m.cols, ranks[i]);
    pa += m.rows * ranks[i];
  }
  std::size_t va = 0;
  for (auto [off, len] : vecs) {
    std::copy(x + off, x + off + len, V.data() + va);
    va += len;
  }
  ring.codec_time(now() - c0);
  const Wire factors{nullptr, l.factor_elems > 0 ? l.dense_elems / l.factor_elems : 1.0};
  auto all_reduce_host = [&](std::vector<float>& v, Wire w) {
    Buffer b = ring.scratch(v.size() * sizeof(float), DType::f32);
    b.count = v.size();
    ring.copy(b.data, v.data(), v.size() * sizeof(float), b.device);
    ring.reduce_scatter(b, w);
    ring.all_gather(b, w);
    ring.copy(v.data(), b.data, v.size() * sizeof(float), b.device);
  };
  all_reduce_host(P, factors);
  all_reduce_host(V, Wire{});
  c0 = now();
  std::size_t qa = 0;
  pa = 0;
  for (std::size_t i = 0; i < mats.size(); ++i) {
    const Matrix& m = *mats[i];
    orthonormalize(P.data() + pa, m.rows, ranks[i]);
    mul_t(x + m.offset, P.data() + pa, Q.data() + qa, m.rows, m.cols, ranks[i]);
    if (feedback_.on())  // this rank's part of P Q^T
      for (std::size_t a = 0; a < m.rows; ++a)
        for (std::size_t b = 0; b < m.cols; ++b) {
          float s = 0;
          for (std::size_t c = 0; c < ranks[i]; ++c) s += P[pa + a * ranks[i] + c] * Q[qa + b * ranks[i] + c];
          sent[m.offset + a * m.cols + b] = s;
        }
    pa += m.rows * ranks[i];
    qa += m.cols * ranks[i];
  }
  feedback_.keep(x, sent.data(), sent.size());
  ring.codec_time(now() - c0);
  all_reduce_host(Q, factors);
  c0 = now();
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
    std::vector<float>& warm = q(i, m);  // the summed Q warm-starts the next step
    std::copy(Q.begin() + static_cast<std::ptrdiff_t>(qa), Q.begin() + static_cast<std::ptrdiff_t>(qa + m.cols * r), warm.begin());
    pa += m.rows * r;
    qa += m.cols * r;
  }
  va = 0;
  for (auto [off, len] : vecs) {
    std::copy(V.data() + va, V.data() + va + len, x + off);
    va += len;
  }
  ring.codec_time(now() - c0);
  ring.copy(region.data, host.data(), region.bytes(), region.device);
}


void orthonormalize(float* p, std::size_t rows, std::size_t r) {
  for (std::size_t c = 0; c < r; ++c) {
    for (std::size_t prev = 0; prev < c; ++prev) {
      double dot = 0;
      for (std::size_t i = 0; i < rows; ++i) dot += static_cast<double>(p[i * r + c]) * p[i * r + prev];
      for (std::size_t i = 0; i < rows; ++i) p[i * r + c] -= static_cast<float>(dot) * p[i * r + prev];
    }
    double norm = 0;
    for (std::size_t i = 0; i < rows; ++i) norm += static_cast<double>(p[i * r + c]) * p[i * r + c];
    norm = std::sqrt(norm);
    float inv = norm > 1e-20 ? static_cast<float>(1.0 / norm) : 0.0f;
    for (std::size_t i = 0; i < rows; ++i) p[i * r + c] *= inv;
  }
}


CodecInfo powersgd_codec() {
  return {"powersgd", "rank-r factors of each matrix; vectors dense",
          {{"rank", "rank of the approximation", 4, 1, 1 << 16},
           {"start", "steps of dense sync before compressing", 0, 0, 1 << 30}},
          false, "the host",
          [](const CodecSpec& s) -> std::unique_ptr<Codec> { return std::make_unique<PowerSgd>(s); }, true};
}

}  // namespace ft
