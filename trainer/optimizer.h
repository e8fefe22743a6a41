// AdamW over a range of the flat parameter buffer (the whole buffer, or this rank's ZeRO-1
// shard), the learning-rate schedule and gradient clipping.
#pragma once

#include <cstdint>
#include <vector>

#include "models/params.h"
#include "trainer/config.h"

namespace ft {

// Linear warm-up from 0 over `warmup` steps, then cosine decay to min_lr_ratio * lr at the
// last step. `step` counts from 0.
double learning_rate(const TrainConfig& c, int step);

// Factor that brings the global gradient norm down to `clip` (1 when below or clip = 0).
double clip_scale(double norm, double clip);

class AdamW {
 public:
  // Updates flat elements [begin, end) of `params`; m and v cover just that range.
  AdamW(const ParamSet& params, const TrainConfig& cfg, std::int64_t begin, std::int64_t end);
  // One update with learning rate `lr`, gradients multiplied by `grad_scale` first.
  void step(const ParamSet& params, double lr, double grad_scale);

  std::int64_t steps_taken() const { return t_; }
  void set_steps_taken(std::int64_t t) { t_ = t; }
  const Tensor& m() const { return m_; }
  const Tensor& v() const { return v_; }
  std::int64_t begin() const { return begin_; }
  std::int64_t end() const { return end_; }

 private:
  struct Segment {
    std::int64_t begin, end;  // flat buffer range
    bool decay;
  };
  TrainConfig cfg_;
  std::int64_t begin_, end_;
  std::vector<Segment> segments_;
  Tensor m_, v_;
  std::int64_t t_ = 0;
};

}  // namespace ft
