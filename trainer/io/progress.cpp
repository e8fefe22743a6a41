#include "trainer/io/progress.h"

#include <cmath>

#include <fmt/format.h>

namespace ft {

std::string format_count(double v) {
  if (std::abs(v) >= 1e9) return fmt::format("{:.1f}G", v / 1e9);
  if (std::abs(v) >= 1e6) return fmt::format("{:.1f}M", v / 1e6);
  if (std::abs(v) >= 1e3) return fmt::format("{:.1f}k", v / 1e3);
  return fmt::format("{:.0f}", v);
}

std::string format_step_line(const StepLine& s) {
  int width = static_cast<int>(std::to_string(s.total).size());
  return fmt::format("step {:>{}}/{}  loss {:.4f}  lr {:.1e}  |g| {:.3f}  {} tok/s  {:.1f} ms  comm {:.1f}%", s.step,
                     width, s.total, s.loss, s.lr, s.grad_norm, format_count(s.tokens_per_s), s.step_time * 1e3,
                     100.0 * s.comm_share);
}

}  // namespace ft
