// Sub-commands of the fibertrain binary. Each adds itself to the app and sets `action`
// to what runs when it is chosen.
#pragma once

#include <functional>
#include <string>

#include <CLI/CLI.hpp>

namespace ft {

using Action = std::function<int()>;

// The process's command line, joined by spaces (set by main).
std::string& command_line();

void add_train_command(CLI::App& app, Action& action);
void add_bench_command(CLI::App& app, Action& action);
void add_claims_command(CLI::App& app, Action& action);

}  // namespace ft
