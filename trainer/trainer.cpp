#include "trainer/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <thread>

#include <fmt/format.h>

#include "comm/log.h"
#include "fibertrain_version.h"
#include "models/device_info.h"
#include "models/ops.h"
#include "trainer/progress.h"

namespace ft {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

// Columns of /steps, in order. Documented in docs/metrics.md.
enum Column : int {
  kStep, kLoss, kLr, kGradNorm, kTokens, kTokensPerS, kModelFlops, kMfu,
  kStepTime, kForwardTime, kBackwardTime, kOptimizerTime, kCommExposed,
};

MetricsSchema step_schema() {
  MetricsSchema s;
  s.add("step", "", Scope::job, "optimizer step index, from 0");
  s.add("loss", "nats", Scope::job, "mean cross-entropy of the step's global batch");
  s.add("lr", "", Scope::job, "learning rate used by the step");
  s.add("grad_norm", "", Scope::job, "global L2 norm of the gradient before clipping");
  s.add("tokens", "tokens", Scope::job, "tokens trained on in the step (global batch x context)");
  s.add("tokens_per_s", "tokens/s", Scope::job, "tokens / slowest rank's step_time");
  s.add("model_flops_per_s", "FLOP/s", Scope::job, "model FLOPs of the step (6N + 12LTC per token) / step time");
  s.add("mfu", "", Scope::job, "model_flops_per_s / (ranks x metrics.peak_flops)");
  s.add("step_time", "s", Scope::per_rank, "wall time of the whole optimizer step");
  s.add("forward_time", "s", Scope::per_rank, "time in forward passes");
  s.add("backward_time", "s", Scope::per_rank, "time in backward passes");
  s.add("optimizer_time", "s", Scope::per_rank, "time in clipping and the AdamW update");
  s.add("comm_exposed", "s", Scope::per_rank, "time the compute thread waited on communication");
  return s;
}

int blas_threads_for(const Config& cfg, const MpiRuntime& mpi) {
  if (cfg.threads > 0) return cfg.threads;
  int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, cores / std::max(1, mpi.local_size()));
}

}  // namespace

struct Trainer::StepTimes {
  double step = 0, forward = 0, backward = 0, optimizer = 0, comm_exposed = 0;
};

std::int64_t parameter_count(const ModelConfig& m) {
  std::int64_t C = m.width, V = m.vocab, T = m.context, L = m.layers;
  std::int64_t block = 2 * C + (3 * C * C + 3 * C) + (C * C + C) + 2 * C + (4 * C * C + 4 * C) + (4 * C * C + C);
  return V * C + T * C + L * block + 2 * C;
}

double model_flops_per_token(const ModelConfig& m) {
  return 6.0 * static_cast<double>(parameter_count(m)) + 12.0 * m.layers * m.context * m.width;
}

Trainer::Trainer(const Config& cfg, const RunOptions& opts, const MpiRuntime& mpi)
    : cfg_(cfg), opts_(opts), mpi_(mpi), schema_(step_schema()) {
  set_blas_threads(blas_threads_for(cfg, mpi));
  const auto& p = cfg.parallel;
  if (mpi.size() != 1)
    throw UserError("this build trains on one rank only; launch with a single rank");
  micro_batch_ = cfg.train.batch / (p.dp * p.microbatches);
  GptShape shape{cfg.model.vocab, cfg.model.context, cfg.model.layers, cfg.model.heads, cfg.model.width};
  Device device = cfg.device == "cuda" ? Device::cuda : Device::cpu;
  data_ = open_batches(cfg.data, cfg.model, cfg.train.batch, cfg.train.seed);
  model_ = std::make_unique<GptStage>(shape, StagePlan::whole(shape), micro_batch_, 1, DType::f32, device);
  model_->init(cfg.train.seed);
  opt_ = std::make_unique<AdamW>(model_->params(), cfg.train, 0, model_->params().numel());
  tokens_ = Tensor({micro_batch_, cfg.model.context}, DType::i32, device);
  targets_ = Tensor({micro_batch_, cfg.model.context}, DType::i32, device);
  if (!opts.resume.empty()) {
    CheckpointState st = load_checkpoint(opts.resume, cfg, *model_, *opt_, data_->tokens());
    first_step_ = st.steps_done;
  }
  flops_per_token_ = model_flops_per_token(cfg.model);
  peak_flops_ = cfg.metrics.peak_flops > 0 ? cfg.metrics.peak_flops : measure_matmul_flops(device);
  log_ = std::make_unique<StepLog>(MPI_COMM_WORLD, schema_, opts.out, cfg.metrics.flush_every);
  write_run_attributes();
}

Trainer::~Trainer() = default;

void Trainer::write_run_attributes() {
  const auto& p = cfg_.parallel;
  log_->set_attr("config", to_yaml(cfg_));
  log_->set_attr("version", std::string(FIBERTRAIN_VERSION));
  log_->set_attr("git_commit", std::string(FIBERTRAIN_GIT_COMMIT));
  log_->set_attr("world_size", std::int64_t{mpi_.size()});
  log_->set_attr("layout", fmt::format("tp={} pp={} dp={} order={} microbatches={}", p.tp, p.pp, p.dp, p.order,
                                       p.microbatches));
  log_->set_attr("hostnames", mpi_.hostnames());
  log_->set_attr("start_time", utc_now());
  log_->set_attr("command", opts_.command);
  log_->set_attr("data", data_->describe());
  log_->set_attr("parameters", parameter_count(cfg_.model));
  log_->set_attr("flops_per_token", static_cast<std::int64_t>(flops_per_token_));
  log_->set_attr("peak_flops_per_rank", static_cast<std::int64_t>(peak_flops_));
  log_->set_attr("blas", blas_info());
  log_->set_attr("first_step", std::int64_t{first_step_});
  if (!opts_.resume.empty()) log_->set_attr("resumed_from", opts_.resume);
}

void Trainer::train_step(int step, StepTimes& times, double& loss, double& grad_norm) {
  const auto& p = cfg_.parallel;
  const int dp_rank = 0;
  const ParamSet& ps = model_->params();
  ops::zero(ps.flat_grads());
  double loss_sum = 0;
  // Each micro-batch's loss is a mean over its tokens; the step's loss is their mean over
  // all micro-batches of all data-parallel ranks.
  const double loss_scale = 1.0 / (p.microbatches * p.dp);
  for (int k = 0; k < p.microbatches; ++k) {
    int first = dp_rank * (cfg_.train.batch / p.dp) + k * micro_batch_;
    data_->fill(step, first, micro_batch_, tokens_.data<std::int32_t>(), targets_.data<std::int32_t>());
    auto t0 = Clock::now();
    loss_sum += model_->forward(0, &tokens_, nullptr, &targets_);
    times.forward += seconds_since(t0);
    t0 = Clock::now();
    model_->backward(0, nullptr, loss_scale);
    times.backward += seconds_since(t0);
  }
  loss = loss_sum / p.microbatches;
  auto t0 = Clock::now();
  grad_norm = std::sqrt(ops::sum_squares(ps.flat_grads()));
  opt_->step(ps, learning_rate(cfg_.train, step), clip_scale(grad_norm, cfg_.train.clip));
  times.optimizer += seconds_since(t0);
}

void Trainer::record_step(int step, const StepTimes& times, double loss, double lr, double grad_norm) {
  StepRecord r(schema_);
  const double tokens = static_cast<double>(cfg_.train.batch) * cfg_.model.context;
  r.set(kStep, step);
  r.set(kLoss, loss);
  r.set(kLr, lr);
  r.set(kGradNorm, grad_norm);
  r.set(kTokens, tokens);
  r.set(kStepTime, times.step);
  r.set(kForwardTime, times.forward);
  r.set(kBackwardTime, times.backward);
  r.set(kOptimizerTime, times.optimizer);
  r.set(kCommExposed, times.comm_exposed);
  // Job-wide rates use the slowest rank's step time.
  const double slowest = max_over(MPI_COMM_WORLD, times.step);
  const double exposed = max_over(MPI_COMM_WORLD, times.comm_exposed);
  step_times_.push_back(slowest);
  r.set(kTokensPerS, tokens / slowest);
  r.set(kModelFlops, tokens * flops_per_token_ / slowest);
  r.set(kMfu, tokens * flops_per_token_ / slowest / (peak_flops_ * mpi_.size()));
  log_->record(r);
  if (mpi_.rank() != 0) return;
  StepLine line{step + 1, cfg_.train.steps, loss, lr, grad_norm, tokens / slowest, slowest, exposed / slowest};
  log::info("{}", format_step_line(line));
  if (step - first_step_ >= 2) {  // the first steps warm caches and allocators
    sum_tokens_per_s_ += line.tokens_per_s;
    sum_exposed_share_ += line.comm_share;
    ++summary_steps_;
  }
}

void Trainer::save(int steps_done) {
  std::string path = cfg_.checkpoint.path;
  if (auto at = path.find("{step}"); at != std::string::npos) path.replace(at, 6, std::to_string(steps_done));
  CheckpointState st{steps_done, data_->position(steps_done), data_->tokens()};
  save_checkpoint(MPI_COMM_WORLD, path, cfg_, *model_, *opt_, CheckpointRole{}, st);
  log::info("checkpoint: {} (step {})", path, steps_done);
}

void Trainer::run() {
  if (mpi_.rank() == 0 && !log::quiet()) {
    log::info("fibertrain {}: {} parameters, {} rank{}, {}", FIBERTRAIN_VERSION, format_count(parameter_count(cfg_.model)),
              mpi_.size(), mpi_.size() == 1 ? "" : "s", data_->describe());
    if (first_step_ > 0) log::info("resuming at step {} from {}", first_step_, opts_.resume);
  }
  for (int step = first_step_; step < cfg_.train.steps; ++step) {
    StepTimes times;
    double loss = 0, grad_norm = 0;
    auto t0 = Clock::now();
    train_step(step, times, loss, grad_norm);
    times.step = seconds_since(t0);
    if (step % cfg_.metrics.every == 0 || step + 1 == cfg_.train.steps)
      record_step(step, times, loss, learning_rate(cfg_.train, step), grad_norm);
    bool last = step + 1 == cfg_.train.steps;
    if (!cfg_.checkpoint.path.empty() && !last && cfg_.checkpoint.every > 0 && (step + 1) % cfg_.checkpoint.every == 0)
      save(step + 1);
  }
  log_->flush();
  if (!cfg_.checkpoint.path.empty()) save(cfg_.train.steps);
  print_summary();
}

void Trainer::print_summary() const {
  if (mpi_.rank() != 0) return;
  if (summary_steps_ > 0)
    log::info("summary: {} tok/s, communication exposed {:.1f}% of step time", format_count(sum_tokens_per_s_ / summary_steps_),
              100.0 * sum_exposed_share_ / summary_steps_);
  if (log_->writes_file()) log::info("step log: {}", opts_.out);
}

}  // namespace ft
