// Per-tier compression of an all-reduce: the codec each tier uses, and one bucket's codec
// state (residuals, PowerSGD's Q) across those tiers.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "comm/codec.h"
#include "comm/topology.h"

namespace ft {

using TierCodecs = std::array<CodecSpec, kTiers>;

class BucketCodecs {
 public:
  explicit BucketCodecs(const TierCodecs& specs) : specs_(specs) {}
  const TierCodecs& specs() const { return specs_; }
  const CodecSpec& spec(Tier t) const { return specs_[static_cast<std::size_t>(index(t))]; }
  ElementCodec& element(Tier t);
  PowerSgdState& powersgd(Tier t);
  // Every piece of state, named "<tier>/residual" or "<tier>/q<i>", for checkpoints; and
  // setting one back by that name (false when the name means nothing here).
  std::vector<std::pair<std::string, std::vector<float>*>> state();
  bool restore(const std::string& name, std::vector<float> values);

 private:
  TierCodecs specs_;
  std::array<std::unique_ptr<ElementCodec>, kTiers> element_;
  std::array<std::unique_ptr<PowerSgdState>, kTiers> powersgd_;
};

}  // namespace ft
