#include "models/cpu/parallel.h"

#include <cblas.h>

#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace ft::cpu {
namespace {

class Pool {
 public:
  ~Pool() { resize(1); }

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  void resize(int n) {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
    stop_ = false;
    for (int id = 1; id < n; ++id) workers_.emplace_back([this, id, seen = generation_] { work(id, seen); });
  }

  void run(int chunks, void (*chunk)(void*, int), void* ctx) {
    std::unique_lock busy(busy_, std::try_to_lock);
    if (!busy.owns_lock() || chunks > size()) {
      for (int id = 0; id < chunks; ++id) chunk(ctx, id);
      return;
    }
    {
      std::lock_guard lock(mu_);
      chunk_ = chunk;
      ctx_ = ctx;
      chunks_ = chunks;
      pending_ = chunks - 1;
      ++generation_;
    }
    wake_.notify_all();
    chunk(ctx, 0);
    std::unique_lock lock(mu_);
    done_.wait(lock, [this] { return pending_ == 0; });
  }

 private:
  // `seen`: the last loop before this worker existed, which is not its to run.
  void work(int id, std::uint64_t seen) {
    std::unique_lock lock(mu_);
    for (;;) {
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      if (id >= chunks_) continue;
      auto* chunk = chunk_;
      void* ctx = ctx_;
      lock.unlock();
      chunk(ctx, id);
      lock.lock();
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::mutex busy_;  // one loop at a time; another thread's loop runs serially meanwhile
  std::mutex mu_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  void (*chunk_)(void*, int) = nullptr;
  void* ctx_ = nullptr;
  int chunks_ = 0, pending_ = 0;
  std::uint64_t generation_ = 0;
  bool stop_ = false;
};

Pool& pool() {
  static Pool p;
  return p;
}

}  // namespace

void set_threads(int n) {
  n = std::max(1, n);
  if (n != pool().size()) pool().resize(n);
  openblas_set_num_threads(n);
}

int threads() { return pool().size(); }

namespace detail {
void run_chunks(int chunks, void (*chunk)(void* ctx, int id), void* ctx) { pool().run(chunks, chunk, ctx); }
}  // namespace detail

SerialBlas::SerialBlas() : saved_(threads()) {
  if (saved_ > 1) openblas_set_num_threads(1);
}
SerialBlas::~SerialBlas() {
  if (saved_ > 1) openblas_set_num_threads(saved_);
}

}  // namespace ft::cpu
