// A communicator over one group of ranks (TP, PP, DP or the world). It offers the backend
// library's own collectives ("native") and fibertrain's ring and hierarchical algorithms,
// written once here (ring.cpp, compressed.cpp) over the point-to-point exchanges of a
// Transport (transport.h: MPI on host memory, NCCL on device memory). Only these
// algorithms can be counted and paced message by message; codecs (codec.h) plug into the
// hierarchy's levels.
//
// Operations on one communicator run in the order they are issued. Asynchronous ones run on
// its WorkQueue (work_queue.h); a blocking call issued while asynchronous work is pending
// waits for it first, so every rank sees the same order.
//
// Ordering with compute (comm/stream.h), the one rule of every path (MPI staging through
// the host, NCCL's streams, the worker thread, tensor-parallel hooks, pipeline sends and
// receives, gradient buckets, codec round trips):
//  1. Every operation records an event on the producer stream (set_producer_stream: the
//     compute stream of the buffers it is given) when it is issued, on the issuing thread,
//     and waits for that event before it reads or writes a buffer, on whatever thread or
//     stream it runs (wait_ready). So it sees all compute issued before it, and compute
//     issued before it is done with the buffer before it is overwritten.
//  2. Its result is in place when a blocking call returns, or when its Work is waited for;
//     compute issued after that is ordered after it.
//  3. send() snapshots its buffer on the producer stream, so compute issued after send()
//     returns may overwrite the buffer at once.
// Example, data parallelism: backward finishes a bucket's gradients -> grad_ready enqueues
// its all-reduce, recording event E on the compute stream -> backward goes on -> the worker
// waits for E, sums the bucket -> the trainer waits for the Work, then issues the optimizer.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "comm/compression.h"
#include "comm/device.h"
#include "comm/pacer.h"
#include "comm/segment.h"
#include "comm/stream.h"
#include "comm/topology.h"
#include "comm/traffic.h"
#include "comm/transport.h"
#include "comm/work_queue.h"

namespace ft {

enum class ReduceOp { sum, avg };
enum class Algorithm { native, ring, hierarchical };
std::string_view algorithm_name(Algorithm a);
std::optional<Algorithm> algorithm_from_name(std::string_view name);

class Communicator {
 public:
  // `members` are the group's world ranks by group rank; this process is `rank` among them;
  // `transport` moves its bytes.
  Communicator(std::shared_ptr<const Topology> topo, std::vector<int> members, int rank, Traffic kind,
               std::unique_ptr<Transport> transport);
  virtual ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }
  int size() const { return static_cast<int>(members_.size()); }
  const std::vector<int>& members() const { return members_; }
  Traffic kind() const { return kind_; }
  const Topology& topology() const { return *topo_; }
  const std::shared_ptr<const Topology>& shared_topology() const { return topo_; }
  const Transport& transport() const { return *transport_; }
  // The tier a message from this rank to group rank `peer` crosses.
  Tier tier_to(int peer) const { return topo_->tier(members_[static_cast<std::size_t>(rank_)], members_[static_cast<std::size_t>(peer)]); }
  // Ring and hierarchical transfers are pipelined in chunks of this many bytes.
  void set_chunk_bytes(std::size_t bytes);
  std::size_t chunk_bytes() const { return chunk_bytes_; }
  const HierarchyPlan& hierarchy() const { return plan_; }
  // Emulated links for this group's ring, hierarchical and point-to-point messages (and
  // its hierarchy's levels); null = none.
  void set_pacer(std::shared_ptr<Pacer> pacer);
  // The stream whose work produces and consumes the buffers given to this communicator (the
  // compute stream); null: host memory that nothing writes asynchronously.
  void set_producer_stream(Stream* producer);

  // Collectives, in place. reduce_scatter leaves the reduced values of this rank's part,
  // owned(n, algo), in that range of `buf` (the rest of `buf` is left undefined);
  // all_gather gives every rank every rank's owned(n, algo) range.
  void all_reduce(Buffer buf, ReduceOp op, Algorithm algo);
  void reduce_scatter(Buffer buf, ReduceOp op, Algorithm algo);
  void all_gather(Buffer buf, Algorithm algo);
  // An all-reduce of fp32 `buf` whose tiers carry what `codecs` says (see codec.h).
  // `tensors` lists buf's tensors (offsets, rows, cols; cols = 0 for vectors). Casts may
  // compress any level; the other codecs only the top one, and a codec that needs whole
  // matrices there makes the levels below split at tensor boundaries.
  void all_reduce_compressed(Buffer buf, ReduceOp op, Algorithm algo, BucketCodecs& codecs,
                             const std::vector<Matrix>& tensors);
  // This rank's part of an n-element buffer: segment(n, size, rank) for native and ring;
  // for hierarchical, the segment nested level by level (its segment of its segment ...).
  Segment owned(std::size_t n, Algorithm algo) const;
  void broadcast(Buffer buf, int root);
  void barrier();
  // Point to point, counted and paced like the ring's messages. send() snapshots `buf` and
  // queues the transfer on the worker, so the caller never blocks on its peer; like an
  // asynchronous device copy, `buf` must stay allocated until the compute issued before
  // send() has run (tensors the model owns do); recv() blocks the caller at once, bypassing
  // queued work (a pair's messages still arrive in the order sent).
  Work send(Buffer buf, int peer);
  void recv(Buffer buf, int peer);

  // Runs `fn` on the worker after everything issued before it.
  Work enqueue(std::function<void()> fn);
  Work all_reduce_async(Buffer buf, ReduceOp op, Algorithm algo);
  // Blocks until every issued operation has finished.
  void synchronize();

  // Collective over the group: creates the sub-communicators of the hierarchy's levels.
  // Needed before the first hierarchical all-reduce over a group spanning several tiers.
  void prepare_hierarchy();

 private:
  // The reduce-scatter (`reduce`), all-gather (`gather`) or both (all-reduce) of `algo`.
  void collective(Buffer buf, bool reduce, bool gather, ReduceOp op, Algorithm algo);
  // In place over `buf`: afterwards segment `rank` holds the reduced sum (the other
  // segments hold partial sums).
  void ring_reduce_scatter_inplace(Buffer buf);
  // In place over `buf`, whose segment `rank` holds this rank's part.
  void ring_all_gather_inplace(Buffer buf);
  // One ring phase: p - 1 steps in which each rank sends segment send_index(step) to the
  // next rank and receives segment recv_index(step) from the previous one, adding it to
  // its own copy when `reduce`.
  // `cuts`, when given, are the tensor boundaries segments must end on.
  void ring_phase(Buffer buf, bool reduce, Wire wire, const std::vector<std::size_t>* cuts = nullptr);
  // A level's ring as the codecs see it (compressed.cpp).
  class LevelRing;
  // Whether `algo` runs level by level here (hierarchical over an evenly spread group that
  // spans several tiers); warns once when an uneven group falls back to the ring.
  bool use_levels(Algorithm algo);
  // In place, level by level up (reduce-scatter) or down (all-gather) the hierarchy.
  void hierarchical_reduce_scatter(Buffer buf);
  void hierarchical_all_gather(Buffer buf);
  // Runs `body` in issue order, after the producer's work issued before it: inline on the
  // worker (whose queued item waited already), else after pending work.
  void ordered(const std::function<void()>& body);
  // Counts a message (wire bytes, and the logical bytes they stand for) and reserves its
  // emulated link; returns its release time (0: none).
  std::int64_t count_and_reserve(Tier tier, std::size_t wire_bytes, std::size_t logical_bytes);

  std::shared_ptr<const Topology> topo_;
  std::vector<int> members_;
  int rank_;
  Traffic kind_;
  std::unique_ptr<Transport> transport_;
  std::size_t chunk_bytes_ = std::size_t{1} << 20;
  HierarchyPlan plan_;
  std::shared_ptr<Pacer> pacer_;
  std::vector<std::unique_ptr<Communicator>> levels_;  // one per hierarchy level, lowest first
  bool warned_uneven_ = false;
  WorkQueue queue_;  // last: its thread stops before the members its work uses go
};

}  // namespace ft
