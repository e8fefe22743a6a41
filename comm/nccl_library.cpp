// NCCL itself behind the NcclApi interface (nccl_api.h): a communicator per group, its
// unique id drawn by the group's rank 0 and broadcast over the group's MPI communicator.
#include <nccl.h>

#include <cstdlib>
#include <stdexcept>

#include <fmt/format.h>

#include "comm/nccl_api.h"

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

cudaStream_t cs(Stream& s) { return static_cast<cudaStream_t>(s.native()); }

class LibraryComm final : public NcclComm {
 public:
  explicit LibraryComm(MPI_Comm bootstrap) {
    int rank = 0, size = 1;
    MPI_Comm_rank(bootstrap, &rank);
    MPI_Comm_size(bootstrap, &size);
    ncclUniqueId id;
    if (rank == 0) check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, bootstrap);
    check(ncclCommInitRank(&comm_, size, id, rank), "ncclCommInitRank");
  }
  ~LibraryComm() override { ncclCommDestroy(comm_); }

  void all_reduce(const void* send, void* recv, std::size_t count, DType t, Stream& s) override {
    check(ncclAllReduce(send, recv, count, nccl_type(t), ncclSum, comm_, cs(s)), "all-reduce");
  }
  void reduce_scatter(const void* send, void* recv, std::size_t recv_count, DType t, Stream& s) override {
    check(ncclReduceScatter(send, recv, recv_count, nccl_type(t), ncclSum, comm_, cs(s)), "reduce-scatter");
  }
  void all_gather(const void* send, void* recv, std::size_t send_count, DType t, Stream& s) override {
    check(ncclAllGather(send, recv, send_count, nccl_type(t), comm_, cs(s)), "all-gather");
  }
  void reduce(const void* send, void* recv, std::size_t count, DType t, int root, Stream& s) override {
    check(ncclReduce(send, recv, count, nccl_type(t), ncclSum, root, comm_, cs(s)), "reduce");
  }
  void broadcast(const void* send, void* recv, std::size_t count, DType t, int root, Stream& s) override {
    check(ncclBroadcast(send, recv, count, nccl_type(t), root, comm_, cs(s)), "broadcast");
  }
  void send(const void* buf, std::size_t bytes, int peer, Stream& s) override {
    check(ncclSend(buf, bytes, ncclUint8, peer, comm_, cs(s)), "send");
  }
  void recv(void* buf, std::size_t bytes, int peer, Stream& s) override {
    check(ncclRecv(buf, bytes, ncclUint8, peer, comm_, cs(s)), "recv");
  }

 private:
  ncclComm_t comm_ = nullptr;
};

class Library final : public NcclApi {
 public:
  std::unique_ptr<NcclComm> init(MPI_Comm bootstrap) override { return std::make_unique<LibraryComm>(bootstrap); }
  void group_start() override { check(ncclGroupStart(), "group start"); }
  void group_end() override { check(ncclGroupEnd(), "group end"); }
  Device memory() const override { return Device::cuda; }
  std::shared_ptr<Stream> new_stream() override { return std::make_shared<Stream>(StreamKind::cuda); }
};

}  // namespace

std::shared_ptr<NcclApi> nccl_library() { return std::make_shared<Library>(); }

void nccl_one_launch_queue() {
  setenv("CUDA_DEVICE_MAX_CONNECTIONS", "1", 1);
  setenv("NCCL_LAUNCH_ORDER_IMPLICIT", "1", 1);
}

}  // namespace ft
