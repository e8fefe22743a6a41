#include "trainer/claims/cost_model.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace ft::cost {

double training_flops(double params, double tokens) { return 6.0 * params * tokens; }

double compute_seconds(double flops, double gpus, double peak, double mfu) { return flops / (gpus * peak * mfu); }

double params_for_budget(double flops, double tokens) { return flops / (6.0 * tokens); }

double ring_allreduce_bytes(double bytes, double ranks) { return ranks <= 1 ? 0.0 : 2.0 * (ranks - 1) / ranks * bytes; }

int ring_steps(int fanout) { return fanout <= 1 ? 0 : 2 * (fanout - 1); }

double link_seconds(double bytes, double bits_per_second, double latency, int steps) {
  return (bits_per_second > 0 ? bytes * 8.0 / bits_per_second : 0.0) + latency * steps;
}

double knee_bits_per_second(double bytes, double hideable, double fixed) {
  double window = hideable - fixed;
  return window > 0 ? bytes * 8.0 / window : INFINITY;
}

Answer answer(const Scenario& s) {
  Answer a{};
  a.sequences_per_step = s.gpus / s.gpus_per_seq;
  a.tokens_per_step = a.sequences_per_step * s.seq_len;
  // Each model-parallel group of gpus_per_seq GPUs trains one sequence per step.
  a.step_seconds = compute_seconds(training_flops(s.params, s.seq_len), s.gpus_per_seq, s.peak, s.mfu);
  a.steps = s.tokens / a.tokens_per_step;
  a.run_seconds = a.steps * a.step_seconds;
  a.run_flops = training_flops(s.params, s.tokens);
  a.gpu_hours = s.gpus * a.run_seconds / 3600.0;
  a.cost = a.gpu_hours * s.gpu_hour_cost;
  a.grad_bytes = s.params * s.grad_bytes_per_param;
  // Hierarchical all-reduce across `sites` top-level groups: the gradient is sharded over
  // each group's ranks below the top, so each group's uplink carries 2 (k-1)/k of one
  // whole gradient (compressed), whatever the number of ranks behind it.
  a.top_bytes_per_group = s.sites > 1 ? ring_allreduce_bytes(a.grad_bytes, s.sites) / s.compression
                                      : a.grad_bytes / s.compression;
  a.top_bits_per_second = a.top_bytes_per_group * 8.0 / s.comm_window;
  double lat = s.latency * ring_steps(static_cast<int>(std::max(1.0, s.sites)));
  double total = a.top_bytes_per_group * 8.0 / std::max(a.top_bits_per_second, 1e-300) + lat;
  a.latency_share = total > 0 ? lat / total : 0.0;
  return a;
}

double rate_for_utilisation(double bytes_per_step, double step_seconds, double period, double hideable_steps,
                            double utilisation) {
  const double seconds = step_seconds * (hideable_steps + period * (1.0 / utilisation - 1.0));
  return 8.0 * period * bytes_per_step / seconds;
}

Scenario c10_system(const Scenario& s) {
  Scenario b = s;
  const double ratio = 500e3 * 2.5 / s.gpus;
  b.params = s.params * std::sqrt(ratio);
  b.gpus = 500e3;
  b.peak = s.peak * 2.5;
  b.gpus_per_seq = 72;
  return b;
}

std::vector<Claim> claims(const Scenario& s) {
  std::vector<Claim> out;
  auto add = [&](std::string id, std::string claim, std::string inputs, std::string unit, double stated, double computed) {
    out.push_back({std::move(id), std::move(claim), std::move(inputs), std::move(unit), stated, computed});
  };
  const double day = 86400, month = 30 * day;
  const Answer a = answer(s);

  add("C1", "model size a FLOP budget allows", "1e26 FLOPs, 30T tokens", "parameters", 550e9,
      params_for_budget(1e26, 30e12));
  add("C1", "... at 10T tokens", "1e26 FLOPs, 10T tokens", "parameters", 1.7e12, params_for_budget(1e26, 10e12));
  add("C2", "per-GPU rate of 1e26 FLOPs in 28M H100-hours", "1e26 FLOPs, 28e6 GPU-hours", "FLOP/s", 1e15,
      1e26 / (28e6 * 3600));
  add("C3", "H100s for 1e20 FLOP/s", "2e15 FLOP/s each", "GPUs", 50000, 1e20 / 2e15);
  std::string llama = fmt::format("{:.3g} params, {:.0f}-token sequences, {:.0f} GPUs/sequence, MFU {:.2g}, {:.3g} FLOP/s",
                                  s.params, s.seq_len, s.gpus_per_seq, s.mfu, s.peak);
  add("C4", "Llama-3-405B step time", llama, "s", 6, a.step_seconds);
  std::string batch = fmt::format("{:.0f} GPUs, {:.0f} GPUs/sequence, {:.0f}-token sequences", s.gpus, s.gpus_per_seq,
                                  s.seq_len);
  add("C5", "sequences per minibatch", batch, "sequences", 2048, a.sequences_per_step);
  add("C5", "tokens per minibatch", batch, "tokens", 16e6, a.tokens_per_step);
  add("C5", "steps for the run", batch + fmt::format(", {:.3g} tokens", s.tokens), "steps", 1e6, a.steps);
  add("C6", "compute of the run (6 N D)", fmt::format("{:.3g} params, {:.3g} tokens", s.params, s.tokens), "FLOPs", 4e25,
      a.run_flops);
  add("C7", "gradient bytes crossing the top level per step",
      fmt::format("{:.3g} params x {:.0f} bytes", s.params, s.grad_bytes_per_param), "bytes", 1.6e12, a.grad_bytes);
  add("C7", "rate to move them in the sync window",
      fmt::format("{:.3g} bytes in {:.2g} s", a.grad_bytes, s.comm_window), "bit/s", 12e12,
      a.grad_bytes * 8.0 / s.comm_window);
  {
    // 24K GPUs in pods of 3,072 (8 pods); each GPU's 400 Gbit NIC, 1:7 above the pods; 20 us
    // per step across the top. The top level all-reduce carries 2 (k-1)/k of the gradient.
    const double pods = 24576.0 / 3072.0, uplink = 3072 * 400e9 / 7.0, lat = s.latency > 0 ? s.latency : 20e-6;
    double bytes = ring_allreduce_bytes(a.grad_bytes, pods);
    double bw_time = bytes * 8.0 / uplink, lat_time = lat * ring_steps(static_cast<int>(pods));
    add("C8", "latency's share of the top-level sync (claim: it does not matter)",
        fmt::format("8 pods of 3072 GPUs, 400 Gbit/GPU at 1:7 above pods, {:.3g} s per step", lat), "share", 0.01,
        lat_time / (lat_time + bw_time));
  }
  add("C9", "matrix tile for full use of 1e15 FLOP/s on 3 TB/s (bf16)", "intensity n/3 FLOP/byte >= 1e15 / 3e12",
      "tile side", 1000, 3.0 * 1e15 / 3e12);
  {
    const double ratio = 500e3 * 2.5 / s.gpus;
    const Scenario b = c10_system(s);
    const double params = b.params;
    Answer bb = answer(b);
    const double window = s.comm_window * bb.step_seconds / a.step_seconds;
    add("C10", "compute of 500K B200 over 16K H100", "500e3 x 2.5 / 16384", "x", 78, ratio);
    add("C10", "model size, Chinchilla-scaled", fmt::format("{:.3g} x sqrt({:.3g})", s.params, ratio), "parameters", 3.5e12,
        params);
    add("C10", "sequences per minibatch", "500e3 / 72", "sequences", 7000, bb.sequences_per_step);
    add("C10", "step shortening", "72 GPUs/sequence, 2.5x faster", "x", 2.5, a.step_seconds / bb.step_seconds);
    add("C10", "cross-site gradient rate", fmt::format("{:.3g} bytes in {:.2g} s", bb.grad_bytes, window), "bit/s", 300e12,
        bb.grad_bytes * 8.0 / window);
  }
  add("C11", "Trainium2 cluster in H100 equivalents", "400e3 x 0.65e15 / 1e15", "H100s", 250e3, 400e3 * 0.65e15 / 1e15);
  add("C11", "2 months on 50K H100 at 40%", "50e3 x 0.4 x 1e15 x 60 days", "FLOPs", 1e26, 50e3 * 0.4 * 1e15 * 2 * month);
  add("C11", "4 months on 50K H100 at 40%", "50e3 x 0.4 x 1e15 x 120 days", "FLOPs", 2e26, 50e3 * 0.4 * 1e15 * 4 * month);
  add("C12", "GPT-4's 90 days on 25K GPUs, on 600K", "90 days x 25e3 / 600e3", "days", 3.5, 90.0 * 25e3 / 600e3);
  add("C13", "2,000 H100s for a month at 40%", "2e3 x 0.4 x 1e15 x 30 days", "FLOPs", 2e24, 2e3 * 0.4 * 1e15 * month);
  add("C14", "50K H100s for 4 months at $2/GPU-hour", "50e3 x 4 x 30 x 24 h x $2", "$", 300e6, 50e3 * 4 * 30 * 24 * 2.0);
  return out;
}

}  // namespace ft::cost
