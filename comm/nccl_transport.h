// The NCCL backend: buffers in the NCCL API's memory (a GPU's, or the host's under the CPU
// model, nccl_api.h), a stream per group, NCCL's own collectives as `native`, and exchanges
// over send/recv, so that fibertrain's ring and hierarchical algorithms run (and the pacer
// throttles them) as over MPI. Bootstrapped over an MPI transport of the same group.
#pragma once

#include <memory>
#include <mutex>
#include <vector>

#include "comm/mpi_transport.h"
#include "comm/nccl_api.h"

namespace ft {

class NcclTransport final : public Transport {
 public:
  // Collective over `bootstrap`'s group. On CUDA, the current device is the one it uses. The
  // streams its work runs on: new ones, or a parent's (the levels of a hierarchy share
  // their group's, so that one stream orders each step after the one before).
  NcclTransport(std::shared_ptr<NcclApi> api, std::unique_ptr<MpiTransport> bootstrap,
                std::shared_ptr<Stream> stream = nullptr, std::shared_ptr<Stream> recv_stream = nullptr);
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
  bool takes_device_buffers() const override { return api_->memory() == Device::cuda; }
  void wait_ready(const Event& ready) override;
  void end_op() override;
  std::unique_ptr<Transport> split(int color, int key) override;

 private:
  bool on_gpu() const { return api_->memory() == Device::cuda; }

  std::shared_ptr<NcclApi> api_;
  std::unique_ptr<MpiTransport> bootstrap_;
  std::unique_ptr<NcclComm> comm_;
  std::shared_ptr<Stream> stream_;       // collectives, ring exchanges, sends, buffer ops
  std::shared_ptr<Stream> recv_stream_;  // receives issued by the caller while the worker sends
  std::mutex nccl_mutex_;                // one thread enqueues NCCL work on this communicator at a time
  std::vector<Event> events_;            // by exchange ticket
  std::vector<int> free_tickets_;
  std::mutex tickets_mutex_;
  std::vector<std::shared_ptr<void>> scratch_;
  std::vector<std::size_t> scratch_bytes_;
};

// NCCL holds one rank of a communicator per GPU: throws UserError (collectively, the same
// on every rank of MPI_COMM_WORLD) naming two ranks of one of `groups` that share a GPU.
// Each group lists world ranks.
void check_one_gpu_per_rank(const std::vector<std::vector<int>>& groups);

}  // namespace ft
