// How one backend moves bytes within one group of ranks: point-to-point exchanges, the
// library's own collectives, element-wise operations on its memory, scratch, and the
// ordering of its work after the compute that produces the buffers (the rule written in
// communicator.h is implemented here: ready(), wait_ready(), snapshot(), complete()).
// Communicator builds the collectives, the ring and the hierarchy on top of it. One
// transport per backend: MPI (host memory, calls that return done; mpi_transport.h) and
// NCCL (its API's memory, work issued on a stream that completes later; nccl_transport.h).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include "comm/device.h"
#include "comm/stream.h"
#include "comm/wire.h"

namespace ft {

class Transport {
 public:
  virtual ~Transport() = default;
  virtual int size() const = 0;
  virtual int rank() const = 0;

  // ---- the library's collectives (sum), in place ----
  virtual void all_reduce(Buffer buf) = 0;
  virtual void reduce_scatter(Buffer buf) = 0;  // result at segment(n, size, rank)
  virtual void all_gather(Buffer buf) = 0;      // each rank's segment(n, size, rank)
  virtual void broadcast(Buffer buf, int root) = 0;
  virtual void barrier() = 0;
  // Whether the ring and hierarchical collectives call these level by level (NCCL, whose
  // own are faster than a ring over its send/recv) instead of fibertrain's ring over
  // exchanges (MPI); either way they are counted and paced as the ring would send.
  virtual bool collectives_in_library() const { return false; }

  // ---- point to point ----
  // Starts sending each of `sends` to its peer while receiving each of `recvs` from its
  // peer, in one group: none waits for another. finish_exchange(ticket): after it, this
  // transport's later work may use the buffers, and the host may once complete() has.
  struct Message {
    Buffer buf;
    int peer = -1;
  };
  virtual int start_exchanges(const std::vector<Message>& sends, const std::vector<Message>& recvs) = 0;
  virtual void finish_exchange(int ticket) = 0;
  // One send and one receive (either may be empty, or its peer -1): a ring's step.
  int start_exchange(Buffer send, int to, Buffer recv, int from) {
    std::vector<Message> out, in;
    if (to >= 0 && send.count) out.push_back({send, to});
    if (from >= 0 && recv.count) in.push_back({recv, from});
    return start_exchanges(out, in);
  }

  // ---- element-wise, in this transport's order ----
  virtual void add(Buffer dst, Buffer src) = 0;  // dst += src
  virtual void scale(Buffer buf, double factor) = 0;
  // dst = convert(src), or dst += convert(src) when `add`: between fp32 and fp16/bf16
  // (round to nearest even; fp16 clamps at +-65504).
  virtual void convert(Buffer dst, Buffer src, bool add) = 0;
  // dst (u8, wire.bytes(src.count)) = fp32 src in `wire`'s format; dst (fp32) = or += u8 src
  // decoded. The 16-bit casts run as convert(), on the buffers' device; the other formats
  // on the host, in this transport's order.
  void encode(Buffer dst, Buffer src, const WireFormat& wire);
  void decode(Buffer dst, Buffer src, const WireFormat& wire, bool add);
  // Bytes between host memory and a buffer on `device` (or host to host); done on return.
  virtual void copy_bytes(void* dst, const void* src, std::size_t bytes, Device device) = 0;
  // Scratch of at least `bytes` in this backend's memory, kept for reuse; one buffer per
  // slot, so that users on different threads never share one.
  // An exchange stages its i-th send in kScratchHost + 2 i and its i-th receive in
  // kScratchRecv + 2 i (kExchangeMessages of each at most).
  static constexpr int kScratchLanding = 0, kScratchStaging = 1, kScratchCodec = 2, kScratchHost = 3,
                       kScratchRecv = 4, kExchangeMessages = 2, kScratchSlots = 3 + 2 * kExchangeMessages;
  virtual Buffer scratch(int slot, std::size_t bytes, DType dtype) = 0;
  // Where its buffers live: host memory (MPI, the CPU model of NCCL) or the GPU (NCCL).
  virtual Device memory() const { return Device::cpu; }
  // Runs `fn` on `buf`, or on a copy of it in this backend's memory, copied back after when
  // `write_back`; `slot` names the scratch the copy uses.
  void on_backend_memory(Buffer buf, int slot, const std::function<void(Buffer)>& fn, bool write_back = true);

  // ---- ordering (communicator.h's rule) ----
  // The stream whose work produces and consumes the buffers (the compute stream); null:
  // host memory nothing writes asynchronously.
  void set_producer(Stream* producer) { producer_ = producer; }
  Stream* producer() const { return producer_; }
  // An event on the producer marking the work issued so far (rule 1, at issue time).
  Event ready() const { return producer_ ? producer_->record() : Event{}; }
  // Orders what this backend does next after `ready`: the host waits for it (MPI), or the
  // backend's stream does (NCCL).
  virtual void wait_ready(const Event& ready) { ready.synchronize(); }
  // Marks the work issued so far: complete at once where calls return done (MPI), recorded
  // on the stream where they only issue it (NCCL). Rule 2 waits for it.
  virtual Event complete() { return {}; }
  // Runs `fn` in this transport's order: once its work issued so far has run (on its stream),
  // or at once. The pacer's holds and the busy clocks go here, so that they start when the
  // work does, whoever issued it.
  virtual void on_stream(std::function<void()> fn) { fn(); }
  // A copy of `buf` on its device, taken on the producer in issue order (rule 3); once
  // dropped, it goes when this transport's work issued so far has run (release_snapshot).
  std::shared_ptr<void> snapshot(Buffer buf);
  // Frees a snapshot's memory in this transport's order: at once where calls return done.
  virtual void release_snapshot(void* p, Device device);
  // The CUDA device a thread working for this transport must make current, or -1.
  int worker_device() const;

  // A transport over the members of this group with the same `color`, ordered by `key`
  // (collective over the group).
  virtual std::unique_ptr<Transport> split(int color, int key) = 0;

 protected:
  // Runs `fn` on host pointers to dst's and src's bytes in this transport's order, dst's
  // bytes (as they were) written back after: at once here, where memory is the host's.
  virtual void on_host_bytes(Buffer dst, Buffer src, std::function<void(void* dst, const void* src)> fn) {
    fn(dst.data, src.data);
  }

 private:
  Stream* producer_ = nullptr;
};

}  // namespace ft
