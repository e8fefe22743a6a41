#include "trainer/loop/schedule.h"

#include <algorithm>
#include <map>
#include <stdexcept>

namespace ft {
namespace {

// The interleaved schedule's k-th forward or backward on a stage (Megatron's order).
PipeAction virtual_action(PipeAction::Kind kind, int k, int stages, int chunks) {
  const int group = stages * chunks;
  int chunk = (k % group) / stages;
  if (kind == PipeAction::backward) chunk = chunks - 1 - chunk;
  return {kind, (k / group) * stages + k % stages, chunk};
}

}  // namespace

std::vector<PipeAction> make_schedule(const std::string& kind, int stages, int stage, int m, int chunks) {
  if (stages < 1 || stage < 0 || stage >= stages || m < 1 || chunks < 1)
    throw std::invalid_argument("make_schedule: bad arguments");
  if (kind != "gpipe" && kind != "1f1b") throw std::invalid_argument("unknown pipeline schedule '" + kind + "'");
  if (chunks > 1 && m % stages != 0)
    throw std::invalid_argument("make_schedule: interleaving needs the micro-batches to divide by the stages");
  const int total = m * chunks;
  int warmup;
  if (kind == "gpipe" || (chunks > 1 && m == stages))
    warmup = total;
  else if (chunks == 1)
    warmup = std::min(stages - stage - 1, m);
  else
    warmup = std::min(2 * (stages - stage - 1) + (chunks - 1) * stages, total);
  std::vector<PipeAction> out;
  int f = 0, b = 0;
  for (; f < warmup; ++f) out.push_back(virtual_action(PipeAction::forward, f, stages, chunks));
  for (; f < total; ++f, ++b) {
    out.push_back(virtual_action(PipeAction::forward, f, stages, chunks));
    out.push_back(virtual_action(PipeAction::backward, b, stages, chunks));
    out.back().joined = chunks > 1;
  }
  for (; b < total; ++b) out.push_back(virtual_action(PipeAction::backward, b, stages, chunks));
  return out;
}

int max_live(const std::vector<PipeAction>& actions) {
  std::map<int, int> live;
  int most = 0;
  for (const PipeAction& a : actions) {
    int& n = live[a.chunk];
    n += a.kind == PipeAction::forward ? 1 : -1;
    most = std::max(most, n);
  }
  return most;
}

namespace {
PipePeer virtual_peer(int stages, int chunks, int stage, int chunk, int step) {
  const int v = chunk * stages + stage + step;
  if (v < 0 || v >= stages * chunks) return {};
  return {v % stages, v / stages};
}
}  // namespace

PipePeer pipe_source(int stages, int chunks, int stage, const PipeAction& a) {
  return virtual_peer(stages, chunks, stage, a.chunk, a.kind == PipeAction::forward ? -1 : 1);
}

PipePeer pipe_destination(int stages, int chunks, int stage, const PipeAction& a) {
  return virtual_peer(stages, chunks, stage, a.chunk, a.kind == PipeAction::forward ? 1 : -1);
}

double bubble_fraction(int stages, int m, int chunks) {
  return static_cast<double>(stages - 1) / (static_cast<double>(chunks) * m + stages - 1);
}

}  // namespace ft
