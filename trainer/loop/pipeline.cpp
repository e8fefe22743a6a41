#include "trainer/loop/pipeline.h"

#include <algorithm>
#include <stdexcept>

#include "models/ops.h"

namespace ft {

StagePlan stage_plan(const Config& cfg, const GridCoord& coord) {
  const auto& p = cfg.parallel;
  const int chunks = p.pp * p.virtual_stages, layers = cfg.model.layers;
  StagePlan plan{p.tp, coord.tp, {}, coord.pp == 0, coord.pp == p.pp - 1, p.vocab_parallel && p.tp > 1};
  // Virtual stage g holds layers / chunks blocks, one more for the first layers % chunks;
  // this stage's chunks are g = c pp + stage.
  auto first = [&](int g) { return g * (layers / chunks) + std::min(g, layers % chunks); };
  for (int c = 0; c < p.virtual_stages; ++c) {
    const int g = c * p.pp + coord.pp;
    plan.chunks.push_back({first(g), first(g + 1) - first(g)});
  }
  return plan;
}

PipelineRunner::PipelineRunner(const Config& cfg, const GridCoord& coord, Device device)
    : cfg_(cfg),
      stage_(coord.pp),
      dp_rank_(coord.dp),
      last_(coord.pp == cfg.parallel.pp - 1),
      micro_batch_(cfg.train.batch / (cfg.parallel.dp * cfg.parallel.microbatches)),
      chunks_(cfg.parallel.virtual_stages),
      schedule_(make_schedule(cfg.parallel.schedule, cfg.parallel.pp, coord.pp, cfg.parallel.microbatches,
                              cfg.parallel.virtual_stages)),
      slots_(max_live(schedule_)) {
  const std::int64_t B = micro_batch_, T = cfg.model.context, C = cfg.model.width;
  tokens_ = Tensor({B, T}, DType::i32, device);
  targets_ = Tensor({B, T}, DType::i32, device);
  recv_act_ = Tensor({B, T, C}, DType::f32, device);
  recv_grad_ = Tensor({B, T, C}, DType::f32, device);
  tokens_host_.resize(static_cast<std::size_t>(tokens_.numel()));
  targets_host_.resize(tokens_host_.size());
}

void PipelineRunner::forward(std::int64_t index, const PipeAction& a, int slot, GptStage& model, BatchSource& data,
                             Times& t) {
  const int first = dp_rank_ * (cfg_.train.batch / cfg_.parallel.dp) + a.microbatch * micro_batch_;
  data.fill(index, first, micro_batch_, tokens_host_.data(), targets_host_.data());
  ops::upload(tokens_, tokens_host_.data());
  ops::upload(targets_, targets_host_.data());
  const double t0 = now_seconds();
  const double loss = model.forward(slot, &tokens_, &recv_act_, &targets_, a.chunk);
  t.forward += now_seconds() - t0;
  if (last_ && a.chunk == chunks_ - 1) t.loss_sum += loss;
}

void PipelineRunner::exchange(Communicator& pp, std::vector<Message> out, std::vector<Message> in, Times& t) {
  if (out.empty() && in.empty()) return;
  const double t0 = now_seconds();
  const bool receives = !in.empty();
  Work w = pp.exchange(std::move(out), std::move(in));  // what goes out is a snapshot: its slot may be reused at once
  if (receives)
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

PipePeer PipelineRunner::source(const PipeAction& a) const { return pipe_source(cfg_.parallel.pp, chunks_, stage_, a); }
PipePeer PipelineRunner::destination(const PipeAction& a) const {
  return pipe_destination(cfg_.parallel.pp, chunks_, stage_, a);
}

double PipelineRunner::evaluate(int index, GptStage& model, BatchSource& data, Communicator& pp) {
  // Forward only, in the order GPipe's schedule runs the forwards (with chunks, Megatron's
  // groups of pp micro-batches: every chunk's micro-batches first would leave the last stage
  // sending back to the first while the first still sends on), each micro-batch into slot 0
  // and sent on at the next exchange.
  Times t;
  std::vector<Message> out;
  for (const PipeAction& a : make_schedule("gpipe", cfg_.parallel.pp, stage_, cfg_.parallel.microbatches, chunks_)) {
    if (a.kind != PipeAction::forward) break;
    const PipePeer from = source(a), to = destination(a);
    std::vector<Message> in;
    if (from.stage >= 0) in.push_back({recv_act_.buffer(), from.stage});
    exchange(pp, std::move(out), std::move(in), t);
    out.clear();
    forward(index, a, 0, model, data, t);
    if (to.stage >= 0) out.push_back({model.output(0, a.chunk).buffer(), to.stage});
  }
  exchange(pp, std::move(out), {}, t);
  finish_sends(t);
  return t.loss_sum;
}

PipelineRunner::Times PipelineRunner::run(int step, GptStage& model, BatchSource& data, Communicator& pp,
                                          const std::function<void(bool before, bool last, int chunk)>& around_backward) {
  const auto& p = cfg_.parallel;
  // Each micro-batch's loss is a mean over its tokens; the step's loss is their mean over
  // the micro-batches here and, through the averaging all-reduce, over data-parallel ranks.
  const double loss_scale = 1.0 / p.microbatches;
  Times t;
  std::vector<int> live(static_cast<std::size_t>(chunks_), 0);
  const double start = now_seconds();
  std::vector<Message> out;  // what the computations since the last exchange produced for neighbours
  for (std::size_t i = 0; i < schedule_.size(); ++i) {
    const PipeAction& a = schedule_[i];
    if (!a.joined) {
      // This computation's input, and those of the ones joined to it, in one group with `out`.
      std::vector<Message> in;
      for (std::size_t j = i; j < schedule_.size() && (j == i || schedule_[j].joined); ++j) {
        const PipeAction& b = schedule_[j];
        const bool fwd = b.kind == PipeAction::forward;
        if (const PipePeer from = source(b); from.stage >= 0) in.push_back({(fwd ? recv_act_ : recv_grad_).buffer(), from.stage});
      }
      exchange(pp, std::move(out), std::move(in), t);
      out.clear();
    }
    const int slot = a.microbatch % slots_;
    const PipePeer to = destination(a);
    if (a.kind == PipeAction::forward) {
      if (++live[static_cast<std::size_t>(a.chunk)] > slots_)
        throw std::logic_error("pipeline holds more micro-batches than it has slots");
      forward(step, a, slot, model, data, t);
      if (to.stage >= 0) out.push_back({model.output(slot, a.chunk).buffer(), to.stage});
    } else {
      --live[static_cast<std::size_t>(a.chunk)];
      const double t0 = now_seconds();
      const bool completes = a.microbatch == p.microbatches - 1;
      around_backward(true, completes, a.chunk);
      model.backward(slot, &recv_grad_, loss_scale, a.chunk);
      around_backward(false, completes, a.chunk);
      // A GPU's backward is timed whole. cpu-async is left queued: it is for finding
      // missing waits, and a drain here would hide them.
      if (tokens_.device() == Device::cuda) ops::synchronize(Device::cuda);
      t.backward += now_seconds() - t0;
      if (to.stage >= 0) out.push_back({model.input_grad().buffer(), to.stage});
    }
  }
  exchange(pp, std::move(out), {}, t);
  finish_sends(t);
  t.backward_end = now_seconds();
  t.span = t.backward_end - start;
  return t;
}

}  // namespace ft
