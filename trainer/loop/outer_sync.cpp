#include "trainer/loop/outer_sync.h"

#include "comm/work_queue.h"
#include "models/ops.h"

namespace ft {

OuterSync::OuterSync(const OuterSyncConfig& cfg, Communicator& inner, Communicator& outer, const ParamSet& params,
                     Algorithm algo, const TierCodecs& codecs)
    : cfg_(cfg), inner_(inner), outer_(outer), algo_(algo) {
  const Tensor& flat = params.flat_values();
  anchor_ = Tensor(flat.shape(), flat.dtype(), flat.device());
  ops::copy(anchor_, flat);
  delta_ = Tensor(flat.shape(), flat.dtype(), flat.device());
  if (has_momentum()) momentum_ = Tensor(flat.shape(), flat.dtype(), flat.device());
  for (Tier t : kAllTiers)
    if (codecs[t].lossy()) codecs_ = std::make_unique<BucketCodecs>(codecs);
}

double OuterSync::sync(const ParamSet& params) {
  const double t0 = now_seconds();
  const Tensor& flat = params.flat_values();
  const std::int64_t n = flat.numel();
  // delta = anchor - params
  ops::copy(delta_, flat);
  ops::scale(delta_, -1.0);
  ops::add_into(delta_, anchor_, n);
  // Across the tier: this member's segment, averaged over the islands; then the island's
  // segments to every member.
  const Segment seg = inner_.owned(static_cast<std::size_t>(n), Algorithm::ring);
  const Tensor mine = Tensor::view_of(delta_, static_cast<std::int64_t>(seg.offset),
                                      {static_cast<std::int64_t>(seg.count)});
  if (codecs_)
    outer_.all_reduce_compressed(mine.buffer(), ReduceOp::avg, algo_, *codecs_, {Matrix{0, seg.count, 0}});
  else
    outer_.all_reduce(mine.buffer(), ReduceOp::avg, algo_);
  if (inner_.size() > 1) inner_.all_gather(delta_.buffer(), Algorithm::ring);
  // anchor -= lr * (Nesterov) momentum step of delta; every replica restarts from it.
  ops::sgd_update(anchor_, delta_, has_momentum() ? &momentum_ : nullptr, {{{0, n}, 0, 0.0}},
                  {cfg_.lr, cfg_.momentum, cfg_.nesterov, 1.0});
  ops::copy(flat, anchor_);
  ops::synchronize(flat.device());
  return now_seconds() - t0;
}

std::vector<std::pair<std::string, std::vector<float>*>> OuterSync::codec_state() {
  std::vector<std::pair<std::string, std::vector<float>*>> out;
  if (codecs_)
    for (auto& [name, values] : codecs_->state()) out.emplace_back("outer/" + name, values);
  return out;
}

bool OuterSync::restore_codec_state(const std::string& name, std::vector<float> values) {
  return codecs_ && name.rfind("outer/", 0) == 0 && codecs_->restore(name.substr(6), std::move(values));
}

}  // namespace ft
