// A communicator over one group of ranks (TP, PP, DP or the world). It offers the backend
// library's own collectives ("native") and fibertrain's ring and hierarchical algorithms,
// written once here (ring.cpp, compressed.cpp) over the point-to-point exchanges of a
// Transport (transport.h: MPI on host memory, NCCL on device memory). Only these
// algorithms can be counted and paced message by message; codecs (codec.h) plug into the
// hierarchy's levels.
//
// Who issues what. Every operation runs on a lane (work_queue.h) in the order it was
// issued. Over MPI each communicator has a lane of its own, and a blocking call runs on the
// caller's thread once its lane has drained. Over NCCL every communicator of the process
// shares one lane, and blocking calls go through it too: so one thread issues all of a
// rank's NCCL operations, in the order the program asked for them, which is the same on
// every rank of a group (NCCL runs a communicator's operations in issue order, whatever the
// stream, and gives no progress guarantee across communicators issued in different orders).
// An NCCL item only issues its work on the stream; its Work completes when the stream has
// run it. A call made inside an item (a collective within a bucket's sync) leaves its work
// issued; the item's Work covers it.
//
// Ordering with compute (comm/stream.h), the one rule of every path (MPI staging through
// the host, NCCL's streams, the lanes, tensor-parallel hooks, pipeline exchanges, gradient
// buckets, codec round trips):
//  1. Every operation records an event on the producer stream (set_producer_stream: the
//     compute stream of the buffers it is given) when it is issued, on the issuing thread,
//     and waits for that event before it reads or writes a buffer, on whatever thread or
//     stream it runs (wait_ready). So it sees all compute issued before it, and compute
//     issued before it is done with the buffer before it is overwritten.
//  2. Its result is in place when a blocking call returns, or when its Work is waited for;
//     compute issued after that is ordered after it.
//  3. exchange() snapshots what it sends on the producer stream, so compute issued after it
//     returns may overwrite the buffer at once.
// Example, data parallelism: backward finishes a bucket's gradients -> grad_ready enqueues
// its all-reduce, recording event E on the compute stream -> backward goes on -> the lane
// makes the transport wait for E and issues the sum -> the trainer waits for the Work (and,
// on NCCL, the stream event it left), then issues the optimizer.
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
  // `transport` moves its bytes; `lane`, shared with the process's other communicators
  // (NCCL), or null for a lane of its own (MPI).
  Communicator(std::shared_ptr<const Topology> topo, std::vector<int> members, int rank, Traffic kind,
               std::unique_ptr<Transport> transport, std::shared_ptr<WorkQueue> lane = nullptr);
  virtual ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }
  int size() const { return static_cast<int>(members_.size()); }
  const std::vector<int>& members() const { return members_; }
  Traffic kind() const { return kind_; }
  const Topology& topology() const { return *topo_; }
  const Transport& transport() const { return *transport_; }
  // The tier a message from this rank to group rank `peer` crosses.
  Tier tier_to(int peer) const { return topo_->tier(members_[static_cast<std::size_t>(rank_)], members_[static_cast<std::size_t>(peer)]); }
  // Ring and hierarchical transfers are pipelined in chunks of this many bytes.
  void set_chunk_bytes(std::size_t bytes);
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
  // Point to point, counted and paced like the ring's messages: sends `send` to group rank
  // `to` while receiving `recv` from `from` (either may be empty, or -1), in one group, so
  // that neither waits for the other: a pipeline stage's exchange with its neighbours.
  // `send` is snapshotted (rule 3): like an asynchronous device copy, it must stay allocated
  // until the compute issued before has run (tensors the model owns do); `recv` is in place
  // when the Work is.
  Work exchange(Buffer send, int to, Buffer recv, int from);
  // ... every send to its group rank while every receive from its own, in one group (up to
  // Transport::kExchangeMessages of each): a stage's exchange around a forward and backward
  // that run back to back (the interleaved schedule's steady state).
  using Message = Transport::Message;
  Work exchange(std::vector<Message> sends, std::vector<Message> recvs);

  // Runs `fn` on the lane after everything issued before it.
  Work enqueue(std::function<void()> fn);
  // From inside one of this communicator's lane items: what it issues next runs after `w`
  // (another communicator's work), without holding the host where the backend's stream can
  // wait instead (NCCL); over MPI the host waits. `w`'s item must run first or on another lane.
  void after(const Work& w);
  Work all_reduce_async(Buffer buf, ReduceOp op, Algorithm algo);
  // Blocks until every operation issued on this communicator has finished (from inside a
  // lane item: what this communicator's transport issued so far).
  void synchronize();

  // Collective over the group: creates the sub-communicators of the hierarchy's levels.
  // Needed before the first hierarchical all-reduce over a group spanning several tiers.
  void prepare_hierarchy();

 private:
  // The reduce-scatter (`reduce`), all-gather (`gather`) or both (all-reduce) of `algo`.
  void collective(Buffer buf, bool reduce, bool gather, ReduceOp op, Algorithm algo);
  // ... of the library, over this group.
  void library_collective(Buffer buf, bool reduce, bool gather);
  // One ring phase: p - 1 steps in which each rank sends segment send_index(step) to the
  // next rank and receives segment recv_index(step) from the previous one, adding it to
  // its own copy when `reduce` (afterwards segment `rank` holds the sum). `cuts`, when
  // given, are the tensor boundaries segments must end on.
  void ring_phase(Buffer buf, bool reduce, Wire wire, const std::vector<std::size_t>* cuts = nullptr);
  // A reduce-scatter and/or all-gather over this group, in place over `buf` (segment `rank`
  // is this rank's): the library's collective, counted and paced as ring_phase would send
  // (collectives_in_library), or ring_phase itself.
  void phases(Buffer buf, bool reduce, bool gather);
  // The messages this rank sends in ring_phase(n elements, ...), step by step: the elements
  // of each chunk (segments of whole `align` blocks, or cut at `cuts`).
  std::vector<std::vector<std::size_t>> phase_chunks(std::size_t n, bool reduce, std::size_t chunk,
                                                     const std::vector<std::size_t>* cuts, std::size_t align) const;
  // Messages to the next rank on `tier`, as (wire, logical) bytes: counted now; on the
  // transport's stream, the link reserved for all of them when its work reaches them.
  // hold(i) keeps the transport's later work back until message i would have arrived.
  struct Booking {
    std::shared_ptr<std::vector<std::int64_t>> release;  // per message, monotonic ns; 0: none
    bool paced = false;
  };
  Booking book(Tier tier, const std::vector<std::pair<std::size_t, std::size_t>>& messages);
  void hold(const Booking& b, std::size_t i);
  // Runs `body`, booking the time from when the transport's work reaches it until its last
  // part has run as `tier`'s busy time (on NCCL on a GPU, only where the tier is paced).
  void busy_while(Tier tier, const std::function<void()>& body);
  // A level's ring as the codecs see it (compressed.cpp).
  class LevelRing;
  // Whether `algo` runs level by level here (hierarchical over an evenly spread group that
  // spans several tiers); warns once when an uneven group falls back to the ring.
  bool use_levels(Algorithm algo);
  // In place, level by level up (reduce-scatter) or down (all-gather) the hierarchy.
  void hierarchical_reduce_scatter(Buffer buf);
  void hierarchical_all_gather(Buffer buf);
  // Runs `body` in issue order, after the producer's work issued before it, and returns with
  // its result in place: inline on the lane (whose item waited already; its Work covers
  // what `body` issues), through a shared lane, or on the caller's thread once its own lane
  // has drained.
  void ordered(const std::function<void()>& body);

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
  std::shared_ptr<WorkQueue> lane_;
  bool own_lane_;
};

}  // namespace ft
