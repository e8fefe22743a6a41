// The training loop: schedule -> forward/backward of micro-batches -> gradient sync ->
// optimizer -> metrics, one optimizer step at a time.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "comm/runtime.h"
#include "comm/traffic.h"
#include "comm/watchdog.h"
#include "models/gpt.h"
#include "trainer/io/checkpoint.h"
#include "trainer/io/config.h"
#include "trainer/io/data.h"
#include "trainer/loop/grad_sync.h"
#include "trainer/loop/layout.h"
#include "trainer/io/metrics.h"
#include "trainer/loop/optimizer.h"
#include "trainer/loop/outer_sync.h"
#include "trainer/loop/pipeline.h"
#include "trainer/loop/schedule.h"
#include "trainer/loop/step_metrics.h"

namespace ft {

struct RunOptions {
  std::string out;      // HDF5 step log ("" = none)
  std::string resume;   // checkpoint to resume from ("" = fresh start)
  std::string command;  // the command line, for the log's attributes
  std::string config;   // the config file ("" = defaults), an input no output may replace
  bool overwrite = false;  // replace an existing step log
};

class Trainer {
 public:
  // Collective: builds the topology and communicators, then everything else; a user error
  // on any rank stops every rank (JobStopped).
  static std::unique_ptr<Trainer> create(const Config& cfg, const RunOptions& opts, const MpiRuntime& mpi);
  ~Trainer();
  // Collective: trains cfg.train.steps steps (from the resumed step), logs, checkpoints.
  void run();
  // After an error that ends the job on this rank (local work, never throws): the step log's
  // pending steps written and the file closed, so every step it logged stays readable.
  void close_step_log() noexcept;

  const Layout& layout() const { return layout_; }
  // Each logged step's slowest-rank step time (every rank).
  const std::vector<double>& step_times() const { return step_times_; }
  double peak_flops() const { return peak_flops_; }
  double flops_per_token() const { return flops_per_token_; }

 private:
  Trainer(const Config& cfg, const RunOptions& opts, const MpiRuntime& mpi, Layout layout);
  void write_run_attributes();
  void train_step(int step, StepStats& s);
  void record_step(const StepStats& s);
  // After a step with a NaN or infinite loss or gradient norm: stops every rank with one
  // message (the log flushed), or goes on under train.nonfinite: skip.
  void stop_or_skip(const StepStats& s);
  // After a step during which a stop signal arrived on some rank: every rank saves, flushes
  // and stops with exit code 128 + the signal.
  [[noreturn]] void stop_on_signal(int steps_done, int sig);
  double global_grad_norm();
  double evaluate(int steps_done);
  void restore_rank_state(const std::string& path);
  // Writes the checkpoint for `steps_done` steps; returns its path.
  std::string save(int steps_done);
  void print_summary() const;

  Config cfg_;
  RunOptions opts_;
  const MpiRuntime& mpi_;
  Layout layout_;
  Algorithm sync_algo_ = Algorithm::ring;
  PipelineRunner pipeline_;
  std::unique_ptr<BatchSource> data_;
  std::unique_ptr<BatchSource> eval_data_;  // with eval.every
  std::unique_ptr<GptStage> model_;
  std::unique_ptr<GradSync> sync_;  // when the group that syncs every step has several replicas
  // With sync.outer across several islands: the outer sync, and the island's communicators.
  std::unique_ptr<OuterSync> outer_;
  Communicator* step_dp_ = nullptr;  // the data-parallel group of the every-step sync
  MPI_Comm island_ = MPI_COMM_WORLD;  // the ranks that share parameters between outer syncs
  bool first_island_ = true;          // this rank's island holds data-parallel replica 0
  bool arm_sync_ = false;    // during a backward that reports gradients (the last, or with ZeRO-2 and 3 each)
  double blocking_comm_ = 0;  // seconds the compute thread waited for TP, PP or ZeRO communication this step
  // Runs `fn`, communication that blocks the compute thread, and counts its time as exposed.
  template <class F> void blocking(F&& fn) {
    const double t0 = now_seconds();
    fn();
    blocking_comm_ += now_seconds() - t0;
  }
  TrafficSnapshot traffic_mark_;  // where the traffic of the step being run starts
  // Flat ranges whose squares count towards the global gradient norm on this rank: each
  // gradient element of the model counted exactly once across the job.
  std::vector<FlatRange> norm_ranges_;
  std::unique_ptr<Optimizer> opt_;
  StepMetrics metrics_;
  std::unique_ptr<StepLog> log_;
  std::unique_ptr<Watchdog> watchdog_;  // while run() trains
  bool first_stage_ = true, last_stage_ = true;
  int wte_ = -1;  // the tied embedding's parameter index, summed across stages when pp > 1
  int first_step_ = 0;
  double flops_per_token_ = 0;
  double peak_flops_ = 0;
  std::vector<double> step_times_;
  // For the summary (rank 0).
  double sum_tokens_per_s_ = 0, sum_exposed_share_ = 0;
  std::array<double, kTiers> sum_tier_bytes_{};
  int summary_steps_ = 0;
};

// Model FLOPs per trained token: 6 N (forward + backward of every parameter's multiply-add)
// plus 12 L T C for the attention score and value products (PaLM's formula; the kernels
// compute the full T x T block).
double model_flops_per_token(const ModelConfig& m);
std::int64_t parameter_count(const ModelConfig& m);

// The DP sync algorithm sync.algorithm names, for a group with that hierarchy; auto =
// hierarchical when the group spans several tiers, else ring.
Algorithm resolve_sync_algorithm(const std::string& name, const HierarchyPlan& hierarchy);

// The compression section as per-tier codecs for a DP sync over `members` (world ranks, in
// group order), of the tiers from `lowest` up to `highest`; throws UserError for what cannot
// run (a non-cast codec below the top tier, ZeRO-1 with `zero_applies`, native sync). The
// trainer and the step simulator both take their codecs from here.
TierCodecs tier_codecs(const Config& cfg, const Topology& topo, const std::vector<int>& members, Algorithm algo,
                       Tier lowest = Tier::intra_node, Tier highest = Tier::inter_site, bool zero_applies = true);
// The every-step sync's codecs for `members`: of every tier, or under an outer sync across
// `outer`, of the tiers below it.
TierCodecs step_tier_codecs(const Config& cfg, const Topology& topo, const std::vector<int>& members, Algorithm algo,
                            std::optional<Tier> outer);
// Split at a tier (dp_split_tier): the codecs of the all-reduce across it, of the tier and
// above, for the members `across` the units: the outer sync's, or HSDP's all-reduce of each
// shard. It sends a segment of a flat buffer, so codecs that need whole matrices are refused.
TierCodecs split_tier_codecs(const Config& cfg, const Topology& topo, const std::vector<int>& across, Algorithm algo);
// Why sync.outer, or parallel.shard_within, changes nothing when every data-parallel replica
// sits in one unit of its tier.
std::string outer_in_one_unit(const Config& cfg);
std::string shard_in_one_unit(const Config& cfg);

}  // namespace ft
