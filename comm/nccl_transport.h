// The NCCL backend: buffers in the NCCL API's memory (a GPU's, or the host's under the CPU
// model, nccl_api.h) and one stream per group, on which everything it does is only issued:
// NCCL's collectives (for native, and for each level of ring and hierarchical, which the
// communicator counts and paces as the ring's), exchanges as one group of a send and a
// receive (the codecs' rings), the element-wise work, and the pacer's holds. Bootstrapped
// over an MPI transport of the same group. Its operations are issued by one thread, the
// process's NCCL lane (communicator.h), so no lock is needed.
#pragma once

#include <functional>
#include <memory>
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
                std::shared_ptr<Stream> stream = nullptr);
  ~NcclTransport() override;
  int size() const override { return bootstrap_->size(); }
  int rank() const override { return bootstrap_->rank(); }

  void all_reduce(Buffer buf) override;
  void reduce_scatter(Buffer buf) override;
  void all_gather(Buffer buf) override;
  void broadcast(Buffer buf, int root) override;
  void barrier() override;
  bool collectives_in_library() const override { return true; }
  int start_exchanges(const std::vector<Message>& sends, const std::vector<Message>& recvs) override;
  void finish_exchange(int ticket) override;
  void add(Buffer dst, Buffer src) override;
  void scale(Buffer buf, double factor) override;
  void convert(Buffer dst, Buffer src, bool add) override;
  Buffer scratch(int slot, std::size_t bytes, DType dtype) override;
  void copy_bytes(void* dst, const void* src, std::size_t bytes, Device device) override;
  Device memory() const override { return api_->memory(); }
  void wait_ready(const Event& ready) override { stream_->wait(ready); }
  Event complete() override { return stream_->record(); }
  void on_stream(std::function<void()> fn) override { stream_->launch(std::move(fn)); }
  void release_snapshot(void* p, Device device) override;
  std::unique_ptr<Transport> split(int color, int key) override;

 protected:
  void on_host_bytes(Buffer dst, Buffer src, std::function<void(void* dst, const void* src)> fn) override;

 private:
  bool on_gpu() const { return api_->memory() == Device::cuda; }
  // The NCCL calls of `issue` in one group, closed even when one of them throws.
  void grouped(const std::function<void()>& issue);
  // `op` for each rank's segment of `buf`, in one group.
  void per_segment(Buffer buf, const std::function<void(Buffer part, int owner)>& op);

  std::shared_ptr<NcclApi> api_;
  std::unique_ptr<MpiTransport> bootstrap_;
  std::unique_ptr<NcclComm> comm_;
  std::shared_ptr<Stream> stream_;
  std::vector<std::shared_ptr<void>> scratch_;  // by slot; released in stream order
  std::vector<std::size_t> scratch_bytes_;
};

// NCCL holds one rank of a communicator per GPU: throws UserError (collectively, the same
// on every rank of MPI_COMM_WORLD) naming two ranks of one of `groups` that share a GPU.
// Each group lists world ranks.
void check_one_gpu_per_rank(const std::vector<std::vector<int>>& groups);

}  // namespace ft
