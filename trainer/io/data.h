// Training data. A global batch is a fixed function of (data, seed, step): sequence g of the
// whole run (g = step * batch + j) is the same whatever the number of data-parallel ranks,
// each rank reads only its own sequences, and a resumed run reads what the uninterrupted
// one would have.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "trainer/io/config.h"

namespace ft {

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  // Fills inputs and targets ([n_seq, T] each, targets shifted by one token) with sequences
  // [first_seq, first_seq + n_seq) of step `step`'s global batch.
  virtual void fill(std::int64_t step, int first_seq, int n_seq, std::int32_t* inputs, std::int32_t* targets) const = 0;
  // Token offset of the first sequence of `step` (file data), for logs and checkpoints.
  virtual std::int64_t position(std::int64_t step) const = 0;
  // Tokens available (file data) or 0 (synthetic).
  virtual std::int64_t tokens() const = 0;
  // One line for the start-up banner.
  virtual std::string describe() const = 0;
};

// Which part of the data: all of it (no evaluation), or, with held-out evaluation, the
// training part or the held-out one (file data: the last `holdout` of its tokens, or with
// data.held_out files, whole files, about `holdout` of them; synthetic: sequences drawn from
// a stream of their own).
enum class Split { all, train, eval };

// Throws UserError naming the file and the problem: missing, bad magic or version,
// truncated, a token >= vocab, fewer tokens than one sequence needs (in either split), no
// file held out or none left to train on.
std::unique_ptr<BatchSource> open_batches(const DataConfig& data, const ModelConfig& model, int global_batch,
                                          std::uint64_t seed, Split split = Split::all, double holdout = 0);

// llm.c token shard format.
inline constexpr std::int32_t kShardMagic = 20240520;
inline constexpr std::int32_t kShardVersion = 1;
inline constexpr std::size_t kShardHeaderInts = 256;

// Whether file i of `count` (sorted) is held out when a share `holdout` of whole files is:
// where the running count floor(holdout x files) steps up.
bool file_held_out(std::size_t i, double holdout);

// Writes an llm.c shard (for tests and tools).
void write_token_shard(const std::string& path, const std::vector<std::uint16_t>& tokens);

}  // namespace ft
