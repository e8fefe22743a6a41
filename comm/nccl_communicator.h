// The NCCL backend: device buffers, a stream per communicator, NCCL's own collectives as
// `native`, and fibertrain's ring and hierarchical algorithms over ncclSend/ncclRecv (so
// the pacer throttles them like MPI's). Bootstrapped over an MPI communicator of the same
// group, whose rank 0 draws the NCCL unique id.
#pragma once

#include <memory>
#include <vector>

#include "comm/mpi_communicator.h"

namespace ft {

class NcclCommunicator final : public Communicator {
 public:
  // Collective over `bootstrap`'s group. The current CUDA device is the one it uses.
  explicit NcclCommunicator(std::unique_ptr<MpiCommunicator> bootstrap);
  ~NcclCommunicator() override;
  // The stream whose work produces the buffers handed to this communicator (the compute
  // stream): every operation first waits for what was enqueued on it.
  void set_producer_stream(void* stream) { producer_ = stream; }

 protected:
  void native_all_reduce(Buffer buf) override;
  void native_reduce_scatter(Buffer buf) override;
  void native_all_gather(Buffer buf) override;
  void native_broadcast(Buffer buf, int root) override;
  void native_barrier() override;
  int start_exchange(Buffer send, int to, Buffer recv, int from) override;
  void finish_exchange(int ticket) override;
  void local_add(Buffer dst, Buffer src) override;
  void local_scale(Buffer buf, double factor) override;
  void local_copy(Buffer dst, Buffer src) override;
  void local_convert(Buffer dst, Buffer src, bool add) override;
  Buffer scratch(int slot, std::size_t bytes, DType dtype) override;
  std::shared_ptr<void> clone(Buffer src) override;
  void copy_bytes(void* dst, const void* src, std::size_t bytes, Device device) override;
  bool takes_device_buffers() const override { return true; }
  void begin_op() override;
  void end_op() override;
  std::unique_ptr<Communicator> split(int color, int key, std::vector<int> members) override;

 private:
  std::unique_ptr<MpiCommunicator> bootstrap_;
  void* comm_ = nullptr;    // ncclComm_t
  void* stream_ = nullptr;       // cudaStream_t: collectives, ring exchanges, sends
  void* recv_stream_ = nullptr;  // receives issued by the caller while the worker sends
  std::mutex nccl_mutex_;        // one thread enqueues NCCL work on this communicator at a time
  void* producer_ = nullptr;
  void* ready_ = nullptr;   // event: the producer's work so far
  std::vector<void*> events_;  // by exchange ticket
  std::vector<int> free_tickets_;
  std::mutex tickets_mutex_;
  std::vector<void*> scratch_;
  std::vector<std::size_t> scratch_bytes_;
};

}  // namespace ft
