// The run configuration: typed structs with defaults. Each struct's keys are declared once,
// in its describe() function; reading, writing and documenting all go through it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "comm/codec.h"
#include "comm/topology.h"
#include "models/gpt_shape.h"
#include "trainer/io/config_schema.h"
#include "trainer/io/units.h"

namespace ft {

// The model section is the model's own shape.
using ModelConfig = GptShape;
template <class V> void describe(V& v, ModelConfig& c) {
  using namespace config;
  v.key("vocab", c.vocab, "vocabulary size (byte-level text needs 256)", in_range(2, 1 << 24));
  v.key("context", c.context, "sequence length in tokens", in_range(1, 1 << 20));
  v.key("layers", c.layers, "transformer blocks", in_range(1, 4096));
  v.key("heads", c.heads, "attention heads per block; width must divide by it", in_range(1, 4096));
  v.key("width", c.width, "model (embedding) width; the MLP is 4x wider", in_range(1, 1 << 20));
}

struct ParallelConfig {
  int tp = 1;
  int pp = 1;
  int dp = 1;
  std::string order = "tp-pp-dp";
  int microbatches = 1;
  std::string schedule = "1f1b";
  int virtual_stages = 1;
  bool vocab_parallel = false;
  int zero = 0;
  std::string shard_within = "none";
  std::string reshard = "use";
};
// What parallel.shard_within takes: none, or the unit of a tier above the node's ranks.
std::vector<std::string> shard_units();
// The tiers an outer sync may run across: every tier above a node's own links.
std::vector<std::string> outer_sync_tiers();
template <class V> void describe(V& v, ParallelConfig& c) {
  using namespace config;
  v.key("tp", c.tp, "tensor-parallel ranks per model replica", in_range(1, 1 << 16));
  v.key("pp", c.pp, "pipeline stages per model replica", in_range(1, 1 << 16));
  v.key("dp", c.dp, "data-parallel replicas; tp x pp x dp must equal the number of ranks",
        in_range(1, 1 << 24));
  v.key("order", c.order, "which dimension varies fastest over consecutive ranks",
        one_of({"tp-pp-dp", "tp-dp-pp", "pp-tp-dp", "dp-tp-pp", "pp-dp-tp", "dp-pp-tp"}));
  v.key("microbatches", c.microbatches,
        "micro-batches per optimizer step on each data-parallel rank (gradient accumulation, pipeline fill)",
        in_range(1, 1 << 20));
  v.key("schedule", c.schedule,
        "pipeline schedule: gpipe (all forwards, then all backwards) or 1f1b (one forward, one backward)",
        one_of({"gpipe", "1f1b"}));
  v.key("virtual_stages", c.virtual_stages,
        "model chunks per pipeline stage (interleaved schedule): the blocks are cut into pp x virtual_stages chunks "
        "dealt round-robin over the stages, shrinking the bubble to (pp - 1) / (virtual_stages x microbatches + "
        "pp - 1) for virtual_stages times the pipeline messages; needs microbatches to divide by pp",
        in_range(1, 1 << 12));
  v.key("vocab_parallel", c.vocab_parallel,
        "with parallel.tp above 1, split the tied embedding and the head over the tensor-parallel ranks by "
        "vocabulary (Megatron's vocab-parallel embedding and cross-entropy): no rank computes the whole "
        "vocabulary's logits; false computes the head whole on every tensor-parallel rank");
  v.key("zero", c.zero,
        "ZeRO stage: 0 = every data-parallel rank keeps all optimizer state; 1 = each keeps and updates its "
        "part (one reduce-scatter of gradients per step, an all-gather of parameters after the update); 2 = also "
        "of the gradients (reduce-scattered after every micro-batch's backward); 3 = also of the parameters "
        "(FSDP: each block's all-gathered before its forward and again before its backward, the next one "
        "prefetched meanwhile, and dropped after use). What each rank updates and sends is sharded; the model's "
        "buffers stay whole (docs/zero.md)",
        in_range(0, 3));
  v.key("shard_within", c.shard_within,
        "HSDP: with parallel.zero 1 to 3, shard over the data-parallel replicas inside one node, pod or site and "
        "replicate across them (gradients reduce-scattered inside, the shard all-reduced across the tier with its "
        "codec, parameters all-gathered inside); none shards over every replica",
        config::one_of(shard_units()));
  v.key("reshard", c.reshard,
        "with parallel.zero 3, when a unit's gathered parameters are dropped: use (after each forward or backward "
        "that uses them, FSDP's default) or step (kept from their first use to the step's end: one all-gather per "
        "unit per step, the whole stage's parameters held)",
        one_of({"use", "step"}));
}

// Low-communication training across one tier (DiLoCo): replicas below the tier synchronise
// every step; across it, every `every` steps, by an outer optimizer step on the averaged
// change of the parameters since the last outer sync.
struct OuterSyncConfig {
  std::string tier{tier_name(Tier::inter_pod)};
  int every = 50;
  double lr = 0.7;
  double momentum = 0.9;
  bool nesterov = true;
  int fragments = 1;
  int delay = 0;
  double mix = 0;
};
template <class V> void describe(V& v, OuterSyncConfig& c) {
  using namespace config;
  v.key("tier", c.tier,
        "the tier the outer sync runs across; data-parallel replicas within one unit below it (a node, pod or site) "
        "sync every step",
        one_of(outer_sync_tiers()));
  v.key("every", c.every, "inner optimizer steps between outer syncs", in_range(1, 1 << 30));
  v.key("lr", c.lr, "outer learning rate; 1 with momentum 0 makes every outer sync a plain parameter average",
        in_range(0.0, 10.0));
  v.key("momentum", c.momentum, "outer momentum", in_range(0.0, 0.999999));
  v.key("nesterov", c.nesterov, "Nesterov momentum in the outer step");
  v.key("fragments", c.fragments,
        "streaming: the parameters in this many fragments of whole tensors, each synchronised every `every` steps "
        "on a schedule staggered by every / fragments steps, so a step carries one fragment's bytes, not the model's",
        in_range(1, 1 << 20));
  v.key("delay", c.delay,
        "inner steps the outer all-reduce runs behind: it is sent after its step and applied `delay` steps later, "
        "overlapped with them (0: applied in its step); less than `every`",
        in_range(0, 1 << 30));
  v.key("mix", c.mix,
        "the share of its own parameters a replica keeps when an outer sync is applied, the rest taken from the new "
        "anchor (0: it takes the anchor; 0.5 keeps half of the inner progress made while a delayed sync ran)",
        in_range(0.0, 0.999999));
}

struct SyncConfig {
  std::string algorithm = "auto";
  Bytes bucket{4 << 20};
  Bytes chunk{1 << 20};
  bool overlap = true;
  std::optional<OuterSyncConfig> outer;
};
template <class V> void describe(V& v, SyncConfig& c) {
  using namespace config;
  v.key("algorithm", c.algorithm,
        "gradient all-reduce across data-parallel ranks: native (the MPI/NCCL library's), ring, hierarchical "
        "(level by level across the tiers the group spans), auto (hierarchical when it spans several, else ring)",
        one_of({"auto", "native", "ring", "hierarchical"}));
  v.key("bucket", c.bucket, "gradient bucket size; a bucket's sync starts when backward has filled it",
        at_least_bytes(4));
  v.key("chunk", c.chunk, "pipelining chunk of the ring algorithms", at_least_bytes(4));
  v.key("overlap", c.overlap,
        "start each bucket's sync during backward (false: all after backward; with parallel.zero 2 and 3, after "
        "each micro-batch's backward)");
  v.optional_section("outer", c.outer,
                     "DiLoCo across one tier: the outer gradient (parameters at the last outer sync minus now) is "
                     "averaged across the tier with that tier's codec, then applied by an outer SGD step (docs/lowcomm.md)");
}

struct TrainConfig {
  int steps = 200;
  int batch = 16;  // global, in sequences
  std::string optimizer = "adamw";
  double lr = 3e-4;
  double min_lr_ratio = 0.1;
  int warmup = 20;
  double weight_decay = 0.1;
  bool decay_embeddings = true;
  double clip = 1.0;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  std::uint64_t seed = 1;
  std::string nonfinite = "stop";
  double watchdog = 20;
  double watchdog_min = 120;
};
template <class V> void describe(V& v, TrainConfig& c) {
  using namespace config;
  v.key("steps", c.steps, "optimizer steps", in_range(0, 1 << 30));
  v.key("batch", c.batch, "global batch in sequences, summed over data-parallel ranks and micro-batches",
        in_range(1, 1 << 24));
  v.key("optimizer", c.optimizer,
        "adamw; sgd (plain: no momentum; decoupled weight decay as AdamW's; for tests of the outer sync); or sign "
        "(lr times the sign of each synchronised gradient, decoupled weight decay: DeMo's update, with codec demo)",
        one_of({"adamw", "sgd", "sign"}));
  v.key("lr", c.lr, "peak learning rate", in_range(0.0, 10.0));
  v.key("min_lr_ratio", c.min_lr_ratio, "learning rate at the last step, as a fraction of lr (cosine decay)",
        in_range(0.0, 1.0));
  v.key("warmup", c.warmup, "steps of linear warm-up from 0 to lr", in_range(0, 1 << 30));
  v.key("weight_decay", c.weight_decay, "AdamW decoupled weight decay; never on biases and LayerNorms",
        in_range(0.0, 10.0));
  v.key("decay_embeddings", c.decay_embeddings, "apply weight decay to the token and position embeddings");
  v.key("clip", c.clip, "clip the global gradient norm to this; 0 = no clipping", in_range(0.0, 1e9));
  v.key("beta1", c.beta1, "AdamW first-moment decay", in_range(0.0, 0.999999));
  v.key("beta2", c.beta2, "AdamW second-moment decay", in_range(0.0, 0.999999999));
  v.key("eps", c.eps, "AdamW epsilon", in_range(1e-30, 1.0));
  v.key("seed", c.seed, "seed of initialisation and synthetic data");
  v.key("nonfinite", c.nonfinite,
        "a step whose loss or gradient norm is NaN or infinite: stop (every rank, after logging it) or skip (no "
        "optimizer update)",
        one_of({"stop", "skip"}));
  v.key("watchdog", c.watchdog,
        "end the job, naming ranks and phases, when a step runs past this many times the median step (0 = never)",
        in_range(0.0, 1e6));
  v.key("watchdog_min", c.watchdog_min, "seconds: the watchdog's limit is never below this, and is this until "
        "three steps are timed", in_range(0.1, 1e7));
}

struct DataConfig {
  std::string kind = "synthetic";
  std::string path;
  std::string held_out = "tail";
};
template <class V> void describe(V& v, DataConfig& c) {
  using namespace config;
  v.key("kind", c.kind, "synthetic (seeded, learnable), text (bytes of files), tokens (llm.c .bin shards)",
        one_of({"synthetic", "text", "tokens"}));
  v.key("path", c.path,
        "a file or a glob of files (read in sorted order, one after another); relative to the working directory");
  v.key("held_out", c.held_out,
        "with eval.every set, what the held-out loss reads: tail (the last eval.holdout of the tokens) or files (whole "
        "files never trained on: of the sorted files, those where the running count of eval.holdout x files steps up, "
        "so about that share of the files, spread over the list)",
        one_of({"tail", "files"}));
}

struct TopologyConfig {
  int ranks_per_node = 0;
  int nodes_per_pod = 0;
  int pods_per_site = 0;
  std::string file;
};
template <class V> void describe(V& v, TopologyConfig& c) {
  using namespace config;
  v.key("ranks_per_node", c.ranks_per_node,
        "ranks per emulated node; 0 = the real machines (ranks sharing memory form a node)",
        at_least(0));
  v.key("nodes_per_pod", c.nodes_per_pod, "nodes per pod; 0 = one pod holds every node", at_least(0));
  v.key("pods_per_site", c.pods_per_site, "pods per site; 0 = one site holds every pod", at_least(0));
  v.key("file", c.file,
        "YAML list mapping host names or patterns to pods and sites (docs/launching.md); replaces "
        "nodes_per_pod and pods_per_site");
}

struct LinkConfig {
  BitRate bandwidth;
  Duration latency;
};
template <class V> void describe(V& v, LinkConfig& c) {
  using namespace config;
  v.key("bandwidth", c.bandwidth, "the uplink's rate, shared by every rank behind it; 0 = no limit");
  v.key("latency", c.latency, "one-way delay added to every message on the link");
}

// One emulated link per tier; an absent tier is not throttled.
struct LinksConfig {
  PerTier<std::optional<LinkConfig>> tier;
};
template <class V> void describe(V& v, LinksConfig& c) {
  for (Tier t : kAllTiers) v.optional_section(tier_name(t).data(), c.tier[t], std::string(tier_link(t)));
}

// A codec for one tier's share of the gradient all-reduce: its name, and the keys every
// codec of the registry declares (comm/codec.h). A key left at 0 takes the codec's
// default when it uses it; setting one the codec does not use is refused.
struct CodecConfig {
  std::string codec = "none";
  std::map<std::string, double> params;  // by key name
  std::string feedback = "residual";
  double decay = 0;
  std::string reduce = "best";
};
// The codec names and the union of their keys, from the registry, for the schema.
struct CodecKeyDoc {
  std::string name, doc;
  config::Check<double> check;
};
const std::vector<std::string>& codec_names();
const std::vector<CodecKeyDoc>& codec_key_docs();
template <class V> void describe(V& v, CodecConfig& c) {
  using namespace config;
  static const std::string doc = fmt::format("{} (see docs/compression.md)", fmt::join(codec_names(), ", "));
  v.key("codec", c.codec, doc.c_str(), one_of(codec_names()));
  for (const CodecKeyDoc& k : codec_key_docs()) v.key(k.name.c_str(), c.params[k.name], k.doc.c_str(), k.check);
  v.key("feedback", c.feedback,
        "what a lossy codec did not send: residual (added to the next step's input), difference (gathered codecs: "
        "send the change from what was sent so far; every rank sums the changes), none (dropped)",
        one_of(feedback_names()));
  v.key("decay", c.decay,
        "residual feedback: the share of what was not sent that is added to the next input (SparseLoCo's decayed "
        "accumulator); 0 = the codec's default (1, sparseloco 0.95)",
        in_range(0.0, 1.0));
  v.key("reduce", c.reduce,
        "how int8, int4 and fp8 payloads reduce: ring (each hop decodes, adds and encodes again: 2 (p - 1) / p "
        "payloads per member), gather (every member's payload to every member: p - 1), or best (the ring above 2 "
        "members, where it sends less)",
        one_of(reduce_names()));
}

// Compression per tier of the data-parallel all-reduce; an absent tier stays dense.
struct CompressionConfig {
  PerTier<std::optional<CodecConfig>> tier;
};
template <class V> void describe(V& v, CompressionConfig& c) {
  for (Tier t : kAllTiers)
    v.optional_section(tier_name(t).data(), c.tier[t], fmt::format("codec of the all-reduce's step on {}", tier_link(t)));
}

struct MetricsConfig {
  int every = 1;
  int flush_every = 10;
  double peak_flops = 0;
  bool compression_error = false;
};
template <class V> void describe(V& v, MetricsConfig& c) {
  using namespace config;
  v.key("every", c.every, "log one step in this many", in_range(1, 1 << 30));
  v.key("flush_every", c.flush_every,
        "logged steps between HDF5 flushes; a killed run keeps every flushed step", in_range(1, 1 << 30));
  v.key("peak_flops", c.peak_flops,
        "peak FLOP/s of one rank, the denominator of MFU; 0 = measure a matrix product at start-up",
        in_range(0.0, 1e20));
  v.key("compression_error", c.compression_error,
        "log the relative error of the compressed gradient sum against the dense one (an extra dense all-reduce)");
}

struct CheckpointConfig {
  int every = 0;
  std::string path;
};
template <class V> void describe(V& v, CheckpointConfig& c) {
  using namespace config;
  v.key("path", c.path,
        "HDF5 checkpoint file, written every `every` steps and at the end; {step} in the name keeps each one; "
        "empty = no checkpoints");
  v.key("every", c.every, "steps between checkpoints; 0 = only at the end", in_range(0, 1 << 30));
}

// Evaluation on held-out data: the last `holdout` of file data (synthetic data: sequences
// of their own), never trained on once `every` is set.
struct EvalConfig {
  int every = 0;
  int batches = 4;
  double holdout = 0.1;
};
template <class V> void describe(V& v, EvalConfig& c) {
  using namespace config;
  v.key("every", c.every, "steps between evaluations of the held-out loss (and after the last step); 0 = none",
        in_range(0, 1 << 30));
  v.key("batches", c.batches, "global batches (train.batch sequences each) per evaluation", in_range(1, 1 << 20));
  v.key("holdout", c.holdout,
        "share of file data, from its end, held out of training for evaluation when eval.every is set",
        in_range(0.001, 0.5));
}

// How comm: nccl runs its communication. On device cpu-async it runs over the CPU model of
// NCCL's rules (comm/nccl_api.h), which takes both keys; on cuda, strict alone applies.
struct NcclConfig {
  Bytes eager{4 << 20};
  bool strict = false;
};
template <class V> void describe(V& v, NcclConfig& c) {
  using namespace config;
  v.key("eager", c.eager,
        "the CPU model (comm nccl on device cpu-async): a send larger than this completes only once its receive runs, "
        "as NCCL's sends above its buffer size (NCCL_BUFFSIZE, 4 MiB by default) do",
        at_least_bytes(0));
  v.key("strict", c.strict,
        "one launch queue for every communicator of a rank, in the order the rank issues its operations: on cuda "
        "CUDA_DEVICE_MAX_CONNECTIONS=1 and NCCL_LAUNCH_ORDER_IMPLICIT=1; on the CPU model the same rule, so that an "
        "issue order that differs between ranks deadlocks there (docs/gpu.md)");
}

struct Config {
  ModelConfig model;
  ParallelConfig parallel;
  TrainConfig train;
  DataConfig data;
  EvalConfig eval;
  TopologyConfig topology;
  LinksConfig links;
  SyncConfig sync;
  CompressionConfig compression;
  MetricsConfig metrics;
  CheckpointConfig checkpoint;
  NcclConfig nccl;
  std::string device = "cpu";
  std::string precision = "fp32";
  std::string comm = "auto";
  int threads = 0;
};
template <class V> void describe(V& v, Config& c) {
  using namespace config;
  v.section("model", c.model, "the GPT model's shape");
  v.section("parallel", c.parallel, "how ranks split the model and the batch");
  v.section("train", c.train, "the optimisation");
  v.section("data", c.data, "what the model reads");
  v.section("eval", c.eval, "the held-out loss");
  v.section("topology", c.topology, "how ranks map onto nodes, pods and sites");
  v.section("links", c.links, "emulated links between nodes, pods and sites (in-process pacer)");
  v.section("sync", c.sync, "data-parallel gradient synchronisation");
  v.section("compression", c.compression, "gradient compression per tier, with feedback of what a codec did not send");
  v.section("metrics", c.metrics, "the HDF5 log");
  v.section("checkpoint", c.checkpoint, "saving and resuming");
  v.section("nccl", c.nccl, "the NCCL backend's launch order, and the CPU model of NCCL's rules");
  v.key("device", c.device,
        "where tensors live: cpu, cpu-async (the CPU kernels queued on a stream thread that runs them only when "
        "waited for, so a missing wait between compute and communication gives a wrong result on a CPU), or cuda "
        "(one GPU per rank, by local rank)",
        one_of({"cpu", "cpu-async", "cuda"}));
  v.key("precision", c.precision,
        "matmul precision: fp32, or bf16 (tensor cores, bf16 inputs, fp32 accumulation; weights, gradients and "
        "their reduction stay fp32); bf16 needs device cuda",
        one_of({"fp32", "bf16"}));
  v.key("comm", c.comm,
        "communication backend of the grid: mpi, nccl (on cuda, NCCL; on cpu-async, the CPU model of NCCL's rules, "
        "section nccl), or auto (nccl on cuda, else mpi)",
        one_of({"auto", "mpi", "nccl"}));
  v.key("threads", c.threads, "CPU threads per rank (OpenBLAS and the kernels' own loops); 0 = the node's cores shared among its ranks",
        in_range(0, 1024));
}

// One `--set key.path=value`.
struct Override {
  std::string path;
  std::string value;
};
Override parse_override(const std::string& text);

// Reads `file` (may be empty: all defaults), applies the overrides, validates every key and
// the relations between keys that do not depend on the launch. Throws UserError.
Config load_config(const std::string& file, const std::vector<Override>& overrides);

// The same from YAML text (a run's stored `config` attribute); `origin` names it in messages.
Config load_config_text(const std::string& yaml, const std::string& origin);

// Checks the config against the job it runs in (world size). Throws UserError.
void validate_launch(const Config& c, int world_size);

// The tier the data-parallel group is split at, if any: sync.outer's (replicas inside a unit
// below it sync every step, across it every `every` steps) or parallel.shard_within's (ZeRO
// shards inside a unit, and the shard is all-reduced across the tier every step).
std::optional<Tier> dp_split_tier(const Config& c);
// The key that asks for the split, for messages: "sync.outer" or "parallel.shard_within".
std::string_view dp_split_key(const Config& c);
// Keys set to something that changes nothing in this config (a gather policy without ZeRO-3,
// say), as warnings: valid, since another key's override may be what makes them idle.
std::vector<std::string> idle_settings(const Config& c);

// The fully resolved config as YAML text (every key, defaults included).
std::string to_yaml(const Config& c);

// Every key with its type, default and meaning.
std::vector<config::KeyDoc> list_keys();

}  // namespace ft
