// This rank's part of the pipeline: which blocks its stage holds (the stage plan), and one
// step's forward/backward schedule over them (GPipe or 1F1B, schedule.h), with activations
// received from the stage before and gradients from the stage after.
//
// Between two computations a stage makes one exchange with its neighbours, issued from the
// compute thread in schedule order: what the computation before produced for a neighbour
// goes out in the same group as what the one after needs comes in (as Megatron's batched
// isend/irecv), so no stage's send waits on a receive its peer has not issued. Example,
// pp = 2, 1F1B, 2 micro-batches (a = activation, g = gradient of it):
//   stage 0:          F0 | send a0 | F1 | send a1, recv g0 | B0 | recv g1 | B1
//   stage 1: recv a0 | F0 |         B0 | send g0, recv a1 | F1 |    B1    | send g1
// The two middle groups meet: above NCCL's eager size, a send alone would wait for a
// receive its peer issues only after its own send, and both would wait for ever. With
// interleaved stages a forward and the backward joined to it (schedule.h) share one group:
// both their outputs leave and both their inputs arrive in it.
#pragma once

#include <functional>
#include <vector>

#include "comm/communicator.h"
#include "comm/grid.h"
#include "models/gpt.h"
#include "trainer/io/config.h"
#include "trainer/io/data.h"
#include "trainer/loop/schedule.h"

namespace ft {

// Balanced block ranges, one per virtual stage of this stage (Megatron's round-robin deal:
// chunk c of stage s is virtual stage c pp + s); the first virtual stages hold one more when
// the layers do not divide by pp x virtual_stages. The first stage holds the embedding, the
// last the head.
StagePlan stage_plan(const Config& cfg, const GridCoord& coord);

class PipelineRunner {
 public:
  PipelineRunner(const Config& cfg, const GridCoord& coord, Device device);
  // Activation slots the schedule keeps alive at once: the model's micro-batch slots.
  int slots() const { return slots_; }
  int micro_batch() const { return micro_batch_; }

  struct Times {
    double forward = 0, backward = 0, wait = 0, span = 0;  // seconds
    double backward_end = 0;                                // now_seconds() when the last backward ended
    double loss_sum = 0;  // the last stage's micro-batch losses (0 elsewhere)
  };
  // Runs step `step`'s schedule. `around_backward(true, last, chunk)` is called before each
  // micro-batch's backward through a chunk and `around_backward(false, last, chunk)` after
  // it; `last` for the last micro-batch, whose backward completes the chunk's gradients.
  Times run(int step, GptStage& model, BatchSource& data, Communicator& pp,
            const std::function<void(bool before, bool last, int chunk)>& around_backward);
  // Forward only, micro-batch after micro-batch through the stages, over this replica's
  // share of global batch `index` of `data`: the last stage's sum of the micro-batches'
  // mean losses (0 elsewhere). No gradient is touched.
  double evaluate(int index, GptStage& model, BatchSource& data, Communicator& pp);

 private:
  using Message = Communicator::Message;
  // Forward `a` of global batch `index` of `data` through its chunk into `slot` (its input
  // received already, but on the first virtual stage); adds the head's loss and the forward
  // time to `t`.
  void forward(std::int64_t index, const PipeAction& a, int slot, GptStage& model, BatchSource& data, Times& t);
  // The exchange before a computation: `out` (what the ones before produced) and `in` (what
  // the next ones need), in one group; waits for `in`, and keeps an exchange that only sends
  // in `sent_`. Adds the wait to `t`.
  void exchange(Communicator& pp, std::vector<Message> out, std::vector<Message> in, Times& t);
  PipePeer source(const PipeAction& a) const;
  PipePeer destination(const PipeAction& a) const;
  // Waits for the sends still in flight (rethrowing their errors); adds the wait to `t`.
  void finish_sends(Times& t);

  const Config& cfg_;
  int stage_, dp_rank_;
  bool last_;
  int micro_batch_;
  int chunks_;
  std::vector<PipeAction> schedule_;
  int slots_;
  Tensor tokens_, targets_, recv_act_, recv_grad_;
  std::vector<std::int32_t> tokens_host_, targets_host_;  // what the data source fills
  std::vector<Work> sent_;  // exchanges that only sent, not yet waited for
};

}  // namespace ft
