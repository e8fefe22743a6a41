// Codecs: 16-bit rounding, exact wire sizes, round-trip error within each codec's bound,
// and error feedback's conservation of mass.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>

#include "comm/codec.h"

namespace ft {
namespace {

std::vector<float> random_data(std::size_t n, std::uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// A codec's spec with its defaults, and a fresh instance of an element-wise one.
CodecSpec spec(const char* name) { return default_spec(name); }
std::unique_ptr<ElementCodec> element(const CodecSpec& s) {
  return std::unique_ptr<ElementCodec>(dynamic_cast<ElementCodec*>(make_codec(s).release()));
}

TEST(Codecs, Fp16RoundsToNearestEvenAndClampsCountingOverflow) {
  EXPECT_EQ(from_fp16(to_fp16(1.0f + 0x1.0p-11f)), 1.0f);                   // tie -> even (down)
  EXPECT_EQ(from_fp16(to_fp16(1.0f + 3 * 0x1.0p-11f)), 1.0f + 0x1.0p-9f);   // tie -> even (up)
  EXPECT_EQ(from_fp16(to_fp16(1.0f + 0x1.2p-11f)), 1.0f + 0x1.0p-10f);      // above the tie
  EXPECT_EQ(from_fp16(to_fp16(0x1.0p-24f)), 0x1.0p-24f);                    // smallest subnormal
  EXPECT_EQ(from_fp16(to_fp16(0x1.8p-25f)), 0x1.0p-24f);                    // rounds up into it
  EXPECT_EQ(from_fp16(to_fp16(-2.5f)), -2.5f);
  EXPECT_EQ(from_fp16(to_fp16(65504.0f)), 65504.0f);
  std::uint64_t clamped = 0;
  EXPECT_EQ(from_fp16(to_fp16(1e6f, &clamped)), 65504.0f);
  EXPECT_EQ(from_fp16(to_fp16(-70000.0f, &clamped)), -65504.0f);
  EXPECT_EQ(clamped, 2u);
  EXPECT_TRUE(std::isinf(from_fp16(to_fp16(std::numeric_limits<float>::infinity()))));
  EXPECT_TRUE(std::isnan(from_fp16(to_fp16(std::numeric_limits<float>::quiet_NaN()))));
  // Every half value survives a round trip.
  for (std::uint32_t h = 0; h < 0x7c00; ++h) EXPECT_EQ(to_fp16(from_fp16(static_cast<std::uint16_t>(h))), h);
}

TEST(Codecs, Bf16RoundsToNearestEven) {
  EXPECT_EQ(from_bf16(to_bf16(1.0f + 0x1.0p-8f)), 1.0f);                   // tie -> even
  EXPECT_EQ(from_bf16(to_bf16(1.0f + 3 * 0x1.0p-8f)), 1.0f + 0x1.0p-6f);
  EXPECT_EQ(from_bf16(to_bf16(-3.0f)), -3.0f);
  EXPECT_TRUE(std::isnan(from_bf16(to_bf16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST(Codecs, WireSizesAreExact) {
  for (std::size_t n : {1u, 7u, 256u, 1000u, 4099u}) {
    std::vector<float> x = random_data(n, n);
    std::vector<std::uint8_t> payload;
    CodecSpec topk = spec("topk");
    topk.params["ratio"] = 0.1;
    CodecSpec int8 = spec("int8");
    int8.params["block"] = 64;
    CodecSpec int4 = spec("int4");
    int4.params["block"] = 64;
    CodecSpec fp8 = spec("fp8");
    fp8.params["block"] = 64;
    CodecSpec sparse = spec("sparseloco");
    sparse.params["chunk"] = 100;  // 7 index bits
    sparse.params["k"] = 7;
    std::size_t sparse_bytes = 0;
    for (std::size_t lo = 0; lo < n; lo += 100) sparse_bytes += 4 + (std::min<std::size_t>(7, n - lo) * 9 + 7) / 8;
    CodecSpec demo = spec("demo");  // chunks of 128 (7 index bits), 2 coefficients each
    std::size_t demo_bytes = 0;
    for (std::size_t lo = 0; lo < n; lo += 128) {
      const std::size_t k = std::min<std::size_t>(2, n - lo);
      demo_bytes += 4 * k + (7 * k + 7) / 8;
    }
    const std::size_t k = std::max<std::size_t>(1, static_cast<std::size_t>(std::llround(0.1 * static_cast<double>(n))));
    struct Case {
      CodecSpec s;
      std::size_t bytes;
    } cases[] = {{spec("none"), 4 * n},
                 {spec("fp16"), 2 * n},
                 {spec("bf16"), 2 * n},
                 {int8, n + 4 * ((n + 63) / 64)},
                 {int4, (n + 1) / 2 + 4 * ((n + 63) / 64)},
                 {fp8, n + 4 * ((n + 63) / 64)},
                 {sparse, sparse_bytes},
                 {demo, demo_bytes},
                 {topk, 8 * k},
                 {spec("sign"), (n + 7) / 8 + 4 * ((n + 255) / 256)}};
    for (auto& c : cases) {
      auto codec = element(c.s);
      codec->encode(x.data(), n, payload);
      EXPECT_EQ(payload.size(), c.bytes) << c.s.name << " n=" << n;
      EXPECT_EQ(codec->payload_bytes(n), c.bytes);
    }
  }
}

// Per element: fp16 and bf16 are within half an ulp (2^-11, 2^-8 relative); int8 within
// half its power-of-two step, which is at most 2 amax / 127 of its block; int4 within half
// its step, amax / 14; fp8 (e4m3) within half an ulp, 2^-4 relative, or half its
// subnormal step, 2^-10 of a scale at most 2 amax / 448.
TEST(Codecs, RoundTripErrorIsWithinEachCodecsBound) {
  const std::size_t n = 5000;
  std::vector<float> x = random_data(n, 3, 4.0f);
  for (std::string k : {"fp16", "bf16", "int8", "int4", "fp8"}) {
    CodecSpec s = spec(k.c_str());
    s.feedback = Feedback::none;
    if (k == "int8" || k == "int4" || k == "fp8") s.params["block"] = 100;
    auto codec = element(s);
    std::vector<std::uint8_t> payload;
    codec->encode(x.data(), n, payload);
    std::vector<float> y(n, 0.0f);
    codec->decode_add(payload.data(), n, y.data());
    for (std::size_t b = 0; b < n; b += 100) {
      float amax = 0;
      for (std::size_t i = b; i < b + 100; ++i) amax = std::max(amax, std::abs(x[i]));
      for (std::size_t i = b; i < b + 100; ++i) {
        float bound = k == "fp16" ? std::abs(x[i]) * 0x1.0p-11f + 0x1.0p-25f
                      : k == "bf16" ? std::abs(x[i]) * 0x1.0p-8f
                      : k == "int8" ? amax / 127.0f
                      : k == "int4" ? amax / 14.0f * (1 + 0x1.0p-20f)
                                    : std::abs(x[i]) * 0x1.0p-4f + amax / 448.0f * 0x1.0p-9f;  // e4m3: half an ulp; the subnormals' half step
        ASSERT_LE(std::abs(y[i] - x[i]), bound) << k << " at " << i;
      }
    }
  }
}

TEST(Codecs, TopkKeepsTheLargestAndSignKeepsSignsAtTheMeanMagnitude) {
  std::vector<float> x = {0.1f, -5.0f, 2.0f, 0.0f, -0.3f, 4.0f};
  CodecSpec t = spec("topk");
  t.params["count"] = 3;
  t.feedback = Feedback::none;
  auto topk = element(t);
  std::vector<std::uint8_t> payload;
  topk->encode(x.data(), x.size(), payload);
  std::vector<float> y(x.size(), 0.0f);
  topk->decode_add(payload.data(), x.size(), y.data());
  EXPECT_EQ(y, (std::vector<float>{0, -5.0f, 2.0f, 0, 0, 4.0f}));

  CodecSpec s = spec("sign");
  s.params["block"] = 3;
  s.feedback = Feedback::none;
  auto sign = element(s);
  sign->encode(x.data(), x.size(), payload);
  std::fill(y.begin(), y.end(), 0.0f);
  sign->decode_add(payload.data(), x.size(), y.data());
  float m1 = (0.1f + 5.0f + 2.0f) / 3, m2 = (0.0f + 0.3f + 4.0f) / 3;
  EXPECT_FLOAT_EQ(y[0], m1);
  EXPECT_FLOAT_EQ(y[1], -m1);
  EXPECT_FLOAT_EQ(y[3], m2);  // zero counts as positive
  EXPECT_FLOAT_EQ(y[4], -m2);
}

TEST(Codecs, Int8OnIntegersAndTopkOfEverythingAreExact) {
  std::vector<float> x(1000);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(static_cast<int>(i * 37 % 255) - 127);
  x[5] = 3;  // a block whose largest magnitude is small still needs no rounding
  for (std::size_t i = 256; i < 512; ++i) x[i] = static_cast<float>(static_cast<int>(i % 11) - 5);
  CodecSpec i8 = spec("int8");
  CodecSpec all = spec("topk");
  all.params["ratio"] = 1.0;
  for (const CodecSpec& s : {i8, all}) {
    auto codec = element(s);
    std::vector<std::uint8_t> payload;
    codec->encode(x.data(), x.size(), payload);
    std::vector<float> y(x.size(), 0.0f);
    codec->decode_add(payload.data(), x.size(), y.data());
    EXPECT_EQ(y, x) << s.name;
    for (float r : codec->residual()) EXPECT_EQ(r, 0.0f);
  }
}

// After k steps with error feedback: sum of decoded transmissions + residual = sum of the
// inputs, up to fp32 rounding of the running sums.
TEST(Codecs, ErrorFeedbackConservesMass) {
  const std::size_t n = 2000;
  for (std::string k : {"fp16", "bf16", "int8", "int4", "fp8", "topk", "sign", "sparseloco", "demo"}) {
    CodecSpec s = spec(k.c_str());
    if (k == "topk") s.params["ratio"] = 0.05;
    s.decay = 1;  // all of it kept
    auto codec = element(s);
    std::vector<double> inputs(n, 0.0), sent(n, 0.0);
    std::vector<std::uint8_t> payload;
    for (int step = 0; step < 20; ++step) {
      std::vector<float> x = random_data(n, 100 + static_cast<std::uint64_t>(step));
      for (std::size_t i = 0; i < n; ++i) inputs[i] += x[i];
      std::vector<float> y(n, 0.0f);
      if (codec->rings(4)) {  // as the ring rounds its input first
        codec->round_in_place(x.data(), n);
        y = x;
      } else {
        codec->encode(x.data(), n, payload);
        codec->decode_add(payload.data(), n, y.data());
      }
      for (std::size_t i = 0; i < n; ++i) sent[i] += y[i];
    }
    double worst = 0;
    for (std::size_t i = 0; i < n; ++i)
      worst = std::max(worst, std::abs(sent[i] + codec->residual()[i] - inputs[i]));
    EXPECT_LT(worst, 1e-4) << k;  // 20 steps of O(1) values: fp32 rounding ~1e-6 each
  }
}

// Feedback by difference: the reference is exactly the running sum of what was sent, and
// on a constant input it converges to it, because each payload quantises what is left
// with a scale of that remainder.
TEST(Codecs, DifferenceFeedbackTracksItsInput) {
  const std::size_t n = 1000;
  for (std::string k : {"int8", "int4", "topk", "sign"}) {
    CodecSpec s = spec(k.c_str());
    s.feedback = Feedback::difference;
    if (k == "topk") s.params["ratio"] = 0.25;
    auto codec = element(s);
    std::vector<float> x = random_data(n, 7), sent(n, 0.0f);
    std::vector<std::uint8_t> payload;
    double first = 0, last = 0;
    for (int step = 0; step < 30; ++step) {
      codec->encode(x.data(), n, payload);
      codec->decode_add(payload.data(), n, sent.data());
      double err = 0;  // rms
      for (std::size_t i = 0; i < n; ++i) err += std::pow(static_cast<double>(codec->reference()[i]) - x[i], 2);
      (step == 0 ? first : last) = std::sqrt(err / n);
    }
    EXPECT_EQ(sent, codec->reference()) << k;
    EXPECT_TRUE(codec->residual().empty()) << k << ": no residual is kept";
    EXPECT_LT(last, first * 0.1) << k;
    if (k != "sign") {  // sign shrinks its step only as its mean remainder shrinks
      EXPECT_LT(last, 1e-5) << k;
    }
  }
  CodecSpec cast = spec("fp16");
  cast.feedback = Feedback::difference;
  EXPECT_THROW(make_codec(cast), std::invalid_argument);
}

// fp8 rounds to nearest even within its format; a block whose largest value is the
// format's largest takes scale 1.
TEST(Codecs, Fp8RoundsToNearestEvenInE4m3AndE5m2) {
  struct Case {
    int exponent;
    std::vector<float> in, out;
  } cases[] = {
      // e4m3: 3 mantissa bits, largest 448, smallest subnormal 2^-9.
      {4,
       {448.0f, 1.0f, 1.0625f, 1.1875f, 0x1.0p-9f, 0x1.8p-9f, -3.5f, 0.0f},
       {448.0f, 1.0f, 1.0f, 1.25f, 0x1.0p-9f, 0x1.0p-8f, -3.5f, 0.0f}},
      // e5m2: 2 mantissa bits, largest 57344, smallest subnormal 2^-16.
      {5, {57344.0f, 1.125f, 1.375f, 0x1.0p-16f, -6.0f}, {57344.0f, 1.0f, 1.5f, 0x1.0p-16f, -6.0f}},
  };
  for (const Case& c : cases) {
    CodecSpec s = spec("fp8");
    s.params["exponent"] = c.exponent;
    s.feedback = Feedback::none;
    auto codec = element(s);
    std::vector<std::uint8_t> payload;
    codec->encode(c.in.data(), c.in.size(), payload);
    std::vector<float> y(c.in.size(), 0.0f);
    codec->decode_add(payload.data(), y.size(), y.data());
    EXPECT_EQ(y, c.out) << "e" << c.exponent;
  }
}

// SparseLoCo: per chunk the top k, at (j + 1) / 2^(bits-1) of the chunk's largest kept |x|.
TEST(Codecs, SparseLoCoKeepsTheTopKPerChunkOnTwoBitLevels) {
  CodecSpec s = spec("sparseloco");
  s.params["chunk"] = 8;
  s.params["k"] = 2;
  s.feedback = Feedback::none;
  auto codec = element(s);
  std::vector<float> x = {0.1f, -4.0f, 0.2f, 3.0f, 0.0f, 0.0f, 0.0f, 0.5f, 1.0f, -0.5f, 0.25f};
  std::vector<std::uint8_t> payload;
  codec->encode(x.data(), x.size(), payload);
  EXPECT_EQ(payload.size(), 12u);  // per chunk: a 4-byte scale and 2 x (3 index + 2 value) bits
  std::vector<float> y(x.size(), 0.0f);
  codec->decode_add(payload.data(), y.size(), y.data());
  EXPECT_EQ(y, (std::vector<float>{0, -4.0f, 0, 4.0f, 0, 0, 0, 0, 1.0f, -0.5f, 0}));
}

// Residual feedback with a decay adds decay x the residual to the next input.
TEST(Codecs, ErrorFeedbackDecays) {
  const std::size_t n = 500;
  CodecSpec s = spec("sparseloco");
  EXPECT_DOUBLE_EQ(s.decay, 0.95);  // its default
  s.decay = 0.5;
  auto codec = element(s);
  std::vector<std::uint8_t> payload;
  std::vector<float> x1 = random_data(n, 21), x2 = random_data(n, 22);
  codec->encode(x1.data(), n, payload);
  const std::vector<float> r1 = codec->residual();
  codec->encode(x2.data(), n, payload);
  std::vector<float> sent(n, 0.0f);
  codec->decode_add(payload.data(), n, sent.data());
  for (std::size_t i = 0; i < n; ++i) ASSERT_FLOAT_EQ(codec->residual()[i] + sent[i], x2[i] + 0.5f * r1[i]) << i;
}

// DeMo: a chunk made of its k strongest DCT components is sent whole and leaves no
// momentum; what is not sent stays, decayed into the next step's momentum.
TEST(Codecs, DemoSendsTheStrongestDctComponentsAndKeepsTheRestAsMomentum) {
  const std::size_t C = 16;
  CodecSpec s = spec("demo");
  s.params["dct"] = C;
  s.params["coefficients"] = 2;
  s.decay = 0.5;
  auto codec = element(s);
  auto basis = [&](std::size_t f, std::size_t i) {
    return std::sqrt((f == 0 ? 1.0 : 2.0) / C) * std::cos(M_PI * (static_cast<double>(i) + 0.5) * f / C);
  };
  std::vector<float> x(C), weak(C);
  for (std::size_t i = 0; i < C; ++i) {
    x[i] = static_cast<float>(3 * basis(1, i) - 2 * basis(5, i));
    weak[i] = static_cast<float>(0.1 * basis(9, i));
  }
  std::vector<std::uint8_t> payload;
  codec->encode(x.data(), C, payload);
  EXPECT_EQ(payload.size(), 2u * 4 + 1);  // two fp32 values, two 4-bit indices
  std::vector<float> y(C, 0.0f);
  codec->decode_add(payload.data(), C, y.data());
  for (std::size_t i = 0; i < C; ++i) {
    EXPECT_NEAR(y[i], x[i], 1e-5) << i;
    EXPECT_NEAR(codec->residual()[i], 0.0f, 1e-5) << i;
  }
  // The weak component alongside two strong ones: it stays in the momentum, and the next
  // step's momentum is the new gradient plus half of it.
  std::vector<float> both(C);
  for (std::size_t i = 0; i < C; ++i) both[i] = x[i] + weak[i];
  codec->encode(both.data(), C, payload);
  for (std::size_t i = 0; i < C; ++i) EXPECT_NEAR(codec->residual()[i], weak[i], 1e-5) << i;
  std::vector<float> zero(C, 0.0f);
  codec->encode(zero.data(), C, payload);  // now the weak component is the strongest there is
  std::fill(y.begin(), y.end(), 0.0f);
  codec->decode_add(payload.data(), C, y.data());
  for (std::size_t i = 0; i < C; ++i) EXPECT_NEAR(y[i], 0.5f * weak[i], 1e-6) << i;
}

TEST(Codecs, OrthonormalizeGivesOrthonormalColumns) {
  std::vector<float> p = random_data(50 * 4, 9);
  orthonormalize(p.data(), 50, 4);
  for (std::size_t a = 0; a < 4; ++a)
    for (std::size_t b = 0; b < 4; ++b) {
      double dot = 0;
      for (std::size_t i = 0; i < 50; ++i) dot += static_cast<double>(p[i * 4 + a]) * p[i * 4 + b];
      EXPECT_NEAR(dot, a == b ? 1.0 : 0.0, 1e-5);
    }
}

TEST(Codecs, NamesRoundTrip) {
  for (const char* n : {"none", "fp16", "bf16", "int8", "int4", "fp8", "topk", "sign", "sparseloco", "demo", "powersgd"})
    EXPECT_EQ(find_codec(n)->name, n);
  EXPECT_FALSE(find_codec("zstd"));
}

}  // namespace
}  // namespace ft
