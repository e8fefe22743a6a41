// fibertrain: a distributed trainer that measures the links training needs.
#include <cstdio>
#include <cstdlib>

#include <unistd.h>

#include <fmt/format.h>

#include "comm/backend_info.h"
#include "comm/error.h"
#include "comm/runtime.h"
#include "fibertrain_version.h"
#include "models/device_info.h"
#include "trainer/cli/cli.h"

namespace {

std::string version_text() {
  return fmt::format(
      "fibertrain {} (commit {})\n"
      "  MPI:  {}\n"
      "  BLAS: {}\n"
      "  CUDA: {}\n"
      "  NCCL: {}",
      FIBERTRAIN_VERSION, FIBERTRAIN_GIT_COMMIT, ft::mpi_library_version(), ft::blas_info(), ft::cuda_info(),
      ft::nccl_version());
}

// OpenBLAS reads OPENBLAS_THREAD_TIMEOUT once, as it loads, before main. By default an idle
// BLAS thread spins on sched_yield for 2^28 cycles after each product and takes a core from
// the kernels' own threads in between (models/cpu/parallel.h); 2^4 puts it to sleep at once,
// which makes a 2-thread CPU step about 8% faster (docs/performance.md). Unless the user
// chose a value: set it, and start this program again, once.
void settle_blas_threads(char** argv) {
  if (std::getenv("OPENBLAS_THREAD_TIMEOUT")) return;
  setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: then go on as loaded
}

}  // namespace

std::string& ft::command_line() {
  static std::string line;
  return line;
}

int main(int argc, char** argv) {
  settle_blas_threads(argv);
  CLI::App app{"fibertrain: a distributed GPT trainer that measures the bandwidth training needs "
               "between nodes, pods and sites."};
  app.set_version_flag("--version", [] { return version_text(); }, "Print version and build details");
  for (int i = 0; i < argc; ++i) ft::command_line() += (i ? " " : "") + std::string(argv[i]);
  ft::Action action;
  ft::add_commands(app, action);
  try {
    ft::check_command_names(app, std::vector<std::string>(argv + 1, argv + argc));
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // Under mpirun every rank parses the same arguments; rank 0 speaks and carries the exit code.
    // The others leave quietly with 0: a non-zero exit of theirs would make the launcher kill rank 0
    // before its message is out.
    if (ft::launch_rank_from_env() != 0) return 0;
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::fprintf(stderr, "fibertrain: error: %s (see --help)\n", e.what());
    return ft::kExitUserError;
  }
  try {
    return action();
  } catch (const ft::JobStopped& s) {
    return s.code();
  }
}
