// Data-parallel gradient synchronisation, and the sharding of the ZeRO stages. The flat
// gradient buffer is cut into buckets of whole parameters, from its end (which backward
// fills first) towards its start; the embeddings, complete only when backward ends, get a
// bucket of their own so that what must wait for the end of backward is as small as it can
// be. With ZeRO-3 the buckets are the model's units instead (GptStage::units(): each block,
// the embeddings, the final LayerNorm), the pieces gathered before use.
//
// During backward the model reports each finished parameter; when a bucket's last
// parameter is done its sync starts on the data-parallel communicator's worker while
// backward goes on. finish() waits for what is still in flight: only that wait is exposed.
//   zero 0: all-reduce of each bucket, after the step's last micro-batch.
//   zero 1: reduce-scatter instead; after the update every rank's part of the parameters is
//           all-gathered (gather_params).
//   zero 2: each micro-batch's buckets are reduce-scattered, and this rank's part added into
//           its gradient shard: the bucket goes to one of two staging buffers, so backward
//           goes on into the zeroed bucket while the last one is on the wire.
//   zero 3: as 2, and no rank keeps whole parameters: each unit is all-gathered before the
//           model computes with it (use_unit, the next unit fetched meanwhile) and dropped
//           after (done_unit), in forward and again in backward; or, with reshard `step`,
//           kept from its first use to the step's end.
// HSDP (parallel.shard_within): the communicator shards over the replicas inside one unit of
// a tier, and `ShardReplicas` holds this rank's peers in the other units, which own the same
// shard: once a bucket's shard is reduced for the step (zero 1: its reduce-scatter; 2 and 3:
// the last micro-batch's), it is all-reduced across them, on the tier's codecs.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "models/params.h"
#include "trainer/loop/optimizer.h"

namespace ft {

// The buckets, in launch order (the end of the flat buffer first), as flat ranges of whole
// parameters: cut by `bucket_bytes` with the embeddings alone, or at `units`' starts (ZeRO-3);
// and, with `chunks` (each parameter's, gpt_param_chunks), where the chunk changes.
std::vector<FlatRange> cut_buckets(const std::vector<ParamInfo>& infos, std::uint64_t element_bytes,
                                   std::uint64_t bucket_bytes, const std::vector<int>* units,
                                   const std::vector<int>* chunks = nullptr);
// The tensors of a bucket, from its start: what a codec that works on matrices is given.
std::vector<Matrix> bucket_tensors(const std::vector<ParamInfo>& infos, const FlatRange& bucket);

// HSDP: the members that hold this rank's shard in the other units of the split tier.
struct ShardReplicas {
  Communicator* comm = nullptr;
  Algorithm algo = Algorithm::ring;
  TierCodecs codecs{};  // of the split tier and above
};

struct GradSyncOptions {
  Algorithm algo = Algorithm::ring;
  std::uint64_t bucket_bytes = 0;
  int zero = 0;  // the ZeRO stage
  bool overlap = true;
  TierCodecs codecs{};  // each tier's codec (all none: dense; zero 0 only)
  // Also all-reduce each bucket densely (the library's native algorithm, uncounted per
  // tier) to measure the compressed sum's relative error.
  bool measure_error = false;
  std::vector<int> units;          // zero 3: the index of each unit's first parameter (GptStage::units())
  std::vector<int> param_chunks;   // each parameter's chunk (gpt_param_chunks); empty: one chunk
  bool keep_gathered = false;      // zero 3: keep a gathered unit until the step's end
  ShardReplicas replicas;          // HSDP's (comm null: none)
};

class GradSync {
 public:
  GradSync(Communicator& dp, const ParamSet& params, GradSyncOptions options);

  // The flat ranges whose optimizer update is this rank's: everything, or with ZeRO this
  // rank's part of each bucket.
  const std::vector<FlatRange>& owned() const { return owned_; }
  int buckets() const { return static_cast<int>(buckets_.size()); }
  // Each bucket's element count, in the order backward completes them.
  std::vector<std::int64_t> bucket_elements() const;
  // Whether every micro-batch's backward reports its gradients (ZeRO-2 and 3), or only the last's.
  bool every_microbatch() const { return zero_ >= 2; }

  void begin_step();
  // Around each backward through `chunk` that reports its gradients (every_microbatch(), or
  // the last); `last`: the step's last micro-batch, which completes the chunk's gradients.
  void begin_backward(bool last, int chunk = 0);
  void end_backward();
  // A parameter's gradient is complete (called from backward).
  void grad_ready(int param);
  // Starts any bucket not yet started and waits for all; returns the seconds waited. With
  // ZeRO-2 and 3 this rank's gradient shard is then in its owned ranges of the flat buffer.
  double finish();
  // After the update. ZeRO-1 and 2: every rank's updated part of the parameters to every
  // rank. ZeRO-3: the parts of others, now stale, are dropped. Returns seconds.
  double gather_params();

  // ZeRO-3 (the model's hooks): unit `unit` is gathered, waited for, and `next` started.
  void use_unit(int unit, int next);
  void done_unit(int unit);
  // ZeRO-3: the most parameter elements this rank held whole at once during the step (its
  // own parts included), for the memory the gather policy costs.
  std::int64_t peak_held() const { return peak_held_; }
  // ZeRO-3: every parameter whole (for a checkpoint), and dropped again. No-ops otherwise.
  void gather_all();
  void drop_all();

  // Of the step just synchronised, in now_seconds() time: when the first sync started, and
  // the summed duration of every sync on the worker.
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
  enum class Held { part, arriving, whole };
  struct Bucket {
    std::int64_t begin, end;  // flat range of whole parameters
    FlatRange owned;          // this rank's part (ZeRO)
    int params = 0;
    int pending = 0;
    int chunk = 0;
    Work work;
    Work across;  // HSDP: the shard's all-reduce across the replicas
    bool launched = false;
    std::unique_ptr<BucketCodecs> codecs;  // when compressed
    std::vector<Matrix> tensors;           // its parameters, relative to begin
    double err_num = 0, err_den = 0;       // squared error and squared norm, with measure_error
    Tensor shard;                          // ZeRO-2/3: this rank's part of the gradient, summed over micro-batches
    // ZeRO-3: whether it holds its parameters whole, their all-gather, and the model's uses.
    Held held = Held::whole;
    Work gather;
    int users = 0;
  };
  // A staging buffer and the reduce-scatter in it (ZeRO-2/3).
  struct Staging {
    Tensor buffer;
    Work work;
    int bucket = -1;
    bool last = false;  // of the step's last micro-batch
  };
  void launch(Bucket& b);
  // HSDP: the all-reduce of `shard` (the bucket's reduced part) across the replicas, after `after`.
  Work reduce_across(Bucket& b, Buffer shard, Work after);
  void stage(Bucket& b);
  void fold(Staging& s);  // waits for its reduce-scatter and adds this rank's part into the bucket's shard
  void account(const Work& w, bool gradients);
  Buffer values(const Bucket& b) const;
  void start_gather(Bucket& b);
  void arrive(Bucket& b);  // waits for its all-gather, if one is in flight
  void drop(Bucket& b);
  void count_held();

  Communicator& dp_;
  const ParamSet& params_;
  Algorithm algo_;
  int zero_;
  bool overlap_, keep_gathered_;
  ShardReplicas replicas_;
  bool last_backward_ = false;
  int chunk_ = 0;  // of the backward under way
  std::int64_t peak_held_ = 0;
  bool compressed_, measure_error_;
  std::vector<Bucket> buckets_;  // in launch order: the end of the buffer first
  std::vector<int> bucket_of_;   // by parameter index
  std::vector<int> unit_bucket_; // ZeRO-3: by unit
  std::vector<FlatRange> owned_;
  Staging staging_[2];
  int next_staging_ = 0;
  double first_start_ = 0, busy_ = 0;
};

}  // namespace ft
