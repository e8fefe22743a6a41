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
//
// Delay (delay > 0): a fragment's outer all-reduce runs on the outer communicator's worker
// while the next `delay` inner steps compute; it is applied after the last of them, each
// replica then keeping `mix` of its own parameters. Only the wait for what is still on the
// wire then, and the outer step, are exposed.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "comm/communicator.h"
#include "comm/compression.h"
#include "models/gpt.h"
#include "models/params.h"
#include "trainer/io/checkpoint.h"
#include "trainer/io/config.h"

namespace ft {

// `count` contiguous ranges of whole tensors of a stage's parameters, cut at the tensor
// boundaries nearest to even shares of the elements: the fragments. Throws UserError when the
// stage holds fewer tensors.
std::vector<FlatRange> cut_fragments(const ParamSet& params, int count);
// The fragments (of `count`) whose outer sync follows optimizer step `step` (from 0).
std::vector<int> outer_due(const OuterSyncConfig& cfg, int count, int step);

class OuterSync {
 public:
  // `inner`: this rank's island's data-parallel members; `outer`: the members at this rank's
  // position in every island. `codecs`: those of the tiers the outer group spans.
  OuterSync(const OuterSyncConfig& cfg, Communicator& inner, Communicator& outer, const ParamSet& params,
            Algorithm algo, const TierCodecs& codecs);
  ~OuterSync();
  OuterSync(const OuterSync&) = delete;
  OuterSync& operator=(const OuterSync&) = delete;

  // The fragments whose outer sync follows optimizer step `step` (from 0).
  std::vector<int> due(int step) const { return outer_due(cfg_, fragments(), step); }
  struct Progress {
    int started = 0;      // fragments whose outer all-reduce began
    double exposed = 0;   // seconds the caller spent: waiting for the tier, the outer steps
  };
  // Collective over the job, after optimizer step `step`: starts the outer all-reduce of the
  // fragments due and applies those started `delay` steps before (at once when delay is 0).
  Progress advance(const ParamSet& params, int step);
  // Collective: waits for the outer all-reduces in flight and gathers their results on every
  // member of the island, without applying them (before a checkpoint, and when training ends).
  // Returns whether any was in flight.
  bool settle();
  int fragments() const { return static_cast<int>(fragments_.size()); }

  // Checkpoints: the layout-independent arrays, laid out like the flat parameters: the
  // anchor, the momentum, and the averaged outer gradients of the syncs in flight with the
  // step after which each element's started (-1: none). Collective: it settles those first.
  std::vector<FlatArray> checkpoint_arrays();
  // Collective: reads them back from `path`. A fragment in flight lands `delay` steps after it
  // started (at once, if that is past); one whose tensors were in flight from different steps
  // or only in part (another pipeline split or fragments) drops them; `speaks` says so.
  void restore(const std::string& path, const GptStage& model, bool speaks);
  bool compressed() const { return !codecs_.empty(); }  // the outer all-reduce has a lossy codec
  // The outer codecs' feedback state ("outer/f<fragment>/<tier>/residual"), this rank's, of
  // the codecs used so far; and setting it back.
  std::vector<std::pair<std::string, std::vector<float>*>> codec_state();
  bool restore_codec_state(const std::string& name, std::vector<float> values);

 private:
  OuterSyncConfig cfg_;
  Communicator& inner_;
  Communicator& outer_;
  Algorithm algo_;
  Tensor anchor_, momentum_, delta_;
  bool has_momentum() const { return cfg_.momentum > 0; }
  Tensor in_flight_since() const;
  // Starts fragment f's all-reduce after step `step`; applies it (waiting for it first).
  void start(const ParamSet& params, int f, int step);
  void apply(const ParamSet& params, int f);
  // Waits for fragment f's all-reduce and gives every island member the island's result.
  void complete(int f);

  std::vector<FlatRange> fragments_;
  struct InFlight {
    int started = -1;  // the step after which it was sent; -1: none in flight
    Work work;
    bool complete = false;
  };
  std::vector<InFlight> flight_;  // per fragment
  std::vector<std::unique_ptr<BucketCodecs>> codecs_;  // per fragment, when the outer all-reduce is compressed
};

}  // namespace ft
