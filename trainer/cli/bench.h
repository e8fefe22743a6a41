// The `bench` sub-commands, and what they share.
#pragma once

#include <cstddef>
#include <string>

#include "trainer/cli/cli.h"

namespace ft {

void add_model_bench(CLI::App& bench, Action& action);
void add_collectives_bench(CLI::App& bench, Action& action);

// A size flag with units (4KiB, 64MiB); throws UserError naming the flag.
std::size_t parse_size_flag(const char* flag, const std::string& text);

}  // namespace ft
