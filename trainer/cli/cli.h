// Sub-commands of the fibertrain binary. Each adds itself to the app and sets `action`
// to what runs when it is chosen.
#pragma once

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

namespace ft {

using Action = std::function<int()>;

// The process's command line, joined by spaces (set by main).
std::string& command_line();

// JSON output: a quoted string; a number to `digits` significant digits, or null where JSON
// has none (infinity, NaN: a knee never reached, a rate that does not exist).
inline std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\';
    out += ch;
  }
  return out + "\"";
}
inline std::string json_number(double v, int digits = 4) {
  return std::isfinite(v) ? fmt::format("{:.{}g}", v, digits) : "null";
}

// A flag's check: a finite number above zero ("nan", "inf" and "-1" are refused by name).
inline CLI::Validator positive_number() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        std::size_t used = 0;
        double v = 0;
        try {
          v = std::stod(text, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used == 0 || used != text.size()) return "'" + text + "' is not a number";
        if (!std::isfinite(v) || v <= 0) return "'" + text + "' is not a finite number above zero";
        return {};
      },
      "POSITIVE");
}

// Every command of the binary, one of which is required.
void add_commands(CLI::App& app, Action& action);
// Throws CLI::ParseError naming a word where a command belongs that names none
// ("unknown command 'trian' (did you mean 'train'?)"); `args` without the program's name.
void check_command_names(const CLI::App& app, const std::vector<std::string>& args);

void add_train_command(CLI::App& app, Action& action);
void add_bench_command(CLI::App& app, Action& action);
void add_claims_command(CLI::App& app, Action& action);
void add_simulate_command(CLI::App& app, Action& action);

}  // namespace ft
