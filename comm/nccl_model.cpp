// The CPU model of NCCL's rules (nccl_api.h). An operation issued on a communicator becomes
// host work on its cpu_eager stream; when the stream reaches it, it waits until the rules
// let it start (the communicator's earlier operations done; under strict, every earlier
// launch of the process done), then moves its bytes through MPI on a duplicate of the
// communicator's group:
//   send <= eager   copied, MPI_Isend, complete at once (the copy travels on by itself)
//   send >  eager   MPI_Issend: completes only once the peer's receive has been posted,
//                   which the model does only when that receive is running
//   recv            MPI_Irecv, complete when the bytes are in
//   collectives     MPI's nonblocking collectives, after every member has shown the others
//                   which collective it reached (they must agree)
// The parts of a group are started together and waited for together.
#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "comm/mpi_transport.h"
#include "comm/nccl_api.h"

namespace ft {
namespace {

struct Part {
  enum Kind : std::int64_t { send, recv, all_reduce, reduce_scatter, all_gather, reduce, broadcast } kind;
  const void* src = nullptr;
  void* dst = nullptr;
  std::size_t count = 0;  // elements; bytes for send and recv
  DType dtype = DType::u8;
  int peer = -1;  // the peer of send and recv, the root of reduce and broadcast
  bool collective() const { return kind != send && kind != recv; }
};

const char* part_name(std::int64_t kind) {
  static const char* names[] = {"send", "recv", "all-reduce", "reduce-scatter", "all-gather", "reduce", "broadcast"};
  return kind >= 0 && kind <= Part::broadcast ? names[kind] : "?";
}

class Model;

class ModelComm final : public NcclComm {
 public:
  ModelComm(std::shared_ptr<Model> model, MPI_Comm bootstrap);
  ~ModelComm() override;

  void all_reduce(const void* send, void* recv, std::size_t count, DType t, Stream& s) override {
    issue({Part::all_reduce, send, recv, count, t, -1}, s);
  }
  void reduce_scatter(const void* send, void* recv, std::size_t recv_count, DType t, Stream& s) override {
    issue({Part::reduce_scatter, send, recv, recv_count, t, -1}, s);
  }
  void all_gather(const void* send, void* recv, std::size_t send_count, DType t, Stream& s) override {
    issue({Part::all_gather, send, recv, send_count, t, -1}, s);
  }
  void reduce(const void* send, void* recv, std::size_t count, DType t, int root, Stream& s) override {
    issue({Part::reduce, send, recv, count, t, root}, s);
  }
  void broadcast(const void* send, void* recv, std::size_t count, DType t, int root, Stream& s) override {
    issue({Part::broadcast, send, recv, count, t, root}, s);
  }
  void send(const void* buf, std::size_t bytes, int peer, Stream& s) override {
    issue({Part::send, buf, nullptr, bytes, DType::u8, peer}, s);
  }
  void recv(void* buf, std::size_t bytes, int peer, Stream& s) override {
    issue({Part::recv, nullptr, buf, bytes, DType::u8, peer}, s);
  }

  // An operation: one part, or a group's parts.
  struct Op {
    std::vector<Part> parts;
    std::uint64_t seq = 0;     // in this communicator's order
    std::uint64_t launch = 0;  // in the process's order
    std::int64_t collective = -1;  // its place among this communicator's collectives
  };
  // Runs on the stream's thread: waits for its turn, moves the bytes.
  void run(const Op& op);

  // Under the model's mutex.
  std::uint64_t issued = 0, collectives = 0;
  std::set<std::uint64_t> open;  // seqs issued and not complete

 private:
  void issue(Part p, Stream& s);
  void start(const Part& p, std::vector<MPI_Request>& requests, std::vector<std::vector<char>>& copies);
  // Every member shows the others which collective it reached as collective `op.collective`.
  void check_same_collective(const Op& op);
  // Eager sends still on their way: their copies stay alive until MPI is done with them.
  void reap_eager(bool all);

  std::shared_ptr<Model> model_;
  MPI_Comm mpi_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  std::vector<std::pair<MPI_Request, std::vector<char>>> eager_;  // touched by the running op only
};

// The calling thread's open group (NCCL's groups are per thread).
struct Group {
  int depth = 0;
  ModelComm* comm = nullptr;
  Stream* stream = nullptr;
  std::vector<Part> parts;
};
thread_local Group t_group;

class Model final : public NcclApi, public std::enable_shared_from_this<Model> {
 public:
  explicit Model(NcclRules rules) : rules_(rules) {}
  std::unique_ptr<NcclComm> init(MPI_Comm bootstrap) override {
    return std::make_unique<ModelComm>(shared_from_this(), bootstrap);
  }
  void group_start() override { ++t_group.depth; }
  void group_end() override {
    if (t_group.depth == 0) throw std::logic_error("NCCL model: group_end without group_start");
    if (--t_group.depth > 0 || t_group.parts.empty()) return;
    Group g = std::move(t_group);
    t_group = Group{};
    launch(*g.comm, std::move(g.parts), *g.stream);
  }
  Device memory() const override { return Device::cpu; }
  std::shared_ptr<Stream> new_stream() override { return std::make_shared<Stream>(StreamKind::cpu_eager); }

  const NcclRules& rules() const { return rules_; }

  void add(ModelComm& comm, Part p, Stream& stream) {
    if (t_group.depth == 0) return launch(comm, {p}, stream);
    if (t_group.comm && (t_group.comm != &comm || t_group.stream != &stream))
      throw std::logic_error("NCCL model: a group holds the operations of one communicator on one stream");
    t_group.comm = &comm;
    t_group.stream = &stream;
    t_group.parts.push_back(p);
  }

  // Numbers the operation in its communicator's order and the process's, and queues it.
  void launch(ModelComm& comm, std::vector<Part> parts, Stream& stream) {
    auto op = std::make_shared<ModelComm::Op>();
    op->parts = std::move(parts);
    {
      std::lock_guard lock(mutex_);
      op->seq = comm.issued++;
      op->launch = launched_++;
      for (const Part& p : op->parts)
        if (p.collective()) {
          op->collective = static_cast<std::int64_t>(comm.collectives++);
          break;
        }
      comm.open.insert(op->seq);
      open_.insert(op->launch);
    }
    stream.launch([c = &comm, op] { c->run(*op); });
  }

  // Blocks until `op` may start on `comm`.
  void await_turn(ModelComm& comm, const ModelComm::Op& op) {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] {
      return *comm.open.begin() == op.seq && (!rules_.strict || *open_.begin() == op.launch);
    });
  }
  void complete(ModelComm& comm, const ModelComm::Op& op) {
    {
      std::lock_guard lock(mutex_);
      comm.open.erase(op.seq);
      open_.erase(op.launch);
    }
    cv_.notify_all();
  }
  // Until every operation issued on `comm` has completed.
  void drain(ModelComm& comm) {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return comm.open.empty(); });
  }

 private:
  NcclRules rules_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::uint64_t launched_ = 0;
  std::set<std::uint64_t> open_;  // launches not complete
};

ModelComm::ModelComm(std::shared_ptr<Model> model, MPI_Comm bootstrap) : model_(std::move(model)) {
  MPI_Comm_dup(bootstrap, &mpi_);
  MPI_Comm_rank(mpi_, &rank_);
  MPI_Comm_size(mpi_, &size_);
}

ModelComm::~ModelComm() {
  model_->drain(*this);
  reap_eager(true);
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Comm_free(&mpi_);
}

void ModelComm::issue(Part p, Stream& s) { model_->add(*this, p, s); }

void ModelComm::reap_eager(bool all) {
  for (auto it = eager_.begin(); it != eager_.end();) {
    int done = 1;
    if (all)
      wait_politely(1, &it->first);
    else
      MPI_Test(&it->first, &done, MPI_STATUS_IGNORE);
    it = done ? eager_.erase(it) : it + 1;
  }
}

void ModelComm::check_same_collective(const Op& op) {
  // What this member reached: its place among the collectives, and each collective part.
  std::vector<std::int64_t> mine{op.collective};
  for (const Part& p : op.parts)
    if (p.collective())
      mine.insert(mine.end(), {static_cast<std::int64_t>(p.kind), static_cast<std::int64_t>(p.count),
                               static_cast<std::int64_t>(p.dtype), p.peer});
  std::int64_t length = static_cast<std::int64_t>(mine.size()), longest = 0;
  MPI_Request r;
  MPI_Iallreduce(&length, &longest, 1, MPI_INT64_T, MPI_MAX, mpi_, &r);
  wait_politely(1, &r);
  mine.resize(static_cast<std::size_t>(longest), -1);
  std::vector<std::int64_t> all(mine.size() * static_cast<std::size_t>(size_));
  MPI_Iallgather(mine.data(), mpi_count(mine.size()), MPI_INT64_T, all.data(), mpi_count(mine.size()), MPI_INT64_T,
                 mpi_, &r);
  wait_politely(1, &r);
  auto describe = [&](int member) {
    const std::int64_t* d = &all[mine.size() * static_cast<std::size_t>(member)];
    return fmt::format("rank {} reached {} of {} {} (root {}) as collective #{}", member, part_name(d[1]), d[2],
                       to_string(static_cast<DType>(d[3])), d[4], d[0]);
  };
  for (int m = 0; m < size_; ++m)
    if (!std::equal(mine.begin(), mine.end(), all.begin() + static_cast<std::ptrdiff_t>(mine.size()) * m))
      throw std::runtime_error(fmt::format("NCCL model: the members of a communicator of {} ranks disagree on a "
                                           "collective: {}; {}",
                                           size_, describe(rank_), describe(m)));
}

void ModelComm::start(const Part& p, std::vector<MPI_Request>& requests, std::vector<std::vector<char>>& copies) {
  MPI_Request r = MPI_REQUEST_NULL;
  const std::size_t esize = dtype_size(p.dtype);
  // A copy of an input the output overlaps, where MPI has no in-place form for it.
  auto input_copy = [&](std::size_t bytes) -> const void* {
    copies.emplace_back(static_cast<const char*>(p.src), static_cast<const char*>(p.src) + bytes);
    return copies.back().data();
  };
  switch (p.kind) {
    case Part::send:
      if (p.count <= model_->rules().eager_bytes) {
        eager_.emplace_back(MPI_REQUEST_NULL, std::vector<char>(static_cast<const char*>(p.src),
                                                                 static_cast<const char*>(p.src) + p.count));
        MPI_Isend(eager_.back().second.data(), mpi_count(p.count), MPI_BYTE, p.peer, 0, mpi_, &eager_.back().first);
        return;
      }
      MPI_Issend(p.src, mpi_count(p.count), MPI_BYTE, p.peer, 0, mpi_, &r);
      break;
    case Part::recv: MPI_Irecv(p.dst, mpi_count(p.count), MPI_BYTE, p.peer, 0, mpi_, &r); break;
    case Part::all_reduce:
      MPI_Iallreduce(p.src == p.dst ? MPI_IN_PLACE : p.src, p.dst, mpi_count(p.count), mpi_type(p.dtype), MPI_SUM,
                     mpi_, &r);
      break;
    case Part::reduce_scatter: {
      const std::size_t bytes = p.count * esize * static_cast<std::size_t>(size_);
      const char* lo = static_cast<const char*>(p.src);
      const bool overlaps = static_cast<const char*>(p.dst) < lo + bytes && lo < static_cast<const char*>(p.dst) + p.count * esize;
      MPI_Ireduce_scatter_block(overlaps ? input_copy(bytes) : p.src, p.dst, mpi_count(p.count), mpi_type(p.dtype),
                                MPI_SUM, mpi_, &r);
      break;
    }
    case Part::all_gather: {
      const bool in_place = p.src == static_cast<const char*>(p.dst) + static_cast<std::size_t>(rank_) * p.count * esize;
      MPI_Iallgather(in_place ? MPI_IN_PLACE : p.src, mpi_count(p.count * esize), MPI_BYTE, p.dst,
                     mpi_count(p.count * esize), MPI_BYTE, mpi_, &r);
      break;
    }
    case Part::reduce: {
      const void* in = p.src;
      if (rank_ == p.peer && p.src == p.dst) in = MPI_IN_PLACE;
      MPI_Ireduce(in, p.dst, mpi_count(p.count), mpi_type(p.dtype), MPI_SUM, p.peer, mpi_, &r);
      break;
    }
    case Part::broadcast:
      if (rank_ == p.peer && p.src != p.dst) std::memmove(p.dst, p.src, p.count * esize);
      MPI_Ibcast(p.dst, mpi_count(p.count * esize), MPI_BYTE, p.peer, mpi_, &r);
      break;
  }
  requests.push_back(r);
}

void ModelComm::run(const Op& op) {
  model_->await_turn(*this, op);
  try {
    // What MPI cannot take is refused before any part starts: a part left running would
    // write to buffers that go with the error.
    for (const Part& p : op.parts) {
      const bool sums = p.kind == Part::all_reduce || p.kind == Part::reduce_scatter || p.kind == Part::reduce;
      if (sums) mpi_type(p.dtype);
      mpi_count(sums || !p.collective() ? p.count : p.count * dtype_size(p.dtype));
    }
    reap_eager(false);
    if (op.collective >= 0) check_same_collective(op);
    std::vector<MPI_Request> requests;
    std::vector<std::vector<char>> copies;
    for (const Part& p : op.parts) start(p, requests, copies);
    if (!requests.empty()) wait_politely(static_cast<int>(requests.size()), requests.data());
  } catch (...) {
    model_->complete(*this, op);
    throw;
  }
  model_->complete(*this, op);
}

}  // namespace

std::shared_ptr<NcclApi> nccl_model(NcclRules rules) { return std::make_shared<Model>(rules); }

}  // namespace ft
