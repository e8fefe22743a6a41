// 16-bit floats: fp32 <-> IEEE half and bfloat16, round to nearest even. to_fp16 clamps
// finite values beyond the half range to +-65504 and counts them in `clamped`. The fp16
// and bf16 codecs and the backends' wire conversions share these.
#pragma once

#include <cstdint>

namespace ft {

std::uint16_t to_bf16(float x);
float from_bf16(std::uint16_t h);
std::uint16_t to_fp16(float x, std::uint64_t* clamped = nullptr);
float from_fp16(std::uint16_t h);

}  // namespace ft
