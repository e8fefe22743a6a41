#include "trainer/io/config.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

#include "comm/codec.h"
#include "trainer/io/yaml_file.h"

namespace ft {
namespace config {

Check<std::string> one_of(std::vector<std::string> choices) {
  std::string text = fmt::format("one of {}", fmt::join(choices, ", "));
  return {text, [choices](const std::string& v) {
            return std::find(choices.begin(), choices.end(), v) != choices.end();
          }};
}
Check<Bytes> at_least_bytes(std::uint64_t lo) {
  return {fmt::format("at least {}", format_bytes(Bytes{lo})), [lo](const Bytes& b) { return b.value >= lo; }};
}
Check<double> positive() {
  return {"above 0", [](const double& v) { return v > 0; }};
}

std::string with_article(const char* noun) {
  std::string n = noun;
  if (n.find('/') != std::string::npos) return n;  // "true/false"
  return (std::string("aeiou").find(n[0]) != std::string::npos ? "an " : "a ") + n;
}

std::string to_text(int v) { return std::to_string(v); }
std::string to_text(std::int64_t v) { return std::to_string(v); }
std::string to_text(std::uint64_t v) { return std::to_string(v); }
std::string to_text(double v) { return fmt::format("{}", v); }
std::string to_text(bool v) { return v ? "true" : "false"; }
std::string to_text(const std::string& v) { return v; }
std::string to_text(Bytes v) { return format_bytes(v); }
std::string to_text(BitRate v) { return format_bitrate(v); }
std::string to_text(Duration v) { return format_duration(v); }

namespace {
template <class I> std::string integer_from_text(const std::string& text, I& out) {
  I v{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec == std::errc::result_out_of_range) return fmt::format("'{}' is out of range", text);
  if (ec != std::errc() || end != text.data() + text.size())
    return fmt::format("expected an integer, got '{}'", text);
  out = v;
  return "";
}
}  // namespace

std::string from_text(const std::string& text, int& out) { return integer_from_text(text, out); }
std::string from_text(const std::string& text, std::int64_t& out) { return integer_from_text(text, out); }
std::string from_text(const std::string& text, std::uint64_t& out) { return integer_from_text(text, out); }

std::string from_text(const std::string& text, double& out) {
  double v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(v))
    return fmt::format("expected a number, got '{}'", text);
  out = v;
  return "";
}

std::string from_text(const std::string& text, bool& out) {
  if (text == "true" || text == "yes" || text == "on") return out = true, "";
  if (text == "false" || text == "no" || text == "off") return out = false, "";
  return fmt::format("expected true or false, got '{}'", text);
}

std::string from_text(const std::string& text, std::string& out) {
  out = text;
  return "";
}

std::string from_text(const std::string& text, Bytes& out) {
  auto v = parse_bytes(text);
  if (!v) return fmt::format("cannot read '{}' as a size (examples: {})", text, kBytesExamples);
  out = *v;
  return "";
}

std::string from_text(const std::string& text, BitRate& out) {
  auto v = parse_bitrate(text);
  if (!v) return fmt::format("cannot read '{}' as a bit rate (examples: {})", text, kBitRateExamples);
  out = *v;
  return "";
}

std::string from_text(const std::string& text, Duration& out) {
  auto v = parse_duration(text);
  if (!v) return fmt::format("cannot read '{}' as a duration (examples: {})", text, kDurationExamples);
  out = *v;
  return "";
}

namespace {
std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}
}  // namespace

std::optional<std::string> closest(const std::string& word, const std::vector<std::string>& candidates) {
  auto common_prefix = [&](const std::string& c) {
    std::size_t n = 0;
    while (n < c.size() && n < word.size() && c[n] == word[n]) ++n;
    return n;
  };
  std::optional<std::string> best;
  std::size_t best_d = std::max<std::size_t>(2, word.size() / 3) + 1;
  for (const auto& c : candidates) {
    std::size_t d = edit_distance(word, c);
    // Ties go to the candidate that starts like the word ("dpp" -> "dp", not "pp").
    if (d < best_d || (d == best_d && best && common_prefix(c) > common_prefix(*best))) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

std::string Origins::locate(const std::string& path, const YAML::Node& node) const {
  // The key itself, a key inside a section set whole, or a section that a --set of a key
  // inside it created.
  for (const auto& [key, value] : overrides_) {
    if (path == key || path.rfind(key + ".", 0) == 0 || key.rfind(path + ".", 0) == 0)
      return fmt::format("--set {}={}", key, value);
  }
  std::string file = file_.empty() ? "config" : file_;
  if (node.Mark().line >= 0) return fmt::format("{}:{}", file, node.Mark().line + 1);
  return file;
}

Decoder::Decoder(const YAML::Node& node, std::string path, const Origins& origins)
    : node_(node), path_(std::move(path)), origins_(origins) {}

YAML::Node Decoder::lookup(const char* name) const {
  if (!node_ || node_.IsNull()) return YAML::Node();
  // Copy: operator[] on a const node does not insert.
  const YAML::Node& n = node_;
  return n[name];
}

Decoder Decoder::nested(const char* name, const YAML::Node& value) const {
  if (!value.IsMap())
    fail(origins_.locate(full(name), value), full(name), fmt::format("expected a section (a map of keys), got {}", kind(value)));
  return Decoder(value, full(name), origins_);
}

void Decoder::finish() const {
  if (!node_ || node_.IsNull()) return;
  for (const auto& kv : node_) {
    if (!kv.first.IsScalar())
      throw UserError(fmt::format("{}: a key must be a name, got {}", origins_.locate(path_, kv.first), kind(kv.first)));
    std::string name = kv.first.as<std::string>();
    if (std::find(known_.begin(), known_.end(), name) != known_.end()) continue;
    std::string where = origins_.locate(full(name), kv.first);
    std::string hint;
    if (auto c = closest(name, known_))
      hint = fmt::format(" (did you mean '{}'?)", full(*c));
    else
      hint = fmt::format(" (known keys{}: {})", path_.empty() ? "" : " of " + path_, fmt::join(known_, ", "));
    throw UserError(fmt::format("{}: unknown key '{}'{}", where, full(name), hint));
  }
}

std::string Decoder::kind(const YAML::Node& n) {
  if (n.IsMap()) return "a map";
  if (n.IsSequence()) return "a list";
  if (n.IsNull()) return "nothing";
  return fmt::format("'{}'", n.Scalar());
}

void Decoder::fail(const std::string& where, const std::string& key, const std::string& msg) {
  throw UserError(fmt::format("{}: {} {}", where, key, msg));
}

}  // namespace config

std::vector<std::string> shard_units() {
  std::vector<std::string> out{"none"};
  for (Tier t : kAllTiers)
    if (t != Tier::intra_node) out.emplace_back(tier_unit(t));
  return out;
}

std::vector<std::string> outer_sync_tiers() {
  std::vector<std::string> out = tier_names();
  out.erase(out.begin());  // intra_node: a node's own links
  return out;
}

std::optional<Tier> dp_split_tier(const Config& c) {
  if (c.sync.outer) return tier_from_name(c.sync.outer->tier);
  if (c.parallel.zero == 0) return std::nullopt;  // nothing sharded: one all-reduce over every replica
  for (Tier t : kAllTiers)
    if (t != Tier::intra_node && tier_unit(t) == c.parallel.shard_within) return t;
  return std::nullopt;
}

std::string_view dp_split_key(const Config& c) { return c.sync.outer ? "sync.outer" : "parallel.shard_within"; }

std::vector<std::string> idle_settings(const Config& c) {
  const auto& p = c.parallel;
  std::vector<std::string> out;
  if (p.shard_within != "none" && p.zero == 0)
    out.push_back(fmt::format("parallel.shard_within {} has no effect: with parallel.zero 0 every replica keeps "
                              "everything and the gradients are all-reduced over all of them",
                              p.shard_within));
  if (p.reshard != "use" && p.zero != 3)
    out.push_back(fmt::format("parallel.reshard {} has no effect: it is when ZeRO-3 drops gathered parameters, and "
                              "parallel.zero is {}",
                              p.reshard, p.zero));
  if (p.vocab_parallel && p.tp == 1)
    out.push_back("parallel.vocab_parallel has no effect: parallel.tp is 1, so one rank holds the whole vocabulary");
  return out;
}

Override parse_override(const std::string& text) {
  auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0)
    throw UserError(fmt::format("--set '{}': expected key.path=value, e.g. --set parallel.dp=4", text));
  return {text.substr(0, eq), text.substr(eq + 1)};
}

namespace {

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (true) {
    auto dot = path.find('.', start);
    parts.push_back(path.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return parts;
}

// Sets root[a][b]...[z] = value, creating sections on the way.
void apply_override(YAML::Node node, const std::vector<std::string>& parts, std::size_t i,
                    const YAML::Node& value, const Override& o) {
  if (parts[i].empty())
    throw UserError(fmt::format("--set {}={}: empty key in the path", o.path, o.value));
  if (i + 1 == parts.size()) {
    node[parts[i]] = value;
    return;
  }
  if (!node[parts[i]] || node[parts[i]].IsNull()) node[parts[i]] = YAML::Node(YAML::NodeType::Map);
  YAML::Node child = node[parts[i]];
  if (!child.IsMap()) {
    std::string prefix;
    for (std::size_t k = 0; k <= i; ++k) prefix += (k ? "." : "") + parts[k];
    throw UserError(fmt::format("--set {}={}: '{}' is a value, not a section", o.path, o.value, prefix));
  }
  apply_override(child, parts, i + 1, value, o);
}

YAML::Node load_yaml_file(const std::string& file) {
  YAML::Node root = read_yaml_file(file, "config file");
  if (root.IsNull()) return YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap()) throw UserError(fmt::format("{}: expected a map of sections at the top level", file));
  return root;
}

void require(bool ok, const std::string& message) {
  if (!ok) throw UserError(message);
}

// Relations between keys that hold whatever the launch.
void validate_relations(const Config& c) {
  const auto& m = c.model;
  const auto& p = c.parallel;
  require(m.width % m.heads == 0,
          fmt::format("model.width ({}) must divide by model.heads ({})", m.width, m.heads));
  require(m.heads % p.tp == 0,
          fmt::format("model.heads ({}) must divide by parallel.tp ({}): each tensor-parallel rank owns whole heads",
                      m.heads, p.tp));
  require(m.width % p.tp == 0,
          fmt::format("model.width ({}) must divide by parallel.tp ({})", m.width, p.tp));
  require(m.layers >= p.pp,
          fmt::format("model.layers ({}) must be at least parallel.pp ({}): every pipeline stage needs a block",
                      m.layers, p.pp));
  if (p.vocab_parallel)
    require(m.vocab % p.tp == 0,
            fmt::format("model.vocab ({}) must divide by parallel.tp ({}) with parallel.vocab_parallel: each "
                        "tensor-parallel rank holds as many rows of the embedding",
                        m.vocab, p.tp));
  if (p.virtual_stages > 1) {
    require(p.pp > 1, fmt::format("parallel.virtual_stages {} interleaves pipeline stages: set parallel.pp above 1",
                                  p.virtual_stages));
    require(m.layers >= p.pp * p.virtual_stages,
            fmt::format("model.layers ({}) must be at least parallel.pp x parallel.virtual_stages ({} x {}): every "
                        "virtual stage needs a block",
                        m.layers, p.pp, p.virtual_stages));
    require(p.microbatches % p.pp == 0,
            fmt::format("parallel.microbatches ({}) must divide by parallel.pp ({}) with parallel.virtual_stages {}: the "
                        "interleaved schedule takes the micro-batches in groups of pp",
                        p.microbatches, p.pp, p.virtual_stages));
  }
  require(c.train.batch % (p.dp * p.microbatches) == 0,
          fmt::format("train.batch ({}) must divide by parallel.dp x parallel.microbatches ({} x {}): every "
                      "micro-batch on every data-parallel rank holds the same number of sequences",
                      c.train.batch, p.dp, p.microbatches));
  require(c.precision != "bf16" || c.device == "cuda", "precision bf16 needs device cuda (the CPU kernels are fp32)");
  require(c.comm != "nccl" || c.device != "cpu",
          "comm nccl needs device cuda (NCCL), or cpu-async (the CPU model of NCCL's rules, whose streams run apart "
          "from the host as a GPU's do)");
  if (c.data.kind != "synthetic")
    require(!c.data.path.empty(), fmt::format("data.path is required when data.kind is {}", c.data.kind));
  if (c.data.kind == "text")
    require(m.vocab >= 256, fmt::format("model.vocab ({}) must be at least 256 for data.kind text (one token per byte)", m.vocab));
  bool demo = false;
  for (Tier t : kAllTiers) demo = demo || (c.compression.tier[t] && c.compression.tier[t]->codec == "demo");
  require(!demo || c.train.optimizer == "sign",
          fmt::format("codec demo is DeMo's synchronisation, whose update is the sign of what it returns: set "
                      "train.optimizer: sign, not {}",
                      c.train.optimizer));
  if (p.shard_within != "none") {
    if (c.sync.outer)
      require(tier_unit(*tier_from_name(c.sync.outer->tier)) == p.shard_within,
              fmt::format("parallel.shard_within {} with sync.outer across {}: under an outer sync ZeRO shards inside "
                          "its islands (each {}); leave shard_within none or set it to {}",
                          p.shard_within, c.sync.outer->tier, tier_unit(*tier_from_name(c.sync.outer->tier)),
                          tier_unit(*tier_from_name(c.sync.outer->tier))));
  }
  if (const auto& o = c.sync.outer) {
    for (Tier t : kAllTiers) {
      const auto& codec = c.compression.tier[t];
      require(!codec || codec->codec != "demo" || t < *tier_from_name(o->tier),
              fmt::format("compression.{}.codec demo synchronises every step; the outer sync across {} averages the "
                          "change of the parameters: give it another codec",
                          tier_name(t), o->tier));
      require(!codec || codec->feedback != "difference" || t < *tier_from_name(o->tier),
              fmt::format("compression.{}.feedback difference is for the per-step sync; the outer sync across {} "
                          "takes residual or none",
                          tier_name(t), o->tier));
    }
    require(c.parallel.zero <= 1,
            fmt::format("parallel.zero {} with sync.outer: the outer sync keeps whole parameters and gradients on every "
                        "rank; use parallel.zero 0 or 1",
                        c.parallel.zero));
    require(o->delay < o->every,
            fmt::format("sync.outer.delay ({}) must be less than sync.outer.every ({}): a fragment's outer sync lands "
                        "before it is due again",
                        o->delay, o->every));
  }
}

// Parameters a codec does not use must stay unset; the ones it uses get their defaults
// (a key that excludes another takes its default only when the other is unset too).
void resolve_codec(const std::string& tier, CodecConfig& c) {
  const CodecInfo& info = *find_codec(c.codec);  // the name passed one_of
  auto own = [&](const std::string& key) -> const CodecKey* {
    for (const CodecKey& k : info.keys)
      if (k.name == key) return &k;
    return nullptr;
  };
  for (const auto& [key, value] : c.params) {
    if (value == 0 || own(key)) continue;
    std::vector<std::string> users;
    for (const CodecInfo& other : codec_registry())
      for (const CodecKey& k : other.keys)
        if (k.name == key) users.emplace_back(other.name);
    throw UserError(fmt::format("compression.{}.{} applies to codec {}, not {}", tier, key, fmt::join(users, " or "),
                                c.codec));
  }
  for (const CodecKey& k : info.keys)
    if (!k.excludes.empty() && c.params[std::string(k.name)] != 0 && c.params[std::string(k.excludes)] != 0)
      throw UserError(fmt::format("compression.{}: give {} either {} or {}, not both", tier, c.codec, k.name, k.excludes));
  for (const CodecKey& k : info.keys) {
    double& v = c.params[std::string(k.name)];
    if (v == 0 && (k.excludes.empty() || c.params[std::string(k.excludes)] == 0)) v = k.default_value;
  }
  if (c.reduce != "best" && !info.rings) {
    std::vector<std::string_view> rings;
    for (const CodecInfo& other : codec_registry())
      if (other.rings) rings.push_back(other.name);
    throw UserError(fmt::format("compression.{}.reduce applies to the codecs that reduce in the ring or gathered ({}), "
                                "not {}",
                                tier, fmt::join(rings, ", "), c.codec));
  }
  if (c.reduce == "ring" && c.feedback == "difference")
    throw UserError(fmt::format("compression.{}: feedback difference sums every member's payloads as they were sent; "
                                "it needs reduce gather (or best), not ring",
                                tier));
  if (c.decay == 0) c.decay = info.decay;
  if (c.feedback == "difference" && c.codec != "none" && !info.gathered) {
    std::vector<std::string_view> gathered;
    for (const CodecInfo& other : codec_registry())
      if (other.gathered) gathered.push_back(other.name);
    throw UserError(fmt::format("compression.{}.feedback difference applies to the gathered codecs ({}), not {}", tier,
                                fmt::join(gathered, ", "), c.codec));
  }
}

// Step logs and configs written before `feedback` replaced `error_feedback` (true: residual,
// false: none) still load.
void upgrade_legacy_keys(YAML::Node root) {
  if (!root.IsMap() || !root["compression"] || !root["compression"].IsMap()) return;
  for (auto entry : root["compression"]) {
    YAML::Node codec = entry.second;
    if (!codec.IsMap() || !codec["error_feedback"]) continue;
    if (codec["feedback"])
      throw UserError(fmt::format("compression.{}: give feedback, not error_feedback as well (error_feedback is its "
                                  "old name)", entry.first.as<std::string>()));
    bool on = false;
    try {
      on = codec["error_feedback"].as<bool>();
    } catch (const YAML::Exception&) {
      throw UserError(fmt::format("compression.{}.error_feedback must be true or false", entry.first.as<std::string>()));
    }
    codec.remove("error_feedback");
    codec["feedback"] = on ? "residual" : "none";
  }
}

}  // namespace

const std::vector<std::string>& codec_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const CodecInfo& c : codec_registry()) out.emplace_back(c.name);
    return out;
  }();
  return names;
}

const std::vector<CodecKeyDoc>& codec_key_docs() {
  static const std::vector<CodecKeyDoc> docs = [] {
    std::vector<CodecKeyDoc> out;
    for (const CodecInfo& c : codec_registry())
      for (const CodecKey& k : c.keys) {
        auto it = std::find_if(out.begin(), out.end(), [&](const CodecKeyDoc& d) { return d.name == k.name; });
        if (it != out.end()) {  // another codec's key of the same name: its users are listed together
          it->doc.insert(it->doc.find(':'), fmt::format(", {}", c.name));
          continue;
        }
        std::string doc = fmt::format("{}: {}", c.name, k.doc);
        if (k.default_value != 0) doc += fmt::format("; 0 = {}", k.default_value);
        const double lo = k.lo, hi = k.hi;
        const bool integer = k.integer;
        config::Check<double> check{
            fmt::format("{}{} between {} and {}", lo > 0 ? "0, or " : "", integer ? "a whole number" : "a number", lo, hi),
            [lo, hi, integer](const double& v) { return v == 0 || (v >= lo && v <= hi && (!integer || v == std::floor(v))); }};
        out.push_back({std::string(k.name), doc, check});
      }
    return out;
  }();
  return docs;
}

namespace {
Config decode(YAML::Node root, const config::Origins& origins) {
  Config c;
  upgrade_legacy_keys(root);
  config::Decoder d(root, "", origins);
  describe(d, c);
  d.finish();
  validate_relations(c);
  for (Tier t : kAllTiers)
    if (auto& codec = c.compression.tier[t]) resolve_codec(std::string(tier_name(t)), *codec);
  return c;
}
}  // namespace

Config load_config_text(const std::string& yaml, const std::string& origin) {
  YAML::Node root = parse_yaml(yaml, origin);
  if (root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap()) throw UserError(fmt::format("{}: expected a map of sections at the top level", origin));
  return decode(root, config::Origins(origin, {}));
}

Config load_config(const std::string& file, const std::vector<Override>& overrides) {
  YAML::Node root = file.empty() ? YAML::Node(YAML::NodeType::Map) : load_yaml_file(file);
  std::vector<std::pair<std::string, std::string>> origins_list;
  for (const Override& o : overrides) {
    YAML::Node value;
    try {
      value = YAML::Load(o.value);
    } catch (const YAML::ParserException& e) {
      throw UserError(fmt::format("--set {}={}: not a YAML value: {}", o.path, o.value, e.msg));
    }
    apply_override(root, split_path(o.path), 0, value, o);
    origins_list.emplace_back(o.path, o.value);
  }
  return decode(root, config::Origins(file, origins_list));
}

void validate_launch(const Config& c, int world_size) {
  const auto& p = c.parallel;
  long long ranks = 1LL * p.tp * p.pp * p.dp;
  if (ranks != world_size) {
    std::string fix;
    if (world_size % (p.tp * p.pp) == 0)
      fix = fmt::format("set parallel.dp={} or launch {} ranks", world_size / (p.tp * p.pp), ranks);
    else
      fix = fmt::format("launch {} ranks or change the layout", ranks);
    throw UserError(fmt::format("parallel: tp x pp x dp = {} x {} x {} = {}, but the job has {} ranks; {}",
                                p.tp, p.pp, p.dp, ranks, world_size, fix));
  }
  const auto& t = c.topology;
  if (t.ranks_per_node > 0) {
    require(world_size % t.ranks_per_node == 0,
            fmt::format("topology.ranks_per_node ({}) must divide the {} ranks of the job",
                        t.ranks_per_node, world_size));
    int nodes = world_size / t.ranks_per_node;
    if (t.nodes_per_pod > 0)
      require(nodes % t.nodes_per_pod == 0,
              fmt::format("topology.nodes_per_pod ({}) must divide the {} emulated nodes ({} ranks / {} per node)",
                          t.nodes_per_pod, nodes, world_size, t.ranks_per_node));
    if (t.nodes_per_pod > 0 && t.pods_per_site > 0)
      require((nodes / t.nodes_per_pod) % t.pods_per_site == 0,
              fmt::format("topology.pods_per_site ({}) must divide the {} pods", t.pods_per_site,
                          nodes / t.nodes_per_pod));
  }
}

std::string to_yaml(const Config& c) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  config::Encoder e(out);
  describe(e, const_cast<Config&>(c));
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

std::vector<config::KeyDoc> list_keys() {
  std::vector<config::KeyDoc> keys;
  Config defaults;
  config::Lister l(keys);
  describe(l, defaults);
  return keys;
}

}  // namespace ft
