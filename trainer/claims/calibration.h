// Calibrating the cost model on a measured run, and predicting others.
//
// The gradient sync starts with the first bucket backward completes and runs while
// backward goes on: for `hideable` seconds (first bucket's start to backward's end) it is
// free. Through the bottleneck link it needs bytes / rate + latency x steps, plus a fixed
// cost F for what does not overlap (per-message costs, the last bucket, stragglers). So
//
//   step(rate) = flat + max(tail(rate), bytes / rate + latency x steps + F - hideable)
//
// where flat is the step without exposed communication and tail(rate) the last bucket,
// which can only start when backward ends (its bytes / rate + F / buckets). The knee, the
// rate below which the sync no longer hides, is bytes / (hideable - F - latency x steps).
//
// A run whose sync does not hide (a slow link) shows F: F = exposed - bytes / rate -
// latency x steps + hideable. Calibrate on such a run; on a run whose sync hides, F is
// only bounded above.
#pragma once

#include <string>

#include "comm/topology.h"

namespace ft {

struct Calibration {
  std::string run;
  Tier tier = Tier::inter_node;  // the emulated link with the lowest rate: the one a sweep varies
  double bits_per_second = 0;    // its rate in the run
  double latency = 0;            // its latency in the run
  int latency_steps = 0;         // sequential messages a step pays its latency for
  double uplink_bytes = 0;       // bytes through one uplink of that tier per step
  double tail_bytes = 0;         // of which in the bucket that waits for backward's end
  int buckets = 1;
  double messages = 0;           // messages per step, all tiers
  double step_time = 0;          // median over steps (slowest rank)
  double compute_rate = 0;       // model FLOP/s per rank in forward + backward
  double exposed = 0;            // median communication the compute thread waited for
  double flat = 0;               // step time without exposed communication
  double hideable = 0;           // median time from the first bucket's sync to backward's end
  double fixed = 0;              // F: the sync's cost that does not overlap
  bool hides = false;            // the run's sync hid (F is then an upper bound)

  double per_message() const { return messages > 0 ? fixed / messages : 0; }
  double predict(double bits_per_second) const;
  double knee() const;
};

// Throws UserError when `path` is not a step log of a data-parallel run with an emulated link.
Calibration calibrate(const std::string& path);

}  // namespace ft
