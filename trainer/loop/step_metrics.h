// The /steps columns of the step log, as one table: each metric is one row (name, units,
// scope, description, and how its value is read from the step), so adding a metric is one
// line here and one in docs/metrics.md (which a test holds to the table).
#pragma once

#include <functional>
#include <limits>
#include <vector>

#include <mpi.h>

#include "comm/traffic.h"
#include "trainer/io/metrics.h"

namespace ft {

// What one optimizer step measured on this rank (seconds, unless said).
struct StepStats {
  int step = 0;
  double loss = 0, lr = 0, grad_norm = 0;
  bool nonfinite = false;  // loss or gradient norm NaN or infinite: no optimizer update
  double start = 0;  // now_seconds() when the step began
  double step_time = 0, forward = 0, backward = 0, optimizer = 0, exposed = 0, comm = 0;
  double pipeline = 0, pipeline_wait = 0;
  double compression_error = 0;
  int outer_fragments = 0;  // fragments the step's outer sync synchronised (sync.outer)
  double eval_loss = std::numeric_limits<double>::quiet_NaN();  // after the step, when evaluated
  double eval_time = 0;
  double outer_time = 0;
  double sync_start = 0, backward_end = 0;  // from the step's start
  TrafficSnapshot traffic;
};

// A step as its columns read it: this rank's figures and the job-wide ones made of every
// rank's, reduced once.
struct StepView {
  const StepStats& s;
  double tokens = 0;           // global batch x context
  double slowest = 0;          // the slowest rank's step time
  double model_flops = 0;      // model FLOPs of the step
  double peak_flops = 0;       // of the whole job
  double bubble = 0;           // mean over ranks of 1 - (forward + backward) / the slowest pipeline span
};

// Collective over `comm`: the job-wide figures of the step.
StepView view_step(MPI_Comm comm, const StepStats& s, double tokens, double flops_per_token,
                   double peak_flops_per_rank);

class StepMetrics {
 public:
  StepMetrics();
  const MetricsSchema& schema() const { return schema_; }
  StepRecord record(const StepView& v) const;

 private:
  MetricsSchema schema_;
  std::vector<std::function<double(const StepView&)>> value_;  // by column
};

}  // namespace ft
