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

Segment segment(std::size_t n, int p, int i, std::size_t align) {
  auto pp = static_cast<std::size_t>(p), ii = static_cast<std::size_t>(i);
  if (align > 1) {
    const Segment blocks = segment((n + align - 1) / align, p, i);
    const std::size_t lo = std::min(n, blocks.offset * align);
    return {lo, std::min(n, (blocks.offset + blocks.count) * align) - lo};
  }
  std::size_t base = n / pp, extra = n % pp;
  return {ii * base + std::min(ii, extra), base + (ii < extra ? 1 : 0)};
}

std::vector<std::size_t> ring_sends(std::size_t n, int p, int rank, bool reduce, const std::vector<std::size_t>* cuts,
                                    std::size_t align) {
  std::vector<std::size_t> out;
  for (int s = 0; s < p - 1; ++s) {
    const int i = ring_send_index(rank, s, p, reduce);
    out.push_back((cuts ? aligned_segment(n, p, i, *cuts) : segment(n, p, i, align)).count);
  }
  return out;
}

Communicator::Communicator(std::shared_ptr<const Topology> topo, std::vector<int> members, int rank, Traffic kind,
                           std::unique_ptr<Transport> transport, std::shared_ptr<WorkQueue> lane)
    : topo_(std::move(topo)),
      members_(std::move(members)),
      rank_(rank),
      kind_(kind),
      transport_(std::move(transport)),
      plan_(plan_hierarchy(*topo_, members_)),
      lane_(lane ? std::move(lane) : std::make_shared<WorkQueue>()),
      own_lane_(!lane) {}

// What is queued may use this communicator: a lane of its own stops (after running it), a
// shared one drains.
Communicator::~Communicator() {
  if (own_lane_)
    lane_->stop();
  else
    lane_->synchronize();
}

void Communicator::set_chunk_bytes(std::size_t bytes) {
  chunk_bytes_ = std::max<std::size_t>(bytes, 1);
  for (auto& level : levels_) level->set_chunk_bytes(bytes);
}

Work Communicator::enqueue(std::function<void()> fn) {
  // Rule 1: the event is taken now, on the issuing thread; the lane waits for it.
  Event ready = transport_->ready();
  auto item = [this, ready, fn = std::move(fn)] {
    transport_->wait_ready(ready);
    fn();
    return transport_->complete();
  };
  if (lane_->started()) return lane_->enqueue(std::move(item));
  const int device = transport_->worker_device();  // read on this thread, made current on the lane's
  return lane_->enqueue(std::move(item), [device] {
#ifdef FIBERTRAIN_CUDA
    if (device >= 0) cuda_buffers::set_device(device);
#endif
    (void)device;
  });
}

void Communicator::after(const Work& w) { transport_->wait_ready(w.ran()); }

void Communicator::synchronize() {
  if (!lane_->on_worker()) lane_->synchronize();
  transport_->complete().synchronize();
}

Work Communicator::all_reduce_async(Buffer buf, ReduceOp op, Algorithm algo) {
  return enqueue([this, buf, op, algo] { all_reduce(buf, op, algo); });
}

void Communicator::ordered(const std::function<void()>& body) {
  // Inside an item: the item's own communicator, or a level of its hierarchy, which shares
  // its stream (a call on another communicator here would not be ordered after the item's work).
  if (lane_->on_worker()) return body();
  if (!own_lane_) return enqueue(body).wait();
  Event ready = transport_->ready();
  // Work issued earlier must finish first, or ranks could see operations in different orders.
  lane_->synchronize();
  transport_->wait_ready(ready);
  body();
  transport_->complete().synchronize();
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
// is a reduce-scatter then an all-gather. Where the library runs the levels (NCCL), each is
// one of its collectives over the level's communicator, counted and paced as the ring's.
void Communicator::collective(Buffer whole, bool reduce, bool gather, ReduceOp op, Algorithm algo) {
  ordered([&] { transport_->on_backend_memory(whole, Transport::kScratchHost, [&](Buffer buf) {
    if (buf.count == 0 || size() == 1) return;
    if (algo == Algorithm::native) {
      traffic().native(kind_, buf.bytes());
      library_collective(buf, reduce, gather);
    } else if (use_levels(algo)) {
      if (reduce) hierarchical_reduce_scatter(buf);
      if (gather) hierarchical_all_gather(buf);
    } else {
      phases(buf, reduce, gather);
    }
    if (!reduce || op != ReduceOp::avg) return;
    const Segment mine = gather ? Segment{0, buf.count} : owned(buf.count, algo);
    transport_->scale(buf.slice(mine.offset, mine.count), 1.0 / size());
  }); });
}

void Communicator::library_collective(Buffer buf, bool reduce, bool gather) {
  if (reduce && gather)
    transport_->all_reduce(buf);
  else if (reduce)
    transport_->reduce_scatter(buf);
  else
    transport_->all_gather(buf);
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

Work Communicator::exchange(Buffer send, int to, Buffer recv, int from) {
  std::vector<Message> sends, recvs;
  if (to >= 0 && send.count) sends.push_back({send, to});
  if (from >= 0 && recv.count) recvs.push_back({recv, from});
  return exchange(std::move(sends), std::move(recvs));
}

Work Communicator::exchange(std::vector<Message> sends, std::vector<Message> recvs) {
  std::erase_if(sends, [](const Message& m) { return m.peer < 0 || m.buf.count == 0; });
  std::erase_if(recvs, [](const Message& m) { return m.peer < 0 || m.buf.count == 0; });
  if (sends.size() > Transport::kExchangeMessages || recvs.size() > Transport::kExchangeMessages)
    throw std::logic_error("Communicator::exchange: more messages than it stages");
  // Rule 3: the snapshots are issued on the producer stream before enqueue() records the
  // event the lane waits for, so what goes out is what the buffers held now.
  std::vector<std::shared_ptr<void>> copies;
  for (Message& m : sends) {
    copies.push_back(transport_->snapshot(m.buf));
    m.buf.data = copies.back().get();
  }
  return enqueue([this, copies, sends, recvs] {
    // Each buffer in backend memory (its own scratch when it is not), then one group.
    std::vector<Message> out = sends, in = recvs;
    std::function<void(std::size_t)> stage = [&](std::size_t i) {
      if (i == out.size() + in.size()) return transport_->finish_exchange(transport_->start_exchanges(out, in));
      const bool sending = i < out.size();
      const std::size_t k = sending ? i : i - out.size();
      Message& m = sending ? out[k] : in[k];
      const int slot = (sending ? Transport::kScratchHost : Transport::kScratchRecv) + 2 * static_cast<int>(k);
      transport_->on_backend_memory(m.buf, slot, [&, i](Buffer there) {
        m.buf = there;
        stage(i + 1);
      }, !sending);
    };
    // A send is this rank's message on its link (a receive is its peer's): each tier's link
    // is booked for what goes out on it, and busy until the group has run.
    std::vector<Tier> tiers;
    for (const Message& m : sends)
      if (std::find(tiers.begin(), tiers.end(), tier_to(m.peer)) == tiers.end()) tiers.push_back(tier_to(m.peer));
    std::function<void(std::size_t)> paced = [&](std::size_t t) {
      if (t < tiers.size()) return busy_while(tiers[t], [&] { paced(t + 1); });
      std::vector<Booking> booked;
      for (const Message& m : sends) booked.push_back(book(tier_to(m.peer), {{m.buf.bytes(), m.buf.bytes()}}));
      for (const Booking& b : booked) hold(b, 0);
      stage(0);
    };
    paced(0);
  });
}

void Communicator::set_pacer(std::shared_ptr<Pacer> pacer) {
  pacer_ = pacer;
  for (auto& level : levels_) level->set_pacer(pacer);
}

}  // namespace ft
