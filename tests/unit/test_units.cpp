#include <gtest/gtest.h>

#include "trainer/io/units.h"

namespace ft {
namespace {

TEST(Units, SizesParseInDecimalAndBinaryUnits) {
  EXPECT_EQ(parse_bytes("4096")->value, 4096u);
  EXPECT_EQ(parse_bytes("64MiB")->value, 64ull << 20);
  EXPECT_EQ(parse_bytes("4 KiB")->value, 4096u);
  EXPECT_EQ(parse_bytes("1.5GB")->value, 1500000000u);
  EXPECT_EQ(parse_bytes("1.5KiB")->value, 1536u);
  EXPECT_EQ(parse_bytes("2TiB")->value, 2ull << 40);
  EXPECT_EQ(parse_bytes("0")->value, 0u);
}

TEST(Units, SizesRefuseWhatIsNotOne) {
  for (const char* bad : {"", "MiB", "-1KiB", "64Mb", "64 mebibytes", "1.3B", "10G", "nan", "inf", "1e30TiB"})
    EXPECT_FALSE(parse_bytes(bad).has_value()) << bad;
}

TEST(Units, BitRatesParseInBitsAndBytesPerSecond) {
  EXPECT_DOUBLE_EQ(parse_bitrate("10Gbit")->bits_per_second, 10e9);
  EXPECT_DOUBLE_EQ(parse_bitrate("100Mbit")->bits_per_second, 100e6);
  EXPECT_DOUBLE_EQ(parse_bitrate("1.6Tbit")->bits_per_second, 1.6e12);
  EXPECT_DOUBLE_EQ(parse_bitrate("400 Gbps")->bits_per_second, 400e9);
  EXPECT_DOUBLE_EQ(parse_bitrate("25GB/s")->bits_per_second, 200e9);
  EXPECT_DOUBLE_EQ(parse_bitrate("1MiB/s")->bits_per_second, 8.0 * 1048576);
  EXPECT_DOUBLE_EQ(parse_bitrate("10Gbit")->bytes_per_second(), 1.25e9);
}

TEST(Units, BitRatesNeedAUnit) {
  for (const char* bad : {"10", "10G", "10Gb", "fast", "-1Gbit", "10 Gbit/s"})
    EXPECT_FALSE(parse_bitrate(bad).has_value()) << bad;
}

TEST(Units, DurationsParse) {
  EXPECT_DOUBLE_EQ(parse_duration("1.5ms")->seconds, 1.5e-3);
  EXPECT_DOUBLE_EQ(parse_duration("50us")->seconds, 50e-6);
  EXPECT_DOUBLE_EQ(parse_duration("50\u00b5s")->seconds, 50e-6);
  EXPECT_DOUBLE_EQ(parse_duration("800ns")->seconds, 800e-9);
  EXPECT_DOUBLE_EQ(parse_duration("2s")->seconds, 2.0);
  EXPECT_DOUBLE_EQ(parse_duration("0")->seconds, 0.0);
  for (const char* bad : {"5", "5 min", "ms", "-1ms"}) EXPECT_FALSE(parse_duration(bad).has_value()) << bad;
}

TEST(Units, FormattedValuesParseBackExactly) {
  for (std::uint64_t b : {0ull, 1ull, 1000ull, 1024ull, 1536ull, 4ull << 20, 3ull << 30, 123456789ull})
    EXPECT_EQ(parse_bytes(format_bytes(Bytes{b}))->value, b) << format_bytes(Bytes{b});
  for (double r : {1e3, 100e6, 1e9, 1.6e12, 12.5e9, 123.456e6})
    EXPECT_DOUBLE_EQ(parse_bitrate(format_bitrate(BitRate{r}))->bits_per_second, r) << format_bitrate(BitRate{r});
  for (double d : {0.0, 50e-6, 1.5e-3, 2.0, 5e-3, 100e-9})
    EXPECT_DOUBLE_EQ(parse_duration(format_duration(Duration{d}))->seconds, d) << format_duration(Duration{d});
}

TEST(Units, FormatPicksTheLargestExactUnit) {
  EXPECT_EQ(format_bytes(Bytes{4ull << 20}), "4MiB");
  EXPECT_EQ(format_bytes(Bytes{1536}), "1536B");
  EXPECT_EQ(format_bitrate(BitRate{10e9}), "10Gbit");
  EXPECT_EQ(format_bitrate(BitRate{1.6e12}), "1600Gbit");
  EXPECT_EQ(format_duration(Duration{50e-6}), "50us");
  EXPECT_EQ(format_duration(Duration{1.5e-3}), "1500us");
}

}  // namespace
}  // namespace ft
