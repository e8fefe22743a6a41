// A worker thread that runs queued work in issue order (a lane), and the handle (Work) on
// each item: the asynchronous side of a communicator. An item may leave work issued on a
// stream that is still running when it returns (NCCL); it hands back the Event that marks
// it, and its Work completes when that has.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "comm/stream.h"

namespace ft {

// steady_clock seconds, for overlap measurements.
double now_seconds();

// A handle on asynchronous work: wait() blocks until it finished, and what it issued on a
// stream with it, and rethrows its error.
class Work {
 public:
  Work() = default;
  void wait() const;
  // Whether its item has run (what the item issued on a stream may still be running).
  bool done() const;
  // Waits for its item to have run (rethrowing its error) and returns the event marking what
  // it left running, for another stream to wait on.
  Event ran() const;
  // now_seconds() when the work began, and when it was seen to end (its issuing returned, or
  // a wait() found what it issued done).
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

  // Queues `fn`, which returns the event marking what it left running; the thread starts on
  // first use and runs `init` first (a CUDA device, say).
  Work enqueue(std::function<Event()> fn, const std::function<void()>& init = {});
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
  std::deque<std::pair<std::function<Event()>, std::shared_ptr<Work::State>>> queue_;
  std::size_t in_flight_ = 0;
  bool stopping_ = false;
};

}  // namespace ft
