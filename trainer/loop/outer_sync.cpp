#include "trainer/loop/outer_sync.h"

#include <algorithm>
#include <cstdlib>

#include <fmt/format.h>

#include "comm/error.h"
#include "comm/log.h"
#include "comm/runtime.h"
#include "comm/work_queue.h"
#include "models/ops.h"

namespace ft {
namespace {

Tensor view(const Tensor& t, std::int64_t at, std::int64_t size) { return Tensor::view_of(t, at, {size}); }

}  // namespace

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

std::vector<int> outer_due(const OuterSyncConfig& cfg, int count, int step) {
  std::vector<int> out;
  for (int f = 0; f < count; ++f)
    if ((step + 1 + f * cfg.every / count) % cfg.every == 0) out.push_back(f);
  return out;
}

OuterSync::OuterSync(const OuterSyncConfig& cfg, Communicator& inner, Communicator& outer, const ParamSet& params,
                     Algorithm algo, const TierCodecs& codecs)
    : cfg_(cfg),
      inner_(inner),
      outer_(outer),
      algo_(algo),
      fragments_(cut_fragments(params, cfg.fragments)),
      flight_(fragments_.size()) {
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

void OuterSync::start(const ParamSet& params, int f, int step) {
  const FlatRange& r = fragments_[static_cast<std::size_t>(f)];
  const Tensor delta = view(delta_, r.begin, r.size());
  // delta = anchor - params
  ops::copy(delta, view(params.flat_values(), r.begin, r.size()));
  ops::scale(delta, -1.0);
  ops::add_into(delta, view(anchor_, r.begin, r.size()), r.size());
  // Across the tier, on the outer communicator's worker: this member's segment, averaged
  // over the islands.
  const Segment seg = inner_.owned(static_cast<std::size_t>(r.size()), Algorithm::ring);
  const Buffer part = view(delta, static_cast<std::int64_t>(seg.offset), static_cast<std::int64_t>(seg.count)).buffer();
  Communicator* outer = &outer_;
  const Algorithm algo = algo_;
  BucketCodecs* codecs = codecs_.empty() ? nullptr : codecs_[static_cast<std::size_t>(f)].get();
  InFlight& flight = flight_[static_cast<std::size_t>(f)];
  flight.started = step;
  flight.complete = false;
  flight.work = outer_.enqueue([outer, part, algo, codecs, count = seg.count] {
    if (codecs)
      outer->all_reduce_compressed(part, ReduceOp::avg, algo, *codecs, {Matrix{0, count, 0}});
    else
      outer->all_reduce(part, ReduceOp::avg, algo);
  });
}

void OuterSync::complete(int f) {
  InFlight& flight = flight_[static_cast<std::size_t>(f)];
  if (flight.complete) return;
  flight.work.wait();
  flight.work = Work{};
  // The island's segments to every member.
  const FlatRange& r = fragments_[static_cast<std::size_t>(f)];
  if (inner_.size() > 1) inner_.all_gather(view(delta_, r.begin, r.size()).buffer(), Algorithm::ring);
  flight.complete = true;
}

void OuterSync::apply(const ParamSet& params, int f) {
  complete(f);
  const FlatRange& r = fragments_[static_cast<std::size_t>(f)];
  // anchor -= lr * (Nesterov) momentum step of delta
  ops::sgd_update(anchor_, delta_, has_momentum() ? &momentum_ : nullptr, {{r, r.begin, 0.0}},
                  {cfg_.lr, cfg_.momentum, cfg_.nesterov, 1.0});
  // params = mix * params + (1 - mix) * anchor; delta's range is free again for scratch.
  const Tensor mine = view(params.flat_values(), r.begin, r.size()), anchor = view(anchor_, r.begin, r.size());
  if (cfg_.mix == 0) {
    ops::copy(mine, anchor);
  } else {
    const Tensor scratch = view(delta_, r.begin, r.size());
    ops::copy(scratch, anchor);
    ops::scale(scratch, 1.0 - cfg_.mix);
    ops::scale(mine, cfg_.mix);
    ops::add_into(mine, scratch, r.size());
  }
  flight_[static_cast<std::size_t>(f)].started = -1;
}

OuterSync::Progress OuterSync::advance(const ParamSet& params, int step) {
  Progress p;
  const double t0 = now_seconds();
  bool applied = false;
  auto land = [&](int f) {
    apply(params, f);
    applied = true;
  };
  const std::vector<int> starting = due(step);
  // A fragment due while still in flight (only after a resume under another schedule)
  // lands first.
  for (int f : starting)
    if (flight_[static_cast<std::size_t>(f)].started >= 0) land(f);
  for (int f : starting) start(params, f, step);
  p.started = static_cast<int>(starting.size());
  for (int f = 0; f < fragments(); ++f) {
    const InFlight& flight = flight_[static_cast<std::size_t>(f)];
    if (flight.started >= 0 && flight.started + cfg_.delay <= step) land(f);
  }
  if (applied) ops::synchronize(params.flat_values().device());
  p.exposed = now_seconds() - t0;
  return p;
}

bool OuterSync::settle() {
  bool any = false;
  for (int f = 0; f < fragments(); ++f)
    if (flight_[static_cast<std::size_t>(f)].started >= 0) {
      complete(f);
      any = true;
    }
  ops::synchronize(delta_.device());
  return any;
}

Tensor OuterSync::in_flight_since() const {
  std::vector<double> since(static_cast<std::size_t>(delta_.numel()), -1.0);
  for (int f = 0; f < fragments(); ++f) {
    const FlatRange& r = fragments_[static_cast<std::size_t>(f)];
    std::fill(since.begin() + r.begin, since.begin() + r.end, flight_[static_cast<std::size_t>(f)].started);
  }
  Tensor out(delta_.shape(), delta_.dtype(), delta_.device());
  ops::from_host(out, since);
  return out;
}

std::vector<FlatArray> OuterSync::checkpoint_arrays() {
  std::vector<FlatArray> out{{"outer/anchor", anchor_}};
  if (has_momentum()) out.push_back({"outer/momentum", momentum_});
  if (settle()) {
    out.push_back({"outer/in_flight", delta_});
    out.push_back({"outer/in_flight_since", in_flight_since()});
  }
  return out;
}

void OuterSync::restore(const std::string& path, const GptStage& model, bool speaks) {
  if (!load_flat_array(path, model, "outer/anchor", anchor_)) {
    ops::copy(anchor_, model.params().flat_values());
    if (speaks)
      log::warn("{} holds no outer-sync state: the outer sync starts from its parameters, with no momentum", path);
    return;
  }
  if (has_momentum()) load_flat_array(path, model, "outer/momentum", momentum_);
  Tensor since = in_flight_since();
  if (!load_flat_array(path, model, "outer/in_flight_since", since) ||
      !load_flat_array(path, model, "outer/in_flight", delta_))
    return;
  const std::vector<double> host = ops::to_host(since);
  int dropped = 0;
  for (int f = 0; f < fragments(); ++f) {
    const FlatRange& r = fragments_[static_cast<std::size_t>(f)];
    const auto first = host.begin() + r.begin, last = host.begin() + r.end;
    if (std::all_of(first, last, [&](double v) { return v == *first; }) && *first >= 0)
      flight_[static_cast<std::size_t>(f)] = {static_cast<int>(*first), Work{}, true};
    else if (std::any_of(first, last, [](double v) { return v >= 0; }))
      ++dropped;
  }
  dropped = static_cast<int>(max_over(MPI_COMM_WORLD, dropped));
  if (dropped > 0 && speaks)
    log::warn("{} holds outer syncs in flight over other fragments of the parameters (another layout or "
              "sync.outer.fragments): {} fragment{} of them are dropped",
              path, dropped, dropped == 1 ? "" : "s");
}

OuterSync::~OuterSync() {
  // The worker's queued all-reduces use delta_ and the codecs.
  outer_.synchronize();
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
