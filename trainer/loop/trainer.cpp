#include "trainer/loop/trainer.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cmath>
#include <ctime>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "comm/log.h"
#include "fibertrain_version.h"
#include "models/device_info.h"
#include "models/ops.h"
#include "trainer/io/progress.h"
#include "trainer/io/run_files.h"

namespace ft {
namespace {

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

}  // namespace

namespace {

int cpu_threads_for(const Config& cfg, const MpiRuntime& mpi) {
  if (cfg.threads > 0) return cfg.threads;
  int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, cores / std::max(1, mpi.local_size()));
}

}  // namespace

std::int64_t parameter_count(const ModelConfig& m) {
  std::int64_t C = m.width, V = m.vocab, T = m.context, L = m.layers;
  std::int64_t block = 2 * C + (3 * C * C + 3 * C) + (C * C + C) + 2 * C + (4 * C * C + 4 * C) + (4 * C * C + C);
  return V * C + T * C + L * block + 2 * C;
}

double model_flops_per_token(const ModelConfig& m) {
  return 6.0 * static_cast<double>(parameter_count(m)) + 12.0 * m.layers * m.context * m.width;
}

TierCodecs tier_codecs(const Config& cfg, const Topology& topo, const std::vector<int>& members, Algorithm algo,
                       Tier lowest, Tier highest, bool zero_applies) {
  TierCodecs codecs{};
  const auto& z = cfg.compression;
  bool any = false;
  for (Tier tier : kAllTiers) {
    if (tier < lowest || tier > highest) continue;
    const std::optional<CodecConfig>& c = z.tier[tier];
    if (!c || c->codec == "none") continue;
    CodecSpec& s = codecs[tier];
    s = default_spec(c->codec);
    for (auto& [key, value] : s.params) value = c->params.at(key);  // resolved: the codec's keys hold values
    s.feedback = feedback_from_name(c->feedback);
    s.decay = c->decay;
    s.reduce = reduce_from_name(c->reduce);
    s.seed = cfg.train.seed;
    any = true;
  }
  if (!any) return codecs;
  if (cfg.parallel.zero > 0 && zero_applies)
    throw UserError(fmt::format("compression applies to the gradient all-reduce; ZeRO-{} (parallel.zero: {}) "
                                "reduce-scatters, uncompressed: set parallel.zero: 0 or remove the compression section{}",
                                cfg.parallel.zero, cfg.parallel.zero,
                                cfg.parallel.shard_within == "none"
                                    ? ""
                                    : fmt::format(" below {} (parallel.shard_within {}: only the all-reduce across "
                                                  "the {}s takes a codec)",
                                                  tier_name(*dp_split_tier(cfg)), cfg.parallel.shard_within,
                                                  cfg.parallel.shard_within)));
  if (algo == Algorithm::native)
    throw UserError("compression needs sync.algorithm ring or hierarchical: the library's native all-reduce cannot "
                    "carry codecs");
  // The tiers the sync runs at: each level of the hierarchy, or one (the highest the group
  // spans) for a flat ring. Casts may compress any of them; the others only the top one.
  std::vector<Tier> levels;
  const HierarchyPlan hierarchy = plan_hierarchy(topo, members);
  if (algo == Algorithm::hierarchical && hierarchy.even && hierarchy.levels.size() > 1) {
    for (const auto& l : hierarchy.levels) levels.push_back(l.tier);
  } else {
    if (members.size() > 1) levels.push_back(topo.span(members));
  }
  for (Tier t : kAllTiers) {
    const CodecSpec& s = codecs[t];
    if (!s.lossy()) continue;
    std::string key = fmt::format("compression.{}", tier_name(t));
    if (std::find(levels.begin(), levels.end(), t) == levels.end()) {
      log::warn("{} has no effect: the data-parallel sync ({}) has no {} step", key, algorithm_name(algo), tier_name(t));
      continue;
    }
    if (!find_codec(s.name)->below_top && t != levels.back()) {
      std::vector<std::string_view> below;  // the lossy codecs that may run below the top
      for (const CodecInfo& c : codec_registry())
        if (c.below_top && c.name != "none") below.push_back(c.name);
      throw UserError(fmt::format("{}.codec {}: codecs other than {} apply only to the top tier of the data-parallel "
                                  "sync ({} here); below it use {} or none",
                                  key, s.name, fmt::join(below, " and "), tier_name(levels.back()),
                                  fmt::join(below, ", ")));
    }
  }
  return codecs;
}

TierCodecs step_tier_codecs(const Config& cfg, const Topology& topo, const std::vector<int>& members, Algorithm algo,
                            std::optional<Tier> outer) {
  if (!outer) return tier_codecs(cfg, topo, members, algo);
  return tier_codecs(cfg, topo, members, algo, Tier::intra_node, static_cast<Tier>(index(*outer) - 1));
}

std::string outer_in_one_unit(const Config& cfg) {
  return fmt::format("sync.outer: every data-parallel replica is in one {}: nothing to synchronise across {}; plain "
                     "data parallelism",
                     tier_unit(*tier_from_name(cfg.sync.outer->tier)), cfg.sync.outer->tier);
}

std::string shard_in_one_unit(const Config& cfg) {
  return fmt::format("parallel.shard_within {}: every data-parallel replica is in one {}; ZeRO shards over all of them",
                     cfg.parallel.shard_within, cfg.parallel.shard_within);
}

TierCodecs split_tier_codecs(const Config& cfg, const Topology& topo, const std::vector<int>& across, Algorithm algo) {
  TierCodecs codecs = tier_codecs(cfg, topo, across, algo, *dp_split_tier(cfg), Tier::inter_site, false);
  for (Tier t : kAllTiers)
    if (codecs[t].lossy() && find_codec(codecs[t].name)->whole_tensors)
      throw UserError(fmt::format("compression.{}.codec {}: {} sends a segment of the flat {}, not whole matrices; "
                                  "use another codec across {}",
                                  tier_name(t), codecs[t].name, cfg.sync.outer ? "the outer sync" : "HSDP's all-reduce",
                                  cfg.sync.outer ? "parameters" : "gradients", tier_name(t)));
  return codecs;
}

Algorithm resolve_sync_algorithm(const std::string& name, const HierarchyPlan& hierarchy) {
  if (name != "auto") return *algorithm_from_name(name);
  return hierarchy.levels.size() > 1 ? Algorithm::hierarchical : Algorithm::ring;
}

std::unique_ptr<Trainer> Trainer::create(const Config& cfg, const RunOptions& opts, const MpiRuntime& mpi) {
  std::shared_ptr<const Topology> topo;
  run_phase(MPI_COMM_WORLD, [&] {
    topo = make_topology(cfg.topology, mpi);
    prepare_device(cfg, mpi);
  });
  std::optional<Layout> layout;
  run_phase(MPI_COMM_WORLD, [&] { layout.emplace(make_layout(cfg, mpi, topo)); });
  std::unique_ptr<Trainer> t;
  run_phase(MPI_COMM_WORLD, [&] {
    try {
      t.reset(new Trainer(cfg, opts, mpi, std::move(*layout)));
    } catch (const OutOfMemory& e) {
      throw UserError(fmt::format("{}: the model and batch do not fit. Lower train.batch or raise "
                                  "parallel.microbatches (activations), shrink model.*, or split the model with "
                                  "parallel.tp or parallel.pp (parameters, gradients, optimizer state)",
                                  e.what()));
    }
  });
  return t;
}

Trainer::Trainer(const Config& cfg, const RunOptions& opts, const MpiRuntime& mpi, Layout layout)
    : cfg_(cfg), opts_(opts), mpi_(mpi), layout_(std::move(layout)), pipeline_(cfg, layout_.coord, compute_device(cfg)) {
  set_cpu_threads(cpu_threads_for(cfg, mpi));
  const auto& p = cfg.parallel;
  // Split at a tier (sync.outer, parallel.shard_within), the every-step sync runs inside the
  // unit: the island of an outer sync, or HSDP's shard group.
  GridComms& comms = layout_.comms;
  const bool split = comms.dp_outer && comms.dp_outer->size() > 1;
  const bool outer = split && cfg.sync.outer;
  if (dp_split_tier(cfg) && p.dp > 1 && !split && mpi.rank() == 0)
    log::warn("{}", cfg.sync.outer ? outer_in_one_unit(cfg) : shard_in_one_unit(cfg));
  step_dp_ = comms.dp_inner ? comms.dp_inner.get() : comms.dp.get();
  if (p.zero > 0 && p.dp == 1 && mpi.rank() == 0)
    log::warn("parallel.zero {} with parallel.dp 1: one data-parallel replica has nothing to shard", p.zero);
  Communicator& dp = *step_dp_;
  dp.set_chunk_bytes(cfg.sync.chunk.value);
  sync_algo_ = resolve_sync_algorithm(cfg.sync.algorithm, dp.hierarchy());
  const Device device = compute_device(cfg);
  const bool eval = cfg.eval.every > 0;
  data_ = open_batches(cfg.data, cfg.model, cfg.train.batch, cfg.train.seed, eval ? Split::train : Split::all,
                       cfg.eval.holdout);
  if (eval)
    eval_data_ = open_batches(cfg.data, cfg.model, cfg.train.batch, cfg.train.seed, Split::eval, cfg.eval.holdout);
  const StagePlan plan = stage_plan(cfg, layout_.coord);
  first_stage_ = plan.has_embedding;
  last_stage_ = plan.has_head;
  model_ = std::make_unique<GptStage>(cfg.model, plan, pipeline_.micro_batch(), pipeline_.slots(), DType::f32, device);
  model_->init(cfg.train.seed);
  if (p.pp > 1) wte_ = model_->params().index("wte");
  std::vector<FlatRange> owned{{0, model_->params().numel()}};
  const TierCodecs codecs = step_tier_codecs(cfg, dp.topology(), dp.members(), sync_algo_,
                                             split ? dp_split_tier(cfg) : std::nullopt);
  ShardReplicas replicas;  // HSDP
  if (split && !outer) {
    Communicator& across = *comms.dp_outer;
    across.set_chunk_bytes(cfg.sync.chunk.value);
    replicas.comm = &across;
    replicas.algo = resolve_sync_algorithm(cfg.sync.algorithm, across.hierarchy());
    replicas.codecs = split_tier_codecs(cfg, across.topology(), across.members(), replicas.algo);
  }
  if (dp.size() > 1 || replicas.comm) {
    GradSyncOptions o;
    o.algo = sync_algo_;
    o.bucket_bytes = cfg.sync.bucket.value;
    o.zero = p.zero;
    o.overlap = cfg.sync.overlap;
    o.codecs = codecs;
    o.measure_error = cfg.metrics.compression_error;
    o.units = model_->units();
    o.param_chunks = gpt_param_chunks(model_->params(), plan);
    o.keep_gathered = p.reshard == "step";
    o.replicas = replicas;
    sync_ = std::make_unique<GradSync>(dp, model_->params(), std::move(o));
    owned = sync_->owned();
  }
  StageHooks hooks;
  if (p.tp > 1) {
    // Megatron's f and g: the activations after each row-parallel layer, and the input
    // gradients before each LayerNorm, summed over the tensor-parallel group.
    Communicator* tp = layout_.comms.tp.get();
    tp->set_chunk_bytes(cfg.sync.chunk.value);
    hooks.tp_all_reduce = [this, tp](const Tensor& t) {
      blocking([&] { tp->all_reduce(t.buffer(), ReduceOp::sum, Algorithm::ring); });
    };
    hooks.tp_all_gather = [this, tp](const Tensor& t) { blocking([&] { tp->all_gather(t.buffer(), Algorithm::ring); }); };
  }
  // The tied embedding's gradient is complete only once the first and last stages have
  // summed theirs, after the schedule; its bucket is released then. With ZeRO-2 and 3 a
  // bucket may wait for a staging buffer, and with ZeRO-3 a unit for its parameters.
  if (sync_) hooks.grad_ready = [this](int param) {
    if (arm_sync_ && !(param == wte_ && layout_.comms.embed)) blocking([&] { sync_->grad_ready(param); });
  };
  if (sync_ && p.zero == 3) {
    hooks.use_unit = [this](int unit, int next) { blocking([&] { sync_->use_unit(unit, next); }); };
    hooks.done_unit = [this](int unit) { sync_->done_unit(unit); };
  }
  layout_.comms.pp->set_chunk_bytes(cfg.sync.chunk.value);
  model_->set_hooks(hooks);
  opt_ = std::make_unique<Optimizer>(model_->params(), cfg.train, owned);
  if (outer) {
    Communicator& across = *comms.dp_outer;
    across.set_chunk_bytes(cfg.sync.chunk.value);
    const Algorithm algo = resolve_sync_algorithm(cfg.sync.algorithm, across.hierarchy());
    outer_ = std::make_unique<OuterSync>(*cfg.sync.outer, dp, across, model_->params(), algo,
                                         split_tier_codecs(cfg, across.topology(), across.members(), algo));
  }
  if (split) {
    island_ = comms.island->handle();
    const int first = layout_.grid.group(Dim::dp, mpi.rank()).front();
    first_island_ = std::find(dp.members().begin(), dp.members().end(), first) != dp.members().end();
  }
  // The gradient norm counts each element of the model once: tensor-parallel shards on
  // every TP rank but replicated tensors on TP rank 0 only; of the data-parallel replicas,
  // the one that owns the element (ZeRO) or replica 0.
  // The tied embedding counts on the first stage only.
  for (const ParamInfo& info : model_->params().infos()) {
    if (info.shard == Shard::replicated && layout_.coord.tp != 0) continue;
    if (info.name == "wte" && !first_stage_) continue;
    for (const FlatRange& o : owned) {
      if (p.zero == 0 && dp.rank() != 0) break;
      std::int64_t b = std::max(o.begin, info.offset), e = std::min(o.end, info.offset + info.numel());
      if (b < e) norm_ranges_.push_back({b, e});
    }
  }
  // The files, before any is written: no output replaces an input or another output.
  if (!opts.resume.empty()) {
    first_step_ = checkpoint_steps_done(opts.resume);
    if (first_step_ >= cfg.train.steps)
      throw UserError(fmt::format("'{}' holds {} steps and train.steps is {}: nothing is left to train; raise "
                                  "train.steps to continue it",
                                  opts.resume, first_step_, cfg.train.steps));
  }
  if (mpi.rank() == 0) check_run_files(run_files(cfg, opts.config, opts.out, opts.resume, first_step_));
  if (!opts.resume.empty()) {
    CheckpointState st = load_checkpoint(opts.resume, cfg, *model_, *opt_, data_->tokens());
    first_step_ = st.steps_done;
    if (outer_) outer_->restore(opts.resume, *model_, mpi.rank() == 0);
    restore_rank_state(opts.resume);
    if (sync_) sync_->drop_all();  // ZeRO-3: the checkpoint held every part
  }
  flops_per_token_ = model_flops_per_token(cfg.model);
  peak_flops_ = cfg.metrics.peak_flops > 0 ? cfg.metrics.peak_flops : measure_matmul_flops(device);
  log_ = std::make_unique<StepLog>(MPI_COMM_WORLD, metrics_.schema(), opts.out, cfg.metrics.flush_every,
                                   opts.overwrite);
  write_run_attributes();
}

Trainer::~Trainer() = default;

void Trainer::close_step_log() noexcept {
  try {
    log_.reset();  // flushes what it holds and closes the file
  } catch (...) {  // the error may be the log's own (a full disk): what was flushed stays
  }
}

void Trainer::write_run_attributes() {
  const auto& p = cfg_.parallel;
  log_->set_attr("config", to_yaml(cfg_));
  log_->set_attr("version", std::string(FIBERTRAIN_VERSION));
  log_->set_attr("git_commit", std::string(FIBERTRAIN_GIT_COMMIT));
  log_->set_attr("world_size", std::int64_t{mpi_.size()});
  log_->set_attr("layout", fmt::format("tp={} pp={} dp={} order={} microbatches={} schedule={} virtual_stages={} zero={}",
                                       p.tp, p.pp, p.dp, p.order, p.microbatches, p.schedule, p.virtual_stages, p.zero));
  log_->set_attr("bubble_theory", bubble_fraction(p.pp, p.microbatches, p.virtual_stages));
  log_->set_attr("topology", layout_.topo->describe());
  log_->set_attr("tiers", tier_names());
  log_->set_attr("topology_table", layout_.topo->table());
  std::vector<std::int64_t> nodes, pods, sites;
  for (int r = 0; r < mpi_.size(); ++r) {
    nodes.push_back(layout_.topo->location(r).node);
    pods.push_back(layout_.topo->location(r).pod);
    sites.push_back(layout_.topo->location(r).site);
  }
  log_->set_attr("rank_node", nodes);
  log_->set_attr("rank_pod", pods);
  log_->set_attr("rank_site", sites);
  log_->set_attr("sync_algorithm", std::string(algorithm_name(sync_algo_)));
  log_->set_attr("sync_buckets", std::int64_t{sync_ ? sync_->buckets() : 0});
  if (sync_) log_->set_attr("sync_bucket_elements", sync_->bucket_elements());
  log_->set_attr("hostnames", mpi_.hostnames());
  // What the step simulator's device profile needs to undo: ranks sharing the machine's cores.
  log_->set_attr("host_cores", static_cast<std::int64_t>(std::thread::hardware_concurrency()));
  log_->set_attr("host_ranks", std::int64_t{mpi_.local_size()});
  log_->set_attr("start_time", utc_now());
  log_->set_attr("command", opts_.command);
  log_->set_attr("data", data_->describe());
  log_->set_attr("parameters", parameter_count(cfg_.model));
  log_->set_attr("flops_per_token", static_cast<std::int64_t>(flops_per_token_));
  log_->set_attr("peak_flops_per_rank", static_cast<std::int64_t>(peak_flops_));
  log_->set_attr("blas", blas_info());
  log_->set_attr("first_step", std::int64_t{first_step_});
  if (!opts_.resume.empty()) log_->set_attr("resumed_from", opts_.resume);
  // The Slurm job this run is, when it is one.
  for (const char* var : {"SLURM_JOB_ID", "SLURM_JOB_NAME", "SLURM_JOB_NODELIST", "SLURM_JOB_NUM_NODES", "SLURM_NTASKS",
                          "SLURM_NTASKS_PER_NODE", "SLURM_JOB_PARTITION", "SLURM_CLUSTER_NAME", "SLURM_SUBMIT_DIR"}) {
    if (const char* v = std::getenv(var)) {
      std::string name = var;
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char ch) { return std::tolower(ch); });
      log_->set_attr(name, std::string(v));
    }
  }
}

void Trainer::train_step(int step, StepStats& s) {
  const auto& p = cfg_.parallel;
  const ParamSet& ps = model_->params();
  ops::zero(ps.flat_grads());
  if (sync_) sync_->begin_step();
  blocking_comm_ = 0;
  watchdog_->phase("forward and backward, with their tensor- and pipeline-parallel exchanges");
  PipelineRunner::Times pt = pipeline_.run(step, *model_, *data_, *layout_.comms.pp, [this](bool before, bool last, int chunk) {
    if (!sync_ || !(last || sync_->every_microbatch())) return;
    arm_sync_ = before;
    if (before)
      sync_->begin_backward(last, chunk);
    else
      blocking([&] { sync_->end_backward(); });  // without overlap, ZeRO-2 and 3 start the micro-batch's syncs here
  });
  s.forward = pt.forward;
  s.backward = pt.backward;
  s.pipeline_wait = pt.wait;
  s.pipeline = pt.span;
  s.backward_end = pt.backward_end - s.start;
  s.exposed += blocking_comm_ + s.pipeline_wait;
  double t0;
  if (layout_.comms.embed) {
    // The tied embedding: the first stage's gradient (from the input) and the last's (from
    // the head) make one; then data-parallel sync may take its bucket.
    t0 = now_seconds();
    layout_.comms.embed->all_reduce(ps.grad(wte_).buffer(), ReduceOp::sum, Algorithm::ring);
    if (sync_) sync_->grad_ready(wte_);  // with ZeRO-2 and 3 it may wait for a staging buffer
    s.exposed += now_seconds() - t0;
  }
  if (sync_) {
    watchdog_->phase("waiting for the data-parallel gradient sync");
    s.exposed += sync_->finish();
    s.comm = sync_->busy();
    s.sync_start = sync_->first_start() - s.start;
    s.compression_error = sync_->compression_error();
  }
  // The step's loss: every data-parallel replica's mean, averaged (the last stage holds
  // it; tensor-parallel rank 0 of each replica speaks).
  double mine = last_stage_ && layout_.coord.tp == 0 ? pt.loss_sum / p.microbatches / p.dp : 0.0;
  watchdog_->phase("the loss all-reduce");
  s.loss = sum_over(MPI_COMM_WORLD, mine);
  t0 = now_seconds();
  watchdog_->phase("the gradient-norm all-reduce");
  s.grad_norm = global_grad_norm();
  s.lr = learning_rate(cfg_.train, step);
  // Job-wide, so every rank takes the same branch: the loss is, and under an outer sync each
  // island's norm is its own.
  s.nonfinite = !std::isfinite(s.loss) || !std::isfinite(s.grad_norm);
  if (outer_) s.nonfinite = max_over(MPI_COMM_WORLD, s.nonfinite ? 1.0 : 0.0) > 0;
  if (!s.nonfinite) {
    watchdog_->phase("the optimizer step");
    opt_->step(ps, s.lr, clip_scale(s.grad_norm, cfg_.train.clip));
    watchdog_->phase("the ZeRO parameter all-gather");
    if (sync_) s.exposed += sync_->gather_params();
  }
  // The outer schedule follows step numbers, skipped steps included, so a resume can tell
  // which syncs were in flight.
  if (outer_) {
    watchdog_->phase("the outer sync");
    const OuterSync::Progress o = outer_->advance(ps, step);
    s.outer_fragments = o.started;
    s.outer_time = o.exposed;
    s.exposed += o.exposed;
  }
  s.optimizer = now_seconds() - t0;
}

// The mean loss over eval.batches held-out global batches: each replica's share, averaged
// over the replicas (collective over the job).
double Trainer::evaluate(int steps_done) {
  const auto& p = cfg_.parallel;
  double mine = 0;
  for (int k = 0; k < cfg_.eval.batches; ++k)
    mine += pipeline_.evaluate(k, *model_, *eval_data_, *layout_.comms.pp);
  if (sync_) sync_->drop_all();  // ZeRO-3 that keeps units gathered: the next step gathers its own
  const bool speaks = last_stage_ && layout_.coord.tp == 0;
  const double loss = sum_over(MPI_COMM_WORLD, speaks ? mine / p.microbatches / p.dp / cfg_.eval.batches : 0.0);
  if (mpi_.rank() == 0 && !log::quiet()) log::info("eval after step {}: held-out loss {:.4f}", steps_done, loss);
  return loss;
}

// sqrt of the sum of squares of every gradient element of the model, each counted once
// (norm_ranges_): of the island's gradient under an outer sync, which islands clip alone.
double Trainer::global_grad_norm() {
  const ParamSet& ps = model_->params();
  const double mine = ops::sum_squares(ps.flat_grads(), norm_ranges_);
  return std::sqrt(sum_over(island_, mine));
}

void Trainer::record_step(const StepStats& s) {
  const double tokens = static_cast<double>(cfg_.train.batch) * cfg_.model.context;
  const StepView v = view_step(MPI_COMM_WORLD, s, tokens, flops_per_token_, peak_flops_);
  const StepRecord r = metrics_.record(v);
  // For the console and the summary: the slowest rank's exposure and traffic.
  const double slowest = v.slowest;
  const double exposed = max_over(MPI_COMM_WORLD, s.exposed);
  std::array<double, kTiers> tier_bytes{};
  for (Tier t : kAllTiers)
    tier_bytes[static_cast<std::size_t>(index(t))] = max_over(MPI_COMM_WORLD, static_cast<double>(s.traffic.wire_at(t)));
  step_times_.push_back(slowest);
  log_->record(r);
  if (mpi_.rank() != 0) return;
  const int step = s.step;
  StepLine line{step + 1, cfg_.train.steps, s.loss, s.lr, s.grad_norm, tokens / slowest, slowest, exposed / slowest};
  log::info("{}", format_step_line(line));
  if (step - first_step_ >= 2) {  // the first steps warm caches and allocators
    sum_tokens_per_s_ += line.tokens_per_s;
    sum_exposed_share_ += line.comm_share;
    for (std::size_t t = 0; t < kTiers; ++t) sum_tier_bytes_[t] += tier_bytes[t];
    ++summary_steps_;
  }
}

void Trainer::run() {
  // Per-rank figures known at start-up, as root attributes.
  auto state = gather_to_root(MPI_COMM_WORLD, {static_cast<double>(opt_->state_bytes())});
  log_->set_attr("optimizer_state_bytes", std::vector<std::int64_t>(state.begin(), state.end()));
  auto slots = gather_to_root(MPI_COMM_WORLD, {static_cast<double>(pipeline_.slots() * cfg_.parallel.virtual_stages)});
  log_->set_attr("activation_slots", std::vector<std::int64_t>(slots.begin(), slots.end()));
  if (!log::quiet()) {
    log::info("fibertrain {}: {} parameters, {} rank{}, {}", FIBERTRAIN_VERSION, format_count(parameter_count(cfg_.model)),
              mpi_.size(), mpi_.size() == 1 ? "" : "s", data_->describe());
    if (mpi_.size() > 1) {
      std::string layout = describe_layout(layout_);
      log::info("{}", layout.substr(0, layout.find_last_not_of('\n') + 1));
      log::info("gradient sync: {} over {} bucket{}{}", algorithm_name(sync_algo_), sync_ ? sync_->buckets() : 0,
                sync_ && sync_->buckets() == 1 ? "" : "s",
                cfg_.parallel.zero ? fmt::format(", ZeRO-{}", cfg_.parallel.zero) : "");
    }
    if (first_step_ > 0) log::info("resuming at step {} from {}", first_step_, opts_.resume);
  }
  watchdog_ = std::make_unique<Watchdog>(MPI_COMM_WORLD, mpi_.hostnames(),
                                         WatchdogLimits{cfg_.train.watchdog, cfg_.train.watchdog_min});
  // A step's traffic is all since the previous step's: a delayed outer sync's worker sends
  // between steps too. Evaluation's pipeline messages count in the step they follow.
  traffic_mark_ = traffic().snapshot();
  for (int step = first_step_; step < cfg_.train.steps; ++step) {
    StepStats s;
    s.step = step;
    s.start = now_seconds();
    watchdog_->step_begin(step);
    train_step(step, s);
    s.step_time = now_seconds() - s.start;
    watchdog_->step_end(s.step_time);
    if (step == first_step_ && cfg_.parallel.zero == 3) {
      // What the gather policy costs: the parameters each rank held whole at once.
      auto held = gather_to_root(MPI_COMM_WORLD, {static_cast<double>(sync_ ? sync_->peak_held() : 0)});
      log_->set_attr("parameters_held_peak", std::vector<std::int64_t>(held.begin(), held.end()));
    }
    bool last = step + 1 == cfg_.train.steps;
    if (eval_data_ && ((step + 1) % cfg_.eval.every == 0 || last)) {
      watchdog_->phase("the held-out evaluation");
      const double t0 = now_seconds();
      s.eval_loss = evaluate(step + 1);
      s.eval_time = now_seconds() - t0;
    }
    // Outer syncs still in flight after the last step finish on the wire, in its row; they
    // land in a run that resumes.
    if (last && outer_) outer_->settle();
    const TrafficSnapshot now = traffic().snapshot();
    s.traffic = now - traffic_mark_;
    traffic_mark_ = now;
    watchdog_->phase("the step's metrics");
    if (step % cfg_.metrics.every == 0 || step + 1 == cfg_.train.steps || s.nonfinite) record_step(s);
    if (s.nonfinite) stop_or_skip(s);
    if (last) break;
    // One small all-reduce per step: every rank stops after the same step, whichever got the signal.
    watchdog_->phase("the stop-signal check");
    if (int sig = static_cast<int>(max_over(MPI_COMM_WORLD, stop_signal()))) stop_on_signal(step + 1, sig);
    if (!cfg_.checkpoint.path.empty() && cfg_.checkpoint.every > 0 && (step + 1) % cfg_.checkpoint.every == 0)
      log::info("checkpoint: {} (step {})", save(step + 1), step + 1);
  }
  log_->flush();
  if (!cfg_.checkpoint.path.empty()) log::info("checkpoint: {} (step {})", save(cfg_.train.steps), cfg_.train.steps);
  watchdog_.reset();
  print_summary();
}

void Trainer::stop_on_signal(int steps_done, int sig) {
  std::string saved = "no checkpoint (checkpoint.path is unset)";
  if (!cfg_.checkpoint.path.empty()) {  // first: the step log's disk may be the fuller one
    std::string path = save(steps_done);
    saved = fmt::format("checkpoint {}: continue with --resume {}", path, path);
  }
  log_->flush();
  watchdog_.reset();
  if (mpi_.rank() == 0)
    log::notice("stopped by {} after step {} of {}; {}", signal_name(sig), steps_done, cfg_.train.steps, saved);
  throw JobStopped(128 + sig);
}

void Trainer::stop_or_skip(const StepStats& s) {
  std::string what = fmt::format("step {}: the loss is {} and the gradient norm {}", s.step + 1, s.loss, s.grad_norm);
  if (cfg_.train.nonfinite == "skip") {
    if (mpi_.rank() == 0) log::warn("{}: step skipped, no update (train.nonfinite: skip)", what);
    return;
  }
  log_->flush();
  run_phase(MPI_COMM_WORLD, [&] {
    throw UserError(fmt::format("{}: training diverged; the step log holds it. Lower train.lr, or set "
                                "train.nonfinite: skip to skip such steps",
                                what));
  });
}

void Trainer::print_summary() const {
  if (mpi_.rank() != 0) return;
  if (summary_steps_ > 0) {
    std::string tiers;
    for (Tier t : kAllTiers) {
      double b = sum_tier_bytes_[static_cast<std::size_t>(index(t))] / summary_steps_;
      if (b > 0) tiers += fmt::format("{}{} {}B", tiers.empty() ? "" : ", ", tier_name(t), format_count(b));
    }
    log::info("summary: {} tok/s, communication exposed {:.1f}% of step time{}", format_count(sum_tokens_per_s_ / summary_steps_),
              100.0 * sum_exposed_share_ / summary_steps_, tiers.empty() ? "" : "; per rank per step: " + tiers);
  }
  if (log_->writes_file()) log::info("step log: {}", opts_.out);
}

}  // namespace ft
