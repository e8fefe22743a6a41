#include "comm/communicator.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include "comm/log.h"
#ifdef FIBERTRAIN_CUDA
#include "comm/cuda/buffer_ops.h"
#endif

namespace ft {

struct Work::State {
  std::mutex mutex;
  std::condition_variable cv;
  bool done = false;
  double started = 0, finished = 0;
  std::exception_ptr error;
};

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void Work::wait() const {
  if (!state_) return;
  std::unique_lock lock(state_->mutex);
  state_->cv.wait(lock, [&] { return state_->done; });
  if (state_->error) std::rethrow_exception(state_->error);
}

bool Work::done() const {
  if (!state_) return true;
  std::lock_guard lock(state_->mutex);
  return state_->done;
}

double Work::started() const { return state_ ? state_->started : 0; }
double Work::finished() const { return state_ ? state_->finished : 0; }

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

Communicator::Communicator(std::shared_ptr<const Topology> topo, std::vector<int> members, int rank, Traffic kind)
    : topo_(std::move(topo)), members_(std::move(members)), rank_(rank), kind_(kind), plan_(plan_hierarchy(*topo_, members_)) {}

Communicator::~Communicator() { stop_worker(); }

void Communicator::set_chunk_bytes(std::size_t bytes) {
  chunk_bytes_ = std::max<std::size_t>(bytes, 1);
  for (auto& level : levels_) level->set_chunk_bytes(bytes);
}

void Communicator::stop_worker() {
  if (!worker_.joinable()) return;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

Work Communicator::enqueue(std::function<void()> fn) {
  Work w;
  w.state_ = std::make_shared<Work::State>();
  // Rule 1: the event is taken now, on the issuing thread; the worker waits for it.
  Event ready = record_ready();
  auto item = [this, ready, fn = std::move(fn)] {
    wait_ready(ready);
    fn();
  };
  {
    std::lock_guard lock(mutex_);
    queue_.emplace_back(std::move(item), w.state_);
    ++in_flight_;
    if (!worker_.joinable()) {
      // The worker uses the GPU of the thread that starts it (CUDA's current device is per
      // thread); CPU groups never touch CUDA.
      int device = -1;
#ifdef FIBERTRAIN_CUDA
      if (takes_device_buffers() || (producer_ && producer_->kind() == StreamKind::cuda))
        device = cuda_buffers::current_device();
#endif
      worker_ = std::thread([this, device] {
#ifdef FIBERTRAIN_CUDA
        if (device >= 0) cuda_buffers::set_device(device);
#endif
        worker_loop();
      });
    }
  }
  cv_.notify_all();
  return w;
}

void Communicator::worker_loop() {
  while (true) {
    std::function<void()> fn;
    std::shared_ptr<Work::State> state;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      fn = std::move(queue_.front().first);
      state = std::move(queue_.front().second);
      queue_.pop_front();
    }
    state->started = now_seconds();
    std::exception_ptr error;
    try {
      fn();
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard lock(state->mutex);
      state->finished = now_seconds();
      state->error = error;
      state->done = true;
    }
    state->cv.notify_all();
    {
      std::lock_guard lock(mutex_);
      --in_flight_;
    }
    cv_.notify_all();
  }
}

void Communicator::synchronize() {
  std::unique_lock lock(mutex_);
  cv_.wait(lock, [&] { return in_flight_ == 0; });
}

void Communicator::run_ordered(const std::function<void()>& fn) {
  // Work issued earlier must finish first, or ranks could see operations in different orders.
  synchronize();
  fn();
}

Work Communicator::all_reduce_async(Buffer buf, ReduceOp op, Algorithm algo) {
  return enqueue([this, buf, op, algo] { all_reduce(buf, op, algo); });
}

void Communicator::ordered(const std::function<void()>& body) {
  if (worker_started() && std::this_thread::get_id() == worker_.get_id()) {
    body();
    end_op();
    return;
  }
  Event ready = record_ready();
  run_ordered([&] {
    wait_ready(ready);
    body();
    end_op();
  });
}

void Communicator::set_producer_stream(Stream* producer) {
  producer_ = producer;
  for (auto& level : levels_) level->set_producer_stream(producer);
}

Event Communicator::record_ready() const { return producer_ ? producer_->record() : Event{}; }

std::shared_ptr<void> Communicator::snapshot(Buffer buf) const {
  const std::size_t bytes = buf.bytes();
  if (buf.device == Device::cuda) {
#ifdef FIBERTRAIN_CUDA
    // Stream-ordered memory: a plain cudaFree would wait for the whole device, NCCL's
    // kernels (which may wait on a peer that waits on us) included.
    void* stream = producer_ ? producer_->native() : nullptr;
    void* p = cuda_buffers::allocate_async(bytes, stream);
    if (stream)
      cuda_buffers::copy_async(p, buf.data, bytes, stream);
    else
      cuda_buffers::copy(p, buf.data, bytes, nullptr);  // no stream to order it by: done on return
    return std::shared_ptr<void>(p, [stream](void* q) { cuda_buffers::release_async(q, stream); });
#else
    throw std::logic_error("device buffer in a build without CUDA");
#endif
  }
  std::shared_ptr<char[]> copy(new char[bytes == 0 ? 1 : bytes]);
  auto take = [copy, src = buf.data, bytes] { std::memcpy(copy.get(), src, bytes); };
  if (producer_)
    producer_->launch(take);
  else
    take();
  return std::shared_ptr<void>(copy, copy.get());
}

void Communicator::on_backend_memory(Buffer buf, int slot, const std::function<void(Buffer)>& fn, bool write_back) {
  const bool fits = takes_device_buffers() ? buf.device == Device::cuda : buf.device == Device::cpu;
  if (fits || buf.count == 0) {
    fn(buf);
    return;
  }
  // A copy where this backend works (host for MPI, device for NCCL), and back.
  Buffer there = scratch(slot, buf.bytes(), buf.dtype);
  there.count = buf.count;
  Device device = buf.device == Device::cuda ? buf.device : there.device;
  copy_bytes(there.data, buf.data, buf.bytes(), device);
  fn(there);
  if (write_back) copy_bytes(buf.data, there.data, buf.bytes(), device);
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

void Communicator::all_reduce(Buffer whole, ReduceOp op, Algorithm algo) {
  ordered([&] { on_backend_memory(whole, kScratchHost, [&](Buffer buf) {
    if (buf.count == 0 || size() == 1) return;
    if (algo == Algorithm::native) {
      traffic().native(kind_, buf.bytes());
      native_all_reduce(buf);
    } else if (use_levels(algo)) {
      hierarchical_reduce_scatter(buf);
      hierarchical_all_gather(buf);
    } else {
      ring_reduce_scatter_inplace(buf);
      ring_all_gather_inplace(buf);
    }
    if (op == ReduceOp::avg) local_scale(buf, 1.0 / size());
  }); });
}

void Communicator::reduce_scatter(Buffer whole, ReduceOp op, Algorithm algo) {
  ordered([&] { on_backend_memory(whole, kScratchHost, [&](Buffer buf) {
    if (buf.count == 0 || size() == 1) return;
    if (algo == Algorithm::native) {
      traffic().native(kind_, buf.bytes());
      native_reduce_scatter(buf);
    } else if (use_levels(algo)) {
      hierarchical_reduce_scatter(buf);
    } else {
      ring_reduce_scatter_inplace(buf);
    }
    Segment mine = owned(buf.count, algo);
    if (op == ReduceOp::avg)
      local_scale(buf.slice(mine.offset, mine.count), 1.0 / size());
  }); });
}

void Communicator::all_gather(Buffer whole, Algorithm algo) {
  ordered([&] { on_backend_memory(whole, kScratchHost, [&](Buffer buf) {
    if (buf.count == 0 || size() == 1) return;
    if (algo == Algorithm::native) {
      traffic().native(kind_, buf.bytes());
      native_all_gather(buf);
    } else if (use_levels(algo)) {
      hierarchical_all_gather(buf);
    } else {
      ring_all_gather_inplace(buf);
    }
  }); });
}

void Communicator::broadcast(Buffer whole, int root) {
  ordered([&] { on_backend_memory(whole, kScratchHost, [&](Buffer buf) {
    if (size() == 1 || buf.count == 0) return;
    traffic().native(kind_, buf.bytes());
    native_broadcast(buf, root);
  }); });
}

void Communicator::barrier() {
  ordered([&] { native_barrier(); });
}

Work Communicator::send(Buffer buf, int peer) {
  // Rule 3: the snapshot is issued on the producer stream before enqueue() records the
  // event the worker waits for, so the worker sends what the buffer held now.
  std::shared_ptr<void> copy = snapshot(buf);
  Buffer staged{copy.get(), buf.count, buf.dtype, buf.device};
  return enqueue([this, copy, staged, peer] {
    double t0 = now_seconds();
    Tier tier = tier_to(peer);
    Pacer::wait_until(count_and_reserve(tier, staged.bytes(), staged.bytes()));
    on_backend_memory(staged, kScratchHost, [&](Buffer b) {
      finish_exchange(start_exchange(b, peer, Buffer{}, -1));
      end_op();
    }, false);
    traffic().busy(tier, now_seconds() - t0);
  });
}

void Communicator::recv(Buffer whole, int peer) {
  // Bypasses queued work (see above), but not the producer: compute issued before may
  // still read the buffer this overwrites.
  wait_ready(record_ready());
  on_backend_memory(whole, kScratchRecv, [&](Buffer buf) {
    finish_exchange(start_exchange(Buffer{}, -1, buf, peer, true));
    end_op();
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
