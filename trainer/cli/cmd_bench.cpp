// `fibertrain bench <what>`: benchmarks that print a table and can write an HDF5 group.
#include <fmt/format.h>

#include "comm/error.h"
#include "trainer/cli/bench.h"
#include "trainer/io/units.h"

namespace ft {

std::size_t parse_size_flag(const char* flag, const std::string& text) {
  auto b = parse_bytes(text);
  if (!b) throw UserError(fmt::format("{} {}: cannot read as a size (examples: {})", flag, text, kBytesExamples));
  return b->value;
}

void add_bench_command(CLI::App& app, Action& action) {
  CLI::App* cmd = app.add_subcommand("bench", "Benchmarks: model (a training step), collectives (all-reduce & co.)");
  cmd->require_subcommand(1);
  add_model_bench(*cmd, action);
  add_collectives_bench(*cmd, action);
}

}  // namespace ft
