// Counter-based random numbers: a value depends only on (seed, stream, index), never on the
// order of draws. Initialisation and synthetic data are therefore the same whatever the
// layout: a tensor-parallel shard draws exactly the elements of the full tensor it holds,
// and a resumed run draws what the uninterrupted one would have.
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>

namespace ft::rng {

// SplitMix64 finaliser: a bijective 64-bit mix with good avalanche.
constexpr std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

constexpr std::uint64_t bits(std::uint64_t seed, std::uint64_t stream, std::uint64_t index) {
  return mix(mix(mix(seed) ^ stream) ^ index);
}

// FNV-1a, to turn a parameter name into a stream id.
constexpr std::uint64_t hash(std::string_view s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  return h;
}

// Uniform in (0, 1): 53 random bits, never exactly 0.
inline double uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t index) {
  return (static_cast<double>(bits(seed, stream, index) >> 11) + 0.5) * 0x1.0p-53;
}

// Standard normal by Box-Muller from two independent uniforms of the same index.
inline double normal(std::uint64_t seed, std::uint64_t stream, std::uint64_t index) {
  double u1 = uniform(seed, stream, 2 * index);
  double u2 = uniform(seed, stream, 2 * index + 1);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

}  // namespace ft::rng
