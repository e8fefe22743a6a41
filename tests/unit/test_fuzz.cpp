// Fixed-seed fuzzing of what a user types: mutated YAML configs, --set overrides and command
// lines. Every case must either load or fail with a UserError (a CLI::ParseError for flags)
// whose message is one line; a config that loads must pass through its resolved YAML
// unchanged. tests/e2e/test_fuzz.py runs a sample of the same kinds through the binary.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "comm/error.h"
#include "trainer/cli/cli.h"
#include "trainer/io/config.h"

std::string& ft::command_line() {
  static std::string line;
  return line;
}

namespace ft {
namespace {

// Values that have broken parsers before, or might: non-finite, huge, negative, empty, the
// wrong YAML shape, units on the wrong kind, YAML syntax fragments.
const std::vector<std::string> kTokens = {
    "nan", ".nan", "NaN", "inf", "-inf", ".inf", "-.inf", "-1", "0", "1", "2", "3", "7", "64", "1e400", "-1e-400",
    "1e-30", "99999999999999999999", "2147483648", "-2147483649", "[1, 2]", "[]", "{a: 1}", "{}", "", "~", "null",
    "\"\"", "'x'", "true", "no", "2GiB", "0B", "16TiB", "1Tbit", "-5Mbit", "0bit", "1ms", "-1s", "abc", "1/0",
    "0x10", "&a 1", "*a", "!!binary aGk=", "{", "[", ":", "- x", "? [a, b]", "%", "@", "`", "ring", "hierarchical",
    "int8", "topk", "powersgd", "cuda", "bf16", "{codec: topk, ratio: 2}", "{bandwidth: nan}", "1.5", "0.0001"};

class Fuzzer {
 public:
  explicit Fuzzer(std::uint32_t seed) : rng_(seed) {}
  std::size_t pick(std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng_); }
  const std::string& token() { return kTokens[pick(kTokens.size())]; }

  // One to three edits of `yaml`, line by line.
  std::string mutate(const std::string& yaml, const std::vector<std::string>& keys) {
    std::vector<std::string> lines;
    std::istringstream in(yaml);
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    for (int edits = 1 + static_cast<int>(pick(3)); edits > 0 && !lines.empty(); --edits) {
      std::string& l = lines[pick(lines.size())];
      std::size_t colon = l.find(':');
      switch (pick(7)) {
        case 0:  // a value
          if (colon != std::string::npos) l = l.substr(0, colon + 1) + " " + token();
          break;
        case 1:  // a key
          if (colon != std::string::npos) l = l.substr(0, l.find_first_not_of(' ')) + token() + l.substr(colon);
          break;
        case 2:
          lines.erase(lines.begin() + static_cast<std::ptrdiff_t>(pick(lines.size())));
          break;
        case 3:
          lines.insert(lines.begin() + static_cast<std::ptrdiff_t>(pick(lines.size())), l);
          break;
        case 4:  // indentation
          l = (pick(2) ? "  " : "") + l.substr(std::min(l.size(), std::size_t{pick(2) * 2}));
          break;
        case 5: {  // a key of another section, here
          const std::string& k = keys[pick(keys.size())];
          lines.insert(lines.begin() + static_cast<std::ptrdiff_t>(pick(lines.size())),
                       std::string(pick(2) * 2, ' ') + k.substr(k.rfind('.') + 1) + ": " + token());
          break;
        }
        default:  // a stray character
          l.insert(pick(l.size() + 1), 1, "\t:#[]{}&*!|>'\"%@`,-?"[pick(20)]);
      }
    }
    std::string out;
    for (const auto& l : lines) out += l + "\n";
    return out;
  }

 private:
  std::mt19937 rng_;
};

// Loads, then checks the launch at several world sizes and the resolved YAML's round trip.
// Anything thrown but a one-line UserError fails the test.
void expect_clean(const std::function<Config()>& load, const std::string& what) {
  try {
    Config c = load();
    for (int world : {1, 2, 3, 4, 8}) {
      try {
        validate_launch(c, world);
      } catch (const UserError& e) {
        EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << what << "\n" << e.what();
      }
    }
    std::string yaml = to_yaml(c);
    Config again = load_config_text(yaml, "resolved");
    EXPECT_EQ(to_yaml(again), yaml) << what;
  } catch (const UserError& e) {
    std::string m = e.what();
    EXPECT_FALSE(m.empty()) << what;
    EXPECT_EQ(m.find('\n'), std::string::npos) << what << "\nmessage: " << m;
    EXPECT_EQ(m.find("internal error"), std::string::npos) << what << "\nmessage: " << m;
  } catch (const std::exception& e) {
    ADD_FAILURE() << what << "\nthrew " << e.what();
  }
}

std::vector<std::string> key_paths() {
  std::vector<std::string> keys;
  for (const auto& k : list_keys()) keys.push_back(k.path);
  return keys;
}

TEST(Fuzz, MutatedConfigsLoadOrFailWithOneLine) {
  const std::string base = to_yaml(load_config("", {}));
  const std::vector<std::string> keys = key_paths();
  const std::string path =
      (std::filesystem::temp_directory_path() / ("ft_fuzz_" + std::to_string(::getpid()) + ".yaml")).string();
  Fuzzer f(20261123);
  for (int i = 0; i < 5000; ++i) {
    std::string yaml = f.mutate(base, keys);
    // As a user's file and as a stored config attribute.
    std::ofstream(path) << yaml;
    expect_clean([&] { return load_config(path, {}); }, "case " + std::to_string(i) + ":\n" + yaml);
    expect_clean([&] { return load_config_text(yaml, "fuzz.yaml"); }, "case " + std::to_string(i) + ":\n" + yaml);
  }
  std::filesystem::remove(path);
}

TEST(Fuzz, OverridesLoadOrFailWithOneLine) {
  const std::vector<std::string> keys = key_paths();
  Fuzzer f(7);
  for (int i = 0; i < 5000; ++i) {
    std::vector<std::string> texts;
    for (int n = 1 + static_cast<int>(f.pick(3)); n > 0; --n) {
      std::string key = f.pick(10) ? keys[f.pick(keys.size())] : f.token();
      if (f.pick(8) == 0) key = key.substr(0, key.find('.'));  // a whole section
      texts.push_back(f.pick(20) ? key + "=" + f.token() : f.token());
    }
    std::string what = "case " + std::to_string(i) + ":";
    for (const auto& t : texts) what += " --set " + t;
    expect_clean(
        [&] {
          std::vector<Override> overrides;
          for (const auto& t : texts) overrides.push_back(parse_override(t));
          return load_config("", overrides);
        },
        what);
  }
}

TEST(Fuzz, CommandLinesParseOrFailWithOneLine) {
  const std::vector<std::string> words = {
      "train", "bench", "model", "collectives", "claims", "simulate", "--profile", "--utilisation", "--tier",
      "configs/profiles/b200-claims.yaml", "trian", "--set", "--out", "--resume", "--dry-run", "-q", "--keys",
      "--overwrite", "--config", "--min", "--max", "--factor", "--chunk", "--warmup", "--iters", "--op", "--algos",
      "--params", "--tokens", "--flops", "--latency", "--format", "--calibrate", "--predict", "--threads", "--help",
      "configs/tiny.yaml", "parallel.dp=2", "-n", "--", "-", "--set=", "=",
  };
  Fuzzer f(42);
  for (int i = 0; i < 5000; ++i) {
    std::vector<std::string> argv;
    for (int n = static_cast<int>(f.pick(6)); n >= 0; --n) argv.push_back(f.pick(2) ? words[f.pick(words.size())] : f.token());
    std::string what = "case " + std::to_string(i) + ": fibertrain";
    for (const auto& a : argv) what += " '" + a + "'";
    CLI::App app{"fibertrain"};
    Action action;
    add_commands(app, action);
    std::vector<std::string> reversed(argv.rbegin(), argv.rend());
    try {
      check_command_names(app, argv);
      app.parse(reversed);
    } catch (const CLI::CallForHelp&) {
    } catch (const CLI::CallForAllHelp&) {
    } catch (const CLI::ParseError& e) {
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << what << "\n" << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << what << "\nthrew " << e.what();
    }
  }
}

}  // namespace
}  // namespace ft
