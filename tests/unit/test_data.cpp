#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "comm/error.h"
#include "trainer/io/data.h"

namespace ft {
namespace {

namespace fs = std::filesystem;

class Data : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ft_data_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const char* name) const { return (dir_ / name).string(); }
  std::string error_of(const DataConfig& d, int vocab = 256) {
    ModelConfig m;
    m.vocab = vocab;
    m.context = 8;
    try {
      open_batches(d, m, 4, 1);
    } catch (const UserError& e) {
      return e.what();
    }
    return "";
  }
  fs::path dir_;
};

std::vector<std::uint16_t> iota_tokens(int n, int mod) {
  std::vector<std::uint16_t> t(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) t[static_cast<std::size_t>(i)] = static_cast<std::uint16_t>(i % mod);
  return t;
}

TEST_F(Data, GlobalBatchDoesNotDependOnHowRanksSplitIt) {
  write_token_shard(path("a.bin"), iota_tokens(500, 50));
  write_token_shard(path("b.bin"), iota_tokens(300, 40));
  ModelConfig m;
  m.vocab = 64;
  m.context = 8;
  for (std::string kind : {"tokens", "synthetic"}) {
    DataConfig d{kind, path("*.bin")};
    auto src = open_batches(d, m, 16, 3);
    for (int step : {0, 1, 7, 1000}) {
      std::vector<std::int32_t> whole_in(16 * 8), whole_tg(16 * 8);
      src->fill(step, 0, 16, whole_in.data(), whole_tg.data());
      for (int ranks : {2, 4, 8}) {
        int share = 16 / ranks;
        for (int r = 0; r < ranks; ++r) {
          std::vector<std::int32_t> in(static_cast<std::size_t>(share * 8)), tg(in.size());
          src->fill(step, r * share, share, in.data(), tg.data());
          EXPECT_TRUE(std::equal(in.begin(), in.end(), whole_in.begin() + r * share * 8)) << kind << " step " << step;
          EXPECT_TRUE(std::equal(tg.begin(), tg.end(), whole_tg.begin() + r * share * 8)) << kind << " step " << step;
        }
      }
    }
  }
}

TEST_F(Data, TargetsAreInputsShiftedByOneAcrossShards) {
  write_token_shard(path("a.bin"), iota_tokens(10, 1000));
  std::vector<std::uint16_t> rest;
  for (int i = 10; i < 40; ++i) rest.push_back(static_cast<std::uint16_t>(i));
  write_token_shard(path("b.bin"), rest);
  ModelConfig m;
  m.vocab = 1000;
  m.context = 8;
  auto src = open_batches(DataConfig{"tokens", path("*.bin")}, m, 2, 1);
  EXPECT_EQ(src->tokens(), 40);
  std::vector<std::int32_t> in(16), tg(16);
  src->fill(0, 0, 2, in.data(), tg.data());  // sequences start at 0 and 8; the second crosses into b.bin
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(in[static_cast<std::size_t>(i)], i);
    EXPECT_EQ(tg[static_cast<std::size_t>(i)], i + 1);
  }
}

TEST_F(Data, TextFileBytesAreTheTokens) {
  std::ofstream(path("t.txt")) << "abcdefghijklmnopqrstuvwxyz";
  ModelConfig m;
  m.context = 4;
  auto src = open_batches(DataConfig{"text", path("t.txt")}, m, 1, 1);
  std::vector<std::int32_t> in(4), tg(4);
  src->fill(1, 0, 1, in.data(), tg.data());
  EXPECT_EQ(in, (std::vector<std::int32_t>{'e', 'f', 'g', 'h'}));
  EXPECT_EQ(tg, (std::vector<std::int32_t>{'f', 'g', 'h', 'i'}));
}

// A glob of text files, whole files held out: the held-out split reads only those, the
// training split only the others. File i of 10 is held out at 0.2 where floor(0.2 (i + 1))
// steps up: files 4 and 9.
TEST_F(Data, WholeTextFilesAreHeldOut) {
  for (int i = 0; i < 10; ++i) {
    std::ofstream(path(("doc" + std::to_string(i) + ".txt").c_str())) << std::string(20 + i, static_cast<char>('a' + i));
  }
  DataConfig d;
  d.kind = "text";
  d.path = path("doc*.txt");
  d.held_out = "files";
  ModelConfig m;
  m.vocab = 256;
  m.context = 8;
  auto train = open_batches(d, m, 2, 1, Split::train, 0.2), eval = open_batches(d, m, 2, 1, Split::eval, 0.2);
  EXPECT_EQ(eval->tokens(), 24 + 29);
  EXPECT_EQ(train->tokens(), 10 * 20 + 45 - 24 - 29);
  std::vector<std::int32_t> in(16), target(16);
  for (int step = 0; step < 20; ++step) {
    eval->fill(step, 0, 2, in.data(), target.data());
    for (std::int32_t t : in) EXPECT_TRUE(t == 'e' || t == 'j') << step;
    train->fill(step, 0, 2, in.data(), target.data());
    for (std::int32_t t : in) EXPECT_TRUE(t != 'e' && t != 'j') << step;
  }
  EXPECT_NE(eval->describe().find("2 of its 10 files held out whole"), std::string::npos) << eval->describe();
  // Too few files to hold one out.
  d.path = path("doc1.txt");
  try {
    open_batches(d, m, 2, 1, Split::eval, 0.2);
    ADD_FAILURE() << "one file held out and trained on";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("holds out 0 and trains on 1"), std::string::npos) << e.what();
  }
}

TEST_F(Data, BadFilesAreRefusedWithTheirProblem) {
  EXPECT_EQ(error_of({"text", path("none.txt")}), "data file '" + path("none.txt") + "' cannot be opened: No such file or directory");
  EXPECT_EQ(error_of({"tokens", path("*.bin")}), "data.path '" + path("*.bin") + "' matches no file");

  std::ofstream(path("magic.bin")) << std::string(2048, 'x');
  EXPECT_EQ(error_of({"tokens", path("magic.bin")}),
            "data file '" + path("magic.bin") + "' is not an llm.c token shard: magic 2021161080 (expected 20240520)");

  write_token_shard(path("cut.bin"), iota_tokens(100, 50));
  fs::resize_file(path("cut.bin"), 1024 + 150);
  EXPECT_EQ(error_of({"tokens", path("cut.bin")}), "data file '" + path("cut.bin") +
                                                       "' is truncated: its header says 100 tokens (200 bytes) but only 150 bytes follow");

  write_token_shard(path("big.bin"), iota_tokens(300, 300));
  EXPECT_EQ(error_of({"tokens", path("big.bin")}, 256),
            "data file '" + path("big.bin") + "': token 256 at position 256 is not below model.vocab (256)");

  write_token_shard(path("short.bin"), iota_tokens(5, 5));
  EXPECT_EQ(error_of({"tokens", path("short.bin")}),
            "data: tokens '" + path("short.bin") + "' holds 5 tokens, fewer than model.context + 1 (9)");
}

}  // namespace
}  // namespace ft
