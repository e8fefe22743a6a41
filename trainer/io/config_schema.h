// The machinery behind config.h: each config struct lists its keys once, in a
// `describe(visitor, struct)` function, and the visitors below read them from YAML (with
// validation), write them back as YAML, and list them for documentation.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "comm/error.h"
#include "trainer/io/units.h"

namespace ft::config {

// A constraint on one value: its description ("at least 1") and the test.
template <class T> struct Check {
  std::string text;
  std::function<bool(const T&)> ok;
};

template <class T> Check<T> at_least(T lo) {
  return {fmt::format("at least {}", lo), [lo](const T& v) { return v >= lo; }};
}
template <class T> Check<T> in_range(T lo, T hi) {
  return {fmt::format("between {} and {}", lo, hi), [lo, hi](const T& v) { return v >= lo && v <= hi; }};
}
Check<std::string> one_of(std::vector<std::string> choices);
Check<Bytes> at_least_bytes(std::uint64_t lo);
Check<double> positive();

// Type names as users see them in messages and documentation.
template <class T> constexpr const char* type_name();
template <> constexpr const char* type_name<int>() { return "integer"; }
template <> constexpr const char* type_name<std::int64_t>() { return "integer"; }
template <> constexpr const char* type_name<std::uint64_t>() { return "integer"; }
template <> constexpr const char* type_name<double>() { return "number"; }
template <> constexpr const char* type_name<bool>() { return "true/false"; }
template <> constexpr const char* type_name<std::string>() { return "string"; }
template <> constexpr const char* type_name<Bytes>() { return "size"; }
template <> constexpr const char* type_name<BitRate>() { return "bit rate"; }
template <> constexpr const char* type_name<Duration>() { return "duration"; }

// "an integer", "a size".
std::string with_article(const char* noun);

// Text form of a value as written in YAML.
std::string to_text(int v);
std::string to_text(std::int64_t v);
std::string to_text(std::uint64_t v);
std::string to_text(double v);
std::string to_text(bool v);
std::string to_text(const std::string& v);
std::string to_text(Bytes v);
std::string to_text(BitRate v);
std::string to_text(Duration v);

// Parses a scalar into `out`; returns an error message (without location) or "".
std::string from_text(const std::string& text, int& out);
std::string from_text(const std::string& text, std::int64_t& out);
std::string from_text(const std::string& text, std::uint64_t& out);
std::string from_text(const std::string& text, double& out);
std::string from_text(const std::string& text, bool& out);
std::string from_text(const std::string& text, std::string& out);
std::string from_text(const std::string& text, Bytes& out);
std::string from_text(const std::string& text, BitRate& out);
std::string from_text(const std::string& text, Duration& out);

// The closest of `candidates` to `word` if it is close enough to be a likely typo.
std::optional<std::string> closest(const std::string& word, const std::vector<std::string>& candidates);

// Where a key's value came from, for messages: "configs/tiny.yaml:7" or "--set model.heads=3".
class Origins {
 public:
  Origins(std::string file, std::vector<std::pair<std::string, std::string>> overrides)
      : file_(std::move(file)), overrides_(std::move(overrides)) {}
  std::string locate(const std::string& path, const YAML::Node& node) const;

 private:
  std::string file_;
  std::vector<std::pair<std::string, std::string>> overrides_;
};

// Reads keys from a YAML map into a struct, checking type and range; unknown keys are
// refused with the closest known name.
class Decoder {
 public:
  Decoder(const YAML::Node& node, std::string path, const Origins& origins);

  template <class T, class... C> void key(const char* name, T& field, const char* doc, const C&... checks) {
    known_.push_back(name);
    YAML::Node value = lookup(name);
    if (!value) return;
    std::string where = origins_.locate(full(name), value);
    if (!value.IsScalar())
      fail(where, full(name), fmt::format("expected {}, got {}", with_article(type_name<T>()), kind(value)));
    std::string err = from_text(value.Scalar(), field);
    if (!err.empty()) fail(where, full(name), err);
    (check_one(where, name, field, checks), ...);
  }

  template <class S> void section(const char* name, S& s, const char* doc) {
    known_.push_back(name);
    YAML::Node value = lookup(name);
    if (!value || value.IsNull()) return;
    Decoder sub = nested(name, value);
    describe(sub, s);
    sub.finish();
  }

  // A section that is absent unless the user writes it (e.g. one link per tier).
  template <class S> void optional_section(const char* name, std::optional<S>& s, const std::string& doc) {
    known_.push_back(name);
    YAML::Node value = lookup(name);
    if (!value || value.IsNull()) return;
    if (!s) s.emplace();
    Decoder sub = nested(name, value);
    describe(sub, *s);
    sub.finish();
  }

  // Refuses keys that no key()/section() call named.
  void finish() const;

 private:
  YAML::Node lookup(const char* name) const;
  Decoder nested(const char* name, const YAML::Node& value) const;
  std::string full(const std::string& name) const { return path_.empty() ? name : path_ + "." + name; }
  static std::string kind(const YAML::Node& n);
  [[noreturn]] static void fail(const std::string& where, const std::string& key, const std::string& msg);
  template <class T> void check_one(const std::string& where, const char* name, const T& v, const Check<T>& c) const {
    if (!c.ok(v)) fail(where, full(name), fmt::format("must be {}, got {}", c.text, to_text(v)));
  }

  YAML::Node node_;
  std::string path_;
  const Origins& origins_;
  std::vector<std::string> known_;
};

// Writes a struct back as a YAML map, every key with its value (defaults included).
class Encoder {
 public:
  explicit Encoder(YAML::Emitter& out) : out_(out) {}
  template <class T, class... C> void key(const char* name, const T& field, const char*, const C&...) {
    out_ << YAML::Key << name << YAML::Value << to_text(field);
  }
  template <class S> void section(const char* name, const S& s, const char*) {
    out_ << YAML::Key << name << YAML::Value << YAML::BeginMap;
    describe(*this, const_cast<S&>(s));
    out_ << YAML::EndMap;
  }
  template <class S> void optional_section(const char* name, const std::optional<S>& s, const std::string& doc) {
    if (s) section(name, *s, doc.c_str());
  }

 private:
  YAML::Emitter& out_;
};

// One documented key: its dotted path, type, default, constraints and meaning.
struct KeyDoc {
  std::string path, type, default_value, constraints, doc;
};

class Lister {
 public:
  explicit Lister(std::vector<KeyDoc>& out, std::string path = "") : out_(out), path_(std::move(path)) {}
  template <class T, class... C> void key(const char* name, const T& field, const char* doc, const C&... checks) {
    std::vector<std::string> texts{checks.text...};
    out_.push_back({full(name), type_name<T>(), to_text(field), fmt::format("{}", fmt::join(texts, "; ")), doc});
  }
  template <class S> void section(const char* name, const S& s, const char* doc) {
    Lister sub(out_, full(name));
    describe(sub, const_cast<S&>(s));
  }
  template <class S> void optional_section(const char* name, const std::optional<S>&, const std::string& doc) {
    out_.push_back({full(name), "section", "absent", "", doc});
    S defaults{};
    Lister sub(out_, full(name));
    describe(sub, defaults);
  }

 private:
  std::string full(const std::string& name) const { return path_.empty() ? name : path_ + "." + name; }
  std::vector<KeyDoc>& out_;
  std::string path_;
};

}  // namespace ft::config
