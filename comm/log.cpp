#include "comm/log.h"

#include <atomic>
#include <mutex>

namespace ft::log {
namespace {
std::atomic<int> g_rank{0};
std::atomic<int> g_world{1};
std::atomic<bool> g_quiet{false};
std::mutex g_mutex;

std::string prefix(const char* kind) {
  // Rank 0 speaks for the job; other ranks name themselves.
  if (g_world.load() > 1 && g_rank.load() != 0) return fmt::format("fibertrain: [rank {}] {}", g_rank.load(), kind);
  return fmt::format("fibertrain: {}", kind);
}
}  // namespace

void set_rank(int r, int world_size) {
  g_rank = r;
  g_world = world_size;
}
void set_quiet(bool q) { g_quiet = q; }
bool quiet() { return g_quiet; }
int rank() { return g_rank; }

void write_info(const std::string& line) {
  std::lock_guard lock(g_mutex);
  std::fputs(line.c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

void write_warning(const std::string& line) {
  std::lock_guard lock(g_mutex);
  std::fprintf(stderr, "%s%s\n", prefix("warning: ").c_str(), line.c_str());
}

void write_error(const std::string& line) {
  std::lock_guard lock(g_mutex);
  std::fprintf(stderr, "%s%s\n", prefix("error: ").c_str(), line.c_str());
}

void write_notice(const std::string& line) {
  std::lock_guard lock(g_mutex);
  std::fprintf(stderr, "%s%s\n", prefix("").c_str(), line.c_str());
}

}  // namespace ft::log
