#include "comm/runtime.h"

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "comm/error.h"
#include "comm/log.h"

namespace ft {

int launch_rank_from_env() {
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"}) {
    if (const char* v = std::getenv(var)) return std::atoi(v);
  }
  return 0;
}

MpiRuntime::MpiRuntime(int* argc, char*** argv) {
  int provided = 0;
  MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  log::set_rank(rank_, size_);
  if (provided < MPI_THREAD_MULTIPLE) {
    // The whole job must stop: every rank sees the same library, so every rank gets here.
    if (rank_ == 0)
      log::error("this MPI library provides thread level {} but fibertrain needs "
                 "MPI_THREAD_MULTIPLE (Open MPI >= 3 provides it)", provided);
    MPI_Finalize();
    std::exit(kExitUserError);
  }
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local);
  MPI_Comm_rank(local, &local_rank_);
  MPI_Comm_size(local, &local_size_);
  MPI_Comm_free(&local);

  // Under Slurm a rank's node is the Slurm node it runs on (several slurmd may share a host);
  // otherwise the host MPI reports.
  char name[MPI_MAX_PROCESSOR_NAME + 1] = {};
  int len = 0;
  MPI_Get_processor_name(name, &len);
  if (const char* slurm = std::getenv("SLURMD_NODENAME"); slurm && *slurm) {
    len = static_cast<int>(std::min<std::size_t>(std::strlen(slurm), MPI_MAX_PROCESSOR_NAME));
    std::memcpy(name, slurm, static_cast<std::size_t>(len));
    name[len] = '\0';
  }
  std::vector<char> all(static_cast<std::size_t>(size_) * (MPI_MAX_PROCESSOR_NAME + 1), '\0');
  MPI_Allgather(name, MPI_MAX_PROCESSOR_NAME + 1, MPI_CHAR, all.data(), MPI_MAX_PROCESSOR_NAME + 1,
                MPI_CHAR, MPI_COMM_WORLD);
  hostnames_.reserve(static_cast<std::size_t>(size_));
  for (int r = 0; r < size_; ++r) hostnames_.emplace_back(&all[static_cast<std::size_t>(r) * (MPI_MAX_PROCESSOR_NAME + 1)]);
}

MpiRuntime::~MpiRuntime() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

void run_phase(MPI_Comm comm, const std::function<void()>& phase) {
  std::string message;
  int code = 0;
  try {
    phase();
  } catch (const UserError& e) {
    message = e.what();
    code = kExitUserError;
  } catch (const JobStopped& e) {
    code = e.code();
  } catch (const std::exception& e) {
    message = std::string("internal error: ") + e.what();
    code = kExitInternalError;
  }
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  // The lowest failing rank reports; an internal error outranks a user error.
  enum Severity : int { kInternal = 0, kUser = 1, kNone = 2 };
  int mine[2] = {code != 0 ? rank : INT_MAX,
                 code == 0 ? kNone : (code == kExitInternalError ? kInternal : kUser)};
  int agreed[2];
  MPI_Allreduce(mine, agreed, 2, MPI_INT, MPI_MIN, comm);
  if (agreed[0] == INT_MAX) return;
  if (agreed[0] == rank && !message.empty()) log::error("{}", message);
  throw JobStopped(agreed[1] == kInternal ? kExitInternalError : kExitUserError);
}

std::vector<double> gather_to_root(MPI_Comm comm, const std::vector<double>& mine) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  std::vector<double> all(rank == 0 ? mine.size() * static_cast<std::size_t>(size) : 0);
  MPI_Gather(mine.data(), static_cast<int>(mine.size()), MPI_DOUBLE, all.data(), static_cast<int>(mine.size()),
             MPI_DOUBLE, 0, comm);
  return all;
}

double max_over(MPI_Comm comm, double value) {
  double out = value;
  MPI_Allreduce(&value, &out, 1, MPI_DOUBLE, MPI_MAX, comm);
  return out;
}

double sum_over(MPI_Comm comm, double value) {
  double out = value;
  MPI_Allreduce(&value, &out, 1, MPI_DOUBLE, MPI_SUM, comm);
  return out;
}

void abort_job(int exit_code, const std::string& message) {
  log::error("{}", message);
  std::fflush(stderr);
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  int size = 1;
  if (initialized && !finalized) MPI_Comm_size(MPI_COMM_WORLD, &size);
  // Alone, the exit is enough (and MPI_Abort would add its banner to the one message).
  if (size > 1) MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);
}

}  // namespace ft
