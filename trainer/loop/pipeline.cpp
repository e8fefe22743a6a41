#include "trainer/loop/pipeline.h"

#include <stdexcept>

#include "models/ops.h"

namespace ft {

StagePlan stage_plan(const Config& cfg, const GridCoord& coord) {
  const auto& p = cfg.parallel;
  StagePlan plan{p.tp, coord.tp, 0, 0, coord.pp == 0, coord.pp == p.pp - 1};
  for (int s = 0; s <= coord.pp; ++s) {
    plan.first_layer += plan.num_layers;
    plan.num_layers = cfg.model.layers / p.pp + (s < cfg.model.layers % p.pp ? 1 : 0);
  }
  return plan;
}

PipelineRunner::PipelineRunner(const Config& cfg, const GridCoord& coord, Device device)
    : cfg_(cfg),
      stage_(coord.pp),
      dp_rank_(coord.dp),
      first_(coord.pp == 0),
      last_(coord.pp == cfg.parallel.pp - 1),
      micro_batch_(cfg.train.batch / (cfg.parallel.dp * cfg.parallel.microbatches)),
      schedule_(make_schedule(cfg.parallel.schedule, cfg.parallel.pp, coord.pp, cfg.parallel.microbatches)),
      slots_(max_live(schedule_)) {
  const std::int64_t B = micro_batch_, T = cfg.model.context, C = cfg.model.width;
  tokens_ = Tensor({B, T}, DType::i32, device);
  targets_ = Tensor({B, T}, DType::i32, device);
  recv_act_ = Tensor({B, T, C}, DType::f32, device);
  recv_grad_ = Tensor({B, T, C}, DType::f32, device);
  tokens_host_.resize(static_cast<std::size_t>(tokens_.numel()));
  targets_host_.resize(tokens_host_.size());
}

void PipelineRunner::forward(std::int64_t index, int microbatch, int slot, GptStage& model, BatchSource& data, Times& t) {
  const int first = dp_rank_ * (cfg_.train.batch / cfg_.parallel.dp) + microbatch * micro_batch_;
  data.fill(index, first, micro_batch_, tokens_host_.data(), targets_host_.data());
  ops::upload(tokens_, tokens_host_.data());
  ops::upload(targets_, targets_host_.data());
  const double t0 = now_seconds();
  const double loss = model.forward(slot, &tokens_, &recv_act_, &targets_);
  t.forward += now_seconds() - t0;
  if (last_) t.loss_sum += loss;
}

void PipelineRunner::exchange(Communicator& pp, Buffer out, int to, Buffer in, int from, Times& t) {
  if (to < 0 && from < 0) return;
  const double t0 = now_seconds();
  Work w = pp.exchange(out, to, in, from);  // `out` is a snapshot: its slot may be reused at once
  if (from >= 0)
    w.wait();
  else
    sent_.push_back(std::move(w));
  t.wait += now_seconds() - t0;
}

void PipelineRunner::finish_sends(Times& t) {
  const double t0 = now_seconds();
  for (const Work& w : sent_) w.wait();
  sent_.clear();
  t.wait += now_seconds() - t0;
}

double PipelineRunner::evaluate(int index, GptStage& model, BatchSource& data, Communicator& pp) {
  Times t;
  for (int m = 0; m < cfg_.parallel.microbatches; ++m) {
    exchange(pp, m > 0 && !last_ ? model.output(0).buffer() : Buffer{}, m > 0 && !last_ ? stage_ + 1 : -1,
             first_ ? Buffer{} : recv_act_.buffer(), first_ ? -1 : stage_ - 1, t);
    forward(index, m, 0, model, data, t);
  }
  exchange(pp, last_ ? Buffer{} : model.output(0).buffer(), last_ ? -1 : stage_ + 1, Buffer{}, -1, t);
  finish_sends(t);
  return t.loss_sum;
}

PipelineRunner::Times PipelineRunner::run(int step, GptStage& model, BatchSource& data, Communicator& pp,
                                          const std::function<void(bool before, bool last)>& around_backward) {
  const auto& p = cfg_.parallel;
  // Each micro-batch's loss is a mean over its tokens; the step's loss is their mean over
  // the micro-batches here and, through the averaging all-reduce, over data-parallel ranks.
  const double loss_scale = 1.0 / p.microbatches;
  Times t;
  int live = 0;
  const double start = now_seconds();
  Buffer out;  // what the last computation produced for a neighbour, and which
  int to = -1;
  for (const PipeAction& a : schedule_) {
    const int slot = a.microbatch % slots_;
    const bool fwd = a.kind == PipeAction::forward;
    const bool receives = fwd ? !first_ : !last_;
    exchange(pp, out, to, receives ? (fwd ? recv_act_ : recv_grad_).buffer() : Buffer{},
             receives ? (fwd ? stage_ - 1 : stage_ + 1) : -1, t);
    if (fwd) {
      if (++live > slots_) throw std::logic_error("pipeline holds more micro-batches than it has slots");
      forward(step, a.microbatch, slot, model, data, t);
      out = last_ ? Buffer{} : model.output(slot).buffer();
      to = last_ ? -1 : stage_ + 1;
    } else {
      --live;
      const double t0 = now_seconds();
      const bool completes = a.microbatch == p.microbatches - 1;
      around_backward(true, completes);
      model.backward(slot, &recv_grad_, loss_scale);
      around_backward(false, completes);
      // A GPU's backward is timed whole. cpu-async is left queued: it is for finding
      // missing waits, and a drain here would hide them.
      if (tokens_.device() == Device::cuda) ops::synchronize(Device::cuda);
      t.backward += now_seconds() - t0;
      out = first_ ? Buffer{} : model.input_grad().buffer();
      to = first_ ? -1 : stage_ - 1;
    }
  }
  exchange(pp, out, to, Buffer{}, -1, t);
  finish_sends(t);
  t.backward_end = now_seconds();
  t.span = t.backward_end - start;
  return t;
}

}  // namespace ft
