// The low-communication methods a directory of step logs measured
// (launch/lowcomm-experiment.sh), carried to the claims' systems: each method's traffic
// across the top tier against dense synchronous data parallelism, how much of a transfer can
// hide behind compute, and the held-out loss it cost.
#pragma once

#include <string>
#include <vector>

namespace ft {

struct MeasuredMethod {
  std::string name;  // from the run's config: "sync", "sync int8", "outer every 50 int4", ...
  std::string file;
  double traffic = 1;   // mean top-tier wire bytes per step, over the dense synchronous run's
  double period = 1;    // steps between transfers (every / fragments for the outer sync; 1: each step)
  double hideable = 0;  // steps of compute a transfer overlaps: backward's 2/3 of its step for the
                        // per-step sync, the delay for the outer sync
  double eval_loss = 0;      // final held-out loss
  double loss_penalty = 0;   // eval_loss / the dense synchronous run's - 1
};

// Every step log in `dir`, by file name (other .h5 files are skipped, saying so). The dense
// synchronous run (no sync.outer, no lossy codec) is the baseline. Throws UserError when
// there is none, when a log has no held-out loss (eval.every unset) or does not log every
// step, or when the runs differ in model, data, steps, evaluation or cluster.
std::vector<MeasuredMethod> read_methods(const std::string& dir);

}  // namespace ft
