// The MPI backend: host buffers, over a communicator split from a parent's for each group
// (so collectives of different groups and threads never cross).
#pragma once

#include <array>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include <mpi.h>

#include "comm/communicator.h"
#include "comm/transport.h"

namespace ft {

// The MPI type of `t` for reductions; throws for the 16-bit floats, which MPI cannot add.
MPI_Datatype mpi_type(DType t);
// An MPI count; throws above 2^31 - 1.
int mpi_count(std::size_t n);
// Waits for `n` requests, sleeping between polls instead of spinning a core.
void wait_politely(int n, MPI_Request* requests);

class MpiTransport final : public Transport {
 public:
  // Collective over `parent`: every rank of `parent` calls it. Ranks with the same `color`
  // form a group, ordered by `key`.
  MpiTransport(MPI_Comm parent, int color, int key);
  ~MpiTransport() override;
  MPI_Comm handle() const { return comm_; }
  int size() const override { return size_; }
  int rank() const override { return rank_; }

  void all_reduce(Buffer buf) override;
  void reduce_scatter(Buffer buf) override;
  void all_gather(Buffer buf) override;
  void broadcast(Buffer buf, int root) override;
  void barrier() override;
  int start_exchanges(const std::vector<Message>& sends, const std::vector<Message>& recvs) override;
  void finish_exchange(int ticket) override;
  void add(Buffer dst, Buffer src) override;
  void scale(Buffer buf, double factor) override;
  void convert(Buffer dst, Buffer src, bool add) override;
  void copy_bytes(void* dst, const void* src, std::size_t bytes, Device device) override;
  Buffer scratch(int slot, std::size_t bytes, DType dtype) override;
  std::unique_ptr<Transport> split(int color, int key) override;

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int size_ = 1, rank_ = 0;
  std::mutex exchanges_mutex_;  // the worker sends while the caller receives
  std::deque<std::vector<MPI_Request>> exchanges_;  // by ticket; a deque keeps them in place
  std::vector<int> free_tickets_;
  std::vector<std::unique_ptr<char[]>> scratch_;       // by slot, grown on demand
  std::vector<std::size_t> scratch_bytes_;
};

// A communicator over MPI: the group of `parent`'s ranks with the same `color`, ordered by
// `key`, whose world ranks are `members` (collective over `parent`).
class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(MPI_Comm parent, int color, int key, std::vector<int> members, std::shared_ptr<const Topology> topo,
                  Traffic kind);
  MPI_Comm handle() const;
};

}  // namespace ft
