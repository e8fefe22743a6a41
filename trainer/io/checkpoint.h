// Checkpoints: one self-describing HDF5 file holding every parameter and both AdamW moments
// as full, layout-independent tensors (/params/<name>, /optimizer/m/<name>,
// /optimizer/v/<name>), the step count and the data position. Any layout can resume from
// any other: each rank reads back the pieces it holds.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <mpi.h>

#include "models/gpt.h"
#include "trainer/io/config.h"
#include "trainer/loop/optimizer.h"

namespace ft {

struct CheckpointState {
  int steps_done = 0;              // optimizer steps completed; training resumes at this step
  std::int64_t data_position = 0;  // token offset of the next step's first sequence
  std::int64_t data_tokens = 0;    // size of the data it was trained on (0 = synthetic)
};

// What this rank holds and which replica writes it. `owns_params` is true on exactly one
// replica of each parameter element across the job; every rank writes its own optimizer
// range when `owns_state`.
struct CheckpointRole {
  bool owns_params = true;
  bool owns_state = true;
};

// State that belongs to one rank and the layout it runs in (gradient codecs' residuals),
// by name.
using RankState = std::vector<std::pair<std::string, std::vector<float>*>>;

// More arrays laid out like the flat parameters (the outer sync's anchor and momentum),
// saved as full tensors under /<name>/<parameter> by the ranks that own parameters.
struct FlatArray {
  std::string name;  // "outer/anchor"
  Tensor values;
};

// Collective over `comm`: rank 0 writes `path`, with each rank's `rank_state` under
// /rank_state/rank<r>/<name>.
void save_checkpoint(MPI_Comm comm, const std::string& path, const Config& cfg, const GptStage& model,
                     const Optimizer& opt, const CheckpointRole& role, const CheckpointState& state,
                     const RankState& rank_state = {}, const std::vector<FlatArray>& flat_arrays = {});

// This rank's part of flat array `array` of `path` into `into` (laid out like the flat
// parameters); false when the checkpoint has none.
bool load_flat_array(const std::string& path, const GptStage& model, const std::string& array, const Tensor& into);

// The optimizer steps a checkpoint holds; throws UserError when `path` is not a checkpoint.
int checkpoint_steps_done(const std::string& path);

// Every rank reads its pieces of `path` into the model and optimizer. Throws UserError when
// the file is missing or was written for a different model shape or data.
CheckpointState load_checkpoint(const std::string& path, const Config& cfg, GptStage& model, Optimizer& opt,
                                std::int64_t data_tokens);

// This rank's state, by name, when the checkpoint was written by a job of the same world
// size and layout; nothing otherwise.
std::optional<std::map<std::string, std::vector<float>>> load_rank_state(const std::string& path, const Config& cfg,
                                                                          int rank, int world);

}  // namespace ft
