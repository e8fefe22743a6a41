// The MPI job: start-up, where this rank runs, and how every rank stops together.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <mpi.h>

namespace ft {

// This process's rank as the launcher (mpirun, srun) announced it, before MPI is up;
// 0 when not launched by one. Lets usage errors print once, not once per rank.
int launch_rank_from_env();

// Owns MPI for the process lifetime. Initialises with MPI_THREAD_MULTIPLE so that a
// communication thread can drive gradient sync while the main thread computes.
class MpiRuntime {
 public:
  MpiRuntime(int* argc, char*** argv);
  ~MpiRuntime();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  // Position among the ranks sharing this machine's memory (MPI's shared-memory split).
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  // Every rank's host name, indexed by world rank (under Slurm, its Slurm node name).
  const std::vector<std::string>& hostnames() const { return hostnames_; }

 private:
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  std::vector<std::string> hostnames_;
};

// Runs `phase` on every rank of `comm`, then agrees on the outcome. If any rank threw, the
// lowest such rank prints its message and every rank throws JobStopped (exit code 2 for a
// UserError, 1 otherwise), so no rank is left waiting in a collective. `phase` must not
// communicate on `comm` itself.
void run_phase(MPI_Comm comm, const std::function<void()>& phase);

// Gathers every rank's `mine` (all the same length) to rank 0 of `comm`, rank-major:
// result[r * mine.size() + i]. Other ranks get an empty vector.
std::vector<double> gather_to_root(MPI_Comm comm, const std::vector<double>& mine);

// The largest, and the sum, of every rank's `value` (all ranks get it).
double max_over(MPI_Comm comm, double value);
double sum_over(MPI_Comm comm, double value);

// For failures outside a phase, when other ranks may be inside collectives: print the
// message and take the whole job down.
[[noreturn]] void abort_job(int exit_code, const std::string& message);

}  // namespace ft
