#include "trainer/claims/simulator.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <optional>

#include <fmt/format.h>

#include "comm/error.h"
#include "comm/grid.h"
#include "comm/grid_comms.h"
#include "comm/log.h"
#include "models/gpt.h"
#include "trainer/claims/sim_network.h"
#include "trainer/claims/sim_outer.h"
#include "trainer/loop/grad_sync.h"
#include "trainer/loop/layout.h"
#include "trainer/loop/outer_sync.h"
#include "trainer/loop/pipeline.h"
#include "trainer/loop/schedule.h"
#include "trainer/loop/trainer.h"

namespace ft {

std::string_view sim_kind_name(SimKind k) {
  static constexpr std::string_view names[kSimKinds] = {"gradient", "parameter", "tensor", "pipeline", "embedding", "outer"};
  return names[static_cast<int>(k)];
}

namespace {

Topology make_topo(const Config& cfg, int world) {
  const auto& t = cfg.topology;
  if (t.ranks_per_node <= 0 || !t.file.empty())
    throw UserError("simulate needs topology.ranks_per_node (with nodes_per_pod and pods_per_site): where the "
                    "ranks of the simulated cluster sit");
  if (world % t.ranks_per_node != 0)
    throw UserError(fmt::format("topology.ranks_per_node {} does not divide the {} ranks", t.ranks_per_node, world));
  try {
    return Topology::emulated(world, t.ranks_per_node, t.nodes_per_pod, t.pods_per_site);
  } catch (const std::invalid_argument& e) {
    throw UserError(fmt::format("topology: {}", e.what()));
  }
}

// The split of the DP groups at sync.outer's or parallel.shard_within's tier, when replicas
// sit in several units of it (as the trainer splits them).
std::optional<TierSplit> dp_split(const Config& cfg, const Grid& grid, const Topology& topo) {
  const std::optional<Tier> tier = dp_split_tier(cfg);
  if (!tier || cfg.parallel.dp < 2) return std::nullopt;
  TierSplit split = split_at_tier(grid, topo, *tier, dp_split_key(cfg));
  if (split.across.front().size() > 1) return split;
  return std::nullopt;  // every replica in one unit: plain data parallelism
}
// What a stage's compute thread does, in order.
struct Op {
  enum Kind { input, compute, tp, done, launch, use } kind;
  double seconds;  // compute: at a whole core's (or device's) rate; tp: the blocking all-reduces
  int a, b;        // input and done: (forward?, micro-batch); launch: (bucket, of the last micro-batch?);
                   // use: (unit, next unit)
  double demand = 1;  // compute: the share of the stage's ranks computing at any moment
  int chunk = 0;      // input and done: the action's chunk
};

// One stage, as the rank that stands for it sees the step.
struct StageSim {
  struct Use {
    int unit;
    int next;  // the unit fetched meanwhile (gpt_unit_uses)
    double seconds;  // compute, then its blocking tensor-parallel all-reduces
    double tp;
    bool reads = true;  // whether it reads the unit's parameters (not the lookup's backward)
  };
  int stage = 0;
  StagePlan plan;
  ParamSet params;
  std::vector<int> units;
  std::vector<FlatRange> buckets;
  std::vector<std::vector<Matrix>> tensors;  // per bucket, when compressed: its tensors, from its start
  // Per chunk and micro-batch, in the order the model runs them.
  std::vector<std::vector<Use>> forward, backward;
  std::vector<int> bucket_chunk;       // per bucket: its chunk's
  std::vector<int> ready_after;        // per bucket: the backward use after which its gradients are complete
  int deferred = -1;                   // the bucket that waits for the tied embedding's all-reduce
  std::vector<PipeAction> actions;
  std::vector<Op> program;
  std::size_t pc = 0;
  double remaining = 0;       // compute left of the current use, at a whole core's rate
  double demand = 1;          // the share of its ranks that compute at once (see compile)
  double blocked_until = 0;   // waiting for communication until then
  std::vector<std::vector<double>> forward_done, backward_done;  // per chunk and micro-batch
  double clock = 0, worker = 0, compute = 0;
  Tier worker_tier = Tier::intra_node;
  double staging[2] = {0, 0};
  int staged = 0;
  int folds[2] = {-1, -1};  // HSDP: the last micro-batch's bucket in each staging buffer, whose shard goes across once folded
  std::vector<double> gathered;  // ZeRO-3: when each unit's all-gather lands (-1: not issued)
};

class StepSimulator {
 public:
  StepSimulator(const Config& cfg, const DeviceProfile& dev)
      : cfg_(cfg),
        dev_(dev),
        grid_(cfg.parallel.tp, cfg.parallel.pp, cfg.parallel.dp, cfg.parallel.order),
        topo_(make_topo(cfg, grid_.world())),
        split_(dp_split(cfg, grid_, topo_)),
        dp_groups_(split_ ? split_->inner : grid_.groups(Dim::dp)),
        algo_(resolve_sync_algorithm(cfg.sync.algorithm, plan_hierarchy(topo_, dp_groups_.front()))),
        codecs_(sync_codecs()),
        net_(cfg, topo_, grid_, dev, codecs_, dp_groups_, out_) {
    out_.world = grid_.world();
    const auto& p = cfg.parallel;
    for (const std::string& w : idle_settings(cfg)) log::warn("{}", w);
    if (dp_split_tier(cfg) && p.dp > 1 && !split_)
      log::warn("{}", cfg.sync.outer ? outer_in_one_unit(cfg) : shard_in_one_unit(cfg));
    hsdp_ = split_ && !cfg.sync.outer;
    keep_gathered_ = p.zero == 3 && p.reshard == "step";
    zero_ = p.zero;
    m_ = p.microbatches;
    micro_batch_ = cfg.train.batch / (p.dp * p.microbatches);
    hierarchical_ = algo_ == Algorithm::hierarchical;  // native runs as a ring here
    dp_size_ = static_cast<int>(dp_groups_.front().size());
    for (Tier t : kAllTiers) (split_ && t >= *dp_split_tier(cfg) ? across_compressed_ : compressed_) |= codecs_[t].lossy();
    if (hsdp_) {
      // Per stage, its groups across the tier and the size of the shard each carries: the
      // shard of its members' position in their groups inside the units.
      std::map<int, std::pair<int, int>> inner_of;  // rank -> (its group inside, position there)
      for (std::size_t k = 0; k < split_->inner.size(); ++k) {
        const std::vector<int>& g = split_->inner[k];
        inner_plans_.emplace_back(topo_, g, hierarchical_);
        for (std::size_t i = 0; i < g.size(); ++i) inner_of[g[i]] = {static_cast<int>(k), static_cast<int>(i)};
      }
      across_.resize(static_cast<std::size_t>(p.pp));
      for (const std::vector<int>& g : split_->across) {
        Across& a = across_[static_cast<std::size_t>(grid_.coord(g.front()).pp)];
        a.plans.emplace_back(topo_, g, across_algo_ == Algorithm::hierarchical);
        a.inner.push_back(inner_of.at(g.front()));
      }
    }
    // The emulated cluster runs on the profiled machine: its ranks share its cores.
    cores_ = dev.host_cores;
  }

  Simulation run() {
    const auto& p = cfg_.parallel;
    const double tokens = static_cast<double>(micro_batch_) * cfg_.model.context;
    const std::size_t activations = static_cast<std::size_t>(micro_batch_) * cfg_.model.context * cfg_.model.width;
    for (int s = 0; s < p.pp; ++s) stages_.push_back(make_stage(s, tokens, activations));
    // Each pair of stages' messages per step, as the schedules send them (pipe_destination).
    std::map<std::pair<int, int>, int> messages;
    for (const StageSim& st : stages_)
      for (const PipeAction& a : st.actions)
        if (const PipePeer to = pipe_destination(p.pp, p.virtual_stages, st.stage, a); to.stage >= 0)
          ++messages[{st.stage, to.stage}];
    for (const auto& [pair, count] : messages) p2p_[pair] = net_.transfer(pair.first, pair.second, activations, count);
    if (hsdp_) prepare_shard_syncs();
    run_pipeline();
    after_pipeline();
    if (split_ && !hsdp_) {
      std::vector<std::vector<FlatRange>> fragments;
      for (const StageSim& st : stages_) fragments.push_back(cut_fragments(st.params, cfg_.sync.outer->fragments));
      simulate_outer_periods(*cfg_.sync.outer, dev_, grid_, topo_, *split_, fragments,
                             across_algo_ == Algorithm::hierarchical, across_compressed_, net_, out_);
    }
    net_.finish();
    out_.model_flops = model_flops_per_token(cfg_.model) * cfg_.train.batch * cfg_.model.context;
    out_.mfu = dev_.peak_flops > 0 ? out_.model_flops / (out_.step_time * out_.world * dev_.peak_flops) : 0;
    return out_;
  }

 private:
  // As the trainer takes them: the every-step sync's codecs (below the split tier, when the
  // groups are split) and those of the all-reduce across it (its tier and above).
  TierCodecs sync_codecs() {
    if (!split_) return step_tier_codecs(cfg_, topo_, dp_groups_.front(), algo_, std::nullopt);
    const Tier tier = *dp_split_tier(cfg_);
    TierCodecs codecs = step_tier_codecs(cfg_, topo_, dp_groups_.front(), algo_, tier);
    const std::vector<int>& across = split_->across.front();
    across_algo_ = resolve_sync_algorithm(cfg_.sync.algorithm, plan_hierarchy(topo_, across));
    const TierCodecs above = split_tier_codecs(cfg_, topo_, across, across_algo_);
    for (Tier t : kAllTiers)
      if (t >= tier) codecs[t] = above[t];
    return codecs;
  }

  // `activations`: the elements of a micro-batch's activations, what tensor parallelism all-reduces.
  StageSim make_stage(int s, double tokens, std::size_t activations) {
    const auto& p = cfg_.parallel;
    StageSim st;
    st.stage = s;
    st.plan = stage_plan(cfg_, GridCoord{0, s, 0});
    st.params = gpt_stage_params(cfg_.model, st.plan);
    st.units = gpt_units(st.params);
    const bool by_unit = zero_ == 3;
    const std::vector<int> chunks = gpt_param_chunks(st.params, st.plan);
    st.buckets = cut_buckets(st.params.infos(), kSimWireBytes, cfg_.sync.bucket.value, by_unit ? &st.units : nullptr,
                             &chunks);
    const GptShape& shape = cfg_.model;
    const double block = gpt_stage_forward_flops(shape, StagePlan{p.tp, 0, {{0, 1}}, false, false}, tokens);
    const double head =
        gpt_stage_forward_flops(shape, StagePlan{p.tp, 0, {{0, 0}}, false, true, st.plan.vocab_parallel}, tokens);
    // Tensor parallelism, as the model's uses say it (gpt_unit_uses): all-reduces of the
    // activations, and the vocabulary-parallel loss's all-gather of 3 values per token.
    SimCost reduce, gather;
    if (p.tp > 1) {
      int reduces = 0, gathers = 0;
      for (int c = 0; c < st.plan.num_chunks(); ++c)
        for (bool backward : {false, true})
          for (const UnitUse& u : gpt_unit_uses(st.plan, c, backward)) {
            reduces += u.tp_reduces;
            gathers += u.tp_gathers_stats;
          }
      reduce = net_.collective(static_cast<int>(Dim::tp), s, false, activations, true, true, SimKind::tensor,
                               static_cast<double>(reduces) * m_);
      tp_tier_ = std::max(tp_tier_, reduce.tier);
      if (gathers > 0)
        gather = net_.collective(static_cast<int>(Dim::tp), s, false,
                                 static_cast<std::size_t>(3 * tokens) * static_cast<std::size_t>(p.tp), false, true,
                                 SimKind::tensor, static_cast<double>(gathers) * m_);
    }
    // The model's own sequence of uses (gpt_unit_uses) per chunk, each with the compute that
    // follows it: a block's; the head's product after the second of its two uses (LayerNorm and wte).
    const int first_block = st.plan.has_embedding || st.plan.has_head ? 1 : 0;
    st.forward.resize(st.plan.chunks.size());
    st.backward.resize(st.plan.chunks.size());
    for (int c = 0; c < st.plan.num_chunks(); ++c)
      for (bool backward : {false, true}) {
        const double rate = backward ? dev_.backward_flops / 2 : dev_.forward_flops;
        auto& uses = (backward ? st.backward : st.forward)[static_cast<std::size_t>(c)];
        int head_uses = 0;
        for (const UnitUse& u : gpt_unit_uses(st.plan, c, backward)) {
          const bool is_block = u.unit >= first_block && u.unit < first_block + st.plan.num_layers();
          const bool lookup = !backward && st.plan.has_embedding && c == 0 && uses.empty();
          double flops = 0;
          if (is_block) flops = block;
          else if (!lookup && ++head_uses == 2) flops = head;
          uses.push_back({u.unit, u.next, flops / rate, u.tp_reduces * reduce.seconds + u.tp_gathers_stats * gather.seconds});
        }
      }
    // The lookup's backward reads no parameters and only scatters into the gradient.
    if (st.plan.has_embedding) st.backward.front().push_back({0, -1, 0, 0, false});
    // A bucket's gradients are complete after the last backward use of any unit it touches.
    auto unit_of = [&](std::int64_t offset) {
      int u = 0;
      for (std::size_t i = 0; i < st.units.size(); ++i)
        if (st.params.infos()[static_cast<std::size_t>(st.units[i])].offset <= offset) u = static_cast<int>(i);
      return u;
    };
    const int wte = st.params.index("wte");
    for (std::size_t b = 0; b < st.buckets.size(); ++b) {
      int after = -1, chunk = 0;
      for (std::size_t k = 0; k < st.params.infos().size(); ++k) {
        const ParamInfo& info = st.params.infos()[k];
        if (info.offset < st.buckets[b].begin || info.offset >= st.buckets[b].end) continue;
        const int u = unit_of(info.offset);
        chunk = chunks[k];  // one per bucket (cut_buckets)
        const auto& order = st.backward[static_cast<std::size_t>(chunk)];
        for (std::size_t i = 0; i < order.size(); ++i)
          if (order[i].unit == u) after = std::max(after, static_cast<int>(i));
      }
      st.bucket_chunk.push_back(chunk);
      st.ready_after.push_back(after);
      if (p.pp > 1 && wte >= 0 && st.params.infos()[static_cast<std::size_t>(wte)].offset >= st.buckets[b].begin &&
          st.params.infos()[static_cast<std::size_t>(wte)].offset < st.buckets[b].end)
        st.deferred = static_cast<int>(b);
    }
    if (compressed_)
      for (const FlatRange& b : st.buckets) st.tensors.push_back(bucket_tensors(st.params.infos(), b));
    st.actions = make_schedule(p.schedule, p.pp, s, m_, p.virtual_stages);
    st.forward_done.assign(st.plan.chunks.size(), std::vector<double>(static_cast<std::size_t>(m_), -1));
    st.backward_done.assign(st.plan.chunks.size(), std::vector<double>(static_cast<std::size_t>(m_), -1));
    st.gathered.assign(st.units.size(), -1);
    return st;
  }

  std::size_t bucket_elements(const StageSim& st, int b) const {
    return static_cast<std::size_t>(st.buckets[static_cast<std::size_t>(b)].size());
  }

  // Runs `cost` on the stage's data-parallel worker after what is queued; returns its end.
  double enqueue(StageSim& st, double issued, const SimCost& cost) {
    const double start = std::max(issued, st.worker);
    st.worker = net_.occupy(cost, start);
    st.worker_tier = cost.tier;
    return st.worker;
  }

  // The compute thread waits until `until` for communication on `tier`.
  void wait(StageSim& st, double until, Tier tier) {
    if (until > st.clock) {
      out_.exposed[tier] += (until - st.clock) / static_cast<double>(stages_.size());
      st.clock = until;
    }
  }

  SimCost bucket_sync(const StageSim& st, int b, bool reduce, bool gather, SimKind kind) {
    const bool through_codecs = compressed_ && reduce && gather;  // ZeRO-0's all-reduce (codecs refuse ZeRO)
    return net_.collective(static_cast<int>(Dim::dp), st.stage, hierarchical_, bucket_elements(st, b), reduce, gather,
                           kind, 1, through_codecs ? &st.tensors[static_cast<std::size_t>(b)] : nullptr);
  }

  // HSDP: each bucket's shard is all-reduced across the split tier once per step. Buckets of one size cost
  // the same, so each size is worked out once per stage (the groups are many: C10 has 124,416).
  void prepare_shard_syncs() {
    for (const StageSim& st : stages_) {
      Across& a = across_[static_cast<std::size_t>(st.stage)];
      std::map<std::size_t, int> buckets;  // by size
      for (std::size_t b = 0; b < st.buckets.size(); ++b) ++buckets[bucket_elements(st, static_cast<int>(b))];
      for (const auto& [n, count] : buckets) {
        std::vector<std::size_t> sizes;
        for (const auto& [group, position] : a.inner) {
          const CollectivePlan& inner = inner_plans_[static_cast<std::size_t>(group)];
          sizes.push_back(inner.region(n, static_cast<int>(inner.levels().size()), position).count);
        }
        a.done[n] = net_.collective(a.plans, sizes, true, true, SimKind::gradient, count, across_compressed_);
      }
    }
  }
  SimCost shard_sync(const StageSim& st, int b) {
    return across_[static_cast<std::size_t>(st.stage)].done.at(bucket_elements(st, b));
  }

  // A bucket's gradients are complete at `now` (of the step's last micro-batch: `last`): its
  // sync starts. Returns when the compute thread may go on (ZeRO-2 and 3: once a staging
  // buffer is free).
  double launch(StageSim& st, int b, bool last, double now) {
    if (dp_size_ < 2 && !hsdp_) return now;
    if (zero_ <= 1) {
      const double done = enqueue(st, now, bucket_sync(st, b, true, zero_ == 0, SimKind::gradient));
      if (hsdp_) enqueue(st, done, shard_sync(st, b));
      return now;
    }
    const int k = st.staged++ % 2;
    double& slot = st.staging[k];
    const double go = std::max(now, slot);
    if (go > now) out_.exposed[st.worker_tier] += (go - now) / static_cast<double>(stages_.size());
    fold(st, k, go);
    slot = enqueue(st, go, bucket_sync(st, b, true, false, SimKind::gradient));
    if (hsdp_ && last) st.folds[k] = b;
    return go;
  }

  // HSDP with ZeRO-2 and 3: as the trainer does, a bucket's shard goes across once its staging
  // buffer is folded, when the buffer is taken again or the step's syncs finish.
  void fold(StageSim& st, int k, double at) {
    if (st.folds[k] < 0) return;
    enqueue(st, at, shard_sync(st, st.folds[k]));
    st.folds[k] = -1;
  }

  // ZeRO-3, at `now`: `unit` gathered (issued now if it was not prefetched) and `next`
  // fetched meanwhile. Returns when the unit's parameters are there.
  double use(StageSim& st, int unit, int next, double now) {
    if (zero_ != 3 || dp_size_ < 2) return now;
    auto gather = [&](int u, double at) {
      return enqueue(st, at, bucket_sync(st, bucket_of_unit(st, u), false, true, SimKind::parameter));
    };
    double& landed = st.gathered[static_cast<std::size_t>(unit)];
    if (landed < 0) landed = gather(unit, now);
    const double there = landed;
    if (there > now) out_.exposed[st.worker_tier] += (there - now) / static_cast<double>(stages_.size());
    if (!keep_gathered_) landed = -1;  // dropped after this use (parallel.reshard: use)
    if (next >= 0 && st.gathered[static_cast<std::size_t>(next)] < 0) st.gathered[static_cast<std::size_t>(next)] = gather(next, now);
    return there;
  }

  int bucket_of_unit(const StageSim& st, int unit) const {
    const std::int64_t offset = st.params.infos()[static_cast<std::size_t>(st.units[static_cast<std::size_t>(unit)])].offset;
    for (std::size_t b = 0; b < st.buckets.size(); ++b)
      if (offset >= st.buckets[b].begin && offset < st.buckets[b].end) return static_cast<int>(b);
    return 0;
  }

  // The stage's step as a program: its schedule's actions, each the model's uses of its units.
  void compile(StageSim& st) {
    const auto& p = cfg_.parallel;
    auto uses = [&](const std::vector<StageSim::Use>& order, int chunk, bool syncs, bool completes) {
      auto launches = [&](int after) {
        for (std::size_t b = 0; b < st.buckets.size(); ++b)
          if (st.bucket_chunk[b] == chunk && static_cast<int>(b) != st.deferred && (after < 0 || st.ready_after[b] == after))
            st.program.push_back({Op::launch, 0, static_cast<int>(b), completes});
      };
      for (std::size_t i = 0; i < order.size(); ++i) {
        if (order[i].reads) st.program.push_back({Op::use, 0, order[i].unit, order[i].next});
        // A use's tensor-parallel all-reduces interleave with its compute, each rank waiting for
        // its peers in turn: for the cores, its ranks compute (compute + tp) / compute apart.
        const double demand = order[i].seconds > 0 ? order[i].seconds / (order[i].seconds + order[i].tp) : 1;
        st.program.push_back({Op::compute, order[i].seconds, 0, 0, demand});
        if (order[i].tp > 0) st.program.push_back({Op::tp, order[i].tp, 0, 0});
        if (syncs && cfg_.sync.overlap) launches(static_cast<int>(i));
      }
      if (syncs && !cfg_.sync.overlap) launches(-1);
    };
    // What an action produces leaves in the exchange before the next action not joined to
    // it: `done` then, after any joined action's compute.
    std::vector<Op> produced;
    for (std::size_t k = 0; k < st.actions.size(); ++k) {
      const PipeAction& a = st.actions[k];
      const bool fwd = a.kind == PipeAction::forward;
      if (!a.joined) {
        st.program.insert(st.program.end(), produced.begin(), produced.end());
        produced.clear();
      }
      // The inputs of this action and of those joined to it arrive in one exchange before it.
      for (std::size_t j = k; !a.joined && j < st.actions.size() && (j == k || st.actions[j].joined); ++j) {
        const PipeAction& b = st.actions[j];
        if (pipe_source(p.pp, p.virtual_stages, st.stage, b).stage >= 0)
          st.program.push_back({Op::input, 0, b.kind == PipeAction::forward, b.microbatch, 1, b.chunk});
      }
      const auto& order = (fwd ? st.forward : st.backward)[static_cast<std::size_t>(a.chunk)];
      // The step's last backward through a chunk reports its gradients (ZeRO-2 and 3: every one).
      const bool last = a.microbatch == m_ - 1;
      uses(order, a.chunk, !fwd && (zero_ >= 2 || last), last);
      produced.push_back({Op::done, 0, fwd, a.microbatch, 1, a.chunk});
    }
    st.program.insert(st.program.end(), produced.begin(), produced.end());
  }

  // Runs the stage's program from `now` until it computes, waits or ends.
  void step_program(StageSim& st, double now) {
    const int pp = cfg_.parallel.pp;
    while (st.pc < st.program.size() && st.remaining <= 0 && st.blocked_until <= now) {
      const Op& op = st.program[st.pc];
      switch (op.kind) {
        case Op::input: {
          const bool fwd = op.a != 0;
          const PipeAction a{fwd ? PipeAction::forward : PipeAction::backward, op.b, op.chunk};
          const PipePeer source = pipe_source(pp, cfg_.parallel.virtual_stages, st.stage, a);
          const StageSim& from = stages_[static_cast<std::size_t>(source.stage)];
          const double done =
              (fwd ? from.forward_done : from.backward_done)[static_cast<std::size_t>(source.chunk)][static_cast<std::size_t>(op.b)];
          if (done < 0) return;  // not computed yet
          const SimCost& link = p2p_.at({source.stage, st.stage});
          const double arrives = done + link.seconds;
          if (arrives > now) {
            out_.exposed[link.tier] += std::min(arrives - now, link.seconds) / pp;
            st.blocked_until = arrives;
          }
          break;
        }
        case Op::compute:
          st.remaining = op.seconds;
          st.demand = op.demand;
          break;
        case Op::tp:
          st.blocked_until = now + op.seconds;
          out_.exposed[tp_tier_] += op.seconds / pp;
          break;
        case Op::done:
          ((op.a != 0) ? st.forward_done : st.backward_done)[static_cast<std::size_t>(op.chunk)][static_cast<std::size_t>(op.b)] = now;
          break;
        case Op::launch: st.blocked_until = launch(st, op.a, op.b != 0, now); break;
        case Op::use: st.blocked_until = use(st, op.a, op.b, now); break;
      }
      ++st.pc;
    }
    if (st.pc >= st.program.size() && st.remaining <= 0 && st.blocked_until <= now) st.clock = std::max(st.clock, now);
  }

  // Every stage's program, in time: ranks computing at once share the machine's cores.
  void run_pipeline() {
    for (StageSim& st : stages_) compile(st);
    const double ranks_per_stage = static_cast<double>(grid_.world()) / cfg_.parallel.pp;
    double now = 0;
    for (;;) {
      // Until no stage moves: one stage's output may be another's input at the same moment.
      for (bool moved = true; moved;) {
        moved = false;
        for (StageSim& st : stages_) {
          const std::size_t pc = st.pc;
          step_program(st, now);
          moved |= st.pc != pc;
        }
      }
      double computing = 0;
      bool running = false;
      for (const StageSim& st : stages_) {
        if (st.remaining > 0 && st.blocked_until <= now) computing += st.demand;
        running |= st.pc < st.program.size() || st.remaining > 0 || st.blocked_until > now;
      }
      if (!running) break;
      const double rate = cores_ > 0 ? std::min(1.0, cores_ / (computing * ranks_per_stage)) : 1.0;
      double next = INFINITY;
      for (const StageSim& st : stages_) {
        if (st.blocked_until > now) next = std::min(next, st.blocked_until);
        else if (st.remaining > 0) next = std::min(next, now + st.remaining / rate);
      }
      if (!std::isfinite(next)) throw std::logic_error("simulate: the pipeline schedule deadlocked");
      for (StageSim& st : stages_)
        if (st.remaining > 0 && st.blocked_until <= now) {
          // The one(s) finishing at `next` finish exactly: next - now may round to less.
          st.remaining = now + st.remaining / rate <= next ? 0 : st.remaining - (next - now) * rate;
          st.compute += next - now;
        }
      now = next;
    }
  }

  void after_pipeline() {
    const auto& p = cfg_.parallel;
    double span = 0;
    for (StageSim& st : stages_) span = std::max(span, st.clock);
    double bubble = 0;
    for (StageSim& st : stages_) bubble += 1 - st.compute / span;
    out_.bubble = bubble / p.pp;
    for (StageSim& st : stages_) out_.compute = std::max(out_.compute, st.compute);
    if (p.pp > 1) {
      // The tied embedding: first and last stage sum wte's gradient, then sync its bucket.
      StageSim& first = stages_.front();
      StageSim& last = stages_.back();
      const std::size_t n = static_cast<std::size_t>(cfg_.model.vocab / (first.plan.vocab_parallel ? p.tp : 1)) *
                            static_cast<std::size_t>(cfg_.model.width);
      const SimCost c = net_.collective(-1, -1, false, n, true, true, SimKind::embedding, 1);
      const double done = std::max(first.clock, last.clock) + c.seconds;
      for (StageSim* st : {&first, &last}) {
        out_.exposed[c.tier] += (done - st->clock) / p.pp;
        st->clock = done;
        if (st->deferred >= 0) st->clock = launch(*st, st->deferred, true, st->clock);
      }
    }
    double aligned = 0;
    for (StageSim& st : stages_) {
      fold(st, st.staged % 2, st.clock);  // the older first, as GradSync::finish folds them
      fold(st, (st.staged + 1) % 2, st.clock);
      wait(st, st.worker, st.worker_tier);
      aligned = std::max(aligned, st.clock);
    }
    // The loss and the gradient norm: two scalar all-reduces over the job.
    aligned += 2 * std::ceil(std::log2(std::max(2, grid_.world()))) * dev_.message_seconds;
    double tail = 0;
    for (StageSim& st : stages_) {
      const double owned = static_cast<double>(st.params.numel()) / (zero_ >= 1 ? dp_size_ : 1);
      double t = owned * dev_.optimizer_seconds_per_parameter * host_crowding(dev_, grid_.world());
      out_.optimizer = std::max(out_.optimizer, t);
      if ((zero_ == 1 || zero_ == 2) && dp_size_ > 1)
        for (std::size_t b = 0; b < st.buckets.size(); ++b) {
          const SimCost c = bucket_sync(st, static_cast<int>(b), false, true, SimKind::parameter);
          t += c.seconds;
          out_.exposed[c.tier] += c.seconds / p.pp;
        }
      tail = std::max(tail, t);
    }
    out_.step_time = out_.inner_step = aligned + tail;
  }

  const Config& cfg_;
  const DeviceProfile& dev_;
  Grid grid_;
  Topology topo_;
  std::optional<TierSplit> split_;
  std::vector<std::vector<int>> dp_groups_;  // the every-step sync's: the grid's, or the islands
  Algorithm algo_;
  Algorithm across_algo_ = Algorithm::ring;  // of the all-reduce across the split tier
  bool hsdp_ = false, keep_gathered_ = false;
  // HSDP, per stage: the groups across the split tier, each member's group inside its unit
  // and position there (whose shard the group carries).
  struct Across {
    std::vector<CollectivePlan> plans;
    std::vector<std::pair<int, int>> inner;  // per group: its members' group inside (inner_plans_) and position
    std::map<std::size_t, SimCost> done;     // by bucket elements
  };
  std::vector<Across> across_;
  std::vector<CollectivePlan> inner_plans_;  // split_->inner's
  TierCodecs codecs_;
  Simulation out_;
  SimNetwork net_;
  int zero_ = 0, m_ = 1, micro_batch_ = 1;
  int dp_size_ = 1;
  bool hierarchical_ = false, compressed_ = false, across_compressed_ = false;
  double cores_ = 0;
  Tier tp_tier_ = Tier::intra_node;
  std::vector<StageSim> stages_;
  std::map<std::pair<int, int>, SimCost> p2p_;  // a message from one stage to another
};

}  // namespace

int sharded_dp(const Config& cfg) {
  const auto& p = cfg.parallel;
  const Grid grid(p.tp, p.pp, p.dp, p.order);
  const std::optional<TierSplit> split = dp_split(cfg, grid, make_topo(cfg, grid.world()));
  return split ? static_cast<int>(split->inner.front().size()) : p.dp;
}

Simulation simulate(const Config& cfg, const DeviceProfile& device) {
  if (device.forward_flops <= 0 || device.backward_flops <= 0)
    throw UserError(fmt::format("device profile '{}' has no forward or backward rate", device.source));
  return StepSimulator(cfg, device).run();
}

}  // namespace ft
