#include <string>
#include <vector>

#include <fmt/format.h>

#include "trainer/cli/cli.h"
#include "trainer/io/config_schema.h"

namespace ft {

void add_commands(CLI::App& app, Action& action) {
  app.require_subcommand(1);
  add_train_command(app, action);
  add_bench_command(app, action);
  add_claims_command(app, action);
  add_simulate_command(app, action);
}

void check_command_names(const CLI::App& app, const std::vector<std::string>& args) {
  // Each level's first word that is not an option names one of its commands. (CLI11 alone
  // would take a misspelt one for a missing command.)
  const CLI::App* level = &app;
  for (const std::string& word : args) {
    if (word.empty() || word[0] == '-') return;
    std::vector<std::string> names;
    const CLI::App* next = nullptr;
    for (const CLI::App* sub : level->get_subcommands({})) {
      names.push_back(sub->get_name());
      if (sub->check_name(word)) next = sub;
    }
    if (names.empty()) return;
    if (!next) {
      const std::string where = level == &app ? "command" : fmt::format("{} command", level->get_name());
      const auto near = config::closest(word, names);
      throw CLI::ParseError(fmt::format("unknown {} '{}' ({})", where, word,
                                        near ? fmt::format("did you mean '{}'?", *near)
                                             : fmt::format("commands: {}", fmt::join(names, ", "))),
                            CLI::ExitCodes::ExtrasError);
    }
    level = next;
  }
}

}  // namespace ft
