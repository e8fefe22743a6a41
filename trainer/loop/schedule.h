// Pipeline schedules as action lists: what one stage does, in order, for one optimizer
// step of m micro-batches. Pure functions, unit tested.
//
//   gpipe: every forward, then every backward (activations of all m micro-batches live).
//   1f1b:  min(pp - stage - 1, m) warm-up forwards, then one forward and one backward in
//          turn, then the remaining backwards (at most pp - stage micro-batches live).
// Backwards run in micro-batch order on every stage, so stage s's backward of k meets
// stage s+1's gradient of k.
#pragma once

#include <string>
#include <vector>

namespace ft {

struct PipeAction {
  enum Kind { forward, backward } kind;
  int microbatch;
  friend bool operator==(const PipeAction&, const PipeAction&) = default;
};

std::vector<PipeAction> make_schedule(const std::string& kind, int stages, int stage, int microbatches);

// The most micro-batches whose activations a schedule holds at once.
int max_live(const std::vector<PipeAction>& actions);

// The ideal idle share of a balanced pipeline: (pp - 1) / (m + pp - 1).
double bubble_fraction(int stages, int microbatches);

}  // namespace ft
