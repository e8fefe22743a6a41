#include "comm/communicator.h"

#include <algorithm>
#include <stdexcept>

#include "comm/log.h"
#ifdef FIBERTRAIN_CUDA
#include "comm/cuda/buffer_ops.h"
#endif

namespace ft {

std::string_view algorithm_name(Algorithm a) {
  switch (a) {
    case Algorithm::native: return "native";
    case Algorithm::ring: return "ring";
    case Algorithm::hierarchical: return "hierarchical";
  }
  return "?";
}

std::optional<Algorithm> algorithm_from_name(std::string_view name) {
  for (Algorithm a : {Algorithm::native, Algorithm::ring, Algorithm::hierarchical})
    if (algorithm_name(a) == name) return a;
  return std::nullopt;
}

Segment segment(std::size_t n, int p, int i) {
  auto pp = static_cast<std::size_t>(p), ii = static_cast<std::size_t>(i);
  std::size_t base = n / pp, extra = n % pp;
  return {ii * base + std::min(ii, extra), base + (ii < extra ? 1 : 0)};
}

Communicator::Communicator(std::shared_ptr<const Topology> topo, std::vector<int> members, int rank, Traffic kind,
                           std::unique_ptr<Transport> transport)
    : topo_(std::move(topo)),
      members_(std::move(members)),
      rank_(rank),
      kind_(kind),
      transport_(std::move(transport)),
      plan_(plan_hierarchy(*topo_, members_)) {}

Communicator::~Communicator() { queue_.stop(); }

void Communicator::set_chunk_bytes(std::size_t bytes) {
  chunk_bytes_ = std::max<std::size_t>(bytes, 1);
  for (auto& level : levels_) level->set_chunk_bytes(bytes);
}

Work Communicator::enqueue(std::function<void()> fn) {
  // Rule 1: the event is taken now, on the issuing thread; the worker waits for it.
  Event ready = transport_->ready();
  auto item = [this, ready, fn = std::move(fn)] {
    transport_->wait_ready(ready);
    fn();
  };
  if (queue_.started()) return queue_.enqueue(std::move(item));
  const int device = transport_->worker_device();  // read on this thread, made current on the worker's
  return queue_.enqueue(std::move(item), [device] {
#ifdef FIBERTRAIN_CUDA
    if (device >= 0) cuda_buffers::set_device(device);
#endif
    (void)device;
  });
}

void Communicator::synchronize() { queue_.synchronize(); }

Work Communicator::all_reduce_async(Buffer buf, ReduceOp op, Algorithm algo) {
  return enqueue([this, buf, op, algo] { all_reduce(buf, op, algo); });
}

void Communicator::ordered(const std::function<void()>& body) {
  if (queue_.on_worker()) {
    body();
    transport_->end_op();
    return;
  }
  Event ready = transport_->ready();
  // Work issued earlier must finish first, or ranks could see operations in different orders.
  queue_.synchronize();
  transport_->wait_ready(ready);
  body();
  transport_->end_op();
}

void Communicator::set_producer_stream(Stream* producer) {
  transport_->set_producer(producer);
  for (auto& level : levels_) level->set_producer_stream(producer);
}

bool Communicator::use_levels(Algorithm algo) {
  if (algo != Algorithm::hierarchical) return false;
  if (!plan_.even && !warned_uneven_) {
    warned_uneven_ = true;
    if (rank_ == 0) log::warn("hierarchical collectives fall back to the flat ring: {}", plan_.why_uneven);
  }
  // A group within one tier has one level: its hierarchy is the flat ring.
  return plan_.even && levels_.size() > 1;
}

Segment Communicator::owned(std::size_t n, Algorithm algo) const {
  if (algo != Algorithm::hierarchical || !plan_.even || levels_.size() < 2) return segment(n, size(), rank_);
  Segment region{0, n};
  for (const auto& level : levels_) {
    Segment s = segment(region.count, level->size(), level->rank());
    region = {region.offset + s.offset, s.count};
  }
  return region;
}

// The three collectives have one shape: on this backend's memory, in issue order, the
// library's own collective, the hierarchy level by level, or the flat ring; an all-reduce
// is a reduce-scatter then an all-gather.
void Communicator::collective(Buffer whole, bool reduce, bool gather, ReduceOp op, Algorithm algo) {
  ordered([&] { transport_->on_backend_memory(whole, Transport::kScratchHost, [&](Buffer buf) {
    if (buf.count == 0 || size() == 1) return;
    if (algo == Algorithm::native) {
      traffic().native(kind_, buf.bytes());
      if (reduce && gather)
        transport_->all_reduce(buf);
      else if (reduce)
        transport_->reduce_scatter(buf);
      else
        transport_->all_gather(buf);
    } else {
      const bool levels = use_levels(algo);
      if (reduce) levels ? hierarchical_reduce_scatter(buf) : ring_reduce_scatter_inplace(buf);
      if (gather) levels ? hierarchical_all_gather(buf) : ring_all_gather_inplace(buf);
    }
    if (!reduce || op != ReduceOp::avg) return;
    const Segment mine = gather ? Segment{0, buf.count} : owned(buf.count, algo);
    transport_->scale(buf.slice(mine.offset, mine.count), 1.0 / size());
  }); });
}

void Communicator::all_reduce(Buffer buf, ReduceOp op, Algorithm algo) { collective(buf, true, true, op, algo); }
void Communicator::reduce_scatter(Buffer buf, ReduceOp op, Algorithm algo) { collective(buf, true, false, op, algo); }
void Communicator::all_gather(Buffer buf, Algorithm algo) { collective(buf, false, true, ReduceOp::sum, algo); }

void Communicator::broadcast(Buffer whole, int root) {
  ordered([&] { transport_->on_backend_memory(whole, Transport::kScratchHost, [&](Buffer buf) {
    if (size() == 1 || buf.count == 0) return;
    traffic().native(kind_, buf.bytes());
    transport_->broadcast(buf, root);
  }); });
}

void Communicator::barrier() {
  ordered([&] { transport_->barrier(); });
}

Work Communicator::send(Buffer buf, int peer) {
  // Rule 3: the snapshot is issued on the producer stream before enqueue() records the
  // event the worker waits for, so the worker sends what the buffer held now.
  std::shared_ptr<void> copy = transport_->snapshot(buf);
  Buffer staged{copy.get(), buf.count, buf.dtype, buf.device};
  return enqueue([this, copy, staged, peer] {
    double t0 = now_seconds();
    Tier tier = tier_to(peer);
    Pacer::wait_until(count_and_reserve(tier, staged.bytes(), staged.bytes()));
    transport_->on_backend_memory(staged, Transport::kScratchHost, [&](Buffer b) {
      transport_->finish_exchange(transport_->start_exchange(b, peer, Buffer{}, -1));
      transport_->end_op();
    }, false);
    traffic().busy(tier, now_seconds() - t0);
  });
}

void Communicator::recv(Buffer whole, int peer) {
  // Bypasses queued work (see above), but not the producer: compute issued before may
  // still read the buffer this overwrites.
  transport_->wait_ready(transport_->ready());
  transport_->on_backend_memory(whole, Transport::kScratchRecv, [&](Buffer buf) {
    transport_->finish_exchange(transport_->start_exchange(Buffer{}, -1, buf, peer, true));
    transport_->end_op();
  });
}

void Communicator::set_pacer(std::shared_ptr<Pacer> pacer) {
  pacer_ = pacer;
  for (auto& level : levels_) level->set_pacer(pacer);
}

std::int64_t Communicator::count_and_reserve(Tier tier, std::size_t wire_bytes, std::size_t logical_bytes) {
  if (wire_bytes == 0) return 0;
  traffic().count(kind_, tier, logical_bytes, wire_bytes);
  return pacer_ ? pacer_->reserve(members_[static_cast<std::size_t>(rank_)], tier, wire_bytes) : 0;
}

}  // namespace ft
