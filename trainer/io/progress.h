// Rank 0's console: one line per logged step, and the end-of-run summary.
#pragma once

#include <string>

namespace ft {

struct StepLine {
  int step = 0, total = 0;
  double loss = 0, lr = 0, grad_norm = 0, tokens_per_s = 0, step_time = 0, comm_share = 0;
};

// "step   12/200  loss 3.4123  lr 3.0e-04  |g| 0.85  12.3k tok/s  85.1 ms  comm 4.2%"
std::string format_step_line(const StepLine& s);
// 12345 -> "12.3k"
std::string format_count(double v);

}  // namespace ft
