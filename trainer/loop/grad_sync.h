// Data-parallel gradient synchronisation. The flat gradient buffer is cut into buckets of
// whole parameters, from its end (which backward fills first) towards its start; the
// embeddings, complete only when backward ends, get a bucket of their own so that what
// must wait for the end of backward is as small as it can be. During
// the last micro-batch's backward the model reports each finished parameter; when a
// bucket's last parameter is done its all-reduce (or, with ZeRO-1, reduce-scatter) starts
// on the data-parallel communicator's worker while backward goes on. finish() waits for
// what is still in flight: only that wait is exposed.
#pragma once

#include <cstdint>
#include <vector>

#include <map>
#include <memory>
#include <string>

#include "comm/communicator.h"
#include "models/params.h"
#include "trainer/loop/optimizer.h"

namespace ft {

class GradSync {
 public:
  // `codecs`: each tier's codec (all none: dense). `measure_error`: also all-reduce each
  // bucket densely (the library's native algorithm, uncounted per tier) to measure the
  // compressed sum's relative error.
  GradSync(Communicator& dp, const ParamSet& params, Algorithm algo, std::uint64_t bucket_bytes, bool zero,
           bool overlap, const TierCodecs& codecs, bool measure_error);

  // The flat ranges whose optimizer update is this rank's: everything, or with ZeRO-1 this
  // rank's part of each bucket.
  const std::vector<FlatRange>& owned() const { return owned_; }
  int buckets() const { return static_cast<int>(buckets_.size()); }
  // Each bucket's element count, in the order backward completes them.
  std::vector<std::int64_t> bucket_elements() const;

  // Before the last micro-batch's backward.
  void begin_step();
  // A parameter's gradient is complete (called from backward).
  void grad_ready(int param);
  // Starts any bucket not yet started and waits for all; returns the seconds waited.
  double finish();
  // ZeRO-1: every rank's updated part of the parameters to every rank. Returns seconds.
  double gather_params();

  // Of the step just synchronised, in now_seconds() time: when the first bucket's sync
  // started, and the summed duration of every bucket's sync.
  double first_start() const { return first_start_; }
  double busy() const { return busy_; }
  // ||compressed - dense|| / ||dense|| of the step's whole gradient (with measure_error).
  double compression_error() const;
  bool compressed() const { return compressed_; }
  // Every bucket's codec state (residuals, PowerSGD's Q), named "bucket<b>/<tier>/...".
  std::vector<std::pair<std::string, std::vector<float>*>> codec_state();
  // Puts back state saved under those names; false when it does not fit these buckets.
  bool restore_codec_state(std::map<std::string, std::vector<float>> state);

 private:
  struct Bucket {
    std::int64_t begin, end;  // flat range of whole parameters
    int params = 0;
    int pending = 0;
    Work work;
    bool launched = false;
    std::unique_ptr<BucketCodecs> codecs;  // when compressed
    std::vector<Matrix> tensors;           // its parameters, relative to begin
    double err_num = 0, err_den = 0;       // squared error and squared norm, with measure_error
  };
  void launch(Bucket& b);

  Communicator& dp_;
  const ParamSet& params_;
  Algorithm algo_;
  bool zero_, overlap_;
  bool compressed_, measure_error_;
  std::vector<Bucket> buckets_;  // in launch order: the end of the buffer first
  std::vector<int> bucket_of_;   // by parameter index
  std::vector<FlatRange> owned_;
  double first_start_ = 0, busy_ = 0;
};

}  // namespace ft
