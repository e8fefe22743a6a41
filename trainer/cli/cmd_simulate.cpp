// `fibertrain simulate CONFIG --profile FILE`: one step of the config predicted, at any
// scale, without running it (trainer/claims/simulator.h): the step time, the communication
// it waits for per tier, the bytes per tier by kind, MFU; as a table, JSON, or HDF5 (--out).
#include <cstdio>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "comm/error.h"
#include "comm/log.h"
#include "comm/runtime.h"
#include "trainer/claims/simulator.h"
#include "trainer/cli/cli.h"
#include "trainer/io/config.h"
#include "trainer/io/h5.h"
#include "trainer/io/units.h"

namespace ft {
namespace {

struct SimulateArgs {
  std::string config;
  std::vector<std::string> sets;
  std::string profile;
  std::string format = "table";
  std::string out;
  std::optional<double> utilisation;
  std::string tier;
};

void print_table(const SimulateArgs& a, const Config& cfg, const DeviceProfile& dev, const Simulation& s) {
  const auto& p = cfg.parallel;
  std::printf("%s on %s\n", a.config.c_str(), dev.source.c_str());
  std::printf("  device         forward %s, backward %s, update %s/parameter, %s/message, copies %s%s\n",
              human_si(dev.forward_flops, "FLOP/s").c_str(), human_si(dev.backward_flops, "FLOP/s").c_str(),
              human_si(dev.optimizer_seconds_per_parameter, "s").c_str(), human_si(dev.message_seconds, "s").c_str(),
              dev.copy_bytes_per_second > 0 ? human_si(dev.copy_bytes_per_second, "B/s").c_str() : "free",
              dev.host_cores > 0 ? fmt::format(", {} cores shared by the ranks", dev.host_cores).c_str() : "");
  for (const auto& [name, seconds] : dev.codec_seconds)
    std::printf("  codec          %s: %s per element handled\n", name.c_str(), human_si(seconds, "s").c_str());
  std::string extras;
  if (p.virtual_stages > 1) extras += fmt::format(", {} chunks per stage", p.virtual_stages);
  if (p.vocab_parallel && p.tp > 1) extras += ", vocabulary split over tp";
  if (p.shard_within != "none") extras += fmt::format(", sharded within each {}", p.shard_within);
  if (p.zero == 3 && p.reshard == "step") extras += ", units kept for the step";
  std::printf("  layout         %d ranks = tp %d x pp %d x dp %d (%s), zero %d, %d micro-batches, %s%s\n", s.world, p.tp,
              p.pp, p.dp, p.order.c_str(), p.zero, p.microbatches, p.schedule.c_str(), extras.c_str());
  std::printf("  step time      %s (compute %s, idle %.0f%% of the pipeline's span, optimizer %s)\n",
              human_si(s.step_time, "s").c_str(), human_si(s.compute, "s").c_str(), 100 * s.bubble,
              human_si(s.optimizer, "s").c_str());
  if (s.period > 1 || s.outer > 0)
    std::printf("  outer sync     the mean step of a period of %d: a step inside the islands %s, the outer syncs add %s\n",
                s.period, human_si(s.inner_step, "s").c_str(), human_si(s.outer, "s").c_str());
  if (s.mfu > 0) std::printf("  MFU            %.1f%%\n", 100 * s.mfu);
  std::printf("\n  %-11s %10s", "tier", "exposed");
  for (int k = 0; k < kSimKinds; ++k) std::printf(" %12s", std::string(sim_kind_name(static_cast<SimKind>(k))).c_str());
  std::printf(" %16s %10s\n", "busiest uplink", "codec");
  for (Tier t : kAllTiers) {
    std::printf("  %-11s %10s", std::string(tier_name(t)).c_str(), human_si(s.exposed[t], "s").c_str());
    for (int k = 0; k < kSimKinds; ++k) std::printf(" %12s", human_si(s.bytes[static_cast<std::size_t>(k)][t], "B").c_str());
    std::printf(" %16s %10s\n", human_si(s.uplink_bytes[t], "B").c_str(), human_si(s.codec[t], "s").c_str());
  }
  std::printf("  (bytes: all ranks together per step, on the wire; busiest uplink: through one of the tier's %d/%d/%d/%d "
              "uplinks; codec: the busiest rank's encoding and decoding per step)\n",
              s.uplinks[Tier::intra_node], s.uplinks[Tier::inter_node], s.uplinks[Tier::inter_pod],
              s.uplinks[Tier::inter_site]);
}

void print_rate(const RateNeeded& r) {
  const std::string tier(tier_name(r.tier));
  std::printf("\n  %s free: step %s; at %.0f%% of its pace the step may take %s\n", tier.c_str(),
              human_si(r.free_step, "s").c_str(), 100 * r.utilisation, human_si(r.free_step / r.utilisation, "s").c_str());
  if (!r.reachable) {
    std::printf("  not reachable: %s's latency alone makes the step %s (%.0f%% of the pace)\n", tier.c_str(),
                human_si(r.latency_step, "s").c_str(), 100 * r.free_step / r.latency_step);
    return;
  }
  std::printf("  needs %s per %s uplink (step %s; the busiest uplink carries %s per step)\n",
              human_si(r.bits_per_second, "bit/s").c_str(), tier.c_str(), human_si(r.at_rate.step_time, "s").c_str(),
              human_si(r.at_rate.uplink_bytes[r.tier], "B").c_str());
}

void print_json(const Simulation& s) {
  // Bytes to 17 digits: exact, as the traffic counters they are compared with.
  std::printf("{\"world\": %d, \"step_time\": %s, \"period\": %d, \"inner_step\": %s, \"outer\": %s, \"compute\": %s, "
              "\"bubble\": %s, \"optimizer\": %s, \"mfu\": %s, \"tiers\": {",
              s.world, json_number(s.step_time, 6).c_str(), s.period, json_number(s.inner_step, 6).c_str(),
              json_number(s.outer, 6).c_str(), json_number(s.compute, 6).c_str(), json_number(s.bubble).c_str(),
              json_number(s.optimizer, 6).c_str(), json_number(s.mfu).c_str());
  for (Tier t : kAllTiers) {
    std::printf("%s%s: {\"exposed\": %s, \"codec\": %s, \"busiest_uplink_bytes\": %s", index(t) ? ", " : "",
                json_string(std::string(tier_name(t))).c_str(), json_number(s.exposed[t], 6).c_str(),
                json_number(s.codec[t], 6).c_str(), json_number(s.uplink_bytes[t], 17).c_str());
    for (int k = 0; k < kSimKinds; ++k)
      std::printf(", %s: %s", json_string(std::string(sim_kind_name(static_cast<SimKind>(k))) + "_bytes").c_str(),
                  json_number(s.bytes[static_cast<std::size_t>(k)][t], 17).c_str());
    std::printf("}");
  }
  std::printf("}}\n");
}

void write_h5(const std::string& path, const Config& cfg, const DeviceProfile& dev, const Simulation& s) {
  h5::File f(path, h5::Mode::create);
  f.set_attr("/", "config", to_yaml(cfg));
  f.set_attr("/", "profile", dev.source);
  f.set_attr("/", "command", command_line());
  std::vector<std::string> kinds;
  for (int k = 0; k < kSimKinds; ++k) kinds.emplace_back(sim_kind_name(static_cast<SimKind>(k)));
  f.set_attr("/", "tiers", tier_names());
  f.set_attr("/", "kinds", kinds);
  auto scalar = [&](const char* name, double v) { f.write<double>(std::string("/") + name, {v}, {1}); };
  scalar("step_time", s.step_time);
  scalar("period", s.period);
  scalar("inner_step", s.inner_step);
  scalar("outer", s.outer);
  scalar("compute", s.compute);
  scalar("bubble", s.bubble);
  scalar("optimizer", s.optimizer);
  scalar("mfu", s.mfu);
  scalar("model_flops", s.model_flops);
  std::vector<double> exposed, uplink, codec, bytes;
  for (Tier t : kAllTiers) {
    exposed.push_back(s.exposed[t]);
    uplink.push_back(s.uplink_bytes[t]);
    codec.push_back(s.codec[t]);
  }
  for (int k = 0; k < kSimKinds; ++k)
    for (Tier t : kAllTiers) bytes.push_back(s.bytes[static_cast<std::size_t>(k)][t]);
  f.write<double>("/exposed", exposed, {kTiers});
  f.write<double>("/uplink_bytes", uplink, {kTiers});
  f.write<double>("/codec", codec, {kTiers});
  f.write<double>("/bytes", bytes, {kSimKinds, kTiers});
}

int run_simulate(const SimulateArgs& a) {
  if (launch_rank_from_env() != 0) return 0;
  try {
    if (a.format != "table" && a.format != "json") throw UserError(fmt::format("--format {}: expected table or json", a.format));
    std::vector<Override> overrides;
    for (const auto& s : a.sets) overrides.push_back(parse_override(s));
    const Config cfg = load_config(a.config, overrides);
    const DeviceProfile dev = load_device_profile(a.profile);
    if (!a.tier.empty() && !a.utilisation) throw UserError("--tier names the tier whose rate --utilisation finds");
    if (a.utilisation) {
      const std::string name = a.tier.empty() ? std::string(tier_name(kAllTiers.back())) : a.tier;
      std::optional<Tier> tier = tier_from_name(name);
      if (!tier) throw UserError(fmt::format("--tier '{}': expected one of {}", name, fmt::join(tier_names(), ", ")));
      const RateNeeded r = rate_needed(cfg, dev, *tier, *a.utilisation);
      if (!r.reachable && !a.out.empty())
        throw UserError(fmt::format("--out {}: no rate of {} keeps the step's pace, so there is no step to write", a.out, name));
      if (a.format == "json") {
        const double none = std::numeric_limits<double>::quiet_NaN();  // null where no rate exists
        std::printf("{\"tier\": %s, \"utilisation\": %s, \"free_step\": %s, \"latency_step\": %s, \"reachable\": %s, "
                    "\"bits_per_second\": %s, \"step_time\": %s, \"busiest_uplink_bytes\": %s}\n",
                    json_string(name).c_str(), json_number(r.utilisation, 9).c_str(), json_number(r.free_step, 9).c_str(),
                    json_number(r.latency_step, 9).c_str(), r.reachable ? "true" : "false",
                    json_number(r.reachable ? r.bits_per_second : none, 9).c_str(),
                    json_number(r.reachable ? r.at_rate.step_time : none, 9).c_str(),
                    json_number(r.reachable ? r.at_rate.uplink_bytes[r.tier] : none, 17).c_str());
      } else {
        if (r.reachable) print_table(a, r.at_config, dev, r.at_rate);
        print_rate(r);
      }
      if (!a.out.empty()) write_h5(a.out, r.at_config, dev, r.at_rate);
      return 0;
    }
    const Simulation s = simulate(cfg, dev);
    if (a.format == "json")
      print_json(s);
    else
      print_table(a, cfg, dev, s);
    if (!a.out.empty()) write_h5(a.out, cfg, dev, s);
  } catch (const UserError& e) {
    log::error("{}", e.what());
    return kExitUserError;
  }
  return 0;
}

}  // namespace

void add_simulate_command(CLI::App& app, Action& action) {
  auto args = std::make_shared<SimulateArgs>();
  CLI::App* cmd = app.add_subcommand("simulate", "Predict one training step of a config at any scale without running it");
  cmd->add_option("config", args->config, "the config (YAML)")->required();
  cmd->add_option("--set", args->sets, "override a config key: --set parallel.dp=128 (repeatable)");
  cmd->add_option("--profile", args->profile,
                  "the device: a step log (.h5) measured on it, or a YAML profile (configs/profiles/)")
      ->required();
  cmd->add_option("--format", args->format, "table or json");
  cmd->add_option("--out", args->out, "also write the prediction to this HDF5 file");
  cmd->add_option("--utilisation", args->utilisation,
                  "instead: find the slowest rate of --tier's links at which the step keeps this share (0.9) of "
                  "its pace with the tier free");
  cmd->add_option("--tier", args->tier, "the tier whose rate --utilisation finds: inter_site (default), inter_pod, ...");
  cmd->callback([&action, args] { action = [args] { return run_simulate(*args); }; });
}

}  // namespace ft
