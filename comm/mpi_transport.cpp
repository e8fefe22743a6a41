#include "comm/mpi_transport.h"

#include <time.h>

#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include "comm/host_buffers.h"
#ifdef FIBERTRAIN_CUDA
#include "comm/cuda/buffer_ops.h"
#endif

namespace ft {

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::i8: return MPI_INT8_T;
    case DType::u8: return MPI_UINT8_T;
    case DType::i32: return MPI_INT32_T;
    case DType::u32: return MPI_UINT32_T;
    case DType::i64: return MPI_INT64_T;
    case DType::f16:
    case DType::bf16: break;  // no MPI reduction for these; codecs widen before reducing
  }
  throw std::invalid_argument(fmt::format("MPI backend cannot reduce {} buffers", to_string(t)));
}

// Waits without holding a core: ranks, their communication threads and their compute share
// the machine's cores, and MPI_Waitall would spin on one. A short spin catches fast
// completions; after that the thread sleeps between polls (about 50 us with Linux's default
// timer slack). Not sched_yield: on a core busy with compute it gives the core away for a
// whole time slice (milliseconds), while a thread waking from sleep is scheduled promptly.
void wait_politely(int n, MPI_Request* requests) {
  int done = 0;
  for (int spin = 0;; ++spin) {
    MPI_Testall(n, requests, &done, MPI_STATUSES_IGNORE);
    if (done) return;
    if (spin >= 32) {
      timespec ts{0, 20000};
      nanosleep(&ts, nullptr);
    }
  }
}

int mpi_count(std::size_t n) {
  if (n > static_cast<std::size_t>(INT32_MAX)) throw std::length_error("message over 2^31 elements");
  return static_cast<int>(n);
}

namespace {

void check_host(Buffer b) {
  if (b.count && b.device != Device::cpu) throw std::logic_error("MPI communicator given a device buffer");
}

}  // namespace

MpiTransport::MpiTransport(MPI_Comm parent, int color, int key)
    : scratch_(kScratchSlots), scratch_bytes_(kScratchSlots, 0) {
  MPI_Comm_split(parent, color, key, &comm_);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  if (rank_ != key) throw std::logic_error("MPI_Comm_split ranked this process differently from its key");
}

MpiTransport::~MpiTransport() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void MpiTransport::all_reduce(Buffer buf) {
  check_host(buf);
  MPI_Allreduce(MPI_IN_PLACE, buf.data, mpi_count(buf.count), mpi_type(buf.dtype), MPI_SUM, comm_);
}

void MpiTransport::reduce_scatter(Buffer buf) {
  check_host(buf);
  std::vector<int> counts(static_cast<std::size_t>(size()));
  for (int i = 0; i < size(); ++i) counts[static_cast<std::size_t>(i)] = mpi_count(segment(buf.count, size(), i).count);
  // In place, MPI leaves this rank's result at the start of the buffer; move it to its segment.
  MPI_Reduce_scatter(MPI_IN_PLACE, buf.data, counts.data(), mpi_type(buf.dtype), MPI_SUM, comm_);
  Segment mine = segment(buf.count, size(), rank());
  std::size_t e = dtype_size(buf.dtype);
  std::memmove(static_cast<char*>(buf.data) + mine.offset * e, buf.data, mine.count * e);
}

void MpiTransport::all_gather(Buffer buf) {
  check_host(buf);
  std::vector<int> counts(static_cast<std::size_t>(size())), displs(counts.size());
  for (int i = 0; i < size(); ++i) {
    Segment s = segment(buf.count, size(), i);
    counts[static_cast<std::size_t>(i)] = mpi_count(s.count);
    displs[static_cast<std::size_t>(i)] = mpi_count(s.offset);
  }
  MPI_Datatype t = mpi_type(buf.dtype);
  MPI_Allgatherv(MPI_IN_PLACE, 0, t, buf.data, counts.data(), displs.data(), t, comm_);
}

void MpiTransport::broadcast(Buffer buf, int root) {
  check_host(buf);
  MPI_Bcast(buf.data, mpi_count(buf.bytes()), MPI_BYTE, root, comm_);
}

void MpiTransport::barrier() { MPI_Barrier(comm_); }

int MpiTransport::start_exchanges(const std::vector<Message>& sends, const std::vector<Message>& recvs) {
  for (const Message& m : sends) check_host(m.buf);
  for (const Message& m : recvs) check_host(m.buf);
  int ticket;
  std::vector<MPI_Request>* slot;
  {
    std::lock_guard lock(exchanges_mutex_);
    if (!free_tickets_.empty()) {
      ticket = free_tickets_.back();
      free_tickets_.pop_back();
    } else {
      ticket = static_cast<int>(exchanges_.size());
      exchanges_.emplace_back();
    }
    slot = &exchanges_[static_cast<std::size_t>(ticket)];
  }
  auto& req = *slot;
  req.assign(sends.size() + recvs.size(), MPI_REQUEST_NULL);
  // Receives first, so the matching sends find them posted.
  std::size_t r = 0;
  for (const Message& m : recvs)
    if (m.peer >= 0 && m.buf.count) MPI_Irecv(m.buf.data, mpi_count(m.buf.bytes()), MPI_BYTE, m.peer, 0, comm_, &req[r++]);
  for (const Message& m : sends)
    if (m.peer >= 0 && m.buf.count) MPI_Isend(m.buf.data, mpi_count(m.buf.bytes()), MPI_BYTE, m.peer, 0, comm_, &req[r++]);
  return ticket;
}

void MpiTransport::finish_exchange(int ticket) {
  std::vector<MPI_Request>* req;
  {
    std::lock_guard lock(exchanges_mutex_);
    req = &exchanges_.at(static_cast<std::size_t>(ticket));
  }
  wait_politely(static_cast<int>(req->size()), req->data());
  std::lock_guard lock(exchanges_mutex_);
  free_tickets_.push_back(ticket);
}

void MpiTransport::add(Buffer dst, Buffer src) { host_buffers::add(dst, src); }
void MpiTransport::scale(Buffer buf, double f) { host_buffers::scale(buf, f); }

void MpiTransport::convert(Buffer dst, Buffer src, bool add) {
  check_host(dst);
  check_host(src);
  host_buffers::convert(dst, src, add);
}

void MpiTransport::copy_bytes(void* dst, const void* src, std::size_t bytes, Device device) {
  if (bytes == 0) return;
  if (device == Device::cpu) {
    std::memmove(dst, src, bytes);
    return;
  }
#ifdef FIBERTRAIN_CUDA
  cuda_buffers::copy(dst, src, bytes, nullptr);  // a GPU run on the MPI backend
#else
  throw std::logic_error("device buffer in a build without CUDA");
#endif
}

Buffer MpiTransport::scratch(int slot, std::size_t bytes, DType dtype) {
  // One buffer per slot, sized up on demand; the slot vectors never resize (the caller's
  // thread and the worker use different slots at once).
  auto i = static_cast<std::size_t>(slot);
  if (scratch_bytes_[i] < bytes) {
    scratch_[i] = std::make_unique<char[]>(bytes);
    scratch_bytes_[i] = bytes;
  }
  return Buffer{scratch_[i].get(), bytes / dtype_size(dtype), dtype, Device::cpu};
}

std::unique_ptr<Transport> MpiTransport::split(int color, int key) {
  return std::make_unique<MpiTransport>(comm_, color, key);
}

MpiCommunicator::MpiCommunicator(MPI_Comm parent, int color, int key, std::vector<int> members,
                                 std::shared_ptr<const Topology> topo, Traffic kind)
    : Communicator(std::move(topo), std::move(members), key, kind, std::make_unique<MpiTransport>(parent, color, key)) {}

MPI_Comm MpiCommunicator::handle() const { return static_cast<const MpiTransport&>(transport()).handle(); }

}  // namespace ft
