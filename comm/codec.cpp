#include "comm/codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <stdexcept>

#include "comm/error.h"

namespace ft {

std::string_view codec_name(CodecKind k) {
  switch (k) {
    case CodecKind::none: return "none";
    case CodecKind::fp16: return "fp16";
    case CodecKind::bf16: return "bf16";
    case CodecKind::int8: return "int8";
    case CodecKind::topk: return "topk";
    case CodecKind::sign: return "sign";
    case CodecKind::powersgd: return "powersgd";
  }
  return "?";
}

std::optional<CodecKind> codec_from_name(std::string_view name) {
  for (CodecKind k : {CodecKind::none, CodecKind::fp16, CodecKind::bf16, CodecKind::int8, CodecKind::topk,
                      CodecKind::sign, CodecKind::powersgd})
    if (codec_name(k) == name) return k;
  return std::nullopt;
}

namespace {
std::uint32_t bits_of(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}
float float_of(std::uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}
}  // namespace

std::uint16_t to_bf16(float x) {
  std::uint32_t u = bits_of(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
  return static_cast<std::uint16_t>(u >> 16);
}

float from_bf16(std::uint16_t h) { return float_of(static_cast<std::uint32_t>(h) << 16); }

std::uint16_t to_fp16(float x, std::uint64_t* clamped) {
  const std::uint32_t u = bits_of(x);
  const std::uint32_t sign = (u >> 16) & 0x8000u;
  const std::uint32_t a = u & 0x7fffffffu;
  if (a >= 0x7f800000u) return static_cast<std::uint16_t>(sign | (a > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (a >= 0x477ff000u) {  // rounds to 65520 or more: beyond half's range
    if (clamped) ++*clamped;
    return static_cast<std::uint16_t>(sign | 0x7bffu);  // 65504
  }
  if (a >= 0x38800000u) {  // half normal: rebias the exponent, round the 13 dropped bits
    std::uint32_t h = ((((a >> 23) - 127 + 15) << 10) | ((a & 0x7fffffu) >> 13));
    std::uint32_t rest = a & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // a carry moves into the exponent correctly
    return static_cast<std::uint16_t>(sign | h);
  }
  // Half subnormal: multiples of 2^-24, rounded to nearest even (the default FP mode).
  auto h = static_cast<std::uint32_t>(std::nearbyint(float_of(a) * 16777216.0f));
  return static_cast<std::uint16_t>(sign | h);
}

float from_fp16(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0) {
    float v = static_cast<float>(mant) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  if (exp == 31) return float_of(sign | 0x7f800000u | (mant << 13));
  return float_of(sign | ((exp - 15 + 127) << 23) | (mant << 13));
}

namespace {

std::size_t blocks(std::size_t n, int block) { return (n + static_cast<std::size_t>(block) - 1) / static_cast<std::size_t>(block); }

std::size_t topk_count(const CodecSpec& s, std::size_t n) {
  if (n == 0) return 0;
  if (s.count > 0) return std::min<std::size_t>(static_cast<std::size_t>(s.count), n);
  auto k = static_cast<std::size_t>(std::llround(s.ratio * static_cast<double>(n)));
  return std::clamp<std::size_t>(k, 1, n);
}

// The power of two at least amax / 127, so that every |x| / scale <= 127; powers of two keep
// integers (and short binary fractions) exact.
float int8_scale(float amax) {
  if (!(amax > 0)) return 0.0f;
  int e = 0;
  std::frexp(amax / 127.0f, &e);  // amax/127 = f * 2^e with f in [0.5, 1)
  float s = std::ldexp(1.0f, e);
  if (s / 2 >= amax / 127.0f) s /= 2;
  return s;
}

}  // namespace

std::size_t ElementCodec::payload_bytes(std::size_t n) const {
  switch (spec_.kind) {
    case CodecKind::none: return 4 * n;
    case CodecKind::fp16:
    case CodecKind::bf16: return 2 * n;
    case CodecKind::int8: return n + 4 * blocks(n, spec_.block);
    case CodecKind::topk: return 8 * topk_count(spec_, n);
    case CodecKind::sign: return (n + 7) / 8 + 4 * blocks(n, spec_.block);
    case CodecKind::powersgd: break;
  }
  throw std::logic_error("payload_bytes: powersgd is not an element codec");
}

void ElementCodec::add_residual(const float* x, std::size_t n, std::vector<float>& work) {
  work.assign(x, x + n);
  if (!spec_.error_feedback) return;
  if (residual_.size() != n) residual_.assign(n, 0.0f);
  for (std::size_t i = 0; i < n; ++i) work[i] += residual_[i];
}

void ElementCodec::encode(const float* x, std::size_t n, std::vector<std::uint8_t>& payload) {
  std::vector<float> work;
  add_residual(x, n, work);
  payload.assign(payload_bytes(n), 0);
  std::uint8_t* p = payload.data();
  switch (spec_.kind) {
    case CodecKind::none: std::memcpy(p, work.data(), 4 * n); break;
    case CodecKind::fp16:
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t h = to_fp16(work[i], &clamped_);
        std::memcpy(p + 2 * i, &h, 2);
      }
      break;
    case CodecKind::bf16:
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t h = to_bf16(work[i]);
        std::memcpy(p + 2 * i, &h, 2);
      }
      break;
    case CodecKind::int8: {
      const std::size_t nb = blocks(n, spec_.block), B = static_cast<std::size_t>(spec_.block);
      auto* q = reinterpret_cast<std::int8_t*>(p + 4 * nb);
      for (std::size_t b = 0; b < nb; ++b) {
        std::size_t lo = b * B, hi = std::min(n, lo + B);
        float amax = 0;
        for (std::size_t i = lo; i < hi; ++i) amax = std::max(amax, std::abs(work[i]));
        float s = int8_scale(amax);
        std::memcpy(p + 4 * b, &s, 4);
        for (std::size_t i = lo; i < hi; ++i)
          q[i] = s > 0 ? static_cast<std::int8_t>(std::clamp(std::nearbyint(work[i] / s), -127.0f, 127.0f)) : 0;
      }
      break;
    }
    case CodecKind::topk: {
      const std::size_t k = topk_count(spec_, n);
      std::vector<std::uint32_t> idx(n);
      std::iota(idx.begin(), idx.end(), 0u);
      // Largest magnitudes first; ties go to the lower index, so every rank picks alike.
      auto larger = [&](std::uint32_t a, std::uint32_t b) {
        float fa = std::abs(work[a]), fb = std::abs(work[b]);
        return fa > fb || (fa == fb && a < b);
      };
      std::nth_element(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(k), idx.end(), larger);
      std::sort(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(k));
      for (std::size_t j = 0; j < k; ++j) {
        std::memcpy(p + 8 * j, &idx[j], 4);
        std::memcpy(p + 8 * j + 4, &work[idx[j]], 4);
      }
      break;
    }
    case CodecKind::sign: {
      const std::size_t nb = blocks(n, spec_.block), B = static_cast<std::size_t>(spec_.block);
      std::uint8_t* bits = p + 4 * nb;
      for (std::size_t b = 0; b < nb; ++b) {
        std::size_t lo = b * B, hi = std::min(n, lo + B);
        double l1 = 0;
        for (std::size_t i = lo; i < hi; ++i) l1 += std::abs(work[i]);
        float s = static_cast<float>(l1 / static_cast<double>(hi - lo));
        std::memcpy(p + 4 * b, &s, 4);
        for (std::size_t i = lo; i < hi; ++i)
          if (work[i] >= 0) bits[i / 8] = static_cast<std::uint8_t>(bits[i / 8] | (1u << (i % 8)));
      }
      break;
    }
    case CodecKind::powersgd: throw std::logic_error("encode: powersgd is not an element codec");
  }
  if (spec_.error_feedback && spec_.lossy()) {
    std::vector<float> sent(n, 0.0f);
    decode_add(p, n, sent.data());
    for (std::size_t i = 0; i < n; ++i) residual_[i] = work[i] - sent[i];
  }
}

void ElementCodec::decode_add(const std::uint8_t* p, std::size_t n, float* out) const {
  switch (spec_.kind) {
    case CodecKind::none:
      for (std::size_t i = 0; i < n; ++i) {
        float v;
        std::memcpy(&v, p + 4 * i, 4);
        out[i] += v;
      }
      return;
    case CodecKind::fp16:
    case CodecKind::bf16:
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] += spec_.kind == CodecKind::fp16 ? from_fp16(h) : from_bf16(h);
      }
      return;
    case CodecKind::int8: {
      const std::size_t nb = blocks(n, spec_.block), B = static_cast<std::size_t>(spec_.block);
      const auto* q = reinterpret_cast<const std::int8_t*>(p + 4 * nb);
      for (std::size_t b = 0; b < nb; ++b) {
        float s;
        std::memcpy(&s, p + 4 * b, 4);
        for (std::size_t i = b * B; i < std::min(n, (b + 1) * B); ++i) out[i] += static_cast<float>(q[i]) * s;
      }
      return;
    }
    case CodecKind::topk: {
      const std::size_t k = topk_count(spec_, n);
      for (std::size_t j = 0; j < k; ++j) {
        std::uint32_t i;
        float v;
        std::memcpy(&i, p + 8 * j, 4);
        std::memcpy(&v, p + 8 * j + 4, 4);
        out[i] += v;
      }
      return;
    }
    case CodecKind::sign: {
      const std::size_t nb = blocks(n, spec_.block), B = static_cast<std::size_t>(spec_.block);
      const std::uint8_t* bits = p + 4 * nb;
      for (std::size_t b = 0; b < nb; ++b) {
        float s;
        std::memcpy(&s, p + 4 * b, 4);
        for (std::size_t i = b * B; i < std::min(n, (b + 1) * B); ++i) out[i] += (bits[i / 8] >> (i % 8)) & 1u ? s : -s;
      }
      return;
    }
    case CodecKind::powersgd: break;
  }
  throw std::logic_error("decode_add: powersgd is not an element codec");
}

void ElementCodec::round_in_place(float* x, std::size_t n) {
  std::vector<float> work;
  add_residual(x, n, work);
  for (std::size_t i = 0; i < n; ++i) {
    float y = spec_.kind == CodecKind::fp16 ? from_fp16(to_fp16(work[i], &clamped_)) : from_bf16(to_bf16(work[i]));
    if (spec_.error_feedback) residual_[i] = work[i] - y;
    x[i] = y;
  }
}

std::vector<float>& PowerSgdState::q(std::size_t i, const Matrix& m) {
  if (q_.size() <= i) q_.resize(i + 1);
  std::vector<float>& q = q_[i];
  const std::size_t r = std::min<std::size_t>(static_cast<std::size_t>(spec_.rank), std::min(m.rows, m.cols));
  if (q.size() != m.cols * r) {
    q.resize(m.cols * r);
    // Counter-based normal draws: every rank starts from the same Q.
    for (std::size_t j = 0; j < q.size(); ++j) {
      std::uint64_t z = spec_.seed * 0x9e3779b97f4a7c15ull + (i << 32) + j;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      z ^= z >> 31;
      double u1 = (static_cast<double>(z >> 11) + 0.5) * 0x1.0p-53;
      double u2 = (static_cast<double>((z * 0x2545f4914f6cdd1dull) >> 11) + 0.5) * 0x1.0p-53;
      q[j] = static_cast<float>(std::sqrt(-2 * std::log(u1)) * std::cos(6.283185307179586 * u2));
    }
  }
  return q;
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

}  // namespace ft
