// The MPI backend: host buffers, a duplicated MPI communicator per group (so collectives of
// different groups and threads never cross), and a worker thread for asynchronous work.
#pragma once

#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include <mpi.h>

#include "comm/communicator.h"

namespace ft {

class MpiCommunicator final : public Communicator {
 public:
  // Collective over `parent`: every rank of `parent` calls it. Ranks with the same `color`
  // form a group, ordered by `key`; `members` are this group's world ranks in that order.
  MpiCommunicator(MPI_Comm parent, int color, int key, std::vector<int> members,
                  std::shared_ptr<const Topology> topo, Traffic kind);
  ~MpiCommunicator() override;
  MPI_Comm handle() const { return comm_; }

 protected:
  void native_all_reduce(Buffer buf) override;
  void native_reduce_scatter(Buffer buf) override;
  void native_all_gather(Buffer buf) override;
  void native_broadcast(Buffer buf, int root) override;
  void native_barrier() override;
  int start_exchange(Buffer send, int to, Buffer recv, int from, bool beside_queue = false) override;
  void finish_exchange(int ticket) override;
  void local_add(Buffer dst, Buffer src) override;
  void local_scale(Buffer buf, double factor) override;
  void local_convert(Buffer dst, Buffer src, bool add) override;
  void copy_bytes(void* dst, const void* src, std::size_t bytes, Device device) override;
  Buffer scratch(int slot, std::size_t bytes, DType dtype) override;
  std::unique_ptr<Communicator> split(int color, int key, std::vector<int> members) override;

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  std::mutex exchanges_mutex_;  // the worker sends while the caller receives
  std::deque<std::array<MPI_Request, 2>> exchanges_;  // by ticket; a deque keeps them in place
  std::vector<int> free_tickets_;
  std::vector<std::unique_ptr<char[]>> scratch_;       // by slot, grown on demand
  std::vector<std::size_t> scratch_bytes_;
};

// One communicator per dimension of the rank grid, plus the world (always MPI: metrics,
// checkpoints, benchmarks).
struct GridComms {
  std::unique_ptr<MpiCommunicator> world;
  std::unique_ptr<Communicator> tp, pp, dp;
  // The first and last pipeline stages of one (tp, dp) position, which both hold the tied
  // token embedding; null elsewhere and when pp == 1.
  std::unique_ptr<Communicator> embed;
  // The compute stream whose work produces and consumes the buffers the grid's
  // communicators are given (see communicator.h's ordering rule).
  void set_producer_stream(Stream* stream);
};

class Grid;
// Collective over MPI_COMM_WORLD: tp, pp, dp and embed over MPI, or over NCCL when `nccl`
// (one GPU per rank, the current device). The DP group's hierarchy is prepared.
GridComms make_grid_comms(const Grid& grid, std::shared_ptr<const Topology> topo, bool nccl = false);

}  // namespace ft
