// A GPT-2-style decoder stage: a contiguous range of pre-LN blocks, plus the token and
// position embedding on the first stage and the final LayerNorm, tied LM head and
// cross-entropy on the last. With one stage and tp = 1 it is the whole model.
//
// Forward and backward are written by hand, one op at a time (ops.h). Activations are kept
// per micro-batch slot, so a pipeline schedule can hold several micro-batches in flight.
// Tensor parallelism (Megatron): QKV and the first MLP linear are column-parallel, the
// attention output and second MLP linear row-parallel, with one all-reduce of activations
// after each row-parallel layer in forward and one of input gradients before each
// LayerNorm in backward, through the tp_all_reduce hook. With a vocabulary-parallel head
// (StagePlan::vocab_parallel) each rank holds V / tp rows of the tied embedding: the lookup's
// partial sums are all-reduced in forward; the head's logits are its rows' only, the loss
// comes from every rank's softmax statistics (max, sum, the target's logit: one all-gather
// of 3 values per token, the tp_all_gather hook), and the input gradient of the head's
// product is all-reduced in backward.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "models/gpt_shape.h"
#include "models/params.h"
#include "models/tensor.h"

namespace ft {

// A contiguous range of blocks.
struct LayerRange {
  int first = 0, count = 0;
};

// Which part of the model this rank holds: its blocks as one chunk per virtual pipeline stage
// (one without interleaving), the embedding in its first chunk, the head in its last.
struct StagePlan {
  int tp = 1, tp_rank = 0;
  std::vector<LayerRange> chunks{LayerRange{}};
  bool has_embedding = true;  // first pipeline stage
  bool has_head = true;       // last pipeline stage
  // The tied embedding split over the tensor-parallel ranks by vocabulary rows, the
  // cross-entropy computed in parallel (Megatron's vocab-parallel embedding and loss).
  bool vocab_parallel = false;
  int num_chunks() const { return static_cast<int>(chunks.size()); }
  int num_layers() const {
    int n = 0;
    for (const LayerRange& c : chunks) n += c.count;
    return n;
  }
  static StagePlan whole(const GptShape& s) { return {1, 0, {{0, s.layers}}, true, true, false}; }
};

struct StageHooks {
  // Sums a tensor over the tensor-parallel group, in place. Unset when tp == 1.
  std::function<void(const Tensor&)> tp_all_reduce;
  // Every tensor-parallel rank's equal part of a tensor to every rank, in place (rank r's is
  // the r-th of tp). Unset when tp == 1.
  std::function<void(const Tensor&)> tp_all_gather;
  // Called when a parameter's gradient for the current micro-batch is complete.
  std::function<void(int param_index)> grad_ready;
  // Sharded parameters (ZeRO-3): called before the stage computes with a unit's parameters
  // (units(): the unit it will want after this one, or -1, so that one can be fetched
  // meanwhile) and when it is done with them. Unset: every parameter is always whole.
  std::function<void(int unit, int next_unit)> use_unit;
  std::function<void(int unit)> done_unit;
};

// A stage's parameters in the flat buffer's order, declared but not allocated: what GptStage
// holds, and what the step simulator counts without holding it.
ParamSet gpt_stage_params(const GptShape& shape, const StagePlan& plan);
// The chunk each parameter belongs to (the one whose computation completes its gradient):
// blocks their chunk's, wpe the first, lnf the last, wte the first on the first stage and
// the last otherwise (the head's).
std::vector<int> gpt_param_chunks(const ParamSet& params, const StagePlan& plan);
// The parameters the stage computes with together, as the index of each group's first
// parameter: the embeddings (wte, and wpe on the first stage), each block, the final LayerNorm.
std::vector<int> gpt_units(const ParamSet& params);
// One use of a unit's parameters, and the unit wanted after it (-1: none), so that a sharded
// unit can be fetched meanwhile; and the tensor-parallel collectives the computation after
// it makes: all-reduces of a micro-batch's activations [B, T, C], and the vocabulary-parallel
// loss's all-gather of its statistics.
struct UnitUse {
  int unit, next;
  int tp_reduces = 0;
  bool tp_gathers_stats = false;
};
// The uses of the stage's units (gpt_units' order) in one forward or backward of `chunk`, in
// order: what GptStage asks its use_unit hook for, and what the step simulator schedules.
// Forward: the embedding lookup (first chunk), the chunk's blocks (the last fetching wte for
// the head), the final LayerNorm and wte for the head (last chunk); backward: wte and the
// final LayerNorm, the blocks in reverse (the lookup's backward reads no parameters).
std::vector<UnitUse> gpt_unit_uses(const StagePlan& plan, int chunk, bool backward);
// Matrix-product FLOPs of one forward of `tokens` tokens through the stage on one rank
// (backward: twice as many); over the whole model 2N + 4 L T C per token, the forward third
// of model_flops_per_token's 6N + 12 L T C, less the parameters no product uses. The head's
// product is split over the tensor-parallel ranks only when the vocabulary is.
double gpt_stage_forward_flops(const GptShape& shape, const StagePlan& plan, double tokens);

class GptStage {
 public:
  // `micro_batch` sequences of `shape.context` tokens per forward; `slots` micro-batches
  // may be in flight at once in each chunk.
  GptStage(const GptShape& shape, const StagePlan& plan, int micro_batch, int slots, DType dtype = DType::f32,
           Device device = Device::cpu);

  const GptShape& shape() const { return shape_; }
  const StagePlan& plan() const { return plan_; }
  ParamSet& params() { return params_; }
  const ParamSet& params() const { return params_; }
  void set_hooks(StageHooks hooks) { hooks_ = std::move(hooks); }
  int micro_batch() const { return B_; }
  // The parameters the stage computes with together, as the index of each group's first
  // parameter, in the flat buffer's order: the embeddings (wte, and wpe on the first stage),
  // each block, the final LayerNorm. The head's matmul uses the embedding unit's wte.
  const std::vector<int>& units() const { return units_; }
  int slots() const { return static_cast<int>(slots_.front().size()); }

  // GPT-2 initialisation from a counter-based RNG: normal(0, 0.02), residual output
  // projections 0.02 / sqrt(2 L), LayerNorm weights 1, biases 0. Each element depends only
  // on (seed, parameter name, position in the full tensor), so every layout gets the same
  // model.
  void init(std::uint64_t seed);

  // Forward of one micro-batch through `chunk` into its `slot`. The first stage's first
  // chunk reads `tokens` [B, T] (int32), the others `input` [B, T, C]. The last stage's last
  // chunk reads `targets` [B, T] and returns the micro-batch's mean loss; the others return 0
  // and leave output(slot, chunk) for the next.
  double forward(int slot, const Tensor* tokens, const Tensor* input, const Tensor* targets, int chunk = 0);
  const Tensor& output(int slot, int chunk = 0) const;

  // Backward of the micro-batch in `chunk`'s `slot`, accumulating parameter gradients. The
  // head starts from its loss scaled by `loss_scale` (d total / d micro-batch mean); the
  // others from `dout` [B, T, C]. Afterwards input_grad() holds d loss / d input, but after
  // the embedding.
  void backward(int slot, const Tensor* dout, double loss_scale, int chunk = 0);
  const Tensor& input_grad() const { return dres_; }

 private:
  struct Block {
    int ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, fcproj_w, fcproj_b;
  };
  struct BlockActs {
    Tensor ln1, ln1_mean, ln1_rstd, qkv, att, atty, res2, ln2, ln2_mean, ln2_rstd, fch, fcg, res3;
  };
  struct Slot {
    Tensor tokens, targets, input;
    std::vector<BlockActs> blocks;
    // logits: the softmax replaces them in forward, and their gradient replaces that in
    // backward, so the [B, T, V] array is held once.
    Tensor lnf, lnf_mean, lnf_rstd, logits, losses;
  };

  const Tensor& w(int i) const { return params_.value(i); }
  const Tensor& g(int i) const { return params_.grad(i); }
  void tp_all_reduce(const Tensor& t) const;
  void ready(int i) const;
  // The next of `uses` (from *at on), advancing *at; returns its unit.
  int use(const std::vector<UnitUse>& uses, std::size_t* at) const;
  void done(int unit) const;
  void block_forward(const Block& p, const Tensor& x, BlockActs& a);
  void block_backward(const Block& p, const Tensor& x, const BlockActs& a);

  GptShape shape_;
  StagePlan plan_;
  int B_, T_, C_, Cl_, Hl_, Fl_, V_;
  int Vl_, v0_;  // the vocabulary rows this rank holds, from v0_ on (all of them but with vocab_parallel)
  DType dtype_;
  Device device_;
  ParamSet params_;
  bool embeds(int chunk) const { return plan_.has_embedding && chunk == 0; }
  bool heads(int chunk) const { return plan_.has_head && chunk == plan_.num_chunks() - 1; }

  int wte_ = -1, wpe_ = -1, lnf_w_ = -1, lnf_b_ = -1;
  std::vector<int> units_;
  std::vector<std::vector<UnitUse>> forward_uses_, backward_uses_;  // by chunk
  std::vector<Block> blocks_;
  std::vector<int> chunk_block_;            // by chunk: its first block in blocks_
  std::vector<std::vector<Slot>> slots_;    // by chunk
  StageHooks hooks_;
  // Scratch shared by all slots: forward temporaries and backward gradients.
  Tensor ap_, fp_, dres_, dln_, dqkv_, datty_, dfch_, dfcg_, dlnf_, att_scratch_;
  Tensor ce_stats_;  // vocab_parallel: every rank's softmax statistics [tp, 3, B T]
};

}  // namespace ft
