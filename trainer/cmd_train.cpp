// `fibertrain train CONFIG [--set k=v ...] [--out run.h5] [--dry-run]`
#include <cstdio>
#include <string>
#include <vector>

#include "comm/error.h"
#include "comm/log.h"
#include "comm/runtime.h"
#include "trainer/cli.h"
#include "trainer/config.h"

namespace ft {
namespace {

struct TrainArgs {
  std::string config;
  std::vector<std::string> sets;
  std::string out;
  bool dry_run = false;
  bool quiet = false;
  bool keys = false;
};

int list_keys_command() {
  if (launch_rank_from_env() != 0) return 0;
  for (const auto& k : list_keys())
    std::printf("%-32s %-10s %-12s %s%s%s\n", k.path.c_str(), k.type.c_str(),
                k.default_value.empty() ? "\"\"" : k.default_value.c_str(), k.doc.c_str(),
                k.constraints.empty() ? "" : "; ", k.constraints.c_str());
  return 0;
}

int run_train(const TrainArgs& args) {
  if (args.keys) return list_keys_command();
  MpiRuntime mpi(nullptr, nullptr);
  log::set_quiet(args.quiet);
  Config cfg;
  run_phase(MPI_COMM_WORLD, [&] {
    std::vector<Override> overrides;
    for (const auto& s : args.sets) overrides.push_back(parse_override(s));
    cfg = load_config(args.config, overrides);
    validate_launch(cfg, mpi.size());
  });
  if (args.dry_run) {
    if (mpi.rank() == 0) std::fputs(to_yaml(cfg).c_str(), stdout);
    return 0;
  }
  return 0;
}

}  // namespace

void add_train_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<TrainArgs>();
  CLI::App* cmd = app.add_subcommand("train", "Train the GPT model (run under mpirun or srun for several ranks)");
  cmd->add_option("config", args->config, "YAML run config, e.g. configs/tiny.yaml");
  cmd->add_option("--set", args->sets, "Override a key: --set parallel.dp=4 (repeatable)")->allow_extra_args(false);
  cmd->add_option("--out", args->out, "HDF5 file for the step log (default: runs/<config name>.h5)");
  cmd->add_flag("--dry-run", args->dry_run, "Validate, print the resolved config and exit");
  cmd->add_flag("-q,--quiet", args->quiet, "No progress lines; errors only");
  cmd->add_flag("--keys", args->keys, "List every config key with its type, default and meaning");
  cmd->callback([&action, args] { action = [args] { return run_train(*args); }; });
}

}  // namespace ft
