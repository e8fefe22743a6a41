#include "trainer/grad_sync.h"

#include <algorithm>

namespace ft {
namespace {
Buffer slice(const Tensor& flat, std::int64_t begin, std::int64_t end) {
  Buffer b = flat.buffer();
  return Buffer{static_cast<char*>(b.data) + begin * static_cast<std::int64_t>(dtype_size(b.dtype)),
                static_cast<std::size_t>(end - begin), b.dtype, b.device};
}
}  // namespace

GradSync::GradSync(Communicator& dp, const ParamSet& params, Algorithm algo, std::uint64_t bucket_bytes, bool zero,
                   bool overlap)
    : dp_(dp), params_(params), algo_(algo), zero_(zero), overlap_(overlap) {
  const auto& infos = params.infos();
  bucket_of_.assign(infos.size(), -1);
  const std::uint64_t esize = dtype_size(params.flat_grads().dtype());
  for (std::size_t i = infos.size(); i-- > 0;) {
    if (buckets_.empty() || static_cast<std::uint64_t>(buckets_.back().end - buckets_.back().begin) * esize >= bucket_bytes) {
      buckets_.emplace_back();
      buckets_.back().end = infos[i].offset + infos[i].numel();
    }
    Bucket& b = buckets_.back();
    b.begin = infos[i].offset;
    ++b.params;
    bucket_of_[i] = static_cast<int>(buckets_.size()) - 1;
  }
  for (const Bucket& b : buckets_) {
    if (!zero) continue;
    Segment mine = dp.owned(static_cast<std::size_t>(b.end - b.begin), algo);
    owned_.push_back({b.begin + static_cast<std::int64_t>(mine.offset),
                      b.begin + static_cast<std::int64_t>(mine.offset + mine.count)});
  }
  if (zero)
    std::sort(owned_.begin(), owned_.end(), [](const FlatRange& a, const FlatRange& b) { return a.begin < b.begin; });
  else
    owned_.push_back({0, params.numel()});
}

void GradSync::begin_step() {
  for (Bucket& b : buckets_) {
    b.pending = b.params;
    b.launched = false;
    b.work = Work();
  }
  first_start_ = 0;
  busy_ = 0;
}

void GradSync::launch(Bucket& b) {
  Buffer grads = slice(params_.flat_grads(), b.begin, b.end);
  Communicator* dp = &dp_;
  Algorithm algo = algo_;
  if (zero_)
    b.work = dp_.enqueue([dp, grads, algo] { dp->reduce_scatter(grads, ReduceOp::avg, algo); });
  else
    b.work = dp_.enqueue([dp, grads, algo] { dp->all_reduce(grads, ReduceOp::avg, algo); });
  b.launched = true;
}

void GradSync::grad_ready(int param) {
  Bucket& b = buckets_[static_cast<std::size_t>(bucket_of_[static_cast<std::size_t>(param)])];
  if (--b.pending == 0 && overlap_) launch(b);
}

double GradSync::finish() {
  double t0 = now_seconds();
  for (Bucket& b : buckets_)
    if (!b.launched) launch(b);
  for (Bucket& b : buckets_) b.work.wait();
  double waited = now_seconds() - t0;
  for (const Bucket& b : buckets_) {
    busy_ += b.work.finished() - b.work.started();
    if (first_start_ == 0 || b.work.started() < first_start_) first_start_ = b.work.started();
  }
  return waited;
}

double GradSync::gather_params() {
  if (!zero_) return 0;
  double t0 = now_seconds();
  for (const Bucket& b : buckets_) dp_.all_gather(slice(params_.flat_values(), b.begin, b.end), algo_);
  return now_seconds() - t0;
}

}  // namespace ft
