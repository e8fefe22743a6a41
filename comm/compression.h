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

using TierCodecs = PerTier<CodecSpec>;

// One bucket's codecs, one per tier, created on first use: the state of that bucket's
// stream of gradients (residuals, PowerSGD's Q) across the tiers.
class BucketCodecs {
 public:
  explicit BucketCodecs(const TierCodecs& specs) : specs_(specs) {}
  const TierCodecs& specs() const { return specs_; }
  const CodecSpec& spec(Tier t) const { return specs_[t]; }
  Codec& codec(Tier t);
  // Every piece of state, named "<tier>/<the codec's name for it>" ("inter_pod/residual",
  // "inter_pod/q0"), for checkpoints; and setting one back by that name (false when the
  // name means nothing here).
  std::vector<std::pair<std::string, std::vector<float>*>> state();
  bool restore(const std::string& name, std::vector<float> values);

 private:
  TierCodecs specs_;
  PerTier<std::unique_ptr<Codec>> codecs_;
};

}  // namespace ft
