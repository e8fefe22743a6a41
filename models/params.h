// A model stage's parameters: one flat buffer of values and one of gradients, with a named
// view per tensor. Names and full shapes are layout independent ("blocks.3.mlp.fc.weight",
// [4C, C]); each rank holds a piece of each tensor as its tensor-parallel shard says, and
// knows how to map that piece onto the full tensor (for initialisation and checkpoints).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "models/tensor.h"

namespace ft {

// How a tensor-parallel rank's piece maps onto the full tensor.
enum class Shard : std::uint8_t {
  replicated,  // every TP rank holds the whole tensor
  rows,        // split along dim 0 (column-parallel weight [out, in] and its bias)
  cols,        // split along dim 1 (row-parallel weight [out, in])
  qkv_rows,    // dim 0 is [Q; K; V], each third split along dim 0
};

// What a tensor is, for the optimizer's weight-decay rule.
enum class ParamKind : std::uint8_t { matrix, bias, norm, embedding };

struct ParamInfo {
  std::string name;
  Shape full_shape;
  Shape local_shape;
  Shard shard = Shard::replicated;
  std::int64_t offset = 0;  // into the flat buffers, in elements
  ParamKind kind = ParamKind::matrix;
  double init_std = 0;      // normal(0, std) when > 0, else constant init_value
  double init_value = 0;

  std::int64_t numel() const { return numel_of(local_shape); }
};

class ParamSet {
 public:
  ParamSet() = default;
  // Adds a tensor; its local shape follows from the shard and (tp, tp_rank).
  void add(ParamInfo info, int tp);
  // Allocates the flat buffers once every tensor is added.
  void allocate(DType dtype, Device device);

  const std::vector<ParamInfo>& infos() const { return infos_; }
  int index(const std::string& name) const;  // -1 when this stage does not hold it
  const Tensor& value(int i) const { return values_[static_cast<std::size_t>(i)]; }
  const Tensor& grad(int i) const { return grads_[static_cast<std::size_t>(i)]; }
  const Tensor& flat_values() const { return flat_values_; }
  const Tensor& flat_grads() const { return flat_grads_; }
  std::int64_t numel() const { return total_; }

  // Full-tensor element index of each local element, in local order.
  static std::vector<std::int64_t> full_indices(const ParamInfo& p, int tp, int tp_rank);

 private:
  std::vector<ParamInfo> infos_;
  std::vector<Tensor> values_, grads_;
  Tensor flat_values_, flat_grads_;
  std::int64_t total_ = 0;
};

}  // namespace ft
