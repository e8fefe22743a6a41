#include "trainer/io/yaml_file.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include <fmt/format.h>
#include <yaml-cpp/eventhandler.h>

#include "comm/error.h"

namespace ft {
namespace {

// Walks the parser's events and throws at the second occurrence of a key in one map.
class DuplicateKeys : public YAML::EventHandler {
 public:
  explicit DuplicateKeys(std::string origin) : origin_(std::move(origin)) {}

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override { node(nullptr); }
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override { node(nullptr); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t, const std::string& value) override {
    if (in_key()) check(mark, value);
    node(&value);
  }
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    open(false);
  }
  void OnSequenceEnd() override { close(); }
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    open(true);
  }
  void OnMapEnd() override { close(); }

 private:
  struct Frame {
    bool map;
    bool key = true;           // a map's next node is a key
    std::string name;          // this collection's key in its parent map, if any
    std::string last_key;      // a map's key whose value comes next
    std::set<std::string> keys;
  };

  bool in_key() const { return !frames_.empty() && frames_.back().map && frames_.back().key; }

  void check(const YAML::Mark& mark, const std::string& key) {
    Frame& f = frames_.back();
    if (f.keys.insert(key).second) return;
    std::string where;
    for (const Frame& g : frames_)
      if (!g.name.empty()) where += (where.empty() ? "" : ".") + g.name;
    throw UserError(fmt::format("{}:{}: key '{}' given twice{}", origin_, mark.line + 1, key,
                                where.empty() ? "" : fmt::format(" in '{}'", where)));
  }

  // A whole node ended (a scalar, or a collection closed): the parent map moves from its
  // key to its value, or from a value to the next key.
  void node(const std::string* scalar) {
    if (frames_.empty() || !frames_.back().map) return;
    Frame& f = frames_.back();
    if (f.key) f.last_key = scalar ? *scalar : "";
    f.key = !f.key;
  }

  // A map is named by its key; an entry of a list, or a collection as a key (rare; its
  // equality is not checked), by nothing.
  void open(bool map) {
    std::string name;
    if (!frames_.empty() && frames_.back().map && !frames_.back().key) name = frames_.back().last_key;
    frames_.push_back(Frame{map, true, name, {}, {}});
  }

  void close() {
    frames_.pop_back();
    node(nullptr);
  }

  std::string origin_;
  std::vector<Frame> frames_;
};

}  // namespace

YAML::Node parse_yaml(const std::string& text, const std::string& origin) {
  try {
    std::istringstream events(text);
    YAML::Parser parser(events);
    DuplicateKeys duplicates(origin);
    while (parser.HandleNextDocument(duplicates)) {
    }
    return YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw UserError(fmt::format("{}:{}:{}: YAML syntax error: {}", origin, e.mark.line + 1, e.mark.column + 1, e.msg));
  }
}

YAML::Node read_yaml_file(const std::string& path, const std::string& role) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) throw UserError(fmt::format("{} '{}' does not exist", role, path));
  if (fs::is_directory(path, ec)) throw UserError(fmt::format("{} '{}' is a directory", role, path));
  std::ifstream in(path);
  std::stringstream text;
  if (in) text << in.rdbuf();
  if (!in) throw UserError(fmt::format("{} '{}' cannot be read", role, path));
  return parse_yaml(text.str(), path);
}

}  // namespace ft
