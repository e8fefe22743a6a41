#include "comm/watchdog.h"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <ctime>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "comm/log.h"
#include "comm/work_queue.h"

namespace ft {
namespace {

// Lock-free, so safe to touch in a handler and to read from any thread.
std::atomic<int> g_stop_signal{0};
std::atomic<std::int64_t> g_stop_at_ns{0};
static_assert(std::atomic<int>::is_always_lock_free && std::atomic<std::int64_t>::is_always_lock_free);

std::int64_t monotonic_ns() {  // clock_gettime is async-signal-safe
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<std::int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

// The signals a launcher relays a stop as, indexed by the relay: the signal the user sent
// (filled before the handlers are installed, then only read).
int g_relayed_from[NSIG] = {};

constexpr struct {
  int sig;
  const char* name;
} kSignalNames[] = {{SIGTERM, "SIGTERM"}, {SIGINT, "SIGINT"},   {SIGHUP, "SIGHUP"},   {SIGUSR1, "SIGUSR1"},
                    {SIGUSR2, "SIGUSR2"}, {SIGALRM, "SIGALRM"}, {SIGQUIT, "SIGQUIT"}, {SIGXCPU, "SIGXCPU"}};

int signal_number(std::string_view name) {
  for (const auto& s : kSignalNames)
    if (name == s.name) return s.sig;
  return 0;
}

extern "C" void on_stop_signal(int sig) {
  if (g_stop_signal.load() == 0) {
    g_stop_at_ns = monotonic_ns();
    g_stop_signal = g_relayed_from[sig] ? g_relayed_from[sig] : sig;
    return;
  }
  if (monotonic_ns() - g_stop_at_ns.load() < 2000000000) return;  // the same stop, delivered twice
  // Asked again: end now, by that signal.
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

constexpr int kTagBase = 7100;
constexpr double kPoll = 0.05;   // seconds between the thread's checks
// Seconds a round waits for every rank's answer. Live ranks answer within a poll or two; and
// when a rank dies, mpirun gives the others one second between SIGTERM and SIGKILL to say so.
constexpr double kGrace = 0.5;

// "rank 3" or "ranks 0, 2, 5", with their hosts.
std::string name_ranks(const std::vector<int>& ranks, const std::vector<std::string>& hosts) {
  std::vector<std::string> on;
  for (int r : ranks)
    if (std::find(on.begin(), on.end(), hosts[static_cast<std::size_t>(r)]) == on.end())
      on.push_back(hosts[static_cast<std::size_t>(r)]);
  return fmt::format("rank{} {} ({})", ranks.size() == 1 ? "" : "s", fmt::join(ranks, ", "), fmt::join(on, ", "));
}

}  // namespace

void install_stop_handlers() {
  static bool installed = false;
  if (installed) return;
  installed = true;
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // MPI's and HDF5's system calls go on; the flag is read between steps
  std::vector<int> stops = {SIGTERM, SIGINT, SIGUSR1};
  for (const auto& [relay, from] : relayed_stop_signals(std::getenv("FIBERTRAIN_STOP_RELAY"))) {
    g_relayed_from[relay] = from;
    stops.push_back(relay);
  }
  for (int sig : stops) {
    // A signal ignored at start stays ignored, as shells leave Ctrl-C to background jobs.
    struct sigaction old {};
    if (sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;
    sigaction(sig, &sa, nullptr);
  }
}

int stop_signal() { return g_stop_signal.load(); }

std::string signal_name(int sig) {
  for (const auto& s : kSignalNames)
    if (sig == s.sig) return s.name;
  return fmt::format("signal {}", sig);
}

std::vector<std::pair<int, int>> relayed_stop_signals(const char* spec) {
  std::vector<std::pair<int, int>> out;
  if (!spec) return out;
  std::string_view rest(spec);
  while (!rest.empty()) {
    const std::size_t comma = rest.find(',');
    const std::string_view pair = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    const std::size_t eq = pair.find('=');
    const int relay = eq == std::string_view::npos ? 0 : signal_number(pair.substr(0, eq));
    const int from = eq == std::string_view::npos ? 0 : signal_number(pair.substr(eq + 1));
    if (relay > 0 && relay < NSIG && from > 0) out.emplace_back(relay, from);
  }
  return out;
}

struct Watchdog::State {
  std::int32_t step = -1;
  std::int32_t timed_out = 0;
  double in_step = 0;
  double limit = 0;
  char phase[80] = {};
};

Watchdog::Watchdog(MPI_Comm world, std::vector<std::string> hosts, WatchdogLimits limits)
    : hosts_(std::move(hosts)), limits_(limits) {
  MPI_Comm_dup(world, &comm_);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  install_stop_handlers();
  // Every pair's connection made now, at leisure: a round must not wait for them.
  std::vector<int> out(static_cast<std::size_t>(size_)), in(out.size());
  MPI_Alltoall(out.data(), 1, MPI_INT, in.data(), 1, MPI_INT, comm_);
  thread_ = std::thread([this] { loop(); });
}

Watchdog::~Watchdog() {
  closing_ = true;
  thread_.join();
  MPI_Comm_free(&comm_);
}

void Watchdog::pause(bool on) {
  if (!on) step_start_ = now_seconds();
  paused_ = on;
}

void Watchdog::step_begin(int step) {
  step_start_ = now_seconds();
  step_ = step;
}

void Watchdog::step_end(double seconds) {
  std::lock_guard lock(mutex_);
  step_times_.push_back(seconds);
  constexpr std::size_t kWindow = 51;
  if (step_times_.size() > kWindow) step_times_.erase(step_times_.begin());
  std::vector<double> sorted = step_times_;
  std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(sorted.size() / 2), sorted.end());
  median_ = sorted[sorted.size() / 2];
}

double Watchdog::limit() const {
  if (limits_.factor <= 0) return std::numeric_limits<double>::infinity();
  std::lock_guard lock(mutex_);
  // The first steps warm caches, allocators and libraries: only the floor holds until three are timed.
  if (step_times_.size() < 3) return limits_.floor_s;
  return std::max(limits_.floor_s, limits_.factor * median_);
}

void Watchdog::loop() {
  MPI_Request closed = MPI_REQUEST_NULL;  // the barrier of the ranks that are done
  for (;;) {
    std::this_thread::sleep_for(std::chrono::duration<double>(kPoll));
    int called = 0;
    MPI_Iprobe(MPI_ANY_SOURCE, kTagBase + rounds_, comm_, &called, MPI_STATUS_IGNORE);
    if (closing_) {
      // Done here: only answer the others' rounds until all are done too.
      if (closed == MPI_REQUEST_NULL) MPI_Ibarrier(comm_, &closed);
      if (called) round(false);
      int done = 0;
      MPI_Test(&closed, &done, MPI_STATUS_IGNORE);
      if (done) return;
      continue;
    }
    const bool timed_out = !paused_ && step_ >= 0 && now_seconds() - step_start_ > limit();
    const bool signalled = stop_signal() != 0 && !signal_checked_;
    if (signalled) signal_checked_ = true;
    if (called || timed_out || signalled) round(timed_out);
  }
}

void Watchdog::round(bool timed_out) {
  const int tag = kTagBase + rounds_++;
  State mine;
  mine.step = step_;
  mine.timed_out = timed_out;
  mine.in_step = step_ >= 0 ? now_seconds() - step_start_ : 0;
  mine.limit = limit();
  std::strncpy(mine.phase, phase_.load(), sizeof mine.phase - 1);
  std::vector<State> states(static_cast<std::size_t>(size_));
  std::vector<bool> answered(static_cast<std::size_t>(size_), false);
  states[static_cast<std::size_t>(rank_)] = mine;
  answered[static_cast<std::size_t>(rank_)] = true;
  sent_.emplace_back(reinterpret_cast<const char*>(&mine), reinterpret_cast<const char*>(&mine) + sizeof mine);
  std::vector<MPI_Request> recvs(static_cast<std::size_t>(size_), MPI_REQUEST_NULL);
  std::vector<MPI_Request> sends;
  for (int peer = 0; peer < size_; ++peer) {
    if (peer == rank_) continue;
    MPI_Irecv(&states[static_cast<std::size_t>(peer)], sizeof(State), MPI_BYTE, peer, tag, comm_,
              &recvs[static_cast<std::size_t>(peer)]);
    sends.emplace_back();
    MPI_Isend(sent_.back().data(), sizeof(State), MPI_BYTE, peer, tag, comm_, &sends.back());
  }
  const double deadline = now_seconds() + kGrace;
  int missing = size_ - 1;
  while (missing > 0 && now_seconds() < deadline) {
    for (int peer = 0; peer < size_; ++peer) {
      auto p = static_cast<std::size_t>(peer);
      if (answered[p]) continue;
      int done = 0;
      MPI_Test(&recvs[p], &done, MPI_STATUS_IGNORE);
      if (done) answered[p] = true, --missing;
    }
    if (missing > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  bool hung = false;
  for (int r = 0; r < size_; ++r)
    if (answered[static_cast<std::size_t>(r)] && states[static_cast<std::size_t>(r)].timed_out) hung = true;
  if (missing > 0 || hung) report_and_abort(states, answered);
  // Everyone answered and no step is past its limit (a stop signal's round): carry on.
  MPI_Waitall(static_cast<int>(sends.size()), sends.data(), MPI_STATUSES_IGNORE);
}

void Watchdog::report_and_abort(const std::vector<State>& states, const std::vector<bool>& answered) {
  int reporter = 0;
  while (!answered[static_cast<std::size_t>(reporter)]) ++reporter;
  if (rank_ == reporter) {
    std::vector<int> lost;
    std::map<std::string, std::vector<int>> by_phase;
    const State* late = nullptr;  // the rank furthest past its limit
    for (int r = 0; r < size_; ++r) {
      const State& s = states[static_cast<std::size_t>(r)];
      if (!answered[static_cast<std::size_t>(r)]) {
        lost.push_back(r);
        continue;
      }
      by_phase[s.phase].push_back(r);
      if (!late || s.in_step - s.limit > late->in_step - late->limit) late = &s;
    }
    const int step = late->step;
    std::vector<std::string> where;
    for (const auto& [phase, ranks] : by_phase) where.push_back(fmt::format("{}: {}", name_ranks(ranks, hosts_), phase));
    std::string at = step >= 0 ? fmt::format("in step {}", step + 1) : "before the first step";
    if (!lost.empty())
      log::error("{} stopped answering {} (dead, stopped, or unreachable); {}; ending the job", name_ranks(lost, hosts_),
                 at, fmt::join(where, "; "));
    else
      log::error("watchdog: step {} has run {:.1f} s, past its limit of {:.1f} s (train.watchdog times the median "
                 "step, at least train.watchdog_min); {}; ending the job",
                 step + 1, late->in_step, late->limit, fmt::join(where, "; "));
  } else {
    // Let the reporter's line out before the launcher takes the job down.
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, kExitHang);
  std::_Exit(kExitHang);
}

}  // namespace ft
