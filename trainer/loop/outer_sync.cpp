#include "trainer/loop/outer_sync.h"

#include <cstdlib>

#include <fmt/format.h>

#include "comm/error.h"
#include "comm/work_queue.h"
#include "models/ops.h"

namespace ft {
namespace {

// `count` contiguous ranges of whole tensors, cut at the tensor boundaries nearest to even
// shares of the elements.
std::vector<FlatRange> cut_fragments(const ParamSet& params, int count) {
  const auto& infos = params.infos();
  if (count > static_cast<int>(infos.size()))
    throw UserError(fmt::format("sync.outer.fragments ({}) is more than the {} tensors a pipeline stage holds", count,
                                infos.size()));
  const std::int64_t n = params.numel();
  std::vector<FlatRange> out;
  std::int64_t begin = 0;
  std::size_t i = 0;
  for (int f = 1; f < count; ++f) {
    const std::int64_t target = n * f / count;
    // Take tensors while the boundary after the next one is nearer the target, leaving one
    // for each fragment still to come.
    std::int64_t end = infos[i].offset + infos[i].numel();
    ++i;
    while (i + static_cast<std::size_t>(count - f) < infos.size() &&
           std::llabs(infos[i].offset + infos[i].numel() - target) <= std::llabs(end - target)) {
      end = infos[i].offset + infos[i].numel();
      ++i;
    }
    out.push_back({begin, end});
    begin = end;
  }
  out.push_back({begin, n});
  return out;
}

}  // namespace

OuterSync::OuterSync(const OuterSyncConfig& cfg, Communicator& inner, Communicator& outer, const ParamSet& params,
                     Algorithm algo, const TierCodecs& codecs)
    : cfg_(cfg), inner_(inner), outer_(outer), algo_(algo), fragments_(cut_fragments(params, cfg.fragments)) {
  const Tensor& flat = params.flat_values();
  anchor_ = Tensor(flat.shape(), flat.dtype(), flat.device());
  ops::copy(anchor_, flat);
  delta_ = Tensor(flat.shape(), flat.dtype(), flat.device());
  if (has_momentum()) momentum_ = Tensor(flat.shape(), flat.dtype(), flat.device());
  bool lossy = false;
  for (Tier t : kAllTiers) lossy = lossy || codecs[t].lossy();
  if (lossy)
    for (std::size_t f = 0; f < fragments_.size(); ++f) codecs_.push_back(std::make_unique<BucketCodecs>(codecs));
}

std::vector<int> OuterSync::due(int step) const {
  std::vector<int> out;
  const int count = fragments();
  for (int f = 0; f < count; ++f)
    if ((step + 1 + f * cfg_.every / count) % cfg_.every == 0) out.push_back(f);
  return out;
}

double OuterSync::sync(const ParamSet& params, const std::vector<int>& which) {
  const double t0 = now_seconds();
  const Tensor& flat = params.flat_values();
  for (int f : which) {
    const FlatRange& r = fragments_[static_cast<std::size_t>(f)];
    auto view = [&](const Tensor& t, std::int64_t at, std::int64_t size) { return Tensor::view_of(t, at, {size}); };
    const Tensor delta = view(delta_, r.begin, r.size()), mine = view(flat, r.begin, r.size());
    // delta = anchor - params
    ops::copy(delta, mine);
    ops::scale(delta, -1.0);
    ops::add_into(delta, view(anchor_, r.begin, r.size()), r.size());
    // Across the tier: this member's segment, averaged over the islands; then the island's
    // segments to every member.
    const Segment seg = inner_.owned(static_cast<std::size_t>(r.size()), Algorithm::ring);
    const Tensor part = view(delta, static_cast<std::int64_t>(seg.offset), static_cast<std::int64_t>(seg.count));
    if (!codecs_.empty())
      outer_.all_reduce_compressed(part.buffer(), ReduceOp::avg, algo_, *codecs_[static_cast<std::size_t>(f)],
                                   {Matrix{0, seg.count, 0}});
    else
      outer_.all_reduce(part.buffer(), ReduceOp::avg, algo_);
    if (inner_.size() > 1) inner_.all_gather(delta.buffer(), Algorithm::ring);
    // anchor -= lr * (Nesterov) momentum step of delta; every replica restarts from it.
    ops::sgd_update(anchor_, delta_, has_momentum() ? &momentum_ : nullptr, {{r, r.begin, 0.0}},
                    {cfg_.lr, cfg_.momentum, cfg_.nesterov, 1.0});
    ops::copy(mine, view(anchor_, r.begin, r.size()));
  }
  ops::synchronize(flat.device());
  return now_seconds() - t0;
}

std::vector<std::pair<std::string, std::vector<float>*>> OuterSync::codec_state() {
  std::vector<std::pair<std::string, std::vector<float>*>> out;
  for (std::size_t f = 0; f < codecs_.size(); ++f)
    for (auto& [name, values] : codecs_[f]->state()) out.emplace_back(fmt::format("outer/f{}/{}", f, name), values);
  return out;
}

bool OuterSync::restore_codec_state(const std::string& name, std::vector<float> values) {
  // "outer/f<k>/<tier>/<what>"
  if (name.rfind("outer/f", 0) != 0) return false;
  const std::size_t slash = name.find('/', 7);
  if (slash == std::string::npos) return false;
  const std::size_t f = std::strtoul(name.substr(7, slash - 7).c_str(), nullptr, 10);
  return f < codecs_.size() && codecs_[f]->restore(name.substr(slash + 1), std::move(values));
}

}  // namespace ft
