// The training loop: schedule -> forward/backward of micro-batches -> gradient sync ->
// optimizer -> metrics, one optimizer step at a time.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "comm/runtime.h"
#include "models/gpt.h"
#include "trainer/checkpoint.h"
#include "trainer/config.h"
#include "trainer/data.h"
#include "trainer/metrics.h"
#include "trainer/optimizer.h"

namespace ft {

struct RunOptions {
  std::string out;      // HDF5 step log ("" = none)
  std::string resume;   // checkpoint to resume from ("" = fresh start)
  std::string command;  // the command line, for the log's attributes
};

class Trainer {
 public:
  // Builds everything; local work only (no collectives), so callers run it in run_phase.
  Trainer(const Config& cfg, const RunOptions& opts, const MpiRuntime& mpi);
  ~Trainer();
  // Collective: trains cfg.train.steps steps (from the resumed step), logs, checkpoints.
  void run();
  // Each logged step's slowest-rank step time (every rank), and this rank's peak FLOP/s.
  const std::vector<double>& step_times() const { return step_times_; }
  double peak_flops() const { return peak_flops_; }
  double flops_per_token() const { return flops_per_token_; }

 private:
  struct StepTimes;
  void write_run_attributes();
  void train_step(int step, StepTimes& times, double& loss, double& grad_norm);
  void record_step(int step, const StepTimes& times, double loss, double lr, double grad_norm);
  void save(int steps_done);
  void print_summary() const;

  Config cfg_;
  RunOptions opts_;
  const MpiRuntime& mpi_;
  int micro_batch_ = 0;  // sequences per micro-batch on this rank
  std::unique_ptr<BatchSource> data_;
  std::unique_ptr<GptStage> model_;
  std::unique_ptr<AdamW> opt_;
  std::unique_ptr<StepLog> log_;
  MetricsSchema schema_;
  Tensor tokens_, targets_;
  int first_step_ = 0;
  double flops_per_token_ = 0;
  double peak_flops_ = 0;
  std::vector<double> step_times_;
  // For the summary (rank 0).
  double sum_tokens_per_s_ = 0, sum_exposed_share_ = 0;
  int summary_steps_ = 0;
};

// Model FLOPs per trained token: 6 N (forward + backward of every parameter's multiply-add)
// plus 12 L T C for the attention score and value products (PaLM's formula; the kernels
// compute the full T x T block).
double model_flops_per_token(const ModelConfig& m);
std::int64_t parameter_count(const ModelConfig& m);

}  // namespace ft
