#include "trainer/loop/schedule.h"

#include <algorithm>
#include <stdexcept>

namespace ft {

std::vector<PipeAction> make_schedule(const std::string& kind, int stages, int stage, int m) {
  if (stages < 1 || stage < 0 || stage >= stages || m < 1) throw std::invalid_argument("make_schedule: bad arguments");
  std::vector<PipeAction> out;
  if (kind == "gpipe") {
    for (int k = 0; k < m; ++k) out.push_back({PipeAction::forward, k});
    for (int k = 0; k < m; ++k) out.push_back({PipeAction::backward, k});
    return out;
  }
  if (kind != "1f1b") throw std::invalid_argument("unknown pipeline schedule '" + kind + "'");
  const int warmup = std::min(stages - stage - 1, m);
  int f = 0, b = 0;
  for (; f < warmup; ++f) out.push_back({PipeAction::forward, f});
  for (; f < m; ++f, ++b) {
    out.push_back({PipeAction::forward, f});
    out.push_back({PipeAction::backward, b});
  }
  for (; b < m; ++b) out.push_back({PipeAction::backward, b});
  return out;
}

int max_live(const std::vector<PipeAction>& actions) {
  int live = 0, most = 0;
  for (const PipeAction& a : actions) {
    live += a.kind == PipeAction::forward ? 1 : -1;
    most = std::max(most, live);
  }
  return most;
}

double bubble_fraction(int stages, int m) { return static_cast<double>(stages - 1) / (m + stages - 1); }

}  // namespace ft
