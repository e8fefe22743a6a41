// Console output. Progress and notes come from rank 0 only; warnings and errors from the
// rank that has them, prefixed with its number when the job has more than one.
#pragma once

#include <cstdio>
#include <string>

#include <fmt/format.h>

namespace ft::log {

void set_rank(int rank, int world_size);
void set_quiet(bool quiet);
bool quiet();
int rank();

void write_info(const std::string& line);
void write_warning(const std::string& line);
void write_error(const std::string& line);
void write_notice(const std::string& line);

// Rank 0, stdout; silenced by --quiet.
template <class... A> void info(fmt::format_string<A...> f, A&&... a) {
  if (rank() == 0 && !quiet()) write_info(fmt::format(f, std::forward<A>(a)...));
}
// This rank, stderr.
template <class... A> void warn(fmt::format_string<A...> f, A&&... a) {
  write_warning(fmt::format(f, std::forward<A>(a)...));
}
// This rank, stderr, not silenced: how a run ended when it was not an error.
template <class... A> void notice(fmt::format_string<A...> f, A&&... a) {
  write_notice(fmt::format(f, std::forward<A>(a)...));
}
template <class... A> void error(fmt::format_string<A...> f, A&&... a) {
  write_error(fmt::format(f, std::forward<A>(a)...));
}

}  // namespace ft::log
