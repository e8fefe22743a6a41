// The cost model: the formulas behind `fibertrain claims`, the calibration of measured runs
// and the sweep report's predictions. Every formula is written out in docs/claims.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ft::cost {

// ---- compute ----------------------------------------------------------------------------
// Training FLOPs of N parameters over D tokens: 6 N D (forward 2, backward 4 per parameter
// and token).
double training_flops(double params, double tokens);
// Seconds for `flops` on `gpus` devices of `peak` FLOP/s at utilisation `mfu`.
double compute_seconds(double flops, double gpus, double peak, double mfu);
// The parameter count a FLOP budget allows at D tokens: C / (6 D).
double params_for_budget(double flops, double tokens);

// ---- collectives ------------------------------------------------------------------------
// Bytes one rank sends in a ring all-reduce of S bytes over p ranks: 2 (p-1)/p x S.
double ring_allreduce_bytes(double bytes, double ranks);
// Sequential ring steps of an all-reduce at a level of fan-out k: 2 (k - 1).
int ring_steps(int fanout);

// ---- time on a link ---------------------------------------------------------------------
// Seconds to push `bytes` through `bits_per_second` with `latency` per sequential step.
double link_seconds(double bytes, double bits_per_second, double latency, int steps);
// The knee: the bandwidth (bit/s) below which `bytes` per step no longer hide in
// `hideable` seconds (after `fixed` seconds of latency and overhead).
double knee_bits_per_second(double bytes, double hideable, double fixed = 0);

// The top-level rate (bit/s) that keeps compute utilisation at `utilisation` for a method
// that moves period x `bytes_per_step` bytes once every `period` steps of `step_seconds`
// compute, a transfer overlapping `hideable_steps` steps of it: exposure may be
// period x step x (1/u - 1), so the transfer may take step x (hideable + period (1/u - 1)).
double rate_for_utilisation(double bytes_per_step, double step_seconds, double period, double hideable_steps,
                            double utilisation);

// ---- one question, all of it -----------------------------------------------------------
// A training run and its cluster, as the claims describe them.
struct Scenario {
  double params = 405e9;
  double tokens = 16e12;            // in the whole run
  double gpus = 16384;
  double peak = 1e15;               // FLOP/s per GPU
  double mfu = 0.4;
  double seq_len = 8192;
  double gpus_per_seq = 8;          // the model-parallel group that works on one sequence
  double grad_bytes_per_param = 4;  // fp32 gradients
  double comm_window = 1.0;         // seconds of the step the top-level sync may take
  double sites = 1;                 // data-parallel replicas' top-level groups (pods or sites)
  double compression = 1;           // bytes ratio of the top-level codec
  double latency = 0;               // top-level link latency, s
  double gpu_hour_cost = 2;         // $ per GPU-hour
};

struct Answer {
  double sequences_per_step, tokens_per_step, step_seconds, steps, run_seconds, run_flops, gpu_hours, cost;
  double grad_bytes;           // the whole gradient, one copy
  double top_bytes_per_group;  // bytes one top-level group sends across its uplink per step (hierarchical)
  double top_bits_per_second;  // the uplink rate that moves them in comm_window
  double latency_share;        // the share of the top-level time that is latency
};
Answer answer(const Scenario& s);
// C10's system from the C4 scenario `s`: 500K B200 (2.5x an H100's FLOP/s) in NVL72
// domains of 72 GPUs per sequence, the model grown as the square root of the compute
// (Chinchilla) over `s`'s.
Scenario c10_system(const Scenario& s);

// ---- the claims ------------------------------------------------------------------------
struct Claim {
  std::string id, claim, inputs, unit;
  double stated, computed;
};
// Every claim of docs/claims.md, computed from `s` where the claim uses its inputs and from its
// own stated inputs otherwise.
std::vector<Claim> claims(const Scenario& s);

}  // namespace ft::cost
