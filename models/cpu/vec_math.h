// exp that the compiler vectorises. glibc's expf is a scalar call, so a loop over it runs one
// element at a time; this one is plain arithmetic on floats and their bits, branch-free, so
// -O3 turns the kernels' loops into AVX-512/AVX2 code. Double keeps std::exp: the double
// kernels exist for the finite-difference checks, where accuracy is the point.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace ft::cpu {

// e^x for float, within 2 ulp of the exact value over the normal range. Inputs are clamped
// to [-87.3, 88]: below, e^x would be denormal (it gives about 1.2e-38 instead); above, 2^n
// would overflow the exponent field (it gives e^88, about 1.7e38).
inline float vexp(float x) {
  x = x < -87.3f ? -87.3f : (x > 88.0f ? 88.0f : x);
  // x = n ln2 + r with |r| <= ln2 / 2; ln2 split in two so that r keeps its low bits. n is
  // rounded by adding and removing 1.5 * 2^23, which vectorises where nearbyint may not.
  constexpr float kRound = 12582912.0f;
  const float n = (x * 1.44269504088896341f + kRound) - kRound;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  // e^r by its Taylor/minimax polynomial (Cephes expf coefficients).
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // times 2^n, by adding n to the exponent field
  const std::int32_t bits = (static_cast<std::int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

inline double vexp(double x) { return std::exp(x); }

}  // namespace ft::cpu
