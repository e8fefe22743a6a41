// How a training job ends when something outside the code goes wrong: a stop asked for by
// a signal, a rank that died or stopped answering, a step that hangs.
//
// Stop signals (SIGTERM, SIGINT, SIGUSR1, and those launch/mpirun.sh relays them as,
// because mpirun kills its ranks a second after it is itself signalled) only set a flag; the
// trainer agrees on it across ranks at the next step boundary and stops there. Another
// stop signal two seconds or more later ends the process at once (sooner, it is the same
// stop delivered twice, as Slurm may: to the step and through srun).
//
// The watchdog is one thread per rank. When its step has run past the limit, or a stop
// signal arrived (launchers also signal the survivors when a rank dies), it starts a
// round: every rank's watchdog thread sends its state (step, phase) to every other on a
// communicator of its own, so the round completes even while the main threads are stuck
// in a collective. A rank that does not answer within a grace period is dead or stopped;
// a step past its limit with everyone answering is a hang. Either way the lowest answering
// rank prints one line naming the ranks, hosts and phases, and the job is aborted.
#pragma once

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <mpi.h>

namespace ft {

// Exit code of a job the watchdog ended (a rank lost or a step hung).
inline constexpr int kExitHang = 3;

// Installs the stop-signal handlers (once; `train` does, as soon as MPI is up).
void install_stop_handlers();
// The first stop signal this process received; 0 = none.
int stop_signal();
// "SIGTERM", "SIGINT", ...
std::string signal_name(int sig);
// A launcher whose own launcher (mpirun) would kill the ranks on SIGINT, SIGTERM or SIGHUP
// relays each as a signal that mpirun forwards instead, and names the pairs in the ranks'
// FIBERTRAIN_STOP_RELAY: "SIGUSR1=SIGINT,SIGUSR2=SIGTERM". The ranks stop on the relay and
// name the signal the user sent. (relay, sent) pairs of `spec`; unknown names are skipped.
std::vector<std::pair<int, int>> relayed_stop_signals(const char* spec);

struct WatchdogLimits {
  double factor = 20;    // times the median step time; 0 = no step limit
  double floor_s = 120;  // the limit never goes below this (and is this until steps are timed)
};

class Watchdog {
 public:
  // Collective over `world`: duplicates it for the watchdog's own messages, connects every
  // pair of ranks on it, and starts the thread. `hosts` names each world rank's host.
  Watchdog(MPI_Comm world, std::vector<std::string> hosts, WatchdogLimits limits);
  // Collective: the thread keeps answering rounds until every rank has come here, so a
  // rank that finishes first is never taken for lost.
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Main thread. A step's time counts from step_begin; step_end adds it to the median.
  void step_begin(int step);
  void step_end(double seconds);
  // What the main thread is doing now, for the report: a string literal.
  void phase(const char* what) { phase_.store(what); }
  // While paused (a checkpoint being written) the step limit does not run; it restarts
  // from zero when the pause ends.
  void pause(bool on);
  double limit() const;

 private:
  struct State;  // what one rank reports in a round
  void loop();
  // Exchanges states with every rank; aborts the job when one is missing or a step hung.
  void round(bool timed_out);
  [[noreturn]] void report_and_abort(const std::vector<State>& states, const std::vector<bool>& answered);

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  std::vector<std::string> hosts_;
  WatchdogLimits limits_;
  std::atomic<int> step_{-1};
  std::atomic<double> step_start_{0};
  std::atomic<const char*> phase_{"start-up"};
  std::atomic<bool> paused_{false};
  mutable std::mutex mutex_;
  std::vector<double> step_times_;  // the last few, for the median
  double median_ = 0;
  int rounds_ = 0;  // rounds taken part in; the next one's tag follows
  bool signal_checked_ = false;
  std::vector<std::vector<char>> sent_;  // send buffers stay alive until the job ends
  std::atomic<bool> closing_{false};
  std::thread thread_;
};

}  // namespace ft
