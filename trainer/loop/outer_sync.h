// The outer synchronisation of low-communication training (DiLoCo, sync.outer). Replicas in
// one unit below the outer tier (a node, pod or site: an island) train as one data-parallel
// group, synchronising every step; every `every` steps the islands synchronise across the
// tier: the outer gradient (the parameters at the last outer sync, the anchor, minus now) is
// averaged across the islands with the tier's codec, and an outer SGD step with (Nesterov)
// momentum moves the anchor, which every replica then takes as its parameters.
//
// Each member of an island sends only its segment of the outer gradient across the tier
// (the island's members hold the same parameters), then the island gathers the segments: the
// tier carries one copy of the model per island and sync, however many replicas each holds.
//
// Streaming (fragments > 1): the parameters are cut into fragments of whole tensors, and
// fragment f syncs after the steps t with (t + 1 + f * every / fragments) % every == 0, so
// the syncs of one period are spread over its steps.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "comm/communicator.h"
#include "comm/compression.h"
#include "models/params.h"
#include "trainer/io/config.h"

namespace ft {

class OuterSync {
 public:
  // `inner`: this rank's island's data-parallel members; `outer`: the members at this rank's
  // position in every island. `codecs`: those of the tiers the outer group spans.
  OuterSync(const OuterSyncConfig& cfg, Communicator& inner, Communicator& outer, const ParamSet& params,
            Algorithm algo, const TierCodecs& codecs);

  // The fragments whose outer sync follows optimizer step `step` (from 0).
  std::vector<int> due(int step) const;
  // Collective over the job: the outer step of fragments `which`. Returns the seconds it took.
  double sync(const ParamSet& params, const std::vector<int>& which);
  int fragments() const { return static_cast<int>(fragments_.size()); }

  // Layout-independent state for checkpoints, laid out like the flat parameters.
  const Tensor& anchor() const { return anchor_; }
  const Tensor& momentum() const { return momentum_; }
  bool has_momentum() const { return cfg_.momentum > 0; }
  // The outer codecs' residuals ("outer/<tier>/residual"), this rank's; and setting them back.
  std::vector<std::pair<std::string, std::vector<float>*>> codec_state();
  bool restore_codec_state(const std::string& name, std::vector<float> values);

 private:
  OuterSyncConfig cfg_;
  Communicator& inner_;
  Communicator& outer_;
  Algorithm algo_;
  Tensor anchor_, momentum_, delta_;
  std::vector<FlatRange> fragments_;
  std::vector<std::unique_ptr<BucketCodecs>> codecs_;  // per fragment, when the outer all-reduce is compressed
};

}  // namespace ft
