#include "trainer/trainer.h"

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
#include "trainer/progress.h"

namespace ft {
namespace {

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

}  // namespace

// Columns of /steps, in order. Documented in docs/metrics.md.
struct Trainer::Columns {
  int step, loss, lr, grad_norm, tokens, tokens_per_s, model_flops, mfu;
  int bubble, compression_error;
  int step_time, forward_time, backward_time, optimizer_time, comm_exposed, comm_time, sync_start, backward_end;
  int pipeline_time, pipeline_wait;
  std::array<int, kTiers> busy, bytes_wire, bytes_logical, messages, compression_ratio, codec_time;
  std::array<std::array<int, kTiers>, 3> bytes_kind;  // dp, tp, pp
};

namespace {

MetricsSchema step_schema(Trainer::Columns& c) {
  MetricsSchema s;
  c.step = s.add("step", "", Scope::job, "optimizer step index, from 0");
  c.loss = s.add("loss", "nats", Scope::job, "mean cross-entropy of the step's global batch");
  c.lr = s.add("lr", "", Scope::job, "learning rate used by the step");
  c.grad_norm = s.add("grad_norm", "", Scope::job, "global L2 norm of the gradient before clipping");
  c.tokens = s.add("tokens", "tokens", Scope::job, "tokens trained on in the step (global batch x context)");
  c.tokens_per_s = s.add("tokens_per_s", "tokens/s", Scope::job, "tokens / slowest rank's step_time");
  c.model_flops = s.add("model_flops_per_s", "FLOP/s", Scope::job, "model FLOPs of the step (6N + 12LTC per token) / step time");
  c.mfu = s.add("mfu", "", Scope::job, "model_flops_per_s / (ranks x peak FLOP/s per rank)");
  c.bubble = s.add("bubble", "", Scope::job,
                   "pipeline idle share: mean over ranks of 1 - (forward + backward time) / the slowest rank's "
                   "pipeline_time");
  c.compression_error = s.add("compression_error", "", Scope::job,
                              "||compressed - dense|| / ||dense|| of the gradient sum (metrics.compression_error)");
  c.step_time = s.add("step_time", "s", Scope::per_rank, "wall time of the whole optimizer step");
  c.forward_time = s.add("forward_time", "s", Scope::per_rank, "time in forward passes");
  c.backward_time = s.add("backward_time", "s", Scope::per_rank, "time in backward passes");
  c.optimizer_time = s.add("optimizer_time", "s", Scope::per_rank, "time in clipping and the AdamW update");
  c.comm_exposed = s.add("comm_exposed", "s", Scope::per_rank, "time the compute thread waited on communication");
  c.comm_time = s.add("comm_time", "s", Scope::per_rank, "time the gradient sync ran, overlapped or not");
  c.sync_start = s.add("sync_start", "s", Scope::per_rank, "when the first gradient bucket's sync started, from step start");
  c.backward_end = s.add("backward_end", "s", Scope::per_rank, "when the last backward pass ended, from step start");
  c.pipeline_time = s.add("pipeline_time", "s", Scope::per_rank, "wall time of the step's forward/backward schedule");
  c.pipeline_wait = s.add("pipeline_wait", "s", Scope::per_rank,
                          "time waiting for activations or gradients from neighbouring stages");
  for (Tier t : kAllTiers) {
    auto i = static_cast<std::size_t>(index(t));
    std::string tier(tier_name(t));
    c.busy[i] = s.add("busy/" + tier, "s", Scope::per_rank, "time this rank's " + tier + " links were busy sending");
    c.bytes_wire[i] = s.add("bytes_wire/" + tier, "bytes", Scope::per_rank, "bytes this rank put on " + tier + " links");
    c.bytes_logical[i] = s.add("bytes_logical/" + tier, "bytes", Scope::per_rank,
                               "bytes those messages stood for before compression, " + tier);
    c.messages[i] = s.add("messages/" + tier, "", Scope::per_rank, "messages this rank sent on " + tier + " links");
    c.compression_ratio[i] = s.add("compression_ratio/" + tier, "", Scope::per_rank,
                                   "bytes_logical / bytes_wire on " + tier + " links (1 when dense or idle)");
    c.codec_time[i] = s.add("codec_time/" + tier, "s", Scope::per_rank, "time encoding and decoding for " + tier);
  }
  for (Traffic k : {Traffic::dp, Traffic::tp, Traffic::pp})
    for (Tier t : kAllTiers)
      c.bytes_kind[static_cast<std::size_t>(k)][static_cast<std::size_t>(index(t))] =
          s.add(fmt::format("bytes_{}/{}", traffic_name(k), tier_name(t)), "bytes", Scope::per_rank,
                fmt::format("bytes of {} traffic this rank put on {} links", traffic_name(k), tier_name(t)));
  return s;
}

int blas_threads_for(const Config& cfg, const MpiRuntime& mpi) {
  if (cfg.threads > 0) return cfg.threads;
  int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, cores / std::max(1, mpi.local_size()));
}

}  // namespace

struct Trainer::StepStats {
  double loss = 0, lr = 0, grad_norm = 0;
  double start = 0, step = 0, forward = 0, backward = 0, optimizer = 0, exposed = 0, comm = 0;
  double pipeline = 0, pipeline_wait = 0;
  double compression_error = 0;
  double sync_start = 0, backward_end = 0;
  TrafficSnapshot traffic;
};

std::int64_t parameter_count(const ModelConfig& m) {
  std::int64_t C = m.width, V = m.vocab, T = m.context, L = m.layers;
  std::int64_t block = 2 * C + (3 * C * C + 3 * C) + (C * C + C) + 2 * C + (4 * C * C + 4 * C) + (4 * C * C + C);
  return V * C + T * C + L * block + 2 * C;
}

double model_flops_per_token(const ModelConfig& m) {
  return 6.0 * static_cast<double>(parameter_count(m)) + 12.0 * m.layers * m.context * m.width;
}

TierCodecs tier_codecs(const Config& cfg, const Communicator& dp, Algorithm algo) {
  TierCodecs codecs{};
  const auto& z = cfg.compression;
  bool any = false;
  for (auto [tier, c] : {std::pair{Tier::intra_node, &z.intra_node}, std::pair{Tier::inter_node, &z.inter_node},
                         std::pair{Tier::inter_pod, &z.inter_pod}, std::pair{Tier::inter_site, &z.inter_site}}) {
    if (!*c || (*c)->codec == "none") continue;
    CodecSpec& s = codecs[static_cast<std::size_t>(index(tier))];
    s.kind = *codec_from_name((*c)->codec);
    s.block = (*c)->block > 0 ? (*c)->block : s.block;
    s.ratio = (*c)->ratio;
    s.count = (*c)->count;
    s.rank = (*c)->rank > 0 ? (*c)->rank : s.rank;
    s.start = (*c)->start;
    s.error_feedback = (*c)->error_feedback;
    s.seed = cfg.train.seed;
    any = true;
  }
  if (!any) return codecs;
  if (cfg.parallel.zero == 1)
    throw UserError("compression applies to the gradient all-reduce; ZeRO-1 (parallel.zero: 1) reduce-scatters, "
                    "uncompressed: set parallel.zero: 0 or remove the compression section");
  if (algo == Algorithm::native)
    throw UserError("compression needs sync.algorithm ring or hierarchical: the library's native all-reduce cannot "
                    "carry codecs");
  // The tiers the sync runs at: each level of the hierarchy, or one (the highest the group
  // spans) for a flat ring. Casts may compress any of them; the others only the top one.
  std::vector<Tier> levels;
  if (algo == Algorithm::hierarchical && dp.hierarchy().even && dp.hierarchy().levels.size() > 1) {
    for (const auto& l : dp.hierarchy().levels) levels.push_back(l.tier);
  } else {
    if (dp.size() > 1) levels.push_back(dp.topology().span(dp.members()));
  }
  for (Tier t : kAllTiers) {
    const CodecSpec& s = codecs[static_cast<std::size_t>(index(t))];
    if (!s.lossy()) continue;
    std::string key = fmt::format("compression.{}", tier_name(t));
    if (std::find(levels.begin(), levels.end(), t) == levels.end()) {
      log::warn("{} has no effect: the data-parallel sync ({}) has no {} step", key, algorithm_name(algo), tier_name(t));
      continue;
    }
    bool cast = s.kind == CodecKind::fp16 || s.kind == CodecKind::bf16;
    if (!cast && t != levels.back())
      throw UserError(fmt::format("{}.codec {}: codecs other than fp16 and bf16 apply only to the top tier of the "
                                  "data-parallel sync ({} here); below it use fp16, bf16 or none",
                                  key, codec_name(s.kind), tier_name(levels.back())));
  }
  return codecs;
}

Algorithm resolve_sync_algorithm(const std::string& name, const Communicator& dp) {
  if (name != "auto") return *algorithm_from_name(name);
  return dp.hierarchy().levels.size() > 1 ? Algorithm::hierarchical : Algorithm::ring;
}

std::unique_ptr<Trainer> Trainer::create(const Config& cfg, const RunOptions& opts, const MpiRuntime& mpi) {
  std::shared_ptr<const Topology> topo;
  run_phase(MPI_COMM_WORLD, [&] {
    topo = make_topology(cfg.topology, mpi);
    if (cfg.device == "cuda") {
      select_cuda_device(mpi.local_rank());  // one GPU per rank, before any allocation or NCCL
      ops::set_bf16_matmuls(cfg.precision == "bf16");
    }
    ops::set_cpu_async(cfg.device == "cpu-async");
  });
  std::optional<Layout> layout;
  run_phase(MPI_COMM_WORLD, [&] { layout.emplace(make_layout(cfg, mpi, topo)); });
  layout->comms.set_producer_stream(&ops::compute_stream(compute_device(cfg)));
  std::unique_ptr<Trainer> t;
  run_phase(MPI_COMM_WORLD, [&] { t.reset(new Trainer(cfg, opts, mpi, std::move(*layout))); });
  return t;
}

Trainer::Trainer(const Config& cfg, const RunOptions& opts, const MpiRuntime& mpi, Layout layout)
    : cfg_(cfg), opts_(opts), mpi_(mpi), layout_(std::move(layout)),
      columns_(std::make_unique<Columns>()), schema_(step_schema(*columns_)) {
  set_blas_threads(blas_threads_for(cfg, mpi));
  const auto& p = cfg.parallel;
  Communicator& dp = *layout_.comms.dp;
  dp.set_chunk_bytes(cfg.sync.chunk.value);
  sync_algo_ = resolve_sync_algorithm(cfg.sync.algorithm, dp);
  micro_batch_ = cfg.train.batch / (p.dp * p.microbatches);
  const GptShape& shape = cfg.model;
  Device device = compute_device(cfg);
  data_ = open_batches(cfg.data, cfg.model, cfg.train.batch, cfg.train.seed);
  // Pipeline stages hold contiguous, balanced block ranges (the first ones one more when
  // the layers do not divide).
  const int stage = layout_.coord.pp;
  first_stage_ = stage == 0;
  last_stage_ = stage == p.pp - 1;
  StagePlan plan{p.tp, layout_.coord.tp, 0, 0, first_stage_, last_stage_};
  for (int s = 0; s <= stage; ++s) {
    plan.first_layer += plan.num_layers;
    plan.num_layers = cfg.model.layers / p.pp + (s < cfg.model.layers % p.pp ? 1 : 0);
  }
  schedule_ = make_schedule(p.schedule, p.pp, stage, p.microbatches);
  slots_ = max_live(schedule_);
  model_ = std::make_unique<GptStage>(shape, plan, micro_batch_, slots_, DType::f32, device);
  model_->init(cfg.train.seed);
  if (p.pp > 1) wte_ = model_->params().index("wte");
  recv_act_ = Tensor({micro_batch_, cfg.model.context, cfg.model.width}, DType::f32, device);
  recv_grad_ = Tensor({micro_batch_, cfg.model.context, cfg.model.width}, DType::f32, device);
  std::vector<FlatRange> owned{{0, model_->params().numel()}};
  TierCodecs codecs = tier_codecs(cfg, dp, sync_algo_);
  if (p.dp > 1) {
    sync_ = std::make_unique<GradSync>(dp, model_->params(), sync_algo_, cfg.sync.bucket.value, p.zero == 1,
                                       cfg.sync.overlap, codecs, cfg.metrics.compression_error);
    owned = sync_->owned();
  }
  StageHooks hooks;
  if (p.tp > 1) {
    // Megatron's f and g: the activations after each row-parallel layer, and the input
    // gradients before each LayerNorm, summed over the tensor-parallel group.
    Communicator* tp = layout_.comms.tp.get();
    tp->set_chunk_bytes(cfg.sync.chunk.value);
    hooks.tp_all_reduce = [this, tp](const Tensor& t) {
      double t0 = now_seconds();
      tp->all_reduce(t.buffer(), ReduceOp::sum, Algorithm::ring);
      blocking_comm_ += now_seconds() - t0;
    };
  }
  // The tied embedding's gradient is complete only once the first and last stages have
  // summed theirs, after the schedule; its bucket is released then.
  if (sync_) hooks.grad_ready = [this](int param) {
    if (arm_sync_ && !(param == wte_ && layout_.comms.embed)) sync_->grad_ready(param);
  };
  layout_.comms.pp->set_chunk_bytes(cfg.sync.chunk.value);
  model_->set_hooks(hooks);
  opt_ = std::make_unique<AdamW>(model_->params(), cfg.train, owned);
  // The gradient norm counts each element of the model once: tensor-parallel shards on
  // every TP rank but replicated tensors on TP rank 0 only; of the data-parallel replicas,
  // the one that owns the element (ZeRO-1) or replica 0.
  // The tied embedding counts on the first stage only.
  for (const ParamInfo& info : model_->params().infos()) {
    if (info.shard == Shard::replicated && layout_.coord.tp != 0) continue;
    if (info.name == "wte" && !first_stage_) continue;
    for (const FlatRange& o : owned) {
      if (p.zero == 0 && layout_.coord.dp != 0) break;
      std::int64_t b = std::max(o.begin, info.offset), e = std::min(o.end, info.offset + info.numel());
      if (b < e) norm_ranges_.push_back({b, e});
    }
  }
  tokens_ = Tensor({micro_batch_, cfg.model.context}, DType::i32, device);
  targets_ = Tensor({micro_batch_, cfg.model.context}, DType::i32, device);
  tokens_host_.resize(static_cast<std::size_t>(tokens_.numel()));
  targets_host_.resize(tokens_host_.size());
  if (!opts.resume.empty()) {
    CheckpointState st = load_checkpoint(opts.resume, cfg, *model_, *opt_, data_->tokens());
    first_step_ = st.steps_done;
    if (sync_ && sync_->compressed()) {
      auto saved = load_rank_state(opts.resume, cfg, mpi.rank(), mpi.size());
      if (!saved || !sync_->restore_codec_state(std::move(*saved)))
        log::warn("{} was written by another layout or codec set: error-feedback residuals start from zero",
                  opts.resume);
    }
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
  log_->set_attr("layout", fmt::format("tp={} pp={} dp={} order={} microbatches={} schedule={} zero={}", p.tp, p.pp, p.dp,
                                       p.order, p.microbatches, p.schedule, p.zero));
  log_->set_attr("bubble_theory", bubble_fraction(p.pp, p.microbatches));
  log_->set_attr("topology", layout_.topo->describe());
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
  const int dp_rank = layout_.coord.dp, stage = layout_.coord.pp;
  Communicator& pp = *layout_.comms.pp;
  const ParamSet& ps = model_->params();
  ops::zero(ps.flat_grads());
  if (sync_) sync_->begin_step();
  blocking_comm_ = 0;
  double loss_sum = 0;
  // Each micro-batch's loss is a mean over its tokens; the step's loss is their mean over
  // the micro-batches here and, through the averaging all-reduce, over data-parallel ranks.
  const double loss_scale = 1.0 / p.microbatches;
  int live = 0;
  const double t_sched = now_seconds();
  for (const PipeAction& a : schedule_) {
    const int slot = a.microbatch % slots_;
    if (a.kind == PipeAction::forward) {
      if (++live > slots_) throw std::logic_error("pipeline holds more micro-batches than it has slots");
      int first = dp_rank * (cfg_.train.batch / p.dp) + a.microbatch * micro_batch_;
      data_->fill(step, first, micro_batch_, tokens_host_.data(), targets_host_.data());
      ops::upload(tokens_, tokens_host_.data());
      ops::upload(targets_, targets_host_.data());
      double t0 = now_seconds();
      if (!first_stage_) pp.recv(recv_act_.buffer(), stage - 1);
      double t1 = now_seconds();
      double loss = model_->forward(slot, &tokens_, &recv_act_, &targets_);
      s.forward += now_seconds() - t1;
      s.pipeline_wait += t1 - t0;
      if (last_stage_) loss_sum += loss;
      if (!last_stage_) pp.send(model_->output(slot).buffer(), stage + 1);
    } else {
      --live;
      double t0 = now_seconds();
      if (!last_stage_) pp.recv(recv_grad_.buffer(), stage + 1);
      double t1 = now_seconds();
      arm_sync_ = a.microbatch == p.microbatches - 1;  // the last backward completes each gradient
      model_->backward(slot, &recv_grad_, loss_scale);
      arm_sync_ = false;
      // A GPU's backward is timed whole. cpu-async is left queued: it is for finding
      // missing waits, and a drain here would hide them.
      if (tokens_.device() == Device::cuda) ops::synchronize(Device::cuda);
      s.backward += now_seconds() - t1;
      s.pipeline_wait += t1 - t0;
      if (!first_stage_) pp.send(model_->input_grad().buffer(), stage - 1);
    }
  }
  double t0 = now_seconds();
  pp.synchronize();  // the last sends
  s.pipeline_wait += now_seconds() - t0;
  s.pipeline = now_seconds() - t_sched;
  s.backward_end = now_seconds() - s.start;
  s.exposed += blocking_comm_ + s.pipeline_wait;
  if (layout_.comms.embed) {
    // The tied embedding: the first stage's gradient (from the input) and the last's (from
    // the head) make one; then data-parallel sync may take its bucket.
    t0 = now_seconds();
    layout_.comms.embed->all_reduce(ps.grad(wte_).buffer(), ReduceOp::sum, Algorithm::ring);
    s.exposed += now_seconds() - t0;
    if (sync_) sync_->grad_ready(wte_);
  }
  if (sync_) {
    s.exposed += sync_->finish();
    s.comm = sync_->busy();
    s.sync_start = sync_->first_start() - s.start;
    s.compression_error = sync_->compression_error();
  }
  t0 = now_seconds();
  s.grad_norm = global_grad_norm();
  s.lr = learning_rate(cfg_.train, step);
  opt_->step(ps, s.lr, clip_scale(s.grad_norm, cfg_.train.clip));
  if (sync_) s.exposed += sync_->gather_params();
  s.optimizer = now_seconds() - t0;
  // The step's loss: every data-parallel replica's mean, averaged (the last stage holds
  // it; tensor-parallel rank 0 of each replica speaks).
  double mine = last_stage_ && layout_.coord.tp == 0 ? loss_sum / p.microbatches / p.dp : 0.0;
  s.loss = sum_over(MPI_COMM_WORLD, mine);
}

// sqrt of the sum of squares of every gradient element of the model, each counted once
// (norm_ranges_).
double Trainer::global_grad_norm() {
  const ParamSet& ps = model_->params();
  double mine = 0;
  for (const FlatRange& r : norm_ranges_) mine += ops::sum_squares(Tensor::view_of(ps.flat_grads(), r.begin, {r.size()}));
  return std::sqrt(sum_over(MPI_COMM_WORLD, mine));
}

void Trainer::record_step(int step, const StepStats& s) {
  const Columns& c = *columns_;
  StepRecord r(schema_);
  const double tokens = static_cast<double>(cfg_.train.batch) * cfg_.model.context;
  r.set(c.step, step);
  r.set(c.loss, s.loss);
  r.set(c.lr, s.lr);
  r.set(c.grad_norm, s.grad_norm);
  r.set(c.tokens, tokens);
  r.set(c.step_time, s.step);
  r.set(c.forward_time, s.forward);
  r.set(c.backward_time, s.backward);
  r.set(c.optimizer_time, s.optimizer);
  r.set(c.comm_exposed, s.exposed);
  r.set(c.comm_time, s.comm);
  r.set(c.sync_start, s.sync_start);
  r.set(c.backward_end, s.backward_end);
  r.set(c.pipeline_time, s.pipeline);
  r.set(c.pipeline_wait, s.pipeline_wait);
  for (Tier t : kAllTiers) {
    auto i = static_cast<std::size_t>(index(t));
    r.set(c.busy[i], s.traffic.busy[i]);
    r.set(c.bytes_wire[i], static_cast<double>(s.traffic.wire_at(t)));
    r.set(c.bytes_logical[i], static_cast<double>(s.traffic.logical_at(t)));
    double messages = 0;
    for (const auto& kind : s.traffic.messages) messages += static_cast<double>(kind[i]);
    r.set(c.messages[i], messages);
    double wire = static_cast<double>(s.traffic.wire_at(t));
    r.set(c.compression_ratio[i], wire > 0 ? static_cast<double>(s.traffic.logical_at(t)) / wire : 1.0);
    r.set(c.codec_time[i], s.traffic.codec[i]);
    for (std::size_t k = 0; k < 3; ++k) r.set(c.bytes_kind[k][i], static_cast<double>(s.traffic.wire[k][i]));
  }
  // Job-wide rates use the slowest rank's step time.
  const double slowest = max_over(MPI_COMM_WORLD, s.step);
  const double exposed = max_over(MPI_COMM_WORLD, s.exposed);
  std::array<double, kTiers> tier_bytes{};
  for (Tier t : kAllTiers)
    tier_bytes[static_cast<std::size_t>(index(t))] = max_over(MPI_COMM_WORLD, static_cast<double>(s.traffic.wire_at(t)));
  step_times_.push_back(slowest);
  r.set(c.tokens_per_s, tokens / slowest);
  r.set(c.model_flops, tokens * flops_per_token_ / slowest);
  r.set(c.mfu, tokens * flops_per_token_ / slowest / (peak_flops_ * mpi_.size()));
  // Idle share of the step's pipeline span (the slowest stage's schedule): a stage that
  // finishes early idles until the last one does, as in the theory's (pp-1)/(m+pp-1).
  const double span = max_over(MPI_COMM_WORLD, s.pipeline);
  const double idle = span > 0 ? 1.0 - (s.forward + s.backward) / span : 0.0;
  r.set(c.bubble, sum_over(MPI_COMM_WORLD, idle) / mpi_.size());
  r.set(c.compression_error, s.compression_error);
  log_->record(r);
  if (mpi_.rank() != 0) return;
  StepLine line{step + 1, cfg_.train.steps, s.loss, s.lr, s.grad_norm, tokens / slowest, slowest, exposed / slowest};
  log::info("{}", format_step_line(line));
  if (step - first_step_ >= 2) {  // the first steps warm caches and allocators
    sum_tokens_per_s_ += line.tokens_per_s;
    sum_exposed_share_ += line.comm_share;
    for (std::size_t t = 0; t < kTiers; ++t) sum_tier_bytes_[t] += tier_bytes[t];
    ++summary_steps_;
  }
}

void Trainer::save(int steps_done) {
  std::string path = cfg_.checkpoint.path;
  if (auto at = path.find("{step}"); at != std::string::npos) path.replace(at, 6, std::to_string(steps_done));
  CheckpointState st{steps_done, data_->position(steps_done), data_->tokens()};
  // One data-parallel replica writes parameters; with ZeRO-1 every replica writes its part
  // of the optimizer state.
  // (Tensor-parallel ranks each write their shards; replicated tensors arrive from every TP
  // rank with the same values.)
  CheckpointRole role{layout_.coord.dp == 0, cfg_.parallel.zero == 1 || layout_.coord.dp == 0};
  save_checkpoint(MPI_COMM_WORLD, path, cfg_, *model_, *opt_, role, st, sync_ ? sync_->codec_state() : RankState{});
  log::info("checkpoint: {} (step {})", path, steps_done);
}

void Trainer::run() {
  // Per-rank figures known at start-up, as root attributes.
  auto state = gather_to_root(MPI_COMM_WORLD, {static_cast<double>(opt_->state_bytes())});
  log_->set_attr("optimizer_state_bytes", std::vector<std::int64_t>(state.begin(), state.end()));
  auto slots = gather_to_root(MPI_COMM_WORLD, {static_cast<double>(slots_)});
  log_->set_attr("activation_slots", std::vector<std::int64_t>(slots.begin(), slots.end()));
  if (!log::quiet()) {
    log::info("fibertrain {}: {} parameters, {} rank{}, {}", FIBERTRAIN_VERSION, format_count(parameter_count(cfg_.model)),
              mpi_.size(), mpi_.size() == 1 ? "" : "s", data_->describe());
    if (mpi_.size() > 1) {
      std::string layout = describe_layout(layout_);
      log::info("{}", layout.substr(0, layout.find_last_not_of('\n') + 1));
      log::info("gradient sync: {} over {} bucket{}{}", algorithm_name(sync_algo_), sync_ ? sync_->buckets() : 0,
                sync_ && sync_->buckets() == 1 ? "" : "s", cfg_.parallel.zero ? ", ZeRO-1" : "");
    }
    if (first_step_ > 0) log::info("resuming at step {} from {}", first_step_, opts_.resume);
  }
  for (int step = first_step_; step < cfg_.train.steps; ++step) {
    StepStats s;
    TrafficSnapshot before = traffic().snapshot();
    s.start = now_seconds();
    train_step(step, s);
    s.step = now_seconds() - s.start;
    s.traffic = traffic().snapshot() - before;
    if (step % cfg_.metrics.every == 0 || step + 1 == cfg_.train.steps) record_step(step, s);
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
