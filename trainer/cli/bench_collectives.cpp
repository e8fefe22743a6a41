// `fibertrain bench collectives`: nccl-tests for fibertrain's algorithms. For each size and
// algorithm: time per operation (slowest rank, mean over iterations), algbw = S / t and
// busbw (nccl-tests' definitions: all_reduce x 2(n-1)/n, reduce_scatter and all_gather x
// (n-1)/n), bytes each rank sent per tier, and a check of the result. Over the config's
// backend and device (comm, device): MPI on host memory, NCCL on GPU memory, or NCCL's CPU
// model; the buffer lives where the trainer's gradients would.
#include <algorithm>
#include <cstdio>
#include <memory>

#include <fmt/format.h>

#include "comm/log.h"
#include "comm/runtime.h"
#include "models/device_info.h"
#include "models/ops.h"
#include "models/tensor.h"
#include "trainer/cli/bench.h"
#include "trainer/io/config.h"
#include "trainer/io/h5.h"
#include "trainer/loop/layout.h"

namespace ft {
namespace {

struct CollectivesArgs {
  std::string config;
  std::vector<std::string> sets;
  std::string op = "all_reduce";
  std::vector<std::string> algos = {"native", "ring", "hierarchical"};
  std::string min = "4KiB", max = "64MiB", chunk = "1MiB";
  int factor = 4;
  int warmup = 3;
  int iters = 10;
  std::string out;
};

struct Row {
  std::size_t bytes;
  Algorithm algo;
  double time, algbw, busbw;
  std::array<double, kTiers> tier_bytes;
  bool ok;
};

double bus_factor(const std::string& op, int n) {
  if (n <= 1) return 0;
  return op == "all_reduce" ? 2.0 * (n - 1) / n : static_cast<double>(n - 1) / n;
}

// One in-place operation of `op` over `full`.
void run_op(Communicator& c, const std::string& op, Algorithm a, Buffer full) {
  if (op == "all_reduce")
    c.all_reduce(full, ReduceOp::sum, a);
  else if (op == "reduce_scatter")
    c.reduce_scatter(full, ReduceOp::sum, a);
  else
    c.all_gather(full, a);
}

// Inputs whose sums are exact in fp32 (small integers): rank r holds (i + r) % 7 at i, or
// for all_gather i % 5 in its own part and -1 elsewhere.
void fill(std::vector<float>& data, int rank, const std::string& op, Segment mine) {
  for (std::size_t i = 0; i < data.size(); ++i) {
    if (op == "all_gather")
      data[i] = i >= mine.offset && i < mine.offset + mine.count ? static_cast<float>(i % 5) : -1.f;
    else
      data[i] = static_cast<float>((i + static_cast<std::size_t>(rank)) % 7);
  }
}

bool check(const std::vector<float>& data, int world, const std::string& op, Segment mine) {
  auto expect = [&](std::size_t i) {
    if (op == "all_gather") return static_cast<float>(i % 5);
    float s = 0;
    for (int r = 0; r < world; ++r) s += static_cast<float>((i + static_cast<std::size_t>(r)) % 7);
    return s;
  };
  std::size_t lo = op == "reduce_scatter" ? mine.offset : 0;
  std::size_t hi = op == "reduce_scatter" ? mine.offset + mine.count : data.size();
  for (std::size_t i = lo; i < hi; i += 1 + (hi - lo) / 4096)
    if (data[i] != expect(i)) return false;
  return true;
}

int run_collectives(const CollectivesArgs& args) {
  MpiRuntime mpi(nullptr, nullptr);
  Config cfg;
  std::shared_ptr<const Topology> topo;
  std::vector<Algorithm> algos;
  std::size_t min = 0, max = 0, chunk = 0;
  run_phase(MPI_COMM_WORLD, [&] {
    std::vector<Override> overrides;
    for (const auto& s : args.sets) overrides.push_back(parse_override(s));
    // The benchmark runs over all ranks: the layout is one data-parallel group.
    overrides.push_back({"parallel", fmt::format("{{tp: 1, pp: 1, dp: {}}}", mpi.size())});
    overrides.push_back({"train.batch", std::to_string(mpi.size())});
    cfg = load_config(args.config, overrides);
    validate_launch(cfg, mpi.size());
    topo = make_topology(cfg.topology, mpi);
    prepare_device(cfg, mpi);
    if (args.op != "all_reduce" && args.op != "reduce_scatter" && args.op != "all_gather")
      throw UserError(fmt::format("--op {}: expected all_reduce, reduce_scatter or all_gather", args.op));
    for (const auto& name : args.algos) {
      auto a = algorithm_from_name(name);
      if (!a) throw UserError(fmt::format("--algos: unknown algorithm '{}' (native, ring, hierarchical)", name));
      algos.push_back(*a);
    }
    min = parse_size_flag("--min", args.min);
    max = parse_size_flag("--max", args.max);
    chunk = parse_size_flag("--chunk", args.chunk);
    if (min < sizeof(float) || max < min) throw UserError("--min and --max: need 4 bytes <= min <= max");
    // Each rank holds one buffer of the largest size; the ranks of a machine share its memory.
    std::size_t available = host_memory_available();
    if (available > 0 && max > available / static_cast<std::size_t>(mpi.local_size()))
      throw UserError(fmt::format("--max {}: each of this machine's {} rank(s) needs a buffer that large, and {} of "
                                  "memory is available",
                                  args.max, mpi.local_size(), format_bytes(Bytes{available})));
    if (args.factor < 2) throw UserError("--factor must be at least 2");
  });
  Layout layout = make_layout(cfg, mpi, topo);
  Communicator& c = *layout.comms.dp;  // every rank, over the config's backend
  c.set_chunk_bytes(chunk);
  const Device device = compute_device(cfg);
  const int world = mpi.size();
  if (mpi.rank() == 0) {
    std::printf("# %s, %s, chunk %s, %d warm-up + %d timed iterations\n", args.op.c_str(), topo->describe().c_str(),
                format_bytes(Bytes{chunk}).c_str(), args.warmup, args.iters);
    std::printf("%s", describe_layout(layout).c_str());
    std::printf("%12s %12s %-13s %12s %10s %10s", "size", "count", "algorithm", "time(us)", "algbw", "busbw");
    for (Tier t : kAllTiers) std::printf(" %11s", std::string(tier_name(t)).c_str());
    std::printf(" %5s\n%12s %12s %-13s %12s %10s %10s", "ok", "(B)", "(floats)", "", "", "(GB/s)", "(GB/s)");
    for (std::size_t i = 0; i < kTiers; ++i) std::printf(" %11s", "(B/rank)");
    std::printf("\n");
  }
  std::vector<Row> rows;
  for (std::size_t bytes = min; bytes <= max; bytes *= static_cast<std::size_t>(args.factor)) {
    const std::size_t n = bytes / sizeof(float);
    std::vector<float> data(n);
    const Tensor buffer({static_cast<std::int64_t>(n)}, DType::f32, device);
    for (Algorithm a : algos) {
      Segment mine = c.owned(n, a);
      fill(data, mpi.rank(), args.op, mine);
      ops::upload(buffer, data.data());
      run_op(c, args.op, a, buffer.buffer());
      ops::download(data.data(), buffer);
      bool ok = check(data, world, args.op, mine);
      for (int i = 1; i < args.warmup; ++i) run_op(c, args.op, a, buffer.buffer());
      c.barrier();
      TrafficSnapshot before = traffic().snapshot();
      double t0 = now_seconds();
      for (int i = 0; i < args.iters; ++i) run_op(c, args.op, a, buffer.buffer());
      double t = max_over(MPI_COMM_WORLD, (now_seconds() - t0) / args.iters);
      TrafficSnapshot d = traffic().snapshot() - before;
      Row row{n * sizeof(float), a, t, 0, 0, {}, ok};
      row.algbw = static_cast<double>(row.bytes) / t / 1e9;
      row.busbw = row.algbw * bus_factor(args.op, world);
      for (Tier tier : kAllTiers)
        row.tier_bytes[static_cast<std::size_t>(index(tier))] =
            max_over(MPI_COMM_WORLD, static_cast<double>(d.wire_at(tier)) / args.iters);
      row.ok = max_over(MPI_COMM_WORLD, ok ? 0.0 : 1.0) == 0.0;
      rows.push_back(row);
      if (mpi.rank() == 0)
        std::printf("%12zu %12zu %-13s %12.1f %10.3f %10.3f %11.0f %11.0f %11.0f %11.0f %5s\n", row.bytes, n,
                    std::string(algorithm_name(a)).c_str(), t * 1e6, row.algbw, row.busbw, row.tier_bytes[0],
                    row.tier_bytes[1], row.tier_bytes[2], row.tier_bytes[3], row.ok ? "yes" : "NO");
    }
    if (bytes > max / static_cast<std::size_t>(args.factor)) break;
  }
  bool all_ok = std::all_of(rows.begin(), rows.end(), [](const Row& r) { return r.ok; });
  if (mpi.rank() == 0 && !args.out.empty()) {
    h5::File f(args.out, h5::Mode::create);
    f.set_attr("/", "config", to_yaml(cfg));
    f.set_attr("/", "topology", topo->describe());
    f.set_attr("/", "world_size", std::int64_t{world});
    for (Algorithm a : algos) {
      std::string g = fmt::format("/bench/collectives/{}/{}", args.op, algorithm_name(a));
      std::vector<double> size, time, algbw, busbw;
      std::array<std::vector<double>, kTiers> tiers;
      for (const Row& r : rows) {
        if (r.algo != a) continue;
        size.push_back(static_cast<double>(r.bytes));
        time.push_back(r.time);
        algbw.push_back(r.algbw * 1e9);
        busbw.push_back(r.busbw * 1e9);
        for (std::size_t t = 0; t < kTiers; ++t) tiers[t].push_back(r.tier_bytes[t]);
      }
      f.write<double>(g + "/size", size, {size.size()});
      f.write<double>(g + "/time", time, {time.size()});
      f.write<double>(g + "/algbw", algbw, {algbw.size()});
      f.write<double>(g + "/busbw", busbw, {busbw.size()});
      for (Tier t : kAllTiers)
        f.write<double>(fmt::format("{}/bytes_wire/{}", g, tier_name(t)), tiers[static_cast<std::size_t>(index(t))],
                        {size.size()});
      f.set_attr(g, "units", std::string("size: bytes; time: s; algbw, busbw: bytes/s; bytes_wire: bytes per rank per op"));
    }
  }
  if (!all_ok) {
    if (mpi.rank() == 0) log::error("a collective returned a wrong result (column ok)");
    return 1;
  }
  return 0;
}

}  // namespace

void add_collectives_bench(CLI::App& bench, Action& action) {
  auto args = std::make_shared<CollectivesArgs>();
  CLI::App* cmd = bench.add_subcommand("collectives", "Time all-reduce, reduce-scatter or all-gather per size and algorithm");
  cmd->add_option("--config", args->config, "YAML config for topology (and links); other sections are ignored");
  cmd->add_option("--set", args->sets, "Override a config key, e.g. --set topology.ranks_per_node=2");
  cmd->add_option("--op", args->op, "all_reduce, reduce_scatter or all_gather");
  cmd->add_option("--algos", args->algos, "Algorithms: native ring hierarchical")->delimiter(',');
  cmd->add_option("--min", args->min, "Smallest message (default 4KiB)");
  cmd->add_option("--max", args->max, "Largest message (default 64MiB)");
  cmd->add_option("--factor", args->factor, "Size multiplier between rows (default 4)");
  cmd->add_option("--chunk", args->chunk, "Pipelining chunk of the ring (default 1MiB)");
  cmd->add_option("--warmup", args->warmup, "Untimed operations per row")->check(positive_number());
  cmd->add_option("--iters", args->iters, "Timed operations per row")->check(positive_number());
  cmd->add_option("--out", args->out, "HDF5 file for /bench/collectives/<op>/<algorithm>/...");
  cmd->callback([&action, args] { action = [args] { return run_collectives(*args); }; });
}

}  // namespace ft
