#include "trainer/loop/step_metrics.h"

#include <string>

#include <fmt/format.h>

#include "comm/runtime.h"
#include "comm/topology.h"

namespace ft {

StepView view_step(MPI_Comm comm, const StepStats& s, double tokens, double flops_per_token,
                   double peak_flops_per_rank) {
  int ranks = 1;
  MPI_Comm_size(comm, &ranks);
  StepView v{s};
  v.tokens = tokens;
  v.slowest = max_over(comm, s.step_time);
  v.model_flops = tokens * flops_per_token;
  v.peak_flops = peak_flops_per_rank * ranks;
  // Idle share of the step's pipeline span (the slowest stage's schedule): a stage that
  // finishes early idles until the last one does, as in the theory's (pp-1)/(m+pp-1).
  const double span = max_over(comm, s.pipeline);
  const double idle = span > 0 ? 1.0 - (s.forward + s.backward) / span : 0.0;
  v.bubble = sum_over(comm, idle) / ranks;
  return v;
}

StepMetrics::StepMetrics() {
  auto add = [&](std::string name, std::string units, Scope scope, std::string doc,
                 std::function<double(const StepView&)> value) {
    schema_.add(std::move(name), std::move(units), scope, std::move(doc));
    value_.push_back(std::move(value));
  };
  using V = const StepView&;
  add("step", "", Scope::job, "optimizer step index, from 0", [](V v) { return v.s.step; });
  add("loss", "nats", Scope::job, "mean cross-entropy of the step's global batch", [](V v) { return v.s.loss; });
  add("nonfinite", "flag", Scope::job, "1 when the loss or gradient norm was NaN or infinite and no update was made",
      [](V v) { return v.s.nonfinite ? 1.0 : 0.0; });
  add("lr", "", Scope::job, "learning rate used by the step", [](V v) { return v.s.lr; });
  add("grad_norm", "", Scope::job, "global L2 norm of the gradient before clipping (under sync.outer: rank 0's island's, which it clips by)", [](V v) { return v.s.grad_norm; });
  add("tokens", "tokens", Scope::job, "tokens trained on in the step (global batch x context)",
      [](V v) { return v.tokens; });
  add("tokens_per_s", "tokens/s", Scope::job, "tokens / slowest rank's step_time", [](V v) { return v.tokens / v.slowest; });
  add("model_flops_per_s", "FLOP/s", Scope::job, "model FLOPs of the step (6N + 12LTC per token) / step time",
      [](V v) { return v.model_flops / v.slowest; });
  add("mfu", "", Scope::job, "model_flops_per_s / (ranks x peak FLOP/s per rank)",
      [](V v) { return v.model_flops / v.slowest / v.peak_flops; });
  add("bubble", "", Scope::job,
      "pipeline idle share: mean over ranks of 1 - (forward + backward time) / the slowest rank's pipeline_time",
      [](V v) { return v.bubble; });
  add("compression_error", "", Scope::job,
      "||compressed - dense|| / ||dense|| of the gradient sum (metrics.compression_error)",
      [](V v) { return v.s.compression_error; });
  add("eval_loss", "", Scope::job,
      "mean loss on eval.batches held-out batches after the step (eval.every); NaN on steps not evaluated",
      [](V v) { return v.s.eval_loss; });
  add("outer_sync", "", Scope::job,
      "fragments of the parameters whose outer sync across sync.outer.tier started after the step (1: all of them, "
      "without streaming); 0: none",
      [](V v) { return static_cast<double>(v.s.outer_fragments); });
  add("step_time", "s", Scope::per_rank, "wall time of the whole optimizer step", [](V v) { return v.s.step_time; });
  add("forward_time", "s", Scope::per_rank, "time in forward passes", [](V v) { return v.s.forward; });
  add("backward_time", "s", Scope::per_rank, "time in backward passes", [](V v) { return v.s.backward; });
  add("optimizer_time", "s", Scope::per_rank, "time in clipping and the optimizer update", [](V v) { return v.s.optimizer; });
  add("comm_exposed", "s", Scope::per_rank, "time the compute thread waited on communication",
      [](V v) { return v.s.exposed; });
  add("comm_time", "s", Scope::per_rank, "time the gradient sync ran, overlapped or not", [](V v) { return v.s.comm; });
  add("sync_start", "s", Scope::per_rank, "when the first gradient bucket's sync started, from step start",
      [](V v) { return v.s.sync_start; });
  add("backward_end", "s", Scope::per_rank, "when the last backward pass ended, from step start",
      [](V v) { return v.s.backward_end; });
  add("eval_time", "s", Scope::per_rank, "time of the evaluation after the step (not part of step_time)",
      [](V v) { return v.s.eval_time; });
  add("outer_sync_time", "s", Scope::per_rank,
      "time the step spent on the outer sync: starting it and, when one is applied, waiting for the tier and the outer "
      "step (with sync.outer.delay, only what the inner steps did not hide); 0 on other steps",
      [](V v) { return v.s.outer_time; });
  add("pipeline_time", "s", Scope::per_rank, "wall time of the step's forward/backward schedule",
      [](V v) { return v.s.pipeline; });
  add("pipeline_wait", "s", Scope::per_rank, "time waiting for activations or gradients from neighbouring stages",
      [](V v) { return v.s.pipeline_wait; });
  for (Tier t : kAllTiers) {
    const auto i = static_cast<std::size_t>(index(t));
    const std::string tier(tier_name(t));
    add("busy/" + tier, "s", Scope::per_rank, "time this rank's " + tier + " links were busy sending",
        [i](V v) { return v.s.traffic.busy[i]; });
    add("bytes_wire/" + tier, "bytes", Scope::per_rank, "bytes this rank put on " + tier + " links",
        [t](V v) { return static_cast<double>(v.s.traffic.wire_at(t)); });
    add("bytes_logical/" + tier, "bytes", Scope::per_rank, "bytes those messages stood for before compression, " + tier,
        [t](V v) { return static_cast<double>(v.s.traffic.logical_at(t)); });
    add("messages/" + tier, "", Scope::per_rank, "messages this rank sent on " + tier + " links", [i](V v) {
      double n = 0;
      for (const auto& kind : v.s.traffic.messages) n += static_cast<double>(kind[i]);
      return n;
    });
    add("compression_ratio/" + tier, "", Scope::per_rank,
        "bytes_logical / bytes_wire on " + tier + " links (1 when dense or idle)", [t](V v) {
          double wire = static_cast<double>(v.s.traffic.wire_at(t));
          return wire > 0 ? static_cast<double>(v.s.traffic.logical_at(t)) / wire : 1.0;
        });
    add("codec_time/" + tier, "s", Scope::per_rank, "time encoding and decoding for " + tier,
        [i](V v) { return v.s.traffic.codec[i]; });
  }
  for (Traffic k : {Traffic::dp, Traffic::tp, Traffic::pp})
    for (Tier t : kAllTiers) {
      const auto ki = static_cast<std::size_t>(k), ti = static_cast<std::size_t>(index(t));
      add(fmt::format("bytes_{}/{}", traffic_name(k), tier_name(t)), "bytes", Scope::per_rank,
          fmt::format("bytes of {} traffic this rank put on {} links", traffic_name(k), tier_name(t)),
          [ki, ti](V v) { return static_cast<double>(v.s.traffic.wire[ki][ti]); });
    }
}

StepRecord StepMetrics::record(const StepView& v) const {
  StepRecord r(schema_);
  for (std::size_t c = 0; c < value_.size(); ++c) r.set(static_cast<int>(c), value_[c](v));
  return r;
}

}  // namespace ft
