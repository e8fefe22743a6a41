// A worker thread that runs queued work in issue order, and the handle (Work) on each
// item: the asynchronous side of a communicator.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

namespace ft {

// steady_clock seconds, for overlap measurements.
double now_seconds();

// A handle on asynchronous work: wait() blocks until it finished and rethrows its error.
class Work {
 public:
  Work() = default;
  void wait() const;
  bool done() const;
  // now_seconds() when the work began and ended.
  double started() const;
  double finished() const;

 private:
  friend class WorkQueue;
  struct State;
  std::shared_ptr<State> state_;
};

class WorkQueue {
 public:
  WorkQueue() = default;
  ~WorkQueue() { stop(); }
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  // Queues `fn`; the thread starts on first use and runs `init` first (a CUDA device, say).
  Work enqueue(std::function<void()> fn, const std::function<void()>& init = {});
  bool started() const { return thread_.joinable(); }
  // Blocks until everything queued has run.
  void synchronize();
  bool on_worker() const { return thread_.joinable() && std::this_thread::get_id() == thread_.get_id(); }
  // Runs what is queued, then ends the thread; owners whose work uses their other members
  // call it before those go.
  void stop();

 private:
  void loop();
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::pair<std::function<void()>, std::shared_ptr<Work::State>>> queue_;
  std::size_t in_flight_ = 0;
  bool stopping_ = false;
};

}  // namespace ft
