#include "comm/nccl_transport.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

#include "comm/error.h"
#include "comm/host_buffers.h"
#ifdef FIBERTRAIN_CUDA
#include "comm/cuda/buffer_ops.h"
#endif

namespace ft {

NcclTransport::NcclTransport(std::shared_ptr<NcclApi> api, std::unique_ptr<MpiTransport> bootstrap,
                             std::shared_ptr<Stream> stream, std::shared_ptr<Stream> recv_stream)
    : api_(std::move(api)),
      bootstrap_(std::move(bootstrap)),
      comm_(api_->init(bootstrap_->handle())),
      stream_(stream ? std::move(stream) : api_->new_stream()),
      recv_stream_(recv_stream ? std::move(recv_stream) : api_->new_stream()),
      scratch_(kScratchSlots),
      scratch_bytes_(kScratchSlots, 0) {}

NcclTransport::~NcclTransport() {
  stream_->synchronize();
  recv_stream_->synchronize();
}

void NcclTransport::wait_ready(const Event& ready) {
  stream_->wait(ready);
  recv_stream_->wait(ready);
}

void NcclTransport::end_op() { stream_->synchronize(); }

void NcclTransport::all_reduce(Buffer buf) {
  std::lock_guard lock(nccl_mutex_);
  comm_->all_reduce(buf.data, buf.data, buf.count, buf.dtype, *stream_);
}

void NcclTransport::reduce_scatter(Buffer buf) {
  // NCCL's reduce-scatter takes equal shares; with a remainder, an all-reduce leaves every
  // segment (this rank's included) summed.
  const std::size_t p = static_cast<std::size_t>(size());
  if (buf.count % p != 0) return all_reduce(buf);
  const std::size_t share = buf.count / p;
  std::lock_guard lock(nccl_mutex_);
  comm_->reduce_scatter(buf.data, buf.slice(static_cast<std::size_t>(rank()) * share, share).data, share, buf.dtype,
                        *stream_);
}

void NcclTransport::all_gather(Buffer buf) {
  const std::size_t p = static_cast<std::size_t>(size());
  std::lock_guard lock(nccl_mutex_);
  if (buf.count % p == 0) {
    const std::size_t share = buf.count / p;
    comm_->all_gather(buf.slice(static_cast<std::size_t>(rank()) * share, share).data, buf.data, share, buf.dtype,
                      *stream_);
    return;
  }
  // Uneven segments: each rank broadcasts its own.
  api_->group_start();
  for (int r = 0; r < size(); ++r) {
    Segment s = segment(buf.count, size(), r);
    Buffer part = buf.slice(s.offset, s.count);
    comm_->broadcast(part.data, part.data, s.count, buf.dtype, r, *stream_);
  }
  api_->group_end();
}

void NcclTransport::broadcast(Buffer buf, int root) {
  std::lock_guard lock(nccl_mutex_);
  comm_->broadcast(buf.data, buf.data, buf.count, buf.dtype, root, *stream_);
}

void NcclTransport::barrier() {
  stream_->synchronize();
  MPI_Barrier(bootstrap_->handle());
}

int NcclTransport::start_exchange(Buffer send, int to, Buffer recv, int from, bool beside_queue) {
  int ticket;
  {
    std::lock_guard lock(tickets_mutex_);
    if (!free_tickets_.empty()) {
      ticket = free_tickets_.back();
      free_tickets_.pop_back();
    } else {
      ticket = static_cast<int>(events_.size());
      events_.emplace_back();
    }
  }
  // A pipeline stage's receive goes on its own stream, so that it is not stuck behind the
  // sends the worker enqueues meanwhile (nor they behind it). Every other exchange, a ring
  // step's lone receive included, stays on the main stream, behind the adds that still
  // read the slot it lands in.
  Stream& stream = beside_queue ? *recv_stream_ : *stream_;
  std::lock_guard lock(nccl_mutex_);
  api_->group_start();
  if (to >= 0 && send.count) comm_->send(send.data, send.bytes(), to, stream);
  if (from >= 0 && recv.count) comm_->recv(recv.data, recv.bytes(), from, stream);
  api_->group_end();
  Event done = stream.record();
  std::lock_guard tickets(tickets_mutex_);
  events_[static_cast<std::size_t>(ticket)] = done;
  return ticket;
}

void NcclTransport::finish_exchange(int ticket) {
  Event done;
  {
    std::lock_guard lock(tickets_mutex_);
    done = events_.at(static_cast<std::size_t>(ticket));
  }
  done.synchronize();
  std::lock_guard lock(tickets_mutex_);
  free_tickets_.push_back(ticket);
}

void NcclTransport::add(Buffer dst, Buffer src) {
#ifdef FIBERTRAIN_CUDA
  if (on_gpu()) return cuda_buffers::add(dst, src, stream_->native());
#endif
  stream_->launch([dst, src] { host_buffers::add(dst, src); });
}

void NcclTransport::scale(Buffer buf, double factor) {
#ifdef FIBERTRAIN_CUDA
  if (on_gpu()) return cuda_buffers::scale(buf, factor, stream_->native());
#endif
  stream_->launch([buf, factor] { host_buffers::scale(buf, factor); });
}

void NcclTransport::convert(Buffer dst, Buffer src, bool add) {
#ifdef FIBERTRAIN_CUDA
  if (on_gpu()) return cuda_buffers::convert(dst, src, add, stream_->native());
#endif
  stream_->launch([dst, src, add] { host_buffers::convert(dst, src, add); });
}

Buffer NcclTransport::scratch(int slot, std::size_t bytes, DType dtype) {
  auto i = static_cast<std::size_t>(slot);
  if (scratch_bytes_[i] < bytes) {
#ifdef FIBERTRAIN_CUDA
    if (on_gpu()) {
      scratch_[i] = std::shared_ptr<void>(cuda_buffers::allocate(bytes), [](void* p) { cuda_buffers::release(p); });
    }
#endif
    if (!on_gpu()) scratch_[i] = std::shared_ptr<void>(new char[bytes], [](void* p) { delete[] static_cast<char*>(p); });
    scratch_bytes_[i] = bytes;
  }
  return Buffer{scratch_[i].get(), bytes / dtype_size(dtype), dtype, api_->memory()};
}

void NcclTransport::copy_bytes(void* dst, const void* src, std::size_t bytes, Device) {
#ifdef FIBERTRAIN_CUDA
  if (on_gpu()) return cuda_buffers::copy(dst, src, bytes, stream_->native());
#endif
  stream_->launch([dst, src, bytes] { std::memmove(dst, src, bytes); });
  stream_->synchronize();
}

std::unique_ptr<Transport> NcclTransport::split(int color, int key) {
  auto sub = std::make_unique<MpiTransport>(bootstrap_->handle(), color, key);
  return std::make_unique<NcclTransport>(api_, std::move(sub), stream_, recv_stream_);
}

#ifdef FIBERTRAIN_CUDA
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
#endif

}  // namespace ft
