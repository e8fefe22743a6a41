#include "trainer/loop/grad_sync.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "models/ops.h"

namespace ft {
namespace {
Buffer slice(const Tensor& flat, std::int64_t begin, std::int64_t end) {
  return flat.buffer().slice(static_cast<std::size_t>(begin), static_cast<std::size_t>(end - begin));
}
}  // namespace

std::vector<FlatRange> cut_buckets(const std::vector<ParamInfo>& infos, std::uint64_t element_bytes,
                                   std::uint64_t bucket_bytes, const std::vector<int>* units,
                                   const std::vector<int>* chunks) {
  std::vector<bool> unit_start(infos.size() + 1, false);
  if (units)
    for (int u : *units) unit_start[static_cast<std::size_t>(u)] = true;
  std::vector<FlatRange> out;
  for (std::size_t i = infos.size(); i-- > 0;) {
    const bool first_embedding = infos[i].kind == ParamKind::embedding &&
                                 (i + 1 == infos.size() || infos[i + 1].kind != ParamKind::embedding);
    const bool full = static_cast<std::uint64_t>(out.empty() ? 0 : out.back().end - out.back().begin) * element_bytes >=
                      bucket_bytes;
    const bool new_chunk = chunks && i + 1 < infos.size() && (*chunks)[i] != (*chunks)[i + 1];
    if (out.empty() || new_chunk || (units ? unit_start[i + 1] : first_embedding || full))
      out.push_back({infos[i].offset + infos[i].numel(), infos[i].offset + infos[i].numel()});
    out.back().begin = infos[i].offset;
  }
  return out;
}

std::vector<Matrix> bucket_tensors(const std::vector<ParamInfo>& infos, const FlatRange& bucket) {
  std::vector<Matrix> out;
  for (const ParamInfo& p : infos) {
    if (p.offset < bucket.begin || p.offset >= bucket.end) continue;
    const bool matrix = p.local_shape.size() == 2;
    out.push_back({static_cast<std::size_t>(p.offset - bucket.begin), static_cast<std::size_t>(p.local_shape[0]),
                   matrix ? static_cast<std::size_t>(p.local_shape[1]) : 0});
  }
  return out;
}

namespace {
bool any_lossy(const TierCodecs& codecs) {
  return std::any_of(codecs.begin(), codecs.end(), [](const CodecSpec& c) { return c.lossy(); });
}
}  // namespace

GradSync::GradSync(Communicator& dp, const ParamSet& params, GradSyncOptions o)
    : dp_(dp),
      params_(params),
      algo_(o.algo),
      zero_(o.zero),
      overlap_(o.overlap),
      keep_gathered_(o.keep_gathered && o.zero == 3),
      replicas_(o.zero > 0 && o.replicas.comm && o.replicas.comm->size() > 1 ? o.replicas : ShardReplicas{}),
      compressed_(any_lossy(o.codecs) || (replicas_.comm && any_lossy(replicas_.codecs))),
      measure_error_(o.measure_error && compressed_ && o.zero == 0) {
  const int zero = o.zero;
  const TierCodecs& codecs = o.codecs;
  const std::vector<int>& units = o.units;
  const auto& infos = params.infos();
  bucket_of_.assign(infos.size(), -1);
  const std::vector<int>* chunks = o.param_chunks.empty() ? nullptr : &o.param_chunks;
  for (const FlatRange& r : cut_buckets(infos, dtype_size(params.flat_grads().dtype()), o.bucket_bytes,
                                        zero == 3 ? &units : nullptr, chunks)) {
    buckets_.emplace_back();
    buckets_.back().begin = r.begin;
    buckets_.back().end = r.end;
  }
  for (std::size_t i = 0; i < infos.size(); ++i)
    for (std::size_t b = 0; b < buckets_.size(); ++b)
      if (infos[i].offset >= buckets_[b].begin && infos[i].offset < buckets_[b].end) {
        bucket_of_[i] = static_cast<int>(b);
        ++buckets_[b].params;
        if (chunks) buckets_[b].chunk = (*chunks)[i];
      }
  for (int u : units) unit_bucket_.push_back(bucket_of_[static_cast<std::size_t>(u)]);
  std::int64_t largest = 0;
  for (Bucket& b : buckets_) {
    largest = std::max(largest, b.end - b.begin);
    if (compressed_) {
      b.codecs = std::make_unique<BucketCodecs>(replicas_.comm ? replicas_.codecs : codecs);
      b.tensors = bucket_tensors(infos, {b.begin, b.end});
    }
    Segment mine = dp.owned(static_cast<std::size_t>(b.end - b.begin), o.algo);
    b.owned = zero ? FlatRange{b.begin + static_cast<std::int64_t>(mine.offset),
                               b.begin + static_cast<std::int64_t>(mine.offset + mine.count)}
                   : FlatRange{b.begin, b.end};
    if (zero >= 2) b.shard = Tensor({b.owned.end - b.owned.begin}, params.flat_grads().dtype(), params.flat_grads().device());
    if (zero) owned_.push_back(b.owned);
  }
  if (zero >= 2)
    for (Staging& st : staging_) st.buffer = Tensor({largest}, params.flat_grads().dtype(), params.flat_grads().device());
  if (zero)
    std::sort(owned_.begin(), owned_.end(), [](const FlatRange& a, const FlatRange& b) { return a.begin < b.begin; });
  else
    owned_.push_back({0, params.numel()});
  drop_all();  // ZeRO-3: from the first step on, a rank holds its own parts only
}

std::vector<std::int64_t> GradSync::bucket_elements() const {
  std::vector<std::int64_t> out;
  for (const Bucket& b : buckets_) out.push_back(b.end - b.begin);
  return out;
}

void GradSync::begin_step() {
  for (Bucket& b : buckets_) {
    b.work = Work();
    b.across = Work();
    b.err_num = b.err_den = 0;
    if (zero_ >= 2) ops::zero(b.shard);
  }
  first_start_ = 0;
  busy_ = 0;
  peak_held_ = 0;
}

void GradSync::begin_backward(bool last, int chunk) {
  last_backward_ = last;
  chunk_ = chunk;
  for (Bucket& b : buckets_) {
    if (b.chunk != chunk) continue;
    b.pending = b.params;
    b.launched = false;
  }
}

void GradSync::end_backward() {
  if (zero_ < 2) return;
  // Without overlap the micro-batch's buckets go now. (A bucket with the tied embedding
  // between pipeline stages is not complete: it goes once the trainer has summed it.)
  for (Bucket& b : buckets_)
    if (b.chunk == chunk_ && b.pending == 0 && !b.launched) launch(b);
}

void GradSync::account(const Work& w, bool gradients) {
  busy_ += w.finished() - w.started();
  if (gradients && (first_start_ == 0 || w.started() < first_start_)) first_start_ = w.started();
}

void GradSync::launch(Bucket& b) {
  b.launched = true;
  if (zero_ >= 2) return stage(b);
  Buffer grads = slice(params_.flat_grads(), b.begin, b.end);
  Communicator* dp = &dp_;
  Algorithm algo = algo_;
  if (zero_ == 1) {
    b.work = dp_.enqueue([dp, grads, algo] { dp->reduce_scatter(grads, ReduceOp::avg, algo); });
    if (replicas_.comm) b.across = reduce_across(b, slice(params_.flat_grads(), b.owned.begin, b.owned.end), b.work);
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
        dp->synchronize();  // inside the lane the sum is only issued
        dense.assign(f.begin(), f.end());
      }
      dp->all_reduce_compressed(grads, ReduceOp::avg, algo, *bucket->codecs, bucket->tensors);
      if (measure) {
        dp->synchronize();  // inside the lane the sum is only issued
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
}

Work GradSync::reduce_across(Bucket& b, Buffer shard, Work after) {
  Communicator* across = replicas_.comm;
  const Algorithm algo = replicas_.algo;
  BucketCodecs* codecs = b.codecs.get();
  // On the replicas' lane, ordered after `after` (the reduce-scatter on the shard's own
  // communicator): a call on another communicator inside that lane would not be. On NCCL's
  // one lane its item has run already, and only the stream waits for it.
  return across->enqueue([across, shard, algo, codecs, after] {
    across->after(after);
    if (codecs)
      across->all_reduce_compressed(shard, ReduceOp::avg, algo, *codecs, {Matrix{0, shard.count, 0}});
    else
      across->all_reduce(shard, ReduceOp::avg, algo);
  });
}

void GradSync::stage(Bucket& b) {
  Staging& st = staging_[next_staging_];
  next_staging_ ^= 1;
  fold(st);
  const std::int64_t n = b.end - b.begin;
  const Tensor grads = Tensor::view_of(params_.flat_grads(), b.begin, {n});
  const Tensor buf = Tensor::view_of(st.buffer, 0, {n});
  ops::copy(buf, grads);
  ops::zero(grads);  // the next micro-batch's backward accumulates afresh
  Communicator* dp = &dp_;
  const Algorithm algo = algo_;
  const Buffer wire = buf.buffer();
  st.work = dp_.enqueue([dp, wire, algo] { dp->reduce_scatter(wire, ReduceOp::avg, algo); });
  st.bucket = static_cast<int>(&b - buckets_.data());
  st.last = last_backward_;
}

void GradSync::fold(Staging& st) {
  if (st.bucket < 0) return;
  Bucket& b = buckets_[static_cast<std::size_t>(st.bucket)];
  st.work.wait();
  account(st.work, true);
  const std::int64_t n = b.owned.end - b.owned.begin;
  ops::add_into(b.shard, Tensor::view_of(st.buffer, b.owned.begin - b.begin, {n}), n);
  // The step's sum of the shard is complete; the replicas' lane waits for the add itself.
  if (st.last && replicas_.comm) b.across = reduce_across(b, b.shard.buffer(), Work());
  st.bucket = -1;
  st.work = Work();
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
  if (zero_ >= 2) {
    fold(staging_[next_staging_]);  // the older first: shards sum in launch order
    fold(staging_[next_staging_ ^ 1]);
    for (const Bucket& b : buckets_) {
      if (replicas_.comm) {
        b.across.wait();
        account(b.across, true);
      }
      ops::copy(Tensor::view_of(params_.flat_grads(), b.owned.begin, {b.owned.end - b.owned.begin}), b.shard);
    }
  } else {
    for (Bucket& b : buckets_) {
      b.work.wait();
      account(b.work, true);
      if (replicas_.comm) {
        b.across.wait();
        account(b.across, true);
      }
    }
  }
  return now_seconds() - t0;
}

Buffer GradSync::values(const Bucket& b) const { return slice(params_.flat_values(), b.begin, b.end); }

double GradSync::gather_params() {
  if (zero_ == 0) return 0;
  if (zero_ == 3) {
    drop_all();
    return 0;
  }
  double t0 = now_seconds();
  for (const Bucket& b : buckets_) dp_.all_gather(values(b), algo_);
  return now_seconds() - t0;
}

void GradSync::start_gather(Bucket& b) {
  if (b.held != Held::part) return;
  Communicator* dp = &dp_;
  const Algorithm algo = algo_;
  const Buffer buf = values(b);
  b.gather = dp_.enqueue([dp, buf, algo] { dp->all_gather(buf, algo); });
  b.held = Held::arriving;
}

void GradSync::arrive(Bucket& b) {
  if (b.held != Held::arriving) return;
  b.gather.wait();
  account(b.gather, false);
  b.held = Held::whole;
}

void GradSync::use_unit(int unit, int next) {
  Bucket& b = buckets_[static_cast<std::size_t>(unit_bucket_[static_cast<std::size_t>(unit)])];
  start_gather(b);
  arrive(b);
  ++b.users;
  if (next >= 0) start_gather(buckets_[static_cast<std::size_t>(unit_bucket_[static_cast<std::size_t>(next)])]);
  count_held();
}

void GradSync::done_unit(int unit) {
  Bucket& b = buckets_[static_cast<std::size_t>(unit_bucket_[static_cast<std::size_t>(unit)])];
  if (--b.users == 0 && !keep_gathered_) drop(b);
}

void GradSync::count_held() {
  std::int64_t held = 0;
  for (const Bucket& b : buckets_) held += b.held == Held::part ? b.owned.end - b.owned.begin : b.end - b.begin;
  peak_held_ = std::max(peak_held_, held);
}

// The parts other ranks own become NaN, so that a use without its gather cannot pass
// unnoticed (NaN times anything is NaN).
void GradSync::drop(Bucket& b) {
  if (b.held == Held::part) return;  // dropped already: its other parts are NaN
  arrive(b);  // a prefetch still in flight lands first
  const double nan = std::numeric_limits<double>::quiet_NaN();
  if (b.owned.begin > b.begin) ops::scale(Tensor::view_of(params_.flat_values(), b.begin, {b.owned.begin - b.begin}), nan);
  if (b.end > b.owned.end) ops::scale(Tensor::view_of(params_.flat_values(), b.owned.end, {b.end - b.owned.end}), nan);
  b.held = Held::part;
  b.users = 0;
}

void GradSync::gather_all() {
  if (zero_ < 3) return;
  for (Bucket& b : buckets_) start_gather(b);
  for (Bucket& b : buckets_) arrive(b);
}

void GradSync::drop_all() {
  if (zero_ < 3) return;
  for (Bucket& b : buckets_) drop(b);
}

}  // namespace ft
