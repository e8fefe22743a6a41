// `fibertrain bench <what>`: benchmarks that print tables and write HDF5 groups.
#include "trainer/cli.h"

namespace ft {

void add_bench_command(CLI::App& app, Action& action) {
  CLI::App* cmd = app.add_subcommand("bench", "Benchmarks");
  cmd->require_subcommand(1);
}

}  // namespace ft
