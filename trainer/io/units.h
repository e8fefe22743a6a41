// Quantities with units, as users write them in configs and flags: sizes (64MiB), bit rates
// (10Gbit, 25GB/s) and durations (50us, 1.5ms).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ft {

struct Bytes {
  std::uint64_t value = 0;
  friend bool operator==(Bytes, Bytes) = default;
};
struct BitRate {
  double bits_per_second = 0;
  double bytes_per_second() const { return bits_per_second / 8; }
  friend bool operator==(BitRate, BitRate) = default;
};
struct Duration {
  double seconds = 0;
  friend bool operator==(Duration, Duration) = default;
};

// Each returns nullopt when `text` does not parse; the caller names the key in its message.
std::optional<Bytes> parse_bytes(std::string_view text);
std::optional<BitRate> parse_bitrate(std::string_view text);
std::optional<Duration> parse_duration(std::string_view text);

// Shortest exact form in the largest unit that keeps the number readable; parses back.
std::string format_bytes(Bytes b);
std::string format_bitrate(BitRate r);
std::string format_duration(Duration d);

// For people, 3 significant digits with a decimal prefix from K to E: "5.33 Tbit/s", "71.2 TB".
std::string human_si(double value, std::string_view unit);
inline std::string human_bitrate(double bits_per_second) { return human_si(bits_per_second, "bit/s"); }

// What a user is shown when a value does not parse.
inline constexpr std::string_view kBytesExamples = "4096, 64KiB, 4MiB, 1.5GB";
inline constexpr std::string_view kBitRateExamples = "100Mbit, 10Gbit, 1.6Tbit, 25GB/s";
inline constexpr std::string_view kDurationExamples = "0, 800ns, 50us, 1.5ms, 2s";

}  // namespace ft
