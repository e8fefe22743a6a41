// `fibertrain train CONFIG [--set k=v ...] [--out run.h5] [--dry-run]`
#include <cstdio>
#include <string>
#include <vector>

#include "comm/error.h"
#include "comm/log.h"
#include "comm/runtime.h"
#include "comm/watchdog.h"
#include "trainer/cli/cli.h"
#include "trainer/io/config.h"
#include "trainer/io/run_files.h"
#include "trainer/loop/trainer.h"

namespace ft {
namespace {

struct TrainArgs {
  std::string config;
  std::vector<std::string> sets;
  std::string out;
  std::string resume;
  std::string command;
  bool dry_run = false;
  bool quiet = false;
  bool keys = false;
  bool overwrite = false;
};

// A Markdown table: readable in a terminal, and the source of docs/config.md's table.
int list_keys_command() {
  if (launch_rank_from_env() != 0) return 0;
  std::printf("| key | type | default | meaning |\n|---|---|---|---|\n");
  for (const auto& k : list_keys()) {
    std::string meaning = k.doc + (k.constraints.empty() ? "" : " (" + k.constraints + ")");
    std::printf("| `%s` | %s | %s | %s |\n", k.path.c_str(), k.type.c_str(),
                k.default_value.empty() ? "\"\"" : ("`" + k.default_value + "`").c_str(), meaning.c_str());
  }
  return 0;
}

int run_train(const TrainArgs& args) {
  if (args.keys) return list_keys_command();
  MpiRuntime mpi(nullptr, nullptr);
  install_stop_handlers();  // a stop during start-up takes effect after the first step
  log::set_quiet(args.quiet);
  Config cfg;
  run_phase(MPI_COMM_WORLD, [&] {
    std::vector<Override> overrides;
    for (const auto& s : args.sets) overrides.push_back(parse_override(s));
    cfg = load_config(args.config, overrides);
    validate_launch(cfg, mpi.size());
  });
  if (args.dry_run) {
    std::shared_ptr<const Topology> topo;
    run_phase(MPI_COMM_WORLD, [&] { topo = make_topology(cfg.topology, mpi); });
    if (mpi.rank() == 0) std::printf("%s# %s\n", to_yaml(cfg).c_str(), topo->describe().c_str());
    return 0;
  }
  if (mpi.rank() == 0 && !args.quiet) std::fputs(to_yaml(cfg).c_str(), stdout);
  RunOptions opts{args.out.empty() ? default_step_log(args.config) : args.out, args.resume, args.command, args.config,
                  args.overwrite};
  if (args.out == "none") opts.out.clear();
  std::unique_ptr<Trainer> trainer = Trainer::create(cfg, opts, mpi);
  try {
    trainer->run();
  } catch (const JobStopped&) {
    throw;  // every rank agreed to stop; one of them has said why
  } catch (const UserError& e) {
    trainer->close_step_log();
    abort_job(kExitUserError, e.what());
  } catch (const std::exception& e) {
    trainer->close_step_log();
    abort_job(kExitInternalError, std::string("internal error: ") + e.what());
  }
  return 0;
}

}  // namespace

void add_train_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<TrainArgs>();
  CLI::App* cmd = app.add_subcommand("train", "Train the GPT model (run under mpirun or srun for several ranks)");
  cmd->add_option("config", args->config, "YAML run config, e.g. configs/tiny.yaml");
  cmd->add_option("--set", args->sets, "Override a key: --set parallel.dp=4 (repeatable)")->allow_extra_args(false);
  cmd->add_option("--out", args->out,
                  "HDF5 file for the step log (default: runs/<config name>-<UTC time>.h5; none: no file)");
  cmd->add_flag("--overwrite", args->overwrite, "Replace the step log if it exists (else the run refuses to start)");
  cmd->add_option("--resume", args->resume, "Continue from this checkpoint (see checkpoint.path)");
  cmd->add_flag("--dry-run", args->dry_run, "Validate, print the resolved config and exit");
  cmd->add_flag("-q,--quiet", args->quiet, "No progress lines; errors only");
  cmd->add_flag("--keys", args->keys, "List every config key with its type, default and meaning");
  cmd->callback([&action, args] {
    args->command = command_line();
    action = [args] { return run_train(*args); };
  });
}

}  // namespace ft
