#include "trainer/loop/optimizer.h"

#include <algorithm>
#include <cmath>

#include "models/ops.h"

namespace ft {

double learning_rate(const TrainConfig& c, int step) {
  if (step < c.warmup) return c.lr * (step + 1) / c.warmup;
  int decay_steps = c.steps - c.warmup;
  if (decay_steps <= 1) return c.lr;
  double progress = std::min(1.0, static_cast<double>(step - c.warmup) / (decay_steps - 1));
  double min_lr = c.lr * c.min_lr_ratio;
  return min_lr + 0.5 * (c.lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

double clip_scale(double norm, double clip) {
  if (clip <= 0 || !(norm > clip)) return 1.0;
  return clip / (norm + 1e-6);
}

Optimizer::Optimizer(const ParamSet& params, const TrainConfig& cfg, std::vector<FlatRange> owned)
    : cfg_(cfg), owned_(std::move(owned)) {
  std::int64_t state = 0;
  for (const FlatRange& r : owned_) {
    state_offsets_.push_back(state);
    for (const ParamInfo& p : params.infos()) {
      std::int64_t b = std::max(r.begin, p.offset), e = std::min(r.end, p.offset + p.numel());
      if (b >= e) continue;
      const double wd = p.kind == ParamKind::matrix || (p.kind == ParamKind::embedding && cfg.decay_embeddings)
                            ? cfg.weight_decay
                            : 0.0;
      std::int64_t at = state + (b - r.begin);
      if (!runs_.empty() && runs_.back().weight_decay == wd && runs_.back().range.end == b &&
          runs_.back().state + (b - runs_.back().range.begin) == at)
        runs_.back().range.end = e;  // merge neighbours with the same rule
      else
        runs_.push_back({{b, e}, at, wd});
    }
    state += r.size();
  }
  const Tensor& flat = params.flat_values();
  const std::int64_t moments = has_moments() ? state : 0;
  m_ = Tensor({moments}, flat.dtype(), flat.device());
  v_ = Tensor({moments}, flat.dtype(), flat.device());
}

void Optimizer::step(const ParamSet& params, double lr, double grad_scale) {
  ++t_;
  if (!has_moments()) {
    ops::sgd_update(params.flat_values(), params.flat_grads(), nullptr, runs_,
                    {lr, 0.0, false, grad_scale, cfg_.optimizer == "sign"});
    return;
  }
  double c1 = 1.0 - std::pow(cfg_.beta1, static_cast<double>(t_));
  double c2 = 1.0 - std::pow(cfg_.beta2, static_cast<double>(t_));
  ops::adamw_update(params.flat_values(), params.flat_grads(), m_, v_, runs_,
                    {lr, cfg_.beta1, cfg_.beta2, cfg_.eps, c1, c2, grad_scale});
}

}  // namespace ft
