// The NCCL backend: device buffers, a stream per group, NCCL's own collectives as
// `native`, and exchanges over ncclSend/ncclRecv, so that fibertrain's ring and
// hierarchical algorithms run (and the pacer throttles them) as over MPI. Bootstrapped over
// an MPI transport of the same group, whose rank 0 draws the NCCL unique id.
#pragma once

#include <memory>
#include <vector>

#include "comm/mpi_transport.h"

namespace ft {

class NcclTransport final : public Transport {
 public:
  // Collective over `bootstrap`'s group. The current CUDA device is the one it uses. The
  // streams its work runs on: new ones, or a parent's (the levels of a hierarchy share
  // their group's, so that one stream orders each step after the one before).
  explicit NcclTransport(std::unique_ptr<MpiTransport> bootstrap, std::shared_ptr<Stream> stream = nullptr,
                         std::shared_ptr<Stream> recv_stream = nullptr);
  ~NcclTransport() override;
  int size() const override { return bootstrap_->size(); }
  int rank() const override { return bootstrap_->rank(); }

  void all_reduce(Buffer buf) override;
  void reduce_scatter(Buffer buf) override;
  void all_gather(Buffer buf) override;
  void broadcast(Buffer buf, int root) override;
  void barrier() override;
  int start_exchange(Buffer send, int to, Buffer recv, int from, bool beside_queue = false) override;
  void finish_exchange(int ticket) override;
  void add(Buffer dst, Buffer src) override;
  void scale(Buffer buf, double factor) override;
  void convert(Buffer dst, Buffer src, bool add) override;
  Buffer scratch(int slot, std::size_t bytes, DType dtype) override;
  void copy_bytes(void* dst, const void* src, std::size_t bytes, Device device) override;
  bool takes_device_buffers() const override { return true; }
  void wait_ready(const Event& ready) override;
  void end_op() override;
  std::unique_ptr<Transport> split(int color, int key) override;

 private:
  void* st() const { return stream_->native(); }

  std::unique_ptr<MpiTransport> bootstrap_;
  void* comm_ = nullptr;                 // ncclComm_t
  std::shared_ptr<Stream> stream_;       // collectives, ring exchanges, sends, buffer ops
  std::shared_ptr<Stream> recv_stream_;  // receives issued by the caller while the worker sends
  std::mutex nccl_mutex_;                // one thread enqueues NCCL work on this communicator at a time
  std::vector<void*> events_;            // by exchange ticket
  std::vector<int> free_tickets_;
  std::mutex tickets_mutex_;
  std::vector<void*> scratch_;
  std::vector<std::size_t> scratch_bytes_;
};

// NCCL holds one rank of a communicator per GPU: throws UserError (collectively, the same
// on every rank of MPI_COMM_WORLD) naming two ranks of one of `groups` that share a GPU.
// Each group lists world ranks.
void check_one_gpu_per_rank(const std::vector<std::vector<int>>& groups);

}  // namespace ft
