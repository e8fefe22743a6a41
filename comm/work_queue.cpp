#include "comm/work_queue.h"

#include <algorithm>
#include <chrono>
#include <exception>

namespace ft {

struct Work::State {
  std::mutex mutex;
  std::condition_variable cv;
  bool done = false;
  double started = 0, finished = 0;
  std::exception_ptr error;
  Event issued;  // what the item left running
  bool settled = false;  // a wait() saw it complete
};

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void Work::wait() const {
  if (!state_) return;
  Event issued;
  {
    std::unique_lock lock(state_->mutex);
    state_->cv.wait(lock, [&] { return state_->done; });
    if (state_->error) std::rethrow_exception(state_->error);
    if (state_->settled) return;
    issued = state_->issued;
  }
  issued.synchronize();
  std::lock_guard lock(state_->mutex);
  if (!state_->settled) state_->finished = std::max(state_->finished, now_seconds());
  state_->settled = true;
}

Event Work::ran() const {
  if (!state_) return {};
  std::unique_lock lock(state_->mutex);
  state_->cv.wait(lock, [&] { return state_->done; });
  if (state_->error) std::rethrow_exception(state_->error);
  return state_->issued;
}

bool Work::done() const {
  if (!state_) return true;
  std::lock_guard lock(state_->mutex);
  return state_->done;
}

double Work::started() const { return state_ ? state_->started : 0; }
double Work::finished() const { return state_ ? state_->finished : 0; }

Work WorkQueue::enqueue(std::function<Event()> fn, const std::function<void()>& init) {
  Work w;
  w.state_ = std::make_shared<Work::State>();
  {
    std::lock_guard lock(mutex_);
    queue_.emplace_back(std::move(fn), w.state_);
    ++in_flight_;
    if (!thread_.joinable())
      thread_ = std::thread([this, init] {
        if (init) init();
        loop();
      });
  }
  cv_.notify_all();
  return w;
}

void WorkQueue::loop() {
  while (true) {
    std::function<Event()> fn;
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
    Event issued;
    try {
      issued = fn();
    } catch (...) {
      error = std::current_exception();
    }
    fn = nullptr;
    {
      std::lock_guard lock(state->mutex);
      state->finished = now_seconds();
      state->error = error;
      state->issued = std::move(issued);
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

void WorkQueue::synchronize() {
  std::unique_lock lock(mutex_);
  cv_.wait(lock, [&] { return in_flight_ == 0; });
}

void WorkQueue::stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

}  // namespace ft
