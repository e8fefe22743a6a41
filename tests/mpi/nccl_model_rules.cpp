// The CPU model of NCCL's rules (comm/nccl_api.h), case by case, on 2 ranks: each case is
// issued straight through the NCCL API and either completes or hangs as NCCL would. A hang
// cannot be undone, so this is a program, not a test suite: it runs one case and prints
// "completed" when every operation has, "hung" when they have not after a few seconds (and
// ends the job), or the error an operation raised; CTest matches what it printed.
//
//   nccl_model_rules CASE normal|strict
//   crossed-sends-large  send, then receive, as two operations, above the eager size: hangs
//   crossed-sends-small  the same at the eager size: completes
//   paired-large         the send and the receive in one group: completes
//   two-streams-large    the send on one stream, the receive on another, one communicator:
//                        hangs (a communicator runs one operation at a time, in issue order)
//   crossed-order        two communicators, issued in opposite orders on the two ranks:
//                        completes, but hangs under strict (one launch queue per rank)
//   mismatch             the ranks reach different collectives: an error naming both
#include <mpi.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "comm/nccl_api.h"
#include "comm/runtime.h"

namespace {

constexpr std::size_t kEager = 1024;

// Waits for what `streams` were given; returns the process's exit code.
int finish(const std::vector<ft::Stream*>& streams, int rank) {
  std::vector<ft::Event> done;
  for (ft::Stream* s : streams) done.push_back(s->record());
  std::atomic<bool> over{false};
  std::string error;
  std::thread waiter([&] {
    try {
      for (const ft::Event& e : done) e.synchronize();
    } catch (const std::exception& e) {
      error = e.what();
    }
    over = true;
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (!over && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (!over) {
    std::printf("rank %d: hung\n", rank);
    std::fflush(stdout);
    MPI_Abort(MPI_COMM_WORLD, 3);
  }
  waiter.join();
  if (!error.empty()) {
    std::printf("rank %d: error: %s\n", rank, error.c_str());
    std::fflush(stdout);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  std::printf("rank %d: completed\n", rank);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  ft::MpiRuntime mpi(&argc, &argv);
  if (argc != 3 || mpi.size() != 2) {
    std::fprintf(stderr, "usage: mpirun -n 2 nccl_model_rules CASE normal|strict\n");
    return 2;
  }
  const std::string name = argv[1];
  auto api = ft::nccl_model(ft::NcclRules{kEager, std::string(argv[2]) == "strict"});
  const int rank = mpi.rank(), peer = 1 - rank;
  auto a = api->init(MPI_COMM_WORLD);
  auto b = api->init(MPI_COMM_WORLD);
  std::shared_ptr<ft::Stream> s1 = api->new_stream(), s2 = api->new_stream();
  const std::size_t bytes = name == "crossed-sends-small" ? kEager : 64 * kEager;
  std::vector<char> out(bytes, static_cast<char>(rank + 1)), in(bytes, 0);
  std::vector<float> x(1000, 1.0f), y(1000, 1.0f);

  if (name == "crossed-sends-large" || name == "crossed-sends-small") {
    a->send(out.data(), bytes, peer, *s1);
    a->recv(in.data(), bytes, peer, *s1);
  } else if (name == "paired-large") {
    api->group_start();
    a->send(out.data(), bytes, peer, *s1);
    a->recv(in.data(), bytes, peer, *s1);
    api->group_end();
  } else if (name == "two-streams-large") {
    a->send(out.data(), bytes, peer, *s1);
    a->recv(in.data(), bytes, peer, *s2);
  } else if (name == "crossed-order") {
    ft::NcclComm& first = rank == 0 ? *a : *b;
    ft::NcclComm& second = rank == 0 ? *b : *a;
    std::vector<float>& first_buf = rank == 0 ? x : y;
    std::vector<float>& second_buf = rank == 0 ? y : x;
    first.all_reduce(first_buf.data(), first_buf.data(), x.size(), ft::DType::f32, rank == 0 ? *s1 : *s2);
    second.all_reduce(second_buf.data(), second_buf.data(), x.size(), ft::DType::f32, rank == 0 ? *s2 : *s1);
  } else if (name == "mismatch") {
    if (rank == 0)
      a->all_reduce(x.data(), x.data(), x.size(), ft::DType::f32, *s1);
    else
      a->broadcast(x.data(), x.data(), x.size(), ft::DType::f32, 0, *s1);
  } else {
    std::fprintf(stderr, "unknown case '%s'\n", name.c_str());
    return 2;
  }
  const int code = finish({s1.get(), s2.get()}, rank);
  if (in[0] != 0 && in[0] != static_cast<char>(peer + 1)) return 1;  // what arrived is the peer's
  return code;
}
