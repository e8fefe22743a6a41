#include "comm/stream.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#ifdef FIBERTRAIN_CUDA
#include "comm/cuda/buffer_ops.h"
#endif

namespace ft {

// A host stream's work (cpu_async, cpu_eager): numbered items, run by the worker in order
// once a waiter has asked for them (demanded), never before; an eager stream asks for each
// as it is issued.
struct Stream::Queue {
  explicit Queue(bool eager) : eager(eager) {}
  const bool eager;
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<std::pair<std::uint64_t, std::function<void()>>> items;
  std::uint64_t issued = 0, done = 0, demanded = 0;
  std::exception_ptr error;  // the first error a work item raised; sticky, like CUDA's
  bool stopping = false;
  std::thread worker;

  void run() {
    std::unique_lock lock(mutex);
    while (true) {
      cv.wait(lock, [&] { return (!items.empty() && items.front().first <= demanded) || (stopping && items.empty()); });
      if (items.empty()) return;
      auto [seq, fn] = std::move(items.front());
      items.pop_front();
      lock.unlock();
      std::exception_ptr failed;
      try {
        fn();
      } catch (...) {
        failed = std::current_exception();
      }
      fn = nullptr;  // what it captured goes now, not under the lock
      lock.lock();
      if (failed && !error) error = failed;
      done = seq;
      cv.notify_all();
    }
  }

  void run_until(std::uint64_t seq) {
    std::unique_lock lock(mutex);
    if (seq > demanded) {
      demanded = seq;
      cv.notify_all();
    }
    cv.wait(lock, [&] { return done >= seq; });
    if (error) std::rethrow_exception(error);
  }
};

void Event::synchronize() const {
  if (queue_) static_cast<Stream::Queue*>(queue_.get())->run_until(seq_);
#ifdef FIBERTRAIN_CUDA
  if (cuda_) cuda_buffers::synchronize_event(cuda_.get());
#endif
}

// CUDA events, made once and reused: a recorded Event hands its event back here when its
// last copy goes. Blocking-sync, so that a host waiting for one sleeps instead of spinning
// a core that the other ranks' threads need.
struct Stream::EventPool {
  std::mutex mutex;
  std::vector<void*> free;
  ~EventPool() {
#ifdef FIBERTRAIN_CUDA
    for (void* e : free) cuda_buffers::destroy_event(e);
#endif
  }
};

Stream::Stream(StreamKind kind, void* cuda_stream) : kind_(kind) {
  if (kind == StreamKind::cpu_async || kind == StreamKind::cpu_eager) {
    queue_ = std::make_shared<Queue>(kind == StreamKind::cpu_eager);
    queue_->worker = std::thread([q = queue_.get()] { q->run(); });
  } else if (kind == StreamKind::cuda) {
#ifdef FIBERTRAIN_CUDA
    owns_cuda_ = cuda_stream == nullptr;
    cuda_ = owns_cuda_ ? cuda_buffers::create_stream() : cuda_stream;
    events_ = std::make_shared<EventPool>();
#else
    (void)cuda_stream;
    throw std::logic_error("a CUDA stream in a build without CUDA");
#endif
  }
}

Stream::~Stream() {
  if (queue_) {
    {
      std::lock_guard lock(queue_->mutex);
      queue_->demanded = queue_->issued;  // what was issued still runs
      queue_->stopping = true;
    }
    queue_->cv.notify_all();
    queue_->worker.join();
  }
#ifdef FIBERTRAIN_CUDA
  if (owns_cuda_) cuda_buffers::destroy_stream(cuda_);
#endif
}

void Stream::launch(std::function<void()> fn) {
  if (kind_ == StreamKind::host) return fn();
  if (kind_ == StreamKind::cuda) {
#ifdef FIBERTRAIN_CUDA
    cuda_buffers::launch_host(cuda_, std::move(fn));
#endif
    return;
  }
  {
    std::lock_guard lock(queue_->mutex);
    queue_->items.emplace_back(++queue_->issued, std::move(fn));
    if (!queue_->eager) return;
    queue_->demanded = queue_->issued;
  }
  queue_->cv.notify_all();
}

Event Stream::record() {
  Event e;
  if (queue_) {
    std::lock_guard lock(queue_->mutex);
    e.queue_ = queue_;
    e.seq_ = queue_->issued;
  }
#ifdef FIBERTRAIN_CUDA
  if (kind_ == StreamKind::cuda) {
    void* ev = nullptr;
    {
      std::lock_guard lock(events_->mutex);
      if (!events_->free.empty()) {
        ev = events_->free.back();
        events_->free.pop_back();
      }
    }
    if (!ev) ev = cuda_buffers::create_event();
    e.cuda_ = std::shared_ptr<void>(ev, [pool = events_](void* back) {
      std::lock_guard lock(pool->mutex);
      pool->free.push_back(back);
    });
    cuda_buffers::record(ev, cuda_);
  }
#endif
  return e;
}

void Stream::wait(const Event& e) {
  switch (kind_) {
    case StreamKind::host: e.synchronize(); return;
    case StreamKind::cpu_async:
    case StreamKind::cpu_eager: launch([e] { e.synchronize(); }); return;
    case StreamKind::cuda:
#ifdef FIBERTRAIN_CUDA
      if (e.cuda_) cuda_buffers::wait(cuda_, e.cuda_.get());
#endif
      if (e.queue_) e.synchronize();  // host work cannot be waited for on a device
      return;
  }
}

void Stream::synchronize() {
  if (queue_) {
    std::uint64_t last;
    {
      std::lock_guard lock(queue_->mutex);
      last = queue_->issued;
    }
    queue_->run_until(last);
  }
#ifdef FIBERTRAIN_CUDA
  if (kind_ == StreamKind::cuda) cuda_buffers::synchronize_stream(cuda_);
#endif
}

}  // namespace ft
