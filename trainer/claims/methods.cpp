#include "trainer/claims/methods.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include <fmt/format.h>

#include "comm/error.h"
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

Log read_log(const std::string& path) {
  h5::File f(path, h5::Mode::read);
  if (!f.has_attr("/", "config") || !f.exists("/steps/step_time"))
    throw UserError(fmt::format("'{}' is not a fibertrain step log", path));
  Log log{path, load_config_text(f.attr_string("/", "config"), path + " (config attribute)")};
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

bool lossy_anywhere(const Config& c) {
  for (Tier t : kAllTiers)
    if (c.compression.tier[t] && c.compression.tier[t]->codec != "none") return true;
  return false;
}

std::string describe(const Config& c, Tier top) {
  const auto& codec = c.compression.tier[top];
  const std::string on_top = codec && codec->codec != "none" ? " " + codec->codec : "";
  if (!c.sync.outer) return "sync" + on_top;
  const auto& o = *c.sync.outer;
  std::string out = fmt::format("outer every {}", o.every);
  if (o.fragments > 1) out += fmt::format(" in {} fragments", o.fragments);
  if (o.delay > 0) out += fmt::format(" delay {}", o.delay);
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
  std::sort(files.begin(), files.end());
  std::vector<Log> logs;
  for (const auto& file : files) logs.push_back(read_log(file));
  auto base = std::find_if(logs.begin(), logs.end(), [](const Log& l) { return !l.cfg.sync.outer && !lossy_anywhere(l.cfg); });
  if (base == logs.end())
    throw UserError(fmt::format("--methods {}: no dense synchronous run (no sync.outer, no codec) to compare with", dir));
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
    m.baseline = &l == &*base;
    out.push_back(m);
  }
  return out;
}

}  // namespace ft
