// A GPT-2-style decoder stage: a contiguous range of pre-LN blocks, plus the token and
// position embedding on the first stage and the final LayerNorm, tied LM head and
// cross-entropy on the last. With one stage and tp = 1 it is the whole model.
//
// Forward and backward are written by hand, one op at a time (ops.h). Activations are kept
// per micro-batch slot, so a pipeline schedule can hold several micro-batches in flight.
// Tensor parallelism (Megatron): QKV and the first MLP linear are column-parallel, the
// attention output and second MLP linear row-parallel, with one all-reduce of activations
// after each row-parallel layer in forward and one of input gradients before each
// LayerNorm in backward, through the tp_all_reduce hook.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "models/gpt_shape.h"
#include "models/params.h"
#include "models/tensor.h"

namespace ft {

// Which part of the model this rank holds.
struct StagePlan {
  int tp = 1, tp_rank = 0;
  int first_layer = 0, num_layers = 0;
  bool has_embedding = true;  // first pipeline stage
  bool has_head = true;       // last pipeline stage
  static StagePlan whole(const GptShape& s) { return {1, 0, 0, s.layers, true, true}; }
};

struct StageHooks {
  // Sums a tensor over the tensor-parallel group, in place. Unset when tp == 1.
  std::function<void(const Tensor&)> tp_all_reduce;
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
// The parameters the stage computes with together, as the index of each group's first
// parameter: the embeddings (wte, and wpe on the first stage), each block, the final LayerNorm.
std::vector<int> gpt_units(const ParamSet& params);
// One use of a unit's parameters, and the unit wanted after it (-1: none), so that a sharded
// unit can be fetched meanwhile.
struct UnitUse {
  int unit, next;
};
// The stage's uses of its units (gpt_units' order) in one forward or backward, in order:
// what GptStage asks its use_unit hook for, and what the step simulator schedules. Forward:
// the embedding lookup, the blocks (the last fetching wte for the head), the final LayerNorm
// and wte for the head; backward: wte and the final LayerNorm, the blocks in reverse (the
// lookup's backward reads no parameters).
std::vector<UnitUse> gpt_unit_uses(const StagePlan& plan, bool backward);
// Matrix-product FLOPs of one forward of `tokens` tokens through the stage on one rank
// (backward: twice as many); over the whole model 2N + 4 L T C per token, the forward third
// of model_flops_per_token's 6N + 12 L T C, less the parameters no product uses.
double gpt_stage_forward_flops(const GptShape& shape, const StagePlan& plan, double tokens);

class GptStage {
 public:
  // `micro_batch` sequences of `shape.context` tokens per forward; `slots` micro-batches
  // may be in flight at once.
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
  int slots() const { return static_cast<int>(slots_.size()); }

  // GPT-2 initialisation from a counter-based RNG: normal(0, 0.02), residual output
  // projections 0.02 / sqrt(2 L), LayerNorm weights 1, biases 0. Each element depends only
  // on (seed, parameter name, position in the full tensor), so every layout gets the same
  // model.
  void init(std::uint64_t seed);

  // Forward of one micro-batch into `slot`. The first stage reads `tokens` [B, T] (int32),
  // the others `input` [B, T, C]. The last stage reads `targets` [B, T] and returns the
  // micro-batch's mean loss; other stages return 0 and leave output(slot) for the next.
  double forward(int slot, const Tensor* tokens, const Tensor* input, const Tensor* targets);
  const Tensor& output(int slot) const;

  // Backward of the micro-batch in `slot`, accumulating parameter gradients. The last stage
  // starts from its loss scaled by `loss_scale` (d total / d micro-batch mean); the others
  // from `dout` [B, T, C]. Afterwards input_grad() holds d loss / d input on stages
  // without the embedding.
  void backward(int slot, const Tensor* dout, double loss_scale);
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
  DType dtype_;
  Device device_;
  ParamSet params_;
  int wte_ = -1, wpe_ = -1, lnf_w_ = -1, lnf_b_ = -1;
  std::vector<int> units_;
  std::vector<UnitUse> forward_uses_, backward_uses_;
  std::vector<Block> blocks_;
  std::vector<Slot> slots_;
  StageHooks hooks_;
  // Scratch shared by all slots: forward temporaries and backward gradients.
  Tensor ap_, fp_, dres_, dln_, dqkv_, datty_, dfch_, dfcg_, dlnf_, att_scratch_;
};

}  // namespace ft
