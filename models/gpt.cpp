#include "models/gpt.h"

#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

#include "models/ops.h"
#include "comm/rng.h"

namespace ft {

ParamSet gpt_stage_params(const GptShape& shape, const StagePlan& plan) {
  if (shape.width % shape.heads || shape.heads % plan.tp)
    throw std::invalid_argument("GptStage: inconsistent shape or tensor-parallel split");
  const std::int64_t C = shape.width, T = shape.context, V = shape.vocab, F = shape.hidden();
  const double std_resid = 0.02 / std::sqrt(2.0 * shape.layers);
  ParamSet ps;
  auto add = [&](std::string name, Shape full, Shard shard, ParamKind kind, double std, double value = 0) {
    ps.add(ParamInfo{std::move(name), std::move(full), {}, shard, 0, kind, std, value}, plan.tp);
  };
  // Forward order: backward completes gradients from the end of the flat buffer backwards.
  if (plan.has_embedding || plan.has_head)
    add("wte", {V, C}, plan.vocab_parallel ? Shard::rows : Shard::replicated, ParamKind::embedding, 0.02);
  if (plan.has_embedding) add("wpe", {T, C}, Shard::replicated, ParamKind::embedding, 0.02);
  for (const LayerRange& chunk : plan.chunks) {
    for (int l = chunk.first; l < chunk.first + chunk.count; ++l) {
      auto n = [l](const char* s) { return fmt::format("blocks.{}.{}", l, s); };
      add(n("ln1.weight"), {C}, Shard::replicated, ParamKind::norm, 0, 1.0);
      add(n("ln1.bias"), {C}, Shard::replicated, ParamKind::norm, 0, 0.0);
      add(n("attn.qkv.weight"), {3 * C, C}, Shard::qkv_rows, ParamKind::matrix, 0.02);
      add(n("attn.qkv.bias"), {3 * C}, Shard::qkv_rows, ParamKind::bias, 0);
      add(n("attn.proj.weight"), {C, C}, Shard::cols, ParamKind::matrix, std_resid);
      add(n("attn.proj.bias"), {C}, Shard::replicated, ParamKind::bias, 0);
      add(n("ln2.weight"), {C}, Shard::replicated, ParamKind::norm, 0, 1.0);
      add(n("ln2.bias"), {C}, Shard::replicated, ParamKind::norm, 0, 0.0);
      add(n("mlp.fc.weight"), {F, C}, Shard::rows, ParamKind::matrix, 0.02);
      add(n("mlp.fc.bias"), {F}, Shard::rows, ParamKind::bias, 0);
      add(n("mlp.proj.weight"), {C, F}, Shard::cols, ParamKind::matrix, std_resid);
      add(n("mlp.proj.bias"), {C}, Shard::replicated, ParamKind::bias, 0);
    }
  }
  if (plan.has_head) {
    add("lnf.weight", {C}, Shard::replicated, ParamKind::norm, 0, 1.0);
    add("lnf.bias", {C}, Shard::replicated, ParamKind::norm, 0, 0.0);
  }
  return ps;
}

std::vector<int> gpt_param_chunks(const ParamSet& params, const StagePlan& plan) {
  const int last = plan.num_chunks() - 1;
  std::vector<int> out;
  for (const ParamInfo& info : params.infos()) {
    int chunk = 0;
    if (info.name == "wte") chunk = plan.has_embedding ? 0 : last;
    else if (info.name.starts_with("lnf.")) chunk = last;
    else if (info.name.starts_with("blocks.")) {
      const int layer = std::stoi(info.name.substr(7));
      for (int c = 0; c <= last; ++c)
        if (layer >= plan.chunks[static_cast<std::size_t>(c)].first) chunk = c;
    }
    out.push_back(chunk);
  }
  return out;
}

std::vector<int> gpt_units(const ParamSet& params) {
  std::vector<int> units;
  for (std::size_t i = 0; i < params.infos().size(); ++i) {
    const std::string& name = params.infos()[i].name;
    if (name == "wte" || name == "lnf.weight" || name.ends_with(".ln1.weight")) units.push_back(static_cast<int>(i));
  }
  return units;
}

std::vector<UnitUse> gpt_unit_uses(const StagePlan& plan, int chunk, bool backward) {
  const bool wte = plan.has_embedding || plan.has_head;  // the tied embedding: unit 0 when present
  const bool embeds = plan.has_embedding && chunk == 0, heads = plan.has_head && chunk == plan.num_chunks() - 1;
  int first = wte ? 1 : 0;  // the chunk's first block's unit
  for (int c = 0; c < chunk; ++c) first += plan.chunks[static_cast<std::size_t>(c)].count;
  const int embed = wte ? 0 : -1, n = plan.chunks[static_cast<std::size_t>(chunk)].count;
  const int head = plan.has_head ? (wte ? 1 : 0) + plan.num_layers() : -1;
  const int split = plan.tp > 1 ? 1 : 0;                 // each block's two all-reduces, forward and backward
  const int vocab = plan.tp > 1 && plan.vocab_parallel;  // the split vocabulary's collectives
  std::vector<UnitUse> uses;
  if (!backward) {
    if (embeds) uses.push_back({embed, n > 0 ? first : heads ? head : -1, vocab});
    // After the last block, the head: its LayerNorm is small, the tied wte it multiplies by large.
    for (int l = 0; l < n; ++l) uses.push_back({first + l, l + 1 < n ? first + l + 1 : heads ? embed : -1, 2 * split});
    if (heads) {
      uses.push_back({head, -1});
      uses.push_back({embed, -1, 0, vocab != 0});
    }
    return uses;
  }
  if (heads) {
    uses.push_back({embed, head});
    uses.push_back({head, n > 0 ? first + n - 1 : -1, vocab});
  }
  for (int l = n; l-- > 0;) uses.push_back({first + l, l > 0 ? first + l - 1 : -1, 2 * split});
  return uses;
}

double gpt_stage_forward_flops(const GptShape& shape, const StagePlan& plan, double tokens) {
  const double C = shape.width, T = shape.context, V = shape.vocab;
  // Per token and block: the four matrix products (12 C^2 weights, 2 FLOPs each) and
  // attention's two (Q K^T and A V, 2 T C each), split over the tensor-parallel ranks; the
  // head's product (V C) on every rank of the last stage.
  double per_token = plan.num_layers() * (24.0 * C * C + 4.0 * T * C) / plan.tp;
  if (plan.has_head) per_token += 2.0 * V * C / (plan.vocab_parallel ? plan.tp : 1);
  return per_token * tokens;
}

GptStage::GptStage(const GptShape& shape, const StagePlan& plan, int micro_batch, int slots, DType dtype,
                   Device device)
    : shape_(shape),
      plan_(plan),
      B_(micro_batch),
      T_(shape.context),
      C_(shape.width),
      Cl_(shape.width / plan.tp),
      Hl_(shape.heads / plan.tp),
      Fl_(shape.hidden() / plan.tp),
      V_(shape.vocab),
      Vl_(plan.vocab_parallel ? shape.vocab / plan.tp : shape.vocab),
      v0_(plan.vocab_parallel ? plan.tp_rank * (shape.vocab / plan.tp) : 0),
      dtype_(dtype),
      device_(device) {
  if (micro_batch < 1 || slots < 1) throw std::invalid_argument("GptStage: no micro-batch or slot");
  if (plan.vocab_parallel && shape.vocab % plan.tp) throw std::invalid_argument("GptStage: vocabulary not split evenly");
  params_ = gpt_stage_params(shape, plan);
  auto at = [&](const std::string& name) { return params_.index(name); };
  wte_ = at("wte");
  wpe_ = at("wpe");
  lnf_w_ = at("lnf.weight");
  lnf_b_ = at("lnf.bias");
  for (const LayerRange& chunk : plan.chunks) {
    chunk_block_.push_back(static_cast<int>(blocks_.size()));
    for (int l = chunk.first; l < chunk.first + chunk.count; ++l) {
      auto n = [&](const char* s) { return at(fmt::format("blocks.{}.{}", l, s)); };
      blocks_.push_back({n("ln1.weight"), n("ln1.bias"), n("attn.qkv.weight"), n("attn.qkv.bias"),
                         n("attn.proj.weight"), n("attn.proj.bias"), n("ln2.weight"), n("ln2.bias"), n("mlp.fc.weight"),
                         n("mlp.fc.bias"), n("mlp.proj.weight"), n("mlp.proj.bias")});
    }
  }
  params_.allocate(dtype, device);
  units_ = gpt_units(params_);
  for (int c = 0; c < plan.num_chunks(); ++c) {
    forward_uses_.push_back(gpt_unit_uses(plan, c, false));
    backward_uses_.push_back(gpt_unit_uses(plan, c, true));
  }

  const std::int64_t B = B_, T = T_, C = C_, V = Vl_, Cl = Cl_, Hl = Hl_, Fl = Fl_;
  auto t = [&](Shape s) { return Tensor(std::move(s), dtype, device); };
  auto ints = [&](Shape s) { return Tensor(std::move(s), DType::i32, device); };
  slots_.assign(plan.chunks.size(), std::vector<Slot>(static_cast<std::size_t>(slots)));
  for (int c = 0; c < plan.num_chunks(); ++c) {
    for (Slot& s : slots_[static_cast<std::size_t>(c)]) {
      if (embeds(c)) s.tokens = ints({B, T});
      s.input = t({B, T, C});
      for (int l = 0; l < plan.chunks[static_cast<std::size_t>(c)].count; ++l) {
        BlockActs a;
        a.ln1 = t({B, T, C});
        a.ln1_mean = t({B, T});
        a.ln1_rstd = t({B, T});
        a.qkv = t({B, T, 3 * Cl});
        a.att = t({B, Hl, T, T});
        a.atty = t({B, T, Cl});
        a.res2 = t({B, T, C});
        a.ln2 = t({B, T, C});
        a.ln2_mean = t({B, T});
        a.ln2_rstd = t({B, T});
        a.fch = t({B, T, Fl});
        a.fcg = t({B, T, Fl});
        a.res3 = t({B, T, C});
        s.blocks.push_back(std::move(a));
      }
      if (heads(c)) {
        s.targets = ints({B, T});
        s.lnf = t({B, T, C});
        s.lnf_mean = t({B, T});
        s.lnf_rstd = t({B, T});
        s.logits = t({B, T, V});
        s.losses = t({B, T});
      }
    }
  }
  ap_ = t({B, T, C});
  fp_ = t({B, T, C});
  dres_ = t({B, T, C});
  dln_ = t({B, T, C});
  dqkv_ = t({B, T, 3 * Cl});
  datty_ = t({B, T, Cl});
  dfch_ = t({B, T, Fl});
  dfcg_ = t({B, T, Fl});
  // The CUDA kernel batches every head of a sequence; the CPU one keeps a block of rows per thread.
  if (device == Device::cuda) att_scratch_ = t({B, Hl, T, T});
  if (plan.has_head) {
    dlnf_ = t({B, T, C});
    if (plan.vocab_parallel) ce_stats_ = t({plan.tp, 3, B * T});
  }
}

void GptStage::init(std::uint64_t seed) {
  for (std::size_t i = 0; i < params_.infos().size(); ++i) {
    const ParamInfo& p = params_.infos()[i];
    std::vector<double> values(static_cast<std::size_t>(p.numel()), p.init_value);
    if (p.init_std > 0) {
      const std::uint64_t stream = rng::hash(p.name);
      auto full = ParamSet::full_indices(p, plan_.tp, plan_.tp_rank);
      for (std::size_t k = 0; k < values.size(); ++k)
        values[k] = p.init_std * rng::normal(seed, stream, static_cast<std::uint64_t>(full[k]));
    }
    ops::from_host(params_.value(static_cast<int>(i)), values);
  }
}

void GptStage::tp_all_reduce(const Tensor& t) const {
  if (plan_.tp > 1) hooks_.tp_all_reduce(t);
}

void GptStage::ready(int i) const {
  if (hooks_.grad_ready) hooks_.grad_ready(i);
}

int GptStage::use(const std::vector<UnitUse>& uses, std::size_t* at) const {
  const UnitUse& u = uses.at((*at)++);
  if (hooks_.use_unit) hooks_.use_unit(u.unit, u.next);
  return u.unit;
}

void GptStage::done(int unit) const {
  if (hooks_.done_unit) hooks_.done_unit(unit);
}

const Tensor& GptStage::output(int slot, int chunk) const {
  const Slot& s = slots_.at(static_cast<std::size_t>(chunk)).at(static_cast<std::size_t>(slot));
  return s.blocks.empty() ? s.input : s.blocks.back().res3;
}

void GptStage::block_forward(const Block& p, const Tensor& x, BlockActs& a) {
  const std::int64_t N = std::int64_t{B_} * T_;
  ops::layernorm_forward(a.ln1, a.ln1_mean, a.ln1_rstd, x, w(p.ln1_w), w(p.ln1_b), N, C_);
  ops::matmul_forward(a.qkv, a.ln1, w(p.qkv_w), &w(p.qkv_b), N, C_, 3 * Cl_);
  ops::attention_forward(a.atty, a.att, a.qkv, B_, T_, Cl_, Hl_);
  // Row-parallel: partial sums over the local heads, reduced, then the bias once.
  ops::matmul_forward(ap_, a.atty, w(p.proj_w), nullptr, N, Cl_, C_);
  tp_all_reduce(ap_);
  ops::add_bias(ap_, w(p.proj_b), N, C_);
  ops::residual_forward(a.res2, x, ap_, N * C_);
  ops::layernorm_forward(a.ln2, a.ln2_mean, a.ln2_rstd, a.res2, w(p.ln2_w), w(p.ln2_b), N, C_);
  ops::matmul_forward(a.fch, a.ln2, w(p.fc_w), &w(p.fc_b), N, C_, Fl_);
  ops::gelu_forward(a.fcg, a.fch, N * Fl_);
  ops::matmul_forward(fp_, a.fcg, w(p.fcproj_w), nullptr, N, Fl_, C_);
  tp_all_reduce(fp_);
  ops::add_bias(fp_, w(p.fcproj_b), N, C_);
  ops::residual_forward(a.res3, a.res2, fp_, N * C_);
}

double GptStage::forward(int slot, const Tensor* tokens, const Tensor* input, const Tensor* targets, int chunk) {
  Slot& s = slots_.at(static_cast<std::size_t>(chunk)).at(static_cast<std::size_t>(slot));
  const std::vector<UnitUse>& uses = forward_uses_[static_cast<std::size_t>(chunk)];
  const std::int64_t N = std::int64_t{B_} * T_;
  std::size_t at = 0;  // into uses
  if (embeds(chunk)) {
    if (!tokens) throw std::invalid_argument("first stage needs tokens");
    ops::copy(s.tokens, *tokens);
    const int embed = use(uses, &at);
    // Split by vocabulary, each rank looks up its rows and one adds the positions; summed.
    const bool positions = !plan_.vocab_parallel || plan_.tp_rank == 0;
    ops::embedding_forward(s.input, s.tokens, w(wte_), positions ? &w(wpe_) : nullptr, B_, T_, C_, v0_);
    if (plan_.vocab_parallel) tp_all_reduce(s.input);
    done(embed);
  } else {
    if (!input) throw std::invalid_argument("stage needs its input activations");
    ops::copy(s.input, *input);
  }
  const int n = static_cast<int>(s.blocks.size()), first = chunk_block_[static_cast<std::size_t>(chunk)];
  for (int l = 0; l < n; ++l) {
    const int unit = use(uses, &at);
    block_forward(blocks_[static_cast<std::size_t>(first + l)],
                  l == 0 ? s.input : s.blocks[static_cast<std::size_t>(l) - 1].res3, s.blocks[static_cast<std::size_t>(l)]);
    done(unit);
  }
  if (!heads(chunk)) return 0.0;
  if (!targets) throw std::invalid_argument("last stage needs targets");
  ops::copy(s.targets, *targets);
  const Tensor& x = output(slot, chunk);
  const int head = use(uses, &at), embed = use(uses, &at);
  ops::layernorm_forward(s.lnf, s.lnf_mean, s.lnf_rstd, x, w(lnf_w_), w(lnf_b_), N, C_);
  ops::matmul_forward(s.logits, s.lnf, w(wte_), nullptr, N, C_, Vl_);
  done(head);
  done(embed);
  if (plan_.vocab_parallel) {
    ops::crossentropy_shard_stats(Tensor::view_of(ce_stats_, 3 * N * plan_.tp_rank, {3 * N}), s.logits, s.targets, N, Vl_,
                                  v0_);
    if (plan_.tp > 1) hooks_.tp_all_gather(ce_stats_);
    ops::crossentropy_shard_finish(s.losses, s.logits, s.logits, ce_stats_, plan_.tp, N, Vl_);
  } else {
    ops::crossentropy_forward(s.losses, s.logits, s.logits, s.targets, N, V_);
  }
  double sum = 0;
  for (double l : ops::to_host(s.losses)) sum += l;
  return sum / static_cast<double>(N);
}

void GptStage::block_backward(const Block& p, const Tensor& x, const BlockActs& a) {
  // On entry dres_ = d loss / d block output; on exit, d loss / d block input (x).
  const std::int64_t N = std::int64_t{B_} * T_;
  ops::zero(dfcg_);
  ops::matmul_backward(&dfcg_, &g(p.fcproj_w), &g(p.fcproj_b), dres_, a.fcg, w(p.fcproj_w), N, Fl_, C_);
  ready(p.fcproj_w);
  ready(p.fcproj_b);
  ops::zero(dfch_);
  ops::gelu_backward(dfch_, a.fch, dfcg_, N * Fl_);
  ops::zero(dln_);
  ops::matmul_backward(&dln_, &g(p.fc_w), &g(p.fc_b), dfch_, a.ln2, w(p.fc_w), N, C_, Fl_);
  ready(p.fc_w);
  ready(p.fc_b);
  tp_all_reduce(dln_);
  ops::layernorm_backward(dres_, g(p.ln2_w), g(p.ln2_b), dln_, a.res2, w(p.ln2_w), a.ln2_mean, a.ln2_rstd, N, C_);
  ready(p.ln2_w);
  ready(p.ln2_b);

  ops::zero(datty_);
  ops::matmul_backward(&datty_, &g(p.proj_w), &g(p.proj_b), dres_, a.atty, w(p.proj_w), N, Cl_, C_);
  ready(p.proj_w);
  ready(p.proj_b);
  ops::zero(dqkv_);
  ops::attention_backward(dqkv_, att_scratch_, datty_, a.qkv, a.att, B_, T_, Cl_, Hl_);
  ops::zero(dln_);
  ops::matmul_backward(&dln_, &g(p.qkv_w), &g(p.qkv_b), dqkv_, a.ln1, w(p.qkv_w), N, C_, 3 * Cl_);
  ready(p.qkv_w);
  ready(p.qkv_b);
  tp_all_reduce(dln_);
  ops::layernorm_backward(dres_, g(p.ln1_w), g(p.ln1_b), dln_, x, w(p.ln1_w), a.ln1_mean, a.ln1_rstd, N, C_);
  ready(p.ln1_w);
  ready(p.ln1_b);
}

void GptStage::backward(int slot, const Tensor* dout, double loss_scale, int chunk) {
  Slot& s = slots_.at(static_cast<std::size_t>(chunk)).at(static_cast<std::size_t>(slot));
  const std::vector<UnitUse>& uses = backward_uses_[static_cast<std::size_t>(chunk)];
  const std::int64_t N = std::int64_t{B_} * T_;
  const int n = static_cast<int>(s.blocks.size()), first = chunk_block_[static_cast<std::size_t>(chunk)];
  std::size_t at = 0;  // into uses
  if (heads(chunk)) {
    const int embed = use(uses, &at), head = use(uses, &at);
    ops::crossentropy_backward(s.logits, s.logits, s.targets, loss_scale / static_cast<double>(N), N, Vl_, v0_);
    ops::zero(dlnf_);
    ops::matmul_backward(&dlnf_, &g(wte_), nullptr, s.logits, s.lnf, w(wte_), N, C_, Vl_);
    if (plan_.vocab_parallel) tp_all_reduce(dlnf_);
    if (!plan_.has_embedding) ready(wte_);
    ops::zero(dres_);
    ops::layernorm_backward(dres_, g(lnf_w_), g(lnf_b_), dlnf_, output(slot, chunk), w(lnf_w_), s.lnf_mean, s.lnf_rstd,
                            N, C_);
    ready(lnf_w_);
    ready(lnf_b_);
    done(head);
    done(embed);
  } else {
    if (!dout) throw std::invalid_argument("stage needs the gradient of its output");
    ops::copy(dres_, *dout);
  }
  for (int l = n; l-- > 0;) {
    const int unit = use(uses, &at);
    block_backward(blocks_[static_cast<std::size_t>(first + l)],
                   l == 0 ? s.input : s.blocks[static_cast<std::size_t>(l) - 1].res3, s.blocks[static_cast<std::size_t>(l)]);
    done(unit);
  }
  if (embeds(chunk)) {
    ops::embedding_backward(&g(wte_), &g(wpe_), dres_, s.tokens, B_, T_, C_, v0_);
    ready(wpe_);
    ready(wte_);
  }
}

}  // namespace ft
