// The part of NCCL's API that the NCCL transport (nccl_transport.h) is written against, with
// two implementations: NCCL itself on CUDA devices (nccl_library.cpp), and a CPU model of
// NCCL's rules (nccl_model.cpp) that runs the transport's own logic, its streams, threads,
// groups and issue order, on host memory and cpu_eager streams, moving the bytes through MPI.
//
// The rules the model grants, and nothing more (what NCCL guarantees on a GPU):
//  - a communicator runs its operations one at a time, in the order the host issued them,
//    whatever stream or thread issued them;
//  - a send of more than `eager_bytes` completes only once the peer's matching receive is
//    running (rendezvous); a smaller one may complete alone; a receive completes when its
//    send has run;
//  - the operations inside one group (group_start ... group_end) start together;
//  - a collective completes only when every member reached it at the same place in that
//    communicator's order of collectives (the model checks that they agree on what it is);
//  - strict: every communicator of a process shares one queue in launch order, as
//    CUDA_DEVICE_MAX_CONNECTIONS=1 (or NCCL_LAUNCH_ORDER_IMPLICIT) makes it on a GPU, so an
//    issue order that differs between ranks deadlocks on a CPU, not first on a cluster.
// Example of what it catches, pp = 2 in 1F1B with large activations: stage 0 issues the send
// of activation 1, then the receive of gradient 0; stage 1 issues the send of gradient 0,
// then the receive of activation 1. Both sends wait for a receive the peer has not started:
// the model hangs as NCCL would, and the watchdog names the ranks.
#pragma once

#include <cstddef>
#include <memory>

#include <mpi.h>

#include "comm/device.h"
#include "comm/stream.h"

namespace ft {

// One communicator: the operations are NCCL's (sums; counts in elements, bytes for
// send/recv), enqueued on `stream`, in place when the buffers alias as NCCL allows.
class NcclComm {
 public:
  virtual ~NcclComm() = default;
  virtual void all_reduce(const void* send, void* recv, std::size_t count, DType t, Stream& stream) = 0;
  // recv = this rank's `recv_count` elements of the sum of every rank's send.
  virtual void reduce_scatter(const void* send, void* recv, std::size_t recv_count, DType t, Stream& stream) = 0;
  virtual void all_gather(const void* send, void* recv, std::size_t send_count, DType t, Stream& stream) = 0;
  virtual void reduce(const void* send, void* recv, std::size_t count, DType t, int root, Stream& stream) = 0;
  virtual void broadcast(const void* send, void* recv, std::size_t count, DType t, int root, Stream& stream) = 0;
  virtual void send(const void* buf, std::size_t bytes, int peer, Stream& stream) = 0;
  virtual void recv(void* buf, std::size_t bytes, int peer, Stream& stream) = 0;
};

class NcclApi {
 public:
  virtual ~NcclApi() = default;
  // A communicator over `bootstrap`'s ranks (collective over it).
  virtual std::unique_ptr<NcclComm> init(MPI_Comm bootstrap) = 0;
  // Groups nest; the calling thread's operations between the outermost pair start together.
  virtual void group_start() = 0;
  virtual void group_end() = 0;
  // Where its buffers live, and a new stream on which its operations may be issued.
  virtual Device memory() const = 0;
  virtual std::shared_ptr<Stream> new_stream() = 0;
};

// What the CPU model grants (the rules above).
struct NcclRules {
  std::size_t eager_bytes = std::size_t{4} << 20;  // NCCL_BUFFSIZE's default
  bool strict = false;
};

// The CPU model: one per process, shared by its communicators.
std::shared_ptr<NcclApi> nccl_model(NcclRules rules);
// NCCL on the current CUDA device (builds with CUDA).
std::shared_ptr<NcclApi> nccl_library();
// Strict on a GPU: every stream of the process in one launch queue, and NCCL's kernels of all
// communicators in host launch order (CUDA_DEVICE_MAX_CONNECTIONS=1, NCCL_LAUNCH_ORDER_IMPLICIT=1).
// Only before CUDA starts in the process (builds with CUDA).
void nccl_one_launch_queue();

}  // namespace ft
