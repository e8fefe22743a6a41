#include "comm/nccl_transport.h"

#include <nccl.h>

#include <unistd.h>

#include <cstdio>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

#include "comm/cuda/buffer_ops.h"
#include "comm/error.h"

namespace ft {
namespace {

void check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) throw std::runtime_error(fmt::format("NCCL: {}: {}", what, ncclGetErrorString(r)));
}

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::f16: return ncclFloat16;
    case DType::bf16: return ncclBfloat16;
    case DType::i8: return ncclInt8;
    case DType::u8: return ncclUint8;
    case DType::i32: return ncclInt32;
    case DType::u32: return ncclUint32;
    case DType::i64: return ncclInt64;
  }
  throw std::invalid_argument("no NCCL type");
}

ncclComm_t nc(void* c) { return static_cast<ncclComm_t>(c); }
cudaStream_t cs(void* s) { return static_cast<cudaStream_t>(s); }

}  // namespace

NcclTransport::NcclTransport(std::unique_ptr<MpiTransport> bootstrap, std::shared_ptr<Stream> stream,
                             std::shared_ptr<Stream> recv_stream)
    : bootstrap_(std::move(bootstrap)),
      stream_(stream ? std::move(stream) : std::make_shared<Stream>(StreamKind::cuda)),
      recv_stream_(recv_stream ? std::move(recv_stream) : std::make_shared<Stream>(StreamKind::cuda)),
      scratch_(kScratchSlots, nullptr),
      scratch_bytes_(kScratchSlots, 0) {
  ncclUniqueId id;
  if (rank() == 0) check(ncclGetUniqueId(&id), "ncclGetUniqueId");
  MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, bootstrap_->handle());
  ncclComm_t comm;
  check(ncclCommInitRank(&comm, size(), id, rank()), "ncclCommInitRank");
  comm_ = comm;
}

NcclTransport::~NcclTransport() {
  for (void* e : events_) cuda_buffers::destroy_event(e);
  for (void* p : scratch_)
    if (p) cuda_buffers::release(p);
  if (comm_) ncclCommDestroy(nc(comm_));
}

void NcclTransport::wait_ready(const Event& ready) {
  stream_->wait(ready);
  recv_stream_->wait(ready);
}

void NcclTransport::end_op() { stream_->synchronize(); }

void NcclTransport::all_reduce(Buffer buf) {
  std::lock_guard lock(nccl_mutex_);
  check(ncclAllReduce(buf.data, buf.data, buf.count, nccl_type(buf.dtype), ncclSum, nc(comm_), cs(st())), "all-reduce");
}

void NcclTransport::reduce_scatter(Buffer buf) {
  // NCCL's reduce-scatter takes equal shares; with a remainder, an all-reduce leaves every
  // segment (this rank's included) summed.
  const std::size_t p = static_cast<std::size_t>(size());
  if (buf.count % p != 0) return all_reduce(buf);
  const std::size_t share = buf.count / p;
  std::lock_guard lock(nccl_mutex_);
  check(ncclReduceScatter(buf.data, buf.slice(static_cast<std::size_t>(rank()) * share, share).data, share,
                          nccl_type(buf.dtype), ncclSum, nc(comm_), cs(st())),
        "reduce-scatter");
}

void NcclTransport::all_gather(Buffer buf) {
  const std::size_t p = static_cast<std::size_t>(size());
  std::lock_guard lock(nccl_mutex_);
  if (buf.count % p == 0) {
    const std::size_t share = buf.count / p;
    check(ncclAllGather(buf.slice(static_cast<std::size_t>(rank()) * share, share).data, buf.data, share,
                        nccl_type(buf.dtype), nc(comm_), cs(st())),
          "all-gather");
    return;
  }
  // Uneven segments: each rank broadcasts its own.
  check(ncclGroupStart(), "group start");
  for (int r = 0; r < size(); ++r) {
    Segment s = segment(buf.count, size(), r);
    Buffer part = buf.slice(s.offset, s.count);
    check(ncclBroadcast(part.data, part.data, s.count, nccl_type(buf.dtype), r, nc(comm_), cs(st())), "broadcast");
  }
  check(ncclGroupEnd(), "group end");
}

void NcclTransport::broadcast(Buffer buf, int root) {
  std::lock_guard lock(nccl_mutex_);
  check(ncclBroadcast(buf.data, buf.data, buf.count, nccl_type(buf.dtype), root, nc(comm_), cs(st())), "broadcast");
}

void NcclTransport::barrier() {
  stream_->synchronize();
  MPI_Barrier(bootstrap_->handle());
}

int NcclTransport::start_exchange(Buffer send, int to, Buffer recv, int from, bool beside_queue) {
  int ticket;
  void* event;
  {
    std::lock_guard lock(tickets_mutex_);
    if (!free_tickets_.empty()) {
      ticket = free_tickets_.back();
      free_tickets_.pop_back();
    } else {
      ticket = static_cast<int>(events_.size());
      events_.push_back(cuda_buffers::create_event());
    }
    event = events_[static_cast<std::size_t>(ticket)];  // under the lock: the caller's and the worker's tickets
  }
  // A pipeline stage's receive goes on its own stream, so that it is not stuck behind the
  // sends the worker enqueues meanwhile (nor they behind it). Every other exchange, a ring
  // step's lone receive included, stays on the main stream, behind the adds that still
  // read the slot it lands in.
  void* stream = beside_queue ? recv_stream_->native() : st();
  std::lock_guard lock(nccl_mutex_);
  check(ncclGroupStart(), "group start");
  if (to >= 0 && send.count) check(ncclSend(send.data, send.bytes(), ncclUint8, to, nc(comm_), cs(stream)), "send");
  if (from >= 0 && recv.count) check(ncclRecv(recv.data, recv.bytes(), ncclUint8, from, nc(comm_), cs(stream)), "recv");
  check(ncclGroupEnd(), "group end");
  cuda_buffers::record(event, stream);
  return ticket;
}

void NcclTransport::finish_exchange(int ticket) {
  void* event;
  {
    std::lock_guard lock(tickets_mutex_);
    event = events_.at(static_cast<std::size_t>(ticket));
  }
  cuda_buffers::synchronize_event(event);
  std::lock_guard lock(tickets_mutex_);
  free_tickets_.push_back(ticket);
}

void NcclTransport::add(Buffer dst, Buffer src) { cuda_buffers::add(dst, src, st()); }
void NcclTransport::scale(Buffer buf, double factor) { cuda_buffers::scale(buf, factor, st()); }
void NcclTransport::convert(Buffer dst, Buffer src, bool add) { cuda_buffers::convert(dst, src, add, st()); }

Buffer NcclTransport::scratch(int slot, std::size_t bytes, DType dtype) {
  auto i = static_cast<std::size_t>(slot);
  if (scratch_bytes_[i] < bytes) {
    if (scratch_[i]) cuda_buffers::release(scratch_[i]);
    scratch_[i] = cuda_buffers::allocate(bytes);
    scratch_bytes_[i] = bytes;
  }
  return Buffer{scratch_[i], bytes / dtype_size(dtype), dtype, Device::cuda};
}

void NcclTransport::copy_bytes(void* dst, const void* src, std::size_t bytes, Device) {
  cuda_buffers::copy(dst, src, bytes, st());
}

std::unique_ptr<Transport> NcclTransport::split(int color, int key) {
  auto sub = std::make_unique<MpiTransport>(bootstrap_->handle(), color, key);
  return std::make_unique<NcclTransport>(std::move(sub), stream_, recv_stream_);
}

void check_one_gpu_per_rank(const std::vector<std::vector<int>>& groups) {
  // Host name and PCI bus id of this rank's GPU, gathered from every rank.
  constexpr std::size_t kHost = 256, kLen = kHost + 64;
  char mine[kLen] = {};
  gethostname(mine, kHost - 1);
  std::string bus = cuda_buffers::device_bus_id();
  std::snprintf(mine + kHost, 64, "%s", bus.c_str());
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  std::vector<char> all(kLen * static_cast<std::size_t>(world));
  MPI_Allgather(mine, kLen, MPI_CHAR, all.data(), kLen, MPI_CHAR, MPI_COMM_WORLD);
  auto host = [&](int r) { return std::string(&all[kLen * static_cast<std::size_t>(r)]); };
  auto gpu = [&](int r) { return std::string(&all[kLen * static_cast<std::size_t>(r) + kHost]); };
  for (const auto& g : groups)
    for (std::size_t i = 0; i < g.size(); ++i)
      for (std::size_t j = i + 1; j < g.size(); ++j)
        if (host(g[i]) == host(g[j]) && gpu(g[i]) == gpu(g[j]))
          throw UserError(fmt::format(
              "comm: nccl needs one GPU per rank of each communicator, but ranks {} and {} share GPU {} on {} "
              "(NCCL refuses two ranks of one communicator on one device); set comm: mpi to run several ranks "
              "on one GPU, or launch one rank per GPU",
              g[i], g[j], gpu(g[i]), host(g[i])));
}

}  // namespace ft
