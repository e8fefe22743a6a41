// `fibertrain claims`: the back-of-envelope arguments, recomputed from their inputs;
// a question of your own (any input as a flag); `--calibrate run.h5`, the cost model fitted
// to a measured run, predicting the step time at other link rates; and `--methods DIR`, the
// low-communication methods a directory of step logs measured, carried to C7's and C10's
// systems.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "comm/error.h"
#include "comm/log.h"
#include "comm/runtime.h"
#include "trainer/claims/calibration.h"
#include "trainer/claims/cost_model.h"
#include "trainer/claims/methods.h"
#include "trainer/cli/cli.h"
#include "trainer/io/units.h"

namespace ft {
namespace {

struct ClaimsArgs {
  cost::Scenario scenario;
  std::string latency;
  std::string format = "table";
  std::string calibrate;
  std::vector<std::string> predict;
  std::string methods;
  bool asked = false;  // any scenario flag given
};

void print_claims(const ClaimsArgs& a) {
  auto rows = cost::claims(a.scenario);
  if (a.format == "json") {
    std::printf("[\n");
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const auto& r = rows[i];
      std::printf("  {\"id\": %s, \"claim\": %s, \"inputs\": %s, \"unit\": %s, \"stated\": %s, \"computed\": %s, "
                  "\"ratio\": %s}%s\n",
                  json_string(r.id).c_str(), json_string(r.claim).c_str(), json_string(r.inputs).c_str(),
                  json_string(r.unit).c_str(), json_number(r.stated).c_str(), json_number(r.computed).c_str(),
                  json_number(r.computed / r.stated).c_str(), i + 1 < rows.size() ? "," : "");
    }
    std::printf("]\n");
    return;
  }
  if (a.format == "csv") {
    std::printf("id,claim,inputs,unit,stated,computed,ratio\n");
    for (const auto& r : rows)
      std::printf("%s,\"%s\",\"%s\",%s,%s,%s,%s\n", r.id.c_str(), r.claim.c_str(), r.inputs.c_str(), r.unit.c_str(),
                  json_number(r.stated).c_str(), json_number(r.computed).c_str(), json_number(r.computed / r.stated).c_str());
    return;
  }
  std::printf("%-4s %-62s %10s %10s %6s  %-11s %s\n", "id", "claim", "stated", "computed", "ratio", "unit", "inputs");
  for (const auto& r : rows)
    std::printf("%-4s %-62s %10s %10s %6.2f  %-11s %s\n", r.id.c_str(), r.claim.c_str(), json_number(r.stated).c_str(),
                json_number(r.computed).c_str(), r.computed / r.stated, r.unit.c_str(), r.inputs.c_str());
  if (!a.asked) return;
  const auto& s = a.scenario;
  cost::Answer x = cost::answer(s);
  std::printf("\nyour scenario: %.3g parameters, %.3g tokens, %.0f GPUs of %.3g FLOP/s at MFU %.2g, %.0f-token sequences "
              "on %.0f GPUs each; %.0f top-level groups, %.3gx compression, %.2g s sync window\n",
              s.params, s.tokens, s.gpus, s.peak, s.mfu, s.seq_len, s.gpus_per_seq, s.sites, s.compression,
              s.comm_window);
  std::printf("  step time            %.3g s (%.0f sequences, %.3g tokens per step)\n", x.step_seconds,
              x.sequences_per_step, x.tokens_per_step);
  std::printf("  run                  %.3g steps, %.3g days, %.3g FLOPs, %.3g GPU-hours, $%.3g\n", x.steps,
              x.run_seconds / 86400, x.run_flops, x.gpu_hours, x.cost);
  std::printf("  gradient             %.3g bytes; each top-level uplink carries %.3g bytes per step\n", x.grad_bytes,
              x.top_bytes_per_group);
  std::printf("  top-level bandwidth  %s per uplink to sync within %.2g s%s\n",
              human_bitrate(x.top_bits_per_second).c_str(), s.comm_window,
              s.latency > 0 ? fmt::format("; latency is {:.2g}% of it", 100 * x.latency_share).c_str() : "");
}

// Each measured method's top-level rate for >= 90% compute utilisation on C7's system (the
// scenario's: one gradient copy across the top level per synchronous step) and on C10's.
void print_methods(const ClaimsArgs& a) {
  constexpr double kUtilisation = 0.9;
  const std::vector<MeasuredMethod> methods = read_methods(a.methods);
  const cost::Scenario& s7 = a.scenario;
  const cost::Scenario s10 = cost::c10_system(s7);
  const cost::Answer c7 = cost::answer(s7), c10 = cost::answer(s10);
  auto rate = [&](const MeasuredMethod& m, const cost::Answer& sys) {
    return cost::rate_for_utilisation(m.traffic * sys.grad_bytes, sys.step_seconds, m.period, m.hideable, kUtilisation);
  };
  if (a.format == "csv") {
    std::printf("method,file,loss_penalty,traffic,period,hideable_steps,c7_bits_per_second,c10_bits_per_second\n");
    for (const auto& m : methods)
      std::printf("\"%s\",\"%s\",%s,%s,%s,%s,%s,%s\n", m.name.c_str(), m.file.c_str(), json_number(m.loss_penalty).c_str(),
                  json_number(m.traffic).c_str(), json_number(m.period).c_str(), json_number(m.hideable).c_str(),
                  json_number(rate(m, c7)).c_str(), json_number(rate(m, c10)).c_str());
    return;
  }
  if (a.format == "json") {
    std::printf("[\n");
    for (std::size_t i = 0; i < methods.size(); ++i) {
      const auto& m = methods[i];
      std::printf("  {\"method\": %s, \"file\": %s, \"loss_penalty\": %s, \"traffic\": %s, \"period\": %s, "
                  "\"hideable_steps\": %s, \"c7_bits_per_second\": %s, \"c10_bits_per_second\": %s}%s\n",
                  json_string(m.name).c_str(), json_string(m.file).c_str(), json_number(m.loss_penalty).c_str(),
                  json_number(m.traffic).c_str(), json_number(m.period).c_str(), json_number(m.hideable).c_str(),
                  json_number(rate(m, c7)).c_str(), json_number(rate(m, c10)).c_str(), i + 1 < methods.size() ? "," : "");
    }
    std::printf("]\n");
    return;
  }
  std::printf("\ntop-level rate for >= 90%% compute utilisation, per method measured in %s\n", a.methods.c_str());
  std::printf("  C7:  %.3g parameters on %.0f GPUs, %.3g s steps, %.3g gradient bytes per synchronous step\n", s7.params,
              s7.gpus, c7.step_seconds, c7.grad_bytes);
  std::printf("  C10: %.3g parameters on %.0f GPUs, %.3g s steps, %.3g gradient bytes per synchronous step\n", s10.params,
              s10.gpus, c10.step_seconds, c10.grad_bytes);
  std::printf("  loss: final held-out loss against the dense synchronous run; traffic: its top-tier bytes per step "
              "against that run's;\n  period: steps between transfers; hides: steps of compute a transfer overlaps\n");
  int width = 6;
  for (const auto& m : methods) width = std::max(width, static_cast<int>(m.name.size()));
  std::printf("%-*s %8s %9s %7s %6s %14s %14s\n", width, "method", "loss", "traffic", "period", "hides", "C7 rate",
              "C10 rate");
  for (const auto& m : methods)
    std::printf("%-*s %+7.1f%% %9.3g %7.3g %6.3g %14s %14s\n", width, m.name.c_str(), 100 * m.loss_penalty, m.traffic,
                m.period, m.hideable, human_bitrate(rate(m, c7)).c_str(), human_bitrate(rate(m, c10)).c_str());
}

int run_calibration(const ClaimsArgs& a) {
  Calibration c = calibrate(a.calibrate);
  std::vector<double> rates;
  for (const auto& p : a.predict) {
    auto r = parse_bitrate(p);
    if (!r) throw UserError(fmt::format("--predict {}: cannot read as a bit rate (examples: {})", p, kBitRateExamples));
    rates.push_back(r->bits_per_second);
  }
  if (a.format == "json") {
    std::printf("{\"run\": %s, \"tier\": %s, \"bits_per_second\": %s, \"latency\": %s, \"latency_steps\": %d, "
                "\"uplink_bytes\": %s, \"tail_bytes\": %s, \"buckets\": %d, \"messages\": %s, \"step_time\": %s, "
                "\"compute_rate\": %s, \"exposed\": %s, \"flat\": %s, \"hideable\": %s, \"fixed\": %s, "
                "\"per_message\": %s, \"hides\": %s, \"knee\": %s, \"predictions\": [",
                json_string(c.run).c_str(), json_string(std::string(tier_name(c.tier))).c_str(),
                json_number(c.bits_per_second).c_str(), json_number(c.latency).c_str(), c.latency_steps,
                json_number(c.uplink_bytes).c_str(), json_number(c.tail_bytes).c_str(), c.buckets, json_number(c.messages).c_str(),
                json_number(c.step_time).c_str(), json_number(c.compute_rate).c_str(), json_number(c.exposed).c_str(),
                json_number(c.flat).c_str(), json_number(c.hideable).c_str(), json_number(c.fixed).c_str(),
                json_number(c.per_message()).c_str(), c.hides ? "true" : "false", json_number(c.knee()).c_str());
    for (std::size_t i = 0; i < rates.size(); ++i)
      std::printf("%s{\"bits_per_second\": %s, \"step_time\": %s}", i ? ", " : "", json_number(rates[i]).c_str(),
                  json_number(c.predict(rates[i])).c_str());
    std::printf("]}\n");
    return 0;
  }
  std::printf("calibrated on %s (%s link at %s, latency %s)\n", c.run.c_str(), std::string(tier_name(c.tier)).c_str(),
              human_bitrate(c.bits_per_second).c_str(), format_duration(Duration{c.latency}).c_str());
  std::printf("  compute rate       %.3g FLOP/s per rank (forward + backward)\n", c.compute_rate);
  std::printf("  step time          %.4g s = %.4g s without exposed communication + %.4g s exposed\n", c.step_time,
              c.flat, c.exposed);
  std::printf("  uplink bytes       %.4g per step through one %s uplink (%.4g in the last of %d buckets)\n",
              c.uplink_bytes, std::string(tier_name(c.tier)).c_str(), c.tail_bytes, c.buckets);
  std::printf("  hideable           %.4g s from the first bucket's sync to backward's end\n", c.hideable);
  std::printf("  fixed cost         %.4g s that does not overlap (%.0f messages: %.3g s each)%s\n", c.fixed, c.messages,
              c.per_message(), c.hides ? "; this run's sync hid, so this is an upper bound: calibrate on a slower link" : "");
  std::printf("  knee               %s (below it the sync no longer hides)\n", human_bitrate(c.knee()).c_str());
  if (!rates.empty()) std::printf("%14s %14s\n", "rate", "step time (s)");
  for (double r : rates) std::printf("%14s %14.4g\n", human_bitrate(r).c_str(), c.predict(r));
  return 0;
}

int run_claims(ClaimsArgs a) {
  if (launch_rank_from_env() != 0) return 0;
  try {
    if (a.format != "table" && a.format != "json" && a.format != "csv")
      throw UserError(fmt::format("--format {}: expected table, json or csv", a.format));
    if (!a.latency.empty()) {
      auto d = parse_duration(a.latency);
      if (!d) throw UserError(fmt::format("--latency {}: cannot read as a duration (examples: {})", a.latency,
                                          kDurationExamples));
      a.scenario.latency = d->seconds;
    }
    if (!a.calibrate.empty()) return run_calibration(a);
    if (!a.methods.empty() && a.format != "table") {  // one table per machine-readable output
      print_methods(a);
      return 0;
    }
    print_claims(a);
    if (!a.methods.empty()) print_methods(a);
  } catch (const UserError& e) {
    log::error("{}", e.what());
    return kExitUserError;
  }
  return 0;
}

}  // namespace

void add_claims_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<ClaimsArgs>();
  CLI::App* cmd = app.add_subcommand("claims", "The bandwidth and compute claims, recomputed; your own question; "
                                               "the cost model calibrated on a run");
  cost::Scenario& s = args->scenario;
  auto flag = [&](const char* name, double& field, const char* help) {
    cmd->add_option(name, field, help)->check(positive_number())->each([args](const std::string&) { args->asked = true; });
  };
  flag("--params", s.params, "model parameters (default 405e9)");
  flag("--tokens", s.tokens, "training tokens of the run (default 16e12)");
  flag("--gpus", s.gpus, "GPUs (default 16384)");
  flag("--peak", s.peak, "FLOP/s per GPU (default 1e15)");
  flag("--mfu", s.mfu, "model FLOP utilisation (default 0.4)");
  flag("--seq-len", s.seq_len, "tokens per sequence (default 8192)");
  flag("--gpus-per-seq", s.gpus_per_seq, "GPUs that train one sequence together (default 8)");
  flag("--grad-bytes", s.grad_bytes_per_param, "gradient bytes per parameter (default 4)");
  flag("--comm-window", s.comm_window, "seconds of each step the top-level sync may take (default 1)");
  flag("--sites", s.sites, "top-level groups (pods or sites) the gradient is reduced across (default 1)");
  flag("--compression", s.compression, "byte ratio of the top-level codec (default 1)");
  flag("--gpu-hour-cost", s.gpu_hour_cost, "dollars per GPU-hour (default 2)");
  cmd->add_option("--latency", args->latency, "top-level latency per step, e.g. 5ms")->each([args](const std::string&) {
    args->asked = true;
  });
  cmd->add_option("--format", args->format, "table, json or csv");
  cmd->add_option("--calibrate", args->calibrate, "fit the cost model to this step log (a data-parallel run with an emulated link)");
  cmd->add_option("--methods", args->methods,
                  "a directory of step logs of one model trained by several sync methods (launch/lowcomm-experiment.sh): "
                  "the top-level rate each needs for >= 90% compute utilisation on C7's and C10's systems");
  cmd->add_option("--predict", args->predict, "with --calibrate: link rates to predict the step time at")->delimiter(',');
  cmd->callback([&action, args] { action = [args] { return run_claims(*args); }; });
}

}  // namespace ft
