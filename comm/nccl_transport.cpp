#include "comm/nccl_transport.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

#include "comm/error.h"
#include "comm/host_buffers.h"
#include "comm/log.h"
#ifdef FIBERTRAIN_CUDA
#include "comm/cuda/buffer_ops.h"
#endif

namespace ft {

NcclTransport::NcclTransport(std::shared_ptr<NcclApi> api, std::unique_ptr<MpiTransport> bootstrap,
                             std::shared_ptr<Stream> stream)
    : api_(std::move(api)),
      bootstrap_(std::move(bootstrap)),
      comm_(api_->init(bootstrap_->handle())),
      stream_(stream ? std::move(stream) : api_->new_stream()),
      scratch_(kScratchSlots),
      scratch_bytes_(kScratchSlots, 0) {}

// Reached while a job unwinds from an error too: the stream's error was reported already.
NcclTransport::~NcclTransport() {
  try {
    stream_->synchronize();
    scratch_.clear();
    stream_->synchronize();
  } catch (const std::exception& e) {
    log::warn("NCCL transport closing after an error: {}", e.what());
  }
}

void NcclTransport::grouped(const std::function<void()>& issue) {
  api_->group_start();
  try {
    issue();
  } catch (...) {
    // Left open, the group would take in every later call of the lane's thread.
    try {
      api_->group_end();
    } catch (...) {
    }
    throw;
  }
  api_->group_end();
}

void NcclTransport::all_reduce(Buffer buf) { comm_->all_reduce(buf.data, buf.data, buf.count, buf.dtype, *stream_); }

// NCCL's reduce-scatter and all-gather take equal shares; the project's segments put one
// more element in the first n % p. Those go as a group of one reduce (or broadcast) per
// segment, rooted at its owner: the same bytes, no wider a result.
void NcclTransport::per_segment(Buffer buf, const std::function<void(Buffer part, int owner)>& op) {
  grouped([&] {
    for (int r = 0; r < size(); ++r) {
      const Segment s = segment(buf.count, size(), r);
      op(buf.slice(s.offset, s.count), r);
    }
  });
}

void NcclTransport::reduce_scatter(Buffer buf) {
  const std::size_t p = static_cast<std::size_t>(size()), share = buf.count / p;
  if (buf.count % p == 0)
    return comm_->reduce_scatter(buf.data, buf.slice(static_cast<std::size_t>(rank()) * share, share).data, share,
                                 buf.dtype, *stream_);
  per_segment(buf, [&](Buffer part, int owner) {
    comm_->reduce(part.data, part.data, part.count, part.dtype, owner, *stream_);
  });
}

void NcclTransport::all_gather(Buffer buf) {
  const std::size_t p = static_cast<std::size_t>(size()), share = buf.count / p;
  if (buf.count % p == 0)
    return comm_->all_gather(buf.slice(static_cast<std::size_t>(rank()) * share, share).data, buf.data, share,
                             buf.dtype, *stream_);
  per_segment(buf, [&](Buffer part, int owner) {
    comm_->broadcast(part.data, part.data, part.count, part.dtype, owner, *stream_);
  });
}

void NcclTransport::broadcast(Buffer buf, int root) {
  comm_->broadcast(buf.data, buf.data, buf.count, buf.dtype, root, *stream_);
}

void NcclTransport::barrier() {
  stream_->synchronize();
  MPI_Barrier(bootstrap_->handle());
}

// One group, on the one stream: whatever the stream does next (the ring's add of what
// arrived, the next chunk into the slot) is ordered after it, so finishing needs no wait.
int NcclTransport::start_exchanges(const std::vector<Message>& sends, const std::vector<Message>& recvs) {
  grouped([&] {
    for (const Message& m : sends)
      if (m.peer >= 0 && m.buf.count) comm_->send(m.buf.data, m.buf.bytes(), m.peer, *stream_);
    for (const Message& m : recvs)
      if (m.peer >= 0 && m.buf.count) comm_->recv(m.buf.data, m.buf.bytes(), m.peer, *stream_);
  });
  return 0;
}

void NcclTransport::finish_exchange(int) {}

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

// Grown in stream order: the old buffer goes once the work already issued on it has run,
// without a device-wide wait (cudaFreeAsync), and never during a step once sized.
Buffer NcclTransport::scratch(int slot, std::size_t bytes, DType dtype) {
  auto i = static_cast<std::size_t>(slot);
  if (scratch_bytes_[i] < bytes) {
    std::shared_ptr<Stream> stream = stream_;
#ifdef FIBERTRAIN_CUDA
    if (on_gpu())
      scratch_[i] = std::shared_ptr<void>(cuda_buffers::allocate_async(bytes, stream->native()),
                                          [stream](void* p) { cuda_buffers::release_async(p, stream->native()); });
#endif
    if (!on_gpu())
      scratch_[i] = std::shared_ptr<void>(new char[bytes], [stream](void* p) {
        stream->launch([p] { delete[] static_cast<char*>(p); });
      });
    scratch_bytes_[i] = bytes;
  }
  return Buffer{scratch_[i].get(), bytes / dtype_size(dtype), dtype, api_->memory()};
}

// After the stream's work that may still read it: the send of an exchange issued just before.
void NcclTransport::release_snapshot(void* p, Device device) {
#ifdef FIBERTRAIN_CUDA
  if (device == Device::cuda) return cuda_buffers::release_async(p, stream_->native());
#endif
  stream_->launch([p] { std::free(p); });
}

void NcclTransport::copy_bytes(void* dst, const void* src, std::size_t bytes, Device) {
#ifdef FIBERTRAIN_CUDA
  if (on_gpu()) return cuda_buffers::copy(dst, src, bytes, stream_->native());
#endif
  stream_->launch([dst, src, bytes] { std::memmove(dst, src, bytes); });
  stream_->synchronize();
}

void NcclTransport::on_host_bytes(Buffer dst, Buffer src, std::function<void(void* dst, const void* src)> fn) {
  if (!on_gpu()) return stream_->launch([dst, src, fn = std::move(fn)] { fn(dst.data, src.data); });
#ifdef FIBERTRAIN_CUDA
  // No device kernels for these formats yet: the bytes make a round trip through the host,
  // after the work issued before them.
  std::vector<std::uint8_t> in(src.bytes()), out(dst.bytes());
  cuda_buffers::copy(in.data(), src.data, in.size(), stream_->native());
  cuda_buffers::copy(out.data(), dst.data, out.size(), stream_->native());
  fn(out.data(), in.data());
  cuda_buffers::copy(dst.data, out.data(), out.size(), stream_->native());
#endif
}

std::unique_ptr<Transport> NcclTransport::split(int color, int key) {
  auto sub = std::make_unique<MpiTransport>(bootstrap_->handle(), color, key);
  return std::make_unique<NcclTransport>(api_, std::move(sub), stream_);
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
