#include "comm/pacer.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <random>
#include <set>
#include <stdexcept>

#include <fmt/format.h>

namespace ft {

std::int64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

// Sleeps until shortly before `deadline`, then spins the last stretch: nanosleep wakes up to
// ~60 us late (the default timer slack), which would stretch every paced message. The spin
// does not yield: on a core busy with compute, sched_yield gives it away for a whole time
// slice.
void Pacer::wait_until(std::int64_t deadline) {
  if (deadline <= 0) return;
  constexpr std::int64_t kSpin = 70000;
  std::int64_t now = monotonic_ns();
  if (deadline - now > kSpin) {
    std::int64_t wake = deadline - kSpin;
    timespec ts{static_cast<time_t>(wake / 1000000000LL), static_cast<long>(wake % 1000000000LL)};
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr);
  }
  while (monotonic_ns() < deadline) {
  }
}

Pacer::Pacer(std::shared_ptr<const Topology> topo, LinkSpecs links, std::atomic<std::int64_t>* free_at,
             std::vector<int> machines_behind, std::shared_ptr<void> keep)
    : topo_(std::move(topo)),
      links_(links),
      free_at_(free_at),
      machines_(std::move(machines_behind)),
      keep_(std::move(keep)) {}

std::size_t Pacer::link_of(int from, Tier tier) const {
  const int unit = topo_->uplink(from, tier);
  return static_cast<std::size_t>(index(tier)) * static_cast<std::size_t>(topo_->world()) + static_cast<std::size_t>(unit);
}

std::int64_t Pacer::reserve(int from, Tier tier, std::size_t bytes) {
  const LinkSpec& link = links_[static_cast<std::size_t>(index(tier))];
  if (!link.throttled()) return 0;
  std::size_t id = link_of(from, tier);
  // Machines that cannot share memory each get an equal share of the uplink.
  double bandwidth = link.bytes_per_second / std::max(1, machines_[id]);
  std::int64_t serialise =
      bandwidth > 0 ? static_cast<std::int64_t>(std::llround(static_cast<double>(bytes) / bandwidth * 1e9)) : 0;
  std::int64_t now = monotonic_ns();
  std::atomic<std::int64_t>& free = free_at_[id];
  std::int64_t seen = free.load(std::memory_order_relaxed), start;
  do {
    start = std::max(now, seen);
  } while (!free.compare_exchange_weak(seen, start + serialise, std::memory_order_acq_rel));
  return start + serialise + static_cast<std::int64_t>(std::llround(link.latency * 1e9));
}

std::shared_ptr<Pacer> Pacer::create(MPI_Comm world, std::shared_ptr<const Topology> topo, LinkSpecs links) {
  if (std::none_of(links.begin(), links.end(), [](const LinkSpec& l) { return l.throttled(); })) return nullptr;
  int rank = 0, size = 1;
  MPI_Comm_rank(world, &rank);
  MPI_Comm_size(world, &size);
  // Machines: the processes that can share memory. Each is named by its lowest rank.
  MPI_Comm local;
  MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &local);
  int local_rank = 0, machine = rank;
  MPI_Comm_rank(local, &local_rank);
  MPI_Allreduce(&rank, &machine, 1, MPI_INT, MPI_MIN, local);
  std::vector<int> machine_of(static_cast<std::size_t>(size));
  MPI_Allgather(&machine, 1, MPI_INT, machine_of.data(), 1, MPI_INT, world);
  const std::size_t entries = static_cast<std::size_t>(kTiers) * static_cast<std::size_t>(size);
  std::vector<std::set<int>> behind(entries);
  for (int r = 0; r < size; ++r) {
    for (Tier t : kAllTiers) {
      const int unit = topo->uplink(r, t);
      behind[static_cast<std::size_t>(index(t)) * static_cast<std::size_t>(size) + static_cast<std::size_t>(unit)].insert(
          machine_of[static_cast<std::size_t>(r)]);
    }
  }
  std::vector<int> machines(entries);
  for (std::size_t i = 0; i < entries; ++i) machines[i] = static_cast<int>(behind[i].size());

  // One segment per machine and job: rank 0 draws the job's key, each machine's lowest
  // rank creates the segment, the others map it, and it is unlinked once all have.
  std::uint64_t key = 0;
  if (rank == 0) key = std::random_device{}() ^ (static_cast<std::uint64_t>(getpid()) << 32);
  MPI_Bcast(&key, 1, MPI_UINT64_T, 0, world);
  std::string name = fmt::format("/fibertrain-links-{:016x}-{}", key, machine);
  const std::size_t bytes = entries * sizeof(std::atomic<std::int64_t>);
  int error = 0;
  if (local_rank == 0) {
    int fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0 || ftruncate(fd, static_cast<off_t>(bytes)) != 0) error = errno ? errno : 1;
    if (fd >= 0) close(fd);
  }
  MPI_Barrier(local);
  void* map = MAP_FAILED;
  int fd = shm_open(name.c_str(), O_RDWR, 0600);
  if (fd >= 0) {
    map = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
  }
  if (map == MAP_FAILED) error = errno ? errno : 1;
  MPI_Barrier(local);
  if (local_rank == 0) shm_unlink(name.c_str());
  MPI_Comm_free(&local);
  int any = 0;
  MPI_Allreduce(&error, &any, 1, MPI_INT, MPI_MAX, world);
  if (any) throw std::runtime_error(fmt::format("link emulation: shared memory for link state failed ({})", std::strerror(any)));
  // A fresh ftruncate'd segment is zero: every link free since the epoch.
  std::shared_ptr<void> keep(map, [bytes](void* p) { munmap(p, bytes); });
  auto* free_at = static_cast<std::atomic<std::int64_t>*>(map);
  return std::make_shared<Pacer>(std::move(topo), links, free_at, std::move(machines), std::move(keep));
}

}  // namespace ft
