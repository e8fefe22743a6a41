#include "trainer/loop/grad_sync.h"

#include <algorithm>
#include <cmath>

#include "models/ops.h"

namespace ft {
namespace {
Buffer slice(const Tensor& flat, std::int64_t begin, std::int64_t end) {
  return flat.buffer().slice(static_cast<std::size_t>(begin), static_cast<std::size_t>(end - begin));
}
}  // namespace

GradSync::GradSync(Communicator& dp, const ParamSet& params, Algorithm algo, std::uint64_t bucket_bytes, bool zero,
                   bool overlap, const TierCodecs& codecs, bool measure_error)
    : dp_(dp),
      params_(params),
      algo_(algo),
      zero_(zero),
      overlap_(overlap),
      compressed_(std::any_of(codecs.begin(), codecs.end(), [](const CodecSpec& c) { return c.lossy(); })),
      measure_error_(measure_error && compressed_) {
  const auto& infos = params.infos();
  bucket_of_.assign(infos.size(), -1);
  const std::uint64_t esize = dtype_size(params.flat_grads().dtype());
  for (std::size_t i = infos.size(); i-- > 0;) {
    const bool first_embedding = infos[i].kind == ParamKind::embedding &&
                                 (i + 1 == infos.size() || infos[i + 1].kind != ParamKind::embedding);
    if (buckets_.empty() || first_embedding ||
        static_cast<std::uint64_t>(buckets_.back().end - buckets_.back().begin) * esize >= bucket_bytes) {
      buckets_.emplace_back();
      buckets_.back().end = infos[i].offset + infos[i].numel();
    }
    Bucket& b = buckets_.back();
    b.begin = infos[i].offset;
    ++b.params;
    bucket_of_[i] = static_cast<int>(buckets_.size()) - 1;
  }
  for (Bucket& b : buckets_) {
    if (compressed_) {
      b.codecs = std::make_unique<BucketCodecs>(codecs);
      for (std::size_t i = 0; i < infos.size(); ++i) {
        const ParamInfo& p = infos[i];
        if (p.offset < b.begin || p.offset >= b.end) continue;
        bool matrix = p.local_shape.size() == 2;
        b.tensors.push_back({static_cast<std::size_t>(p.offset - b.begin), static_cast<std::size_t>(p.local_shape[0]),
                             matrix ? static_cast<std::size_t>(p.local_shape[1]) : 0});
      }
    }
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

std::vector<std::int64_t> GradSync::bucket_elements() const {
  std::vector<std::int64_t> out;
  for (const Bucket& b : buckets_) out.push_back(b.end - b.begin);
  return out;
}

void GradSync::begin_step() {
  for (Bucket& b : buckets_) {
    b.pending = b.params;
    b.launched = false;
    b.work = Work();
    b.err_num = b.err_den = 0;
  }
  first_start_ = 0;
  busy_ = 0;
}

void GradSync::launch(Bucket& b) {
  Buffer grads = slice(params_.flat_grads(), b.begin, b.end);
  Communicator* dp = &dp_;
  Algorithm algo = algo_;
  if (zero_) {
    b.work = dp_.enqueue([dp, grads, algo] { dp->reduce_scatter(grads, ReduceOp::avg, algo); });
  } else if (compressed_) {
    Bucket* bucket = &b;
    bool measure = measure_error_;
    Tensor view = Tensor::view_of(params_.flat_grads(), b.begin, {b.end - b.begin});
    b.work = dp_.enqueue([dp, grads, algo, bucket, measure, view] {
      std::vector<double> dense;
      if (measure) {  // the same sum, dense, through a host copy
        dense = ops::to_host(view);
        std::vector<float> f(dense.begin(), dense.end());
        dp->all_reduce(host_buffer(f.data(), f.size()), ReduceOp::avg, Algorithm::native);
        dense.assign(f.begin(), f.end());
      }
      dp->all_reduce_compressed(grads, ReduceOp::avg, algo, *bucket->codecs, bucket->tensors);
      if (measure) {
        std::vector<double> got = ops::to_host(view);
        for (std::size_t i = 0; i < dense.size(); ++i) {
          double d = got[i] - dense[i];
          bucket->err_num += d * d;
          bucket->err_den += dense[i] * dense[i];
        }
      }
    });
  } else {
    b.work = dp_.enqueue([dp, grads, algo] { dp->all_reduce(grads, ReduceOp::avg, algo); });
  }
  b.launched = true;
}

double GradSync::compression_error() const {
  double num = 0, den = 0;
  for (const Bucket& b : buckets_) {
    num += b.err_num;
    den += b.err_den;
  }
  return den > 0 ? std::sqrt(num / den) : 0.0;
}

bool GradSync::restore_codec_state(std::map<std::string, std::vector<float>> state) {
  for (auto& [name, values] : state) {
    // "bucket<b>/<tier>/<what>"
    if (name.rfind("bucket", 0) != 0) return false;
    auto slash = name.find('/');
    std::size_t b = std::stoul(name.substr(6, slash - 6));
    if (b >= buckets_.size() || !buckets_[b].codecs || !buckets_[b].codecs->restore(name.substr(slash + 1), values))
      return false;
  }
  return true;
}

std::vector<std::pair<std::string, std::vector<float>*>> GradSync::codec_state() {
  std::vector<std::pair<std::string, std::vector<float>*>> out;
  for (std::size_t b = 0; b < buckets_.size(); ++b) {
    if (!buckets_[b].codecs) continue;
    for (auto& [name, v] : buckets_[b].codecs->state()) out.emplace_back("bucket" + std::to_string(b) + "/" + name, v);
  }
  return out;
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
