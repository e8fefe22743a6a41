#include "trainer/io/units.h"

#include <array>
#include <charconv>
#include <cmath>
#include <utility>

#include <fmt/format.h>

namespace ft {
namespace {

using Unit = std::pair<std::string_view, double>;

constexpr std::array kByteUnits = {
    Unit{"", 1},          Unit{"B", 1},       Unit{"KB", 1e3},     Unit{"kB", 1e3},
    Unit{"MB", 1e6},      Unit{"GB", 1e9},    Unit{"TB", 1e12},    Unit{"KiB", 1024.0},
    Unit{"MiB", 1048576.0}, Unit{"GiB", 1073741824.0}, Unit{"TiB", 1099511627776.0},
};

constexpr std::array kRateUnits = {
    Unit{"bit", 1},     Unit{"bps", 1},     Unit{"Kbit", 1e3},  Unit{"kbit", 1e3},
    Unit{"Kbps", 1e3},  Unit{"kbps", 1e3},  Unit{"Mbit", 1e6},  Unit{"Mbps", 1e6},
    Unit{"Gbit", 1e9},  Unit{"Gbps", 1e9},  Unit{"Tbit", 1e12}, Unit{"Tbps", 1e12},
    Unit{"B/s", 8},     Unit{"KB/s", 8e3},  Unit{"MB/s", 8e6},  Unit{"GB/s", 8e9},
    Unit{"TB/s", 8e12}, Unit{"KiB/s", 8.0 * 1024}, Unit{"MiB/s", 8.0 * 1048576},
    Unit{"GiB/s", 8.0 * 1073741824},
};

constexpr std::array kTimeUnits = {
    Unit{"ns", 1e-9}, Unit{"us", 1e-6}, Unit{"\u00b5s", 1e-6}, Unit{"ms", 1e-3}, Unit{"s", 1},
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Splits "1.5 MiB" into 1.5 and "MiB"; the number must be finite and non-negative.
std::optional<std::pair<double, std::string_view>> split_number(std::string_view text) {
  text = trim(text);
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || !std::isfinite(value) || value < 0) return std::nullopt;
  std::string_view unit = trim(text.substr(static_cast<std::size_t>(end - text.data())));
  return std::pair{value, unit};
}

template <std::size_t N>
std::optional<double> scale(std::string_view unit, const std::array<Unit, N>& units) {
  for (const auto& [name, factor] : units)
    if (name == unit) return factor;
  return std::nullopt;
}

// In the largest unit (of `units`, ascending) that divides `value` exactly, or failing that
// the largest one not above it; printed with up to 10 significant digits.
std::string format_in(double value, std::initializer_list<Unit> units) {
  const Unit* whole = nullptr;
  const Unit* largest = units.begin();
  for (const Unit& u : units) {
    if (value < u.second) break;
    largest = &u;
    double q = value / u.second;
    if (std::abs(q - std::round(q)) <= 1e-9 * q) whole = &u;
  }
  const Unit* chosen = whole ? whole : largest;
  return fmt::format("{:.10g}{}", value / chosen->second, chosen->first);
}

}  // namespace

std::optional<Bytes> parse_bytes(std::string_view text) {
  auto parts = split_number(text);
  if (!parts) return std::nullopt;
  auto factor = scale(parts->second, kByteUnits);
  if (!factor) return std::nullopt;
  double v = parts->first * *factor;
  if (v > 1.8e19 || std::abs(v - std::round(v)) > 1e-6) return std::nullopt;  // whole bytes
  return Bytes{static_cast<std::uint64_t>(std::llround(v))};
}

std::optional<BitRate> parse_bitrate(std::string_view text) {
  auto parts = split_number(text);
  if (!parts || parts->second.empty()) return std::nullopt;  // a bare number is ambiguous
  auto factor = scale(parts->second, kRateUnits);
  if (!factor) return std::nullopt;
  return BitRate{parts->first * *factor};
}

std::optional<Duration> parse_duration(std::string_view text) {
  auto parts = split_number(text);
  if (!parts) return std::nullopt;
  if (parts->second.empty()) {
    if (parts->first == 0) return Duration{0};  // "0" needs no unit
    return std::nullopt;
  }
  auto factor = scale(parts->second, kTimeUnits);
  if (!factor) return std::nullopt;
  return Duration{parts->first * *factor};
}

std::string format_bytes(Bytes b) {
  if (b.value == 0) return "0";
  return format_in(static_cast<double>(b.value),
                   {{"B", 1}, {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0},
                    {"TiB", 1099511627776.0}});
}

std::string format_bitrate(BitRate r) {
  if (r.bits_per_second == 0) return "0bit";
  return format_in(r.bits_per_second,
                   {{"bit", 1}, {"Kbit", 1e3}, {"Mbit", 1e6}, {"Gbit", 1e9}, {"Tbit", 1e12}});
}

std::string human_si(double value, std::string_view unit) {
  static constexpr std::string_view prefixes[] = {"", "K", "M", "G", "T", "P", "E"};
  std::size_t p = 0;
  while (p + 1 < std::size(prefixes) && std::abs(value) >= 1000) {
    value /= 1000;
    ++p;
  }
  return fmt::format("{:.3g} {}{}", value, prefixes[p], unit);
}

std::string format_duration(Duration d) {
  if (d.seconds == 0) return "0";
  return format_in(d.seconds, {{"ns", 1e-9}, {"us", 1e-6}, {"ms", 1e-3}, {"s", 1}});
}

}  // namespace ft
