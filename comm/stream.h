// Streams and events: the one mechanism that orders work between compute and
// communication, on every device path.
//
// A stream runs the work issued on it in issue order, possibly later than the host issues it:
//   host       (device: cpu)       work runs on the issuing thread at once; events are done
//   cpu_async  (device: cpu-async) a thread of the stream's own runs queued host work, and
//              only once something waits for it: as late as it may, so that a missing wait
//              reads data not yet written every time, on a machine without a GPU
//   cpu_eager  a thread of the stream's own runs queued host work as soon as it can, as a
//              GPU runs a stream: the streams of the CPU model of NCCL (nccl_api.h), whose
//              transfers must progress whether or not the host waits for them
//   cuda       (device: cuda)      a cudaStream_t; events are cudaEvent_t
// An Event marks what was issued on a stream up to its record(); stream.wait(event) orders
// the stream's later work after it; event.synchronize() blocks the calling thread until then.
//
// Example, the tensor-parallel all-reduce of a block's output under cpu-async: the compute
// thread issues matmul -> [all-reduce] -> add_bias. The matmul is queued, not run. The
// all-reduce records an event on the compute stream and waits for it (the matmul runs now),
// sums in place, returns; add_bias is queued after and sees the sum. Without the wait the
// all-reduce would sum the buffer's previous contents.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "comm/device.h"

namespace ft {

enum class StreamKind : std::uint8_t { host, cpu_async, cpu_eager, cuda };

class Stream;

class Event {
 public:
  Event() = default;  // marks nothing: already complete
  // Blocks until the marked work has run; rethrows an error raised by work before the mark.
  void synchronize() const;

 private:
  friend class Stream;
  std::shared_ptr<void> cuda_;       // cudaEvent_t
  std::shared_ptr<void> queue_;      // the cpu_async stream's queue
  std::uint64_t seq_ = 0;            // cpu_async: work items up to this one
};

class Stream {
 public:
  // A new stream of `kind`; cuda: on the current device, or wrapping `cuda_stream` (not
  // owned) when given.
  explicit Stream(StreamKind kind, void* cuda_stream = nullptr);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  StreamKind kind() const { return kind_; }
  // Host work: runs `fn` in issue order (on a CUDA stream, as a host function, which must
  // not call CUDA). Errors surface at the next synchronize() of the stream or of an event
  // recorded after it (on CUDA, they end the process: a host function cannot report one).
  void launch(std::function<void()> fn);
  Event record();
  void wait(const Event& e);
  void synchronize();
  void* native() const { return cuda_; }  // cudaStream_t, or null

 private:
  friend class Event;
  struct Queue;
  struct EventPool;
  StreamKind kind_;
  void* cuda_ = nullptr;
  bool owns_cuda_ = false;
  std::shared_ptr<Queue> queue_;
  std::shared_ptr<EventPool> events_;  // cuda
};

}  // namespace ft
