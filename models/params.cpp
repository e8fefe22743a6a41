#include "models/params.h"

#include <stdexcept>

#include <fmt/format.h>

namespace ft {

void ParamSet::add(ParamInfo info, int tp) {
  info.local_shape = info.full_shape;
  auto split = [&](std::size_t dim, std::int64_t parts) {
    if (info.local_shape.size() <= dim || info.local_shape[dim] % parts != 0)
      throw std::invalid_argument(fmt::format("{} {} does not split {} ways", info.name, to_string(info.full_shape), parts));
    info.local_shape[dim] /= parts;
  };
  switch (info.shard) {
    case Shard::replicated: break;
    case Shard::rows: split(0, tp); break;
    case Shard::cols: split(1, tp); break;
    case Shard::qkv_rows:  // each of Q, K, V loses (tp-1)/tp of its rows
      split(0, 3 * static_cast<std::int64_t>(tp));
      info.local_shape[0] *= 3;
      break;
  }
  info.offset = total_;
  total_ += info.numel();
  infos_.push_back(std::move(info));
}

void ParamSet::allocate(DType dtype, Device device) {
  flat_values_ = Tensor({total_}, dtype, device);
  flat_grads_ = Tensor({total_}, dtype, device);
  values_.clear();
  grads_.clear();
  for (const auto& p : infos_) {
    values_.push_back(Tensor::view_of(flat_values_, p.offset, p.local_shape));
    grads_.push_back(Tensor::view_of(flat_grads_, p.offset, p.local_shape));
  }
}

int ParamSet::index(const std::string& name) const {
  for (std::size_t i = 0; i < infos_.size(); ++i)
    if (infos_[i].name == name) return static_cast<int>(i);
  return -1;
}

std::vector<std::int64_t> ParamSet::full_indices(const ParamInfo& p, int tp, int tp_rank) {
  const std::int64_t n = p.numel();
  std::vector<std::int64_t> out(static_cast<std::size_t>(n));
  const std::int64_t cols = p.local_shape.size() > 1 ? numel_of(Shape(p.local_shape.begin() + 1, p.local_shape.end())) : 1;
  const std::int64_t full_cols = p.full_shape.size() > 1 ? numel_of(Shape(p.full_shape.begin() + 1, p.full_shape.end())) : 1;
  const std::int64_t local_rows = p.local_shape[0];
  for (std::int64_t r = 0; r < local_rows; ++r) {
    std::int64_t full_row = r;
    std::int64_t col_offset = 0;
    switch (p.shard) {
      case Shard::replicated: break;
      case Shard::rows: full_row = tp_rank * local_rows + r; break;
      case Shard::cols: col_offset = tp_rank * cols; break;
      case Shard::qkv_rows: {
        std::int64_t third = local_rows / 3;  // rows of Q (or K, V) held here
        std::int64_t part = r / third;
        full_row = part * third * tp + tp_rank * third + r % third;
        break;
      }
    }
    for (std::int64_t c = 0; c < cols; ++c)
      out[static_cast<std::size_t>(r * cols + c)] = full_row * full_cols + col_offset + c;
  }
  return out;
}

}  // namespace ft
