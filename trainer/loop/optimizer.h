// The inner optimizer (AdamW, plain SGD, or the sign of the gradient) over ranges of the flat parameter buffer (the
// whole buffer, or this rank's ZeRO shard), the learning-rate schedule and gradient
// clipping.
#pragma once

#include <cstdint>
#include <vector>

#include "models/ops.h"
#include "models/params.h"
#include "trainer/io/config.h"

namespace ft {

// Linear warm-up from 0 over `warmup` steps, then cosine decay to min_lr_ratio * lr at the
// last step. `step` counts from 0.
double learning_rate(const TrainConfig& c, int step);

// Factor that brings the global gradient norm down to `clip` (1 when below or clip = 0).
double clip_scale(double norm, double clip);

class Optimizer {
 public:
  // Updates the `owned` ranges of `params` (all of it, or this rank's ZeRO-1 part); AdamW's
  // m and v hold those ranges one after another (SGD keeps no state).
  Optimizer(const ParamSet& params, const TrainConfig& cfg, std::vector<FlatRange> owned);
  // One update with learning rate `lr`, gradients multiplied by `grad_scale` first.
  void step(const ParamSet& params, double lr, double grad_scale);

  std::int64_t steps_taken() const { return t_; }
  void set_steps_taken(std::int64_t t) { t_ = t; }
  // AdamW's moments; false for SGD and sign, whose m and v are empty.
  bool has_moments() const { return cfg_.optimizer == "adamw"; }
  const Tensor& m() const { return m_; }
  const Tensor& v() const { return v_; }
  const std::vector<FlatRange>& owned() const { return owned_; }
  // Where owned range i starts in m and v.
  std::int64_t state_offset(std::size_t i) const { return state_offsets_[i]; }
  // Bytes of optimizer state this rank keeps (m and v).
  std::int64_t state_bytes() const { return static_cast<std::int64_t>(m_.bytes() + v_.bytes()); }

 private:
  TrainConfig cfg_;
  std::vector<FlatRange> owned_;
  std::vector<std::int64_t> state_offsets_;
  std::vector<ops::UpdateRun> runs_;  // elements updated alike, merged
  Tensor m_, v_;
  std::int64_t t_ = 0;
};

}  // namespace ft
