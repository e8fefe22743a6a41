// Pipeline schedules as action lists: what one stage does, in order, for one optimizer
// step of m micro-batches. Pure functions, unit tested.
//
//   gpipe: every forward, then every backward (activations of all m micro-batches live).
//   1f1b:  min(pp - stage - 1, m) warm-up forwards, then one forward and one backward in
//          turn, then the remaining backwards (at most pp - stage micro-batches live).
// Backwards run in micro-batch order on every stage, so stage s's backward of k meets
// stage s+1's gradient of k.
//
// Interleaved (v chunks per stage, parallel.virtual_stages): the model is cut into pp x v
// virtual stages, virtual stage c x pp + s being chunk c of stage s (Megatron's round-robin
// deal), so a micro-batch passes every stage v times. Each stage takes the micro-batches in
// groups of pp, chunk by chunk: its k-th forward is chunk (k / pp) mod v of micro-batch
// (k / (pp v)) pp + k mod pp, its k-th backward the same with the chunks reversed. 1f1b warms
// up with 2 (pp - stage - 1) + (v - 1) pp forwards (all of them when m = pp), then alternates;
// gpipe runs every forward first. The bubble shrinks to (pp - 1) / (v m + pp - 1) of the step.
#pragma once

#include <string>
#include <vector>

namespace ft {

struct PipeAction {
  enum Kind { forward, backward } kind;
  int microbatch;
  int chunk = 0;  // the stage's virtual stage (0 without interleaving)
  // Runs right after the action before it, with no exchange between: its input arrives with
  // the one before's, and its output leaves with it. The interleaved steady state pairs each
  // forward with the backward after it so (Megatron's batched send and receive of both):
  // exchanging around each alone would deadlock once sends wait for their receives.
  bool joined = false;
  friend bool operator==(const PipeAction&, const PipeAction&) = default;
};

// `chunks` > 1 needs m to divide by `stages` (throws std::invalid_argument).
std::vector<PipeAction> make_schedule(const std::string& kind, int stages, int stage, int microbatches, int chunks = 1);

// The most micro-batches whose activations one chunk of a schedule holds at once: the
// activation slots each chunk needs.
int max_live(const std::vector<PipeAction>& actions);

// Where a computation's input comes from, and where its output goes: the virtual stage
// before and after it in the model's order (a forward's input from the one before, a
// backward's from the one after); stage -1 at the model's ends (no input or output).
struct PipePeer {
  int stage = -1, chunk = -1;
};
PipePeer pipe_source(int stages, int chunks, int stage, const PipeAction& a);
PipePeer pipe_destination(int stages, int chunks, int stage, const PipeAction& a);

// The ideal idle share of a balanced pipeline: (pp - 1) / (v m + pp - 1).
double bubble_fraction(int stages, int microbatches, int chunks = 1);

}  // namespace ft
