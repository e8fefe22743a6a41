#include "trainer/claims/methods.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>

#include <fmt/format.h>

#include "comm/error.h"
#include "comm/log.h"
#include "trainer/io/config.h"
#include "trainer/io/h5.h"

namespace ft {
namespace {

// The share of a step backward takes (4 of the 6 N FLOPs per token): the per-step sync's
// buckets overlap it.
constexpr double kBackwardShare = 2.0 / 3.0;

struct Log {
  std::string file;
  Config cfg;
  PerTier<double> bytes{};  // mean wire bytes per step, summed over ranks
  double eval_loss = NAN;
};

// Null when `path` is no step log (a checkpoint, say).
std::optional<Log> read_log(const std::string& path) {
  h5::File f(path, h5::Mode::read);
  if (!f.has_attr("/", "config") || !f.exists("/steps/step_time")) return std::nullopt;
  Log log{path, load_config_text(f.attr_string("/", "config"), path + " (config attribute)")};
  // Traffic per step is read as the mean over rows: every step must have its row.
  if (log.cfg.metrics.every != 1)
    throw UserError(fmt::format("'{}' logs one step in {} (metrics.every): its traffic per step cannot be read; "
                                "train it with metrics.every 1",
                                path, log.cfg.metrics.every));
  for (Tier t : kAllTiers) {
    const std::string name = fmt::format("/steps/bytes_wire/{}", tier_name(t));
    const auto shape = f.shape(name);
    const auto data = f.read<double>(name);
    double sum = 0;
    for (double v : data) sum += v;
    log.bytes[t] = shape.empty() || shape[0] == 0 ? 0 : sum / static_cast<double>(shape[0]);
  }
  for (double v : f.read<double>("/steps/eval_loss"))
    if (std::isfinite(v)) log.eval_loss = v;
  if (!std::isfinite(log.eval_loss))
    throw UserError(fmt::format("'{}' holds no held-out loss: train it with eval.every set", path));
  return log;
}

// What must be equal for two runs' losses and bytes to compare: the same model trained on
// the same tokens by the same cluster, evaluated the same way.
std::string experiment_of(const Config& c) {
  const auto& t = c.topology;
  return fmt::format("model {}x{}x{} vocab {} context {}, {} steps of batch {}, seed {}, data {} {} held out by {}, "
                     "eval every {} over {}, {} ranks in {}/{}/{}",
                     c.model.layers, c.model.heads, c.model.width, c.model.vocab, c.model.context, c.train.steps,
                     c.train.batch, c.train.seed, c.data.kind, c.data.path, c.data.held_out, c.eval.every, c.eval.batches,
                     c.parallel.tp * c.parallel.pp * c.parallel.dp, t.ranks_per_node, t.nodes_per_pod,
                     t.pods_per_site);
}

bool lossy_anywhere(const Config& c) {
  for (Tier t : kAllTiers)
    if (c.compression.tier[t] && c.compression.tier[t]->codec != "none") return true;
  return false;
}

std::string describe(const Config& c, Tier top) {
  const auto& codec = c.compression.tier[top];
  std::string on_top = codec && codec->codec != "none" ? " " + codec->codec : "";
  if (!on_top.empty() && codec->reduce != "best") on_top += fmt::format(" {}", codec->reduce == "ring" ? "ring" : "gathered");
  if (!on_top.empty() && codec->feedback != "residual") on_top += fmt::format(" (feedback {})", codec->feedback);
  if (!c.sync.outer) return "sync" + on_top;
  const auto& o = *c.sync.outer;
  std::string out = fmt::format("outer every {}", o.every);
  if (o.fragments > 1) out += fmt::format(" in {} fragments", o.fragments);
  if (o.delay > 0) out += fmt::format(" delay {}", o.delay);
  if (o.mix > 0) out += fmt::format(" mix {}", o.mix);
  return out + on_top;
}

}  // namespace

std::vector<MeasuredMethod> read_methods(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw UserError(fmt::format("--methods {}: not a directory", dir));
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file() && e.path().extension() == ".h5") files.push_back(e.path().string());
  if (ec) throw UserError(fmt::format("--methods {}: {}", dir, ec.message()));
  std::sort(files.begin(), files.end());
  std::vector<Log> logs;
  for (const auto& file : files) {
    if (auto log = read_log(file))
      logs.push_back(std::move(*log));
    else
      log::warn("--methods {}: '{}' is no step log; skipped", dir, file);
  }
  auto base = std::find_if(logs.begin(), logs.end(), [](const Log& l) { return !l.cfg.sync.outer && !lossy_anywhere(l.cfg); });
  if (base == logs.end())
    throw UserError(fmt::format("--methods {}: no dense synchronous run (no sync.outer, no codec) to compare with", dir));
  for (const Log& l : logs)
    if (experiment_of(l.cfg) != experiment_of(base->cfg))
      throw UserError(fmt::format("--methods {}: '{}' ran another experiment than '{}' ({} against {}); compare runs "
                                  "of one model, data, step count and cluster",
                                  dir, l.file, base->file, experiment_of(l.cfg), experiment_of(base->cfg)));
  // The top tier: the highest the dense run sends on.
  Tier top = Tier::intra_node;
  for (Tier t : kAllTiers)
    if (base->bytes[t] > 0) top = t;
  if (base->bytes[top] <= 0) throw UserError(fmt::format("'{}' sent nothing between ranks", base->file));
  std::vector<MeasuredMethod> out;
  for (const Log& l : logs) {
    MeasuredMethod m;
    m.name = describe(l.cfg, top);
    m.file = l.file;
    m.traffic = l.bytes[top] / base->bytes[top];
    if (l.cfg.sync.outer) {
      m.period = static_cast<double>(l.cfg.sync.outer->every) / l.cfg.sync.outer->fragments;
      m.hideable = std::min<double>(l.cfg.sync.outer->delay, m.period);
    } else {
      m.hideable = kBackwardShare;
    }
    m.eval_loss = l.eval_loss;
    m.loss_penalty = l.eval_loss / base->eval_loss - 1;
    out.push_back(m);
  }
  return out;
}

}  // namespace ft
