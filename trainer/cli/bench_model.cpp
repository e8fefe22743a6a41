// `fibertrain bench model`: times whole training steps of one model.
#include <algorithm>
#include <cstdio>
#include <memory>

#include <fmt/format.h>

#include "comm/error.h"
#include "comm/log.h"
#include "comm/runtime.h"
#include "models/device_info.h"
#include "trainer/cli/bench.h"
#include "trainer/io/config.h"
#include "trainer/loop/layout.h"
#include "trainer/io/h5.h"
#include "trainer/io/metrics.h"
#include "trainer/loop/trainer.h"

namespace ft {
namespace {

struct ModelBenchArgs {
  std::string config;
  std::vector<std::string> sets;
  int threads = 0;
  int warmup = 3;
  int iters = 10;
  std::string out;
};

// Times whole training steps (forward + backward + AdamW) of the configured model on
// synthetic data after warm-up, through the same Trainer as `train`.
int run_model_bench(const ModelBenchArgs& args) {
  MpiRuntime mpi(nullptr, nullptr);
  Config cfg;
  run_phase(MPI_COMM_WORLD, [&] {
    std::vector<Override> overrides;
    for (const auto& s : args.sets) overrides.push_back(parse_override(s));
    overrides.push_back({"data.kind", "synthetic"});
    overrides.push_back({"train.steps", std::to_string(args.warmup + args.iters)});
    overrides.push_back({"checkpoint.path", "\"\""});
    if (args.threads > 0) overrides.push_back({"threads", std::to_string(args.threads)});
    cfg = load_config(args.config, overrides);
    validate_launch(cfg, mpi.size());
  });
  log::set_quiet(true);
  RunOptions opts;
  opts.command = command_line();
  std::unique_ptr<Trainer> trainer = Trainer::create(cfg, opts, mpi);
  trainer->run();
  std::vector<double> timed(trainer->step_times().begin() + args.warmup, trainer->step_times().end());
  const double step = median(timed);
  const double tokens = static_cast<double>(cfg.train.batch) * cfg.model.context;
  const double flops = tokens * trainer->flops_per_token() / step;
  // The fractions' denominators, one per rank: this device's best matrix-product rate at the
  // run's precision, at a size that reaches it (8192^3 on a GPU; on CUDA after
  // Trainer::create selected the GPU and the matmul precision), and the datasheet's peak.
  const Device device = compute_device(cfg);
  const int probe = device == Device::cuda ? 8192 : 1024;
  const double peak = measure_matmul_flops(device, probe, 0.5) * mpi.size();
  const double datasheet =
      device == Device::cuda ? cuda_datasheet_flops(cfg.precision == "bf16") * mpi.size() : 0.0;
  if (mpi.rank() != 0) return 0;
  std::printf("model: %lld parameters, %d layers, width %d, context %d, batch %d, %d rank(s) x %d CPU thread(s)\n",
              static_cast<long long>(parameter_count(cfg.model)), cfg.model.layers, cfg.model.width, cfg.model.context,
              cfg.train.batch, mpi.size(), cpu_threads());
  const std::string matmul = fmt::format("matmul {}^3", probe);
  std::printf("%-14s %-12s %-14s %-22s %-10s", "step (median)", "tokens/s", "model GFLOP/s", (matmul + " GFLOP/s").c_str(),
              "fraction");
  if (datasheet > 0) std::printf(" %-18s %-10s", "datasheet GFLOP/s", "MFU");
  std::printf("\n%-14s %-12.0f %-14.2f %-22.2f %-10.3f", fmt::format("{:.2f} ms", step * 1e3).c_str(), tokens / step,
              flops / 1e9, peak / 1e9, flops / peak);
  if (datasheet > 0) std::printf(" %-18.0f %-10.3f", datasheet / 1e9, flops / datasheet);
  std::printf("\n");
  if (!args.out.empty()) {
    h5::File f(args.out, h5::Mode::create);
    f.write<double>("/bench/model/step_times", timed, {timed.size()});
    f.set_attr("/bench/model/step_times", "units", std::string("s"));
    f.set_attr("/", "config", to_yaml(cfg));
    f.set_attr("/bench/model", "tokens_per_s", tokens / step);
    f.set_attr("/bench/model", "model_flops_per_s", flops);
    f.set_attr("/bench/model", "matmul_flops_per_s", peak);
    f.set_attr("/bench/model", "matmul_size", static_cast<std::int64_t>(probe));
    f.set_attr("/bench/model", "datasheet_flops_per_s", datasheet);
    f.set_attr("/bench/model", "cpu_threads", static_cast<std::int64_t>(cpu_threads()));
  }
  return 0;
}

}  // namespace

void add_model_bench(CLI::App& bench, Action& action) {
  auto args = std::make_shared<ModelBenchArgs>();
  CLI::App* cmd = bench.add_subcommand("model", "Time forward + backward + update of one model");
  cmd->add_option("--config", args->config, "YAML run config (model, batch, layout)")->required();
  cmd->add_option("--set", args->sets, "Override a config key (repeatable)");
  cmd->add_option("--threads", args->threads, "CPU threads per rank (default: the config's threads)");
  cmd->add_option("--warmup", args->warmup, "Untimed steps first")->check(CLI::NonNegativeNumber);
  cmd->add_option("--iters", args->iters, "Timed steps")->check(positive_number());
  cmd->add_option("--out", args->out, "HDF5 file for /bench/model");
  cmd->callback([&action, args] { action = [args] { return run_model_bench(*args); }; });
}

}  // namespace ft
