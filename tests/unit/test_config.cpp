#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <fmt/format.h>

#include "trainer/io/config.h"

namespace ft {
namespace {

namespace fs = std::filesystem;

std::string write_temp(const std::string& text) {
  static int n = 0;
  fs::path p = fs::temp_directory_path() / ("ft_config_test_" + std::to_string(::getpid()) + "_" + std::to_string(n++) + ".yaml");
  std::ofstream(p) << text;
  return p.string();
}

// The UserError message load_config gives for `yaml` (and overrides), or "" if it loads.
std::string error_of(const std::string& yaml, std::vector<Override> sets = {}) {
  std::string path = write_temp(yaml);
  try {
    load_config(path, sets);
  } catch (const UserError& e) {
    std::string m = e.what();
    // Callers compare messages without the temp file's name.
    if (auto pos = m.find(path); pos != std::string::npos) m.replace(pos, path.size(), "FILE");
    return m;
  }
  return "";
}

TEST(Config, EmptyFileGivesDefaults) {
  Config c = load_config(write_temp(""), {});
  Config d;
  EXPECT_EQ(to_yaml(c), to_yaml(d));
  EXPECT_EQ(c.model.vocab, 256);
  EXPECT_EQ(c.parallel.order, "tp-pp-dp");
}

TEST(Config, ShippedConfigsLoad) {
  for (const auto& entry : fs::directory_iterator(FIBERTRAIN_SOURCE_DIR "/configs")) {
    if (entry.path().extension() != ".yaml") continue;
    EXPECT_NO_THROW(load_config(entry.path().string(), {})) << entry.path();
  }
}

TEST(Config, UnknownKeyNamesTheClosestKnownOne) {
  EXPECT_EQ(error_of("parallel:\n  dpp: 2\n"), "FILE:2: unknown key 'parallel.dpp' (did you mean 'parallel.dp'?)");
  EXPECT_EQ(error_of("modle:\n  width: 64\n"), "FILE:1: unknown key 'modle' (did you mean 'model'?)");
  EXPECT_EQ(error_of("model: {vocab: 256, wdith: 64}\n"),
            "FILE:1: unknown key 'model.wdith' (did you mean 'model.width'?)");
}

TEST(Config, UnknownKeyWithNoNearMatchListsTheKnownOnes) {
  EXPECT_EQ(error_of("train:\n  scheduler_kind: cosine\n"),
            "FILE:2: unknown key 'train.scheduler_kind' (known keys of train: steps, batch, optimizer, lr, min_lr_ratio, "
            "warmup, weight_decay, decay_embeddings, clip, beta1, beta2, eps, seed, nonfinite, watchdog, watchdog_min)");
}

TEST(Config, WrongTypeIsNamedWithItsLine) {
  EXPECT_EQ(error_of("model:\n  vocab: 256\n  heads: four\n"), "FILE:3: model.heads expected an integer, got 'four'");
  EXPECT_EQ(error_of("model:\n  heads: [1, 2]\n"), "FILE:2: model.heads expected an integer, got a list");
  EXPECT_EQ(error_of("model: 5\n"), "FILE:1: model expected a section (a map of keys), got '5'");
}

TEST(Config, OutOfRangeValueIsRefused) {
  EXPECT_EQ(error_of("model: {layers: 0}\n"), "FILE:1: model.layers must be between 1 and 4096, got 0");
  EXPECT_EQ(error_of("data: {kind: csv}\n"),
            "FILE:1: data.kind must be one of synthetic, text, tokens, got csv");
  EXPECT_EQ(error_of("parallel: {order: dp-dp-tp}\n").substr(0, 40), "FILE:1: parallel.order must be one of tp");
  EXPECT_EQ(error_of("model: {context: 99999999999}\n"), "FILE:1: model.context '99999999999' is out of range");
}

TEST(Config, InconsistentLayoutIsRefused) {
  EXPECT_EQ(error_of("model: {heads: 4, width: 64}\nparallel: {tp: 3}\n"),
            "model.heads (4) must divide by parallel.tp (3): each tensor-parallel rank owns whole heads");
  EXPECT_EQ(error_of("model: {heads: 3, width: 64}\n"), "model.width (64) must divide by model.heads (3)");
  EXPECT_EQ(error_of("model: {layers: 2}\nparallel: {pp: 4}\n"),
            "model.layers (2) must be at least parallel.pp (4): every pipeline stage needs a block");
  EXPECT_EQ(error_of("train: {batch: 10}\nparallel: {dp: 4}\n"),
            "train.batch (10) must divide by parallel.dp x parallel.microbatches (4 x 1): every micro-batch on "
            "every data-parallel rank holds the same number of sequences");
  EXPECT_EQ(error_of("data: {kind: text}\n"), "data.path is required when data.kind is text");
}

TEST(Config, WorldSizeMustMatchTheLayout) {
  Config c;
  c.parallel.tp = 2;
  c.parallel.pp = 2;
  c.parallel.dp = 1;
  try {
    validate_launch(c, 8);
    FAIL() << "accepted 4 ranks of layout on 8";
  } catch (const UserError& e) {
    EXPECT_STREQ(e.what(), "parallel: tp x pp x dp = 2 x 2 x 1 = 4, but the job has 8 ranks; "
                           "set parallel.dp=2 or launch 4 ranks");
  }
  c.parallel.dp = 2;
  EXPECT_NO_THROW(validate_launch(c, 8));
  c.topology.ranks_per_node = 3;
  EXPECT_THROW(validate_launch(c, 8), UserError);
}

TEST(Config, OverridesApplyAndAreNamedInErrors) {
  Config c = load_config(write_temp("parallel: {dp: 1}\n"), {{"parallel.dp", "4"}, {"model.width", "256"}});
  EXPECT_EQ(c.parallel.dp, 4);
  EXPECT_EQ(c.model.width, 256);
  EXPECT_EQ(error_of("", {{"parallel.dpp", "4"}}),
            "--set parallel.dpp=4: unknown key 'parallel.dpp' (did you mean 'parallel.dp'?)");
  EXPECT_EQ(error_of("", {{"model.heads", "x"}}), "--set model.heads=x: model.heads expected an integer, got 'x'");
  EXPECT_EQ(error_of("", {{"device", "cpu"}, {"device.kind", "cpu"}}),
            "--set device.kind=cpu: 'device' is a value, not a section");
  EXPECT_THROW(parse_override("parallel.dp"), UserError);
  EXPECT_EQ(parse_override("data.path=a=b.txt").value, "a=b.txt");
}

TEST(Config, AKeyGivenTwiceIsRefusedWithItsLine) {
  EXPECT_EQ(error_of("train:\n  steps: 3\n  batch: 8\n  steps: 5\n"), "FILE:4: key 'steps' given twice in 'train'");
  EXPECT_EQ(error_of("train: {steps: 3}\nmodel: {}\ntrain: {batch: 8}\n"), "FILE:3: key 'train' given twice");
  EXPECT_EQ(error_of("compression:\n  inter_pod: {codec: int8, codec: int4}\n"),
            "FILE:2: key 'codec' given twice in 'compression.inter_pod'");
  // Equal keys in different maps, and equal values, are fine.
  EXPECT_EQ(error_of("model: {width: 64}\ntrain: {steps: 64}\nlinks:\n  inter_node: {bandwidth: 1Gbit}\n"
                     "  inter_pod: {bandwidth: 1Gbit}\n"),
            "");
  try {
    load_config_text("train: {steps: 1, steps: 2}\n", "a step log's config");
    FAIL();
  } catch (const UserError& e) {
    EXPECT_STREQ(e.what(), "a step log's config:1: key 'steps' given twice in 'train'");
  }
}

TEST(Config, AnUnknownKeyInASectionASetMadeIsTheSets) {
  EXPECT_EQ(error_of("", {{"links.fiber.bandwidth", "1Gbit"}}),
            "--set links.fiber.bandwidth=1Gbit: unknown key 'links.fiber' (known keys of links: intra_node, "
            "inter_node, inter_pod, inter_site)");
  EXPECT_EQ(error_of("links:\n  fiber: {bandwidth: 1Gbit}\n", {{"links.inter_node.bandwidth", "1Gbit"}}),
            "FILE:2: unknown key 'links.fiber' (known keys of links: intra_node, inter_node, inter_pod, inter_site)");
}

TEST(Config, TheOuterSyncTakesItsTiersFromTheTierTable) {
  std::vector<std::string> above_node;
  for (Tier t : kAllTiers)
    if (t != Tier::intra_node) above_node.emplace_back(tier_name(t));
  EXPECT_EQ(outer_sync_tiers(), above_node);
  for (const std::string& tier : above_node)
    EXPECT_EQ(error_of("sync:\n  outer: {tier: " + tier + "}\n"), "") << tier;
  EXPECT_EQ(error_of("sync:\n  outer: {tier: intra_node}\n"),
            "FILE:2: sync.outer.tier must be one of " + fmt::format("{}", fmt::join(above_node, ", ")) +
                ", got intra_node");
  EXPECT_EQ(OuterSyncConfig{}.tier, tier_name(Tier::inter_pod));
}

TEST(Config, SyntaxErrorsAndMissingFilesAreNamed) {
  EXPECT_EQ(error_of("model: {heads: 4\n").substr(0, 30), "FILE:2:1: YAML syntax error: e");
  try {
    load_config("/nonexistent/run.yaml", {});
    FAIL();
  } catch (const UserError& e) {
    EXPECT_STREQ(e.what(), "config file '/nonexistent/run.yaml' does not exist");
  }
}

TEST(Config, ResolvedYamlLoadsBackToTheSameConfig) {
  Config c = load_config(write_temp("model: {width: 64, heads: 2}\ntrain: {steps: 7}\n"), {});
  std::string once = to_yaml(c);
  EXPECT_EQ(to_yaml(load_config(write_temp(once), {})), once);
  EXPECT_NE(once.find("width: 64"), std::string::npos);
  EXPECT_NE(once.find("steps: 7"), std::string::npos);
}

// Codec keys take their defaults from the codec's registry entry; a resolved config (what
// step logs and checkpoints keep) must load back, also when one key excludes another.
TEST(Config, ResolvedCodecKeysLoadBack) {
  for (const char* section : {"{codec: topk, count: 5}", "{codec: topk}", "{codec: int8}", "{codec: powersgd, rank: 2}"}) {
    Config c = load_config(write_temp(std::string("compression: {inter_pod: ") + section + "}\n"), {});
    std::string once = to_yaml(c);
    EXPECT_EQ(to_yaml(load_config(write_temp(once), {})), once) << section;
  }
  Config counted = load_config(write_temp("compression: {inter_pod: {codec: topk, count: 5}}\n"), {});
  EXPECT_EQ(counted.compression.tier[Tier::inter_pod]->params.at("ratio"), 0.0);
  Config plain = load_config(write_temp("compression: {inter_pod: {codec: topk}}\n"), {});
  EXPECT_EQ(plain.compression.tier[Tier::inter_pod]->params.at("ratio"), 0.01);
  EXPECT_EQ(load_config(write_temp("compression: {inter_pod: {codec: int8}}\n"), {})
                .compression.tier[Tier::inter_pod]->params.at("block"),
            256.0);
}

// `feedback`: its old name loads, both at once and difference where it cannot run do not.
TEST(Config, FeedbackKeysAndTheirOldName) {
  auto feedback = [](const std::string& section) {
    return load_config(write_temp("compression: {inter_pod: " + section + "}\n"), {})
        .compression.tier[Tier::inter_pod]->feedback;
  };
  EXPECT_EQ(feedback("{codec: sign}"), "residual");
  EXPECT_EQ(feedback("{codec: sign, error_feedback: false}"), "none");
  EXPECT_EQ(feedback("{codec: sign, error_feedback: true}"), "residual");
  EXPECT_EQ(feedback("{codec: sign, feedback: difference}"), "difference");
  EXPECT_NE(error_of("compression: {inter_pod: {codec: sign, error_feedback: false, feedback: none}}\n")
                .find("give feedback, not error_feedback as well"),
            std::string::npos);
  EXPECT_NE(error_of("compression: {inter_pod: {codec: powersgd, feedback: difference}}\n")
                .find("feedback difference applies to the gathered codecs (int8, int4, fp8, topk, sign, sparseloco, demo), not powersgd"),
            std::string::npos);
  EXPECT_NE(error_of("sync: {outer: {tier: inter_pod, every: 4}}\n"
                     "compression: {inter_pod: {codec: int4, feedback: difference}}\n")
                .find("compression.inter_pod.feedback difference is for the per-step sync"),
            std::string::npos);
  EXPECT_EQ(error_of("sync: {outer: {tier: inter_pod, every: 4}}\n"
                     "compression: {inter_node: {codec: fp16}}\n"),
            "");
}

TEST(Config, EveryKeyIsDocumented) {
  std::ifstream in(FIBERTRAIN_SOURCE_DIR "/docs/config.md");
  ASSERT_TRUE(in) << "docs/config.md is missing";
  std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const auto& k : list_keys())
    EXPECT_NE(doc.find("`" + k.path + "`"), std::string::npos) << k.path << " is not in docs/config.md";
}

}  // namespace
}  // namespace ft
