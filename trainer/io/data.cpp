#include "trainer/io/data.h"

#include <fcntl.h>
#include <glob.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <numeric>

#include <fmt/format.h>

#include "comm/error.h"
#include "comm/rng.h"

namespace ft {
namespace {

// A read-only memory map of a whole file.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path) : path_(path) {
    int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) throw UserError(fmt::format("data file '{}' cannot be opened: {}", path, std::strerror(errno)));
    struct stat st{};
    fstat(fd, &st);
    if (S_ISDIR(st.st_mode)) {
      ::close(fd);
      throw UserError(fmt::format("data file '{}' is a directory", path));
    }
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ > 0) {
      void* p = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        ::close(fd);
        throw UserError(fmt::format("data file '{}' cannot be mapped: {}", path, std::strerror(errno)));
      }
      data_ = static_cast<const unsigned char*>(p);
    }
    ::close(fd);
  }
  ~MappedFile() {
    if (data_) munmap(const_cast<unsigned char*>(data_), size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const unsigned char* data() const { return data_; }
  std::size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const unsigned char* data_ = nullptr;
  std::size_t size_ = 0;
};

// One file's tokens: bytes of a text file, or the uint16 tokens of an llm.c shard.
struct Shard {
  std::unique_ptr<MappedFile> file;
  std::size_t header_bytes = 0;
  int token_bytes = 1;
  std::int64_t count = 0;
  std::int32_t at(std::int64_t i) const {
    const unsigned char* p = file->data() + header_bytes;
    if (token_bytes == 1) return p[i];
    std::uint16_t t;
    std::memcpy(&t, p + 2 * i, 2);
    return t;
  }
};

Shard open_text(const std::string& path) {
  Shard s;
  s.file = std::make_unique<MappedFile>(path);
  s.count = static_cast<std::int64_t>(s.file->size());
  return s;
}

Shard open_token_shard(const std::string& path, int vocab) {
  Shard s;
  s.file = std::make_unique<MappedFile>(path);
  s.header_bytes = kShardHeaderInts * sizeof(std::int32_t);
  s.token_bytes = 2;
  if (s.file->size() < s.header_bytes)
    throw UserError(fmt::format("data file '{}' is not an llm.c token shard: {} bytes, shorter than the {}-byte header",
                                path, s.file->size(), s.header_bytes));
  std::int32_t header[3];
  std::memcpy(header, s.file->data(), sizeof(header));
  if (header[0] != kShardMagic)
    throw UserError(fmt::format("data file '{}' is not an llm.c token shard: magic {} (expected {})", path, header[0],
                                kShardMagic));
  if (header[1] != kShardVersion)
    throw UserError(fmt::format("data file '{}': token shard version {} is not supported (expected {})", path,
                                header[1], kShardVersion));
  s.count = header[2];
  std::size_t have = s.file->size() - s.header_bytes;
  if (s.count < 0 || static_cast<std::size_t>(s.count) * 2 > have)
    throw UserError(fmt::format("data file '{}' is truncated: its header says {} tokens ({} bytes) but only {} bytes follow",
                                path, s.count, s.count * 2, have));
  for (std::int64_t i = 0; i < s.count; ++i) {
    if (s.at(i) >= vocab)
      throw UserError(fmt::format("data file '{}': token {} at position {} is not below model.vocab ({})", path, s.at(i),
                                  i, vocab));
  }
  return s;
}

std::vector<std::string> expand(const std::string& pattern) {
  glob_t g{};
  int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
  std::vector<std::string> out;
  if (rc == 0)
    for (std::size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  globfree(&g);
  return out;  // glob sorts its matches
}

// Text or token files, read as one array, of which tokens [begin_, begin_ + total_) are this
// split's. Sequence g starts at (g * T) mod (N - T) of them, so the run walks the data in
// order and wraps around.
class FileBatches final : public BatchSource {
 public:
  FileBatches(std::vector<Shard> shards, std::string what, int context, int batch, Split split, double holdout)
      : shards_(std::move(shards)), what_(std::move(what)), T_(context), B_(batch) {
    std::int64_t all = 0;
    for (const Shard& s : shards_) {
      starts_.push_back(all);
      all += s.count;
    }
    const auto held = static_cast<std::int64_t>(static_cast<double>(all) * holdout);
    total_ = split == Split::all ? all : split == Split::train ? all - held : held;
    begin_ = split == Split::eval ? all - held : 0;
    const char* part = split == Split::all ? "" : split == Split::train ? " (its training part)" : " (its held-out part)";
    if (total_ < T_ + 1)
      throw UserError(fmt::format("data: {}{} holds {} tokens, fewer than model.context + 1 ({}){}", what_, part, total_,
                                  T_ + 1, split == Split::all ? "" : ": change eval.holdout or use more data"));
    if (split != Split::all)
      what_ += fmt::format(", {} of them {}", total_, split == Split::train ? "trained on" : "held out");
  }

  void fill(std::int64_t step, int first_seq, int n_seq, std::int32_t* inputs, std::int32_t* targets) const override {
    for (int j = 0; j < n_seq; ++j) {
      std::int64_t start = sequence_start(step * B_ + first_seq + j);
      for (int t = 0; t < T_; ++t) {
        inputs[static_cast<std::int64_t>(j) * T_ + t] = at(start + t);
        targets[static_cast<std::int64_t>(j) * T_ + t] = at(start + t + 1);
      }
    }
  }
  std::int64_t position(std::int64_t step) const override { return sequence_start(step * B_); }
  std::int64_t tokens() const override { return total_; }
  std::string describe() const override {
    return fmt::format("{}: {} tokens in {} file{}", what_, total_, shards_.size(), shards_.size() == 1 ? "" : "s");
  }

 private:
  std::int64_t sequence_start(std::int64_t g) const { return (g % (total_ - T_)) * T_ % (total_ - T_); }
  std::int32_t at(std::int64_t i) const {
    i += begin_;
    std::size_t k = static_cast<std::size_t>(std::upper_bound(starts_.begin(), starts_.end(), i) - starts_.begin()) - 1;
    return shards_[k].at(i - starts_[k]);
  }

  std::vector<Shard> shards_;
  std::vector<std::int64_t> starts_;
  std::string what_;
  std::int64_t begin_ = 0, total_ = 0;
  int T_, B_;
};

// Seeded Markov chains: each token is followed by its fixed successor (a seeded
// permutation of the vocabulary) with probability 7/8, else by a uniform token. A model
// can learn the successors, and the loss floor (the chain's entropy) is known.
class SyntheticBatches final : public BatchSource {
 public:
  SyntheticBatches(int vocab, int context, int batch, std::uint64_t seed, bool held_out)
      : V_(vocab), T_(context), B_(batch), seed_(seed), seq_stream_(held_out ? kEvalStream : kSeqStream),
        successor_(static_cast<std::size_t>(vocab)) {
    std::iota(successor_.begin(), successor_.end(), 0);
    for (int i = vocab - 1; i > 0; --i) {  // Fisher-Yates on the counter RNG
      auto k = static_cast<int>(rng::bits(seed_, kPermStream, static_cast<std::uint64_t>(i)) % static_cast<std::uint64_t>(i + 1));
      std::swap(successor_[static_cast<std::size_t>(i)], successor_[static_cast<std::size_t>(k)]);
    }
  }

  void fill(std::int64_t step, int first_seq, int n_seq, std::int32_t* inputs, std::int32_t* targets) const override {
    std::vector<std::int32_t> seq(static_cast<std::size_t>(T_) + 1);
    for (int j = 0; j < n_seq; ++j) {
      auto g = static_cast<std::uint64_t>(step * B_ + first_seq + j);
      std::uint64_t stream = rng::mix(g ^ seq_stream_);
      seq[0] = static_cast<std::int32_t>(rng::bits(seed_, stream, 0) % static_cast<std::uint64_t>(V_));
      for (int t = 1; t <= T_; ++t) {
        std::uint64_t r = rng::bits(seed_, stream, static_cast<std::uint64_t>(t));
        bool follow = (r & 7) != 0;
        seq[static_cast<std::size_t>(t)] = follow ? successor_[static_cast<std::size_t>(seq[static_cast<std::size_t>(t) - 1])]
                                                  : static_cast<std::int32_t>((r >> 3) % static_cast<std::uint64_t>(V_));
      }
      std::copy(seq.begin(), seq.end() - 1, inputs + static_cast<std::int64_t>(j) * T_);
      std::copy(seq.begin() + 1, seq.end(), targets + static_cast<std::int64_t>(j) * T_);
    }
  }
  std::int64_t position(std::int64_t) const override { return 0; }
  std::int64_t tokens() const override { return 0; }
  std::string describe() const override {
    double q = 1.0 / (8.0 * V_), p = 7.0 / 8.0 + q;
    double entropy = -p * std::log(p) - (V_ - 1) * q * std::log(q);
    return fmt::format("synthetic Markov chains over {} tokens (loss floor {:.3f} nats)", V_, entropy);
  }

 private:
  static constexpr std::uint64_t kPermStream = 0x5045524d;  // "PERM"
  static constexpr std::uint64_t kSeqStream = 0x53455153;   // "SEQS"
  static constexpr std::uint64_t kEvalStream = 0x4556414c;  // "EVAL": held-out sequences
  int V_, T_, B_;
  std::uint64_t seed_, seq_stream_;
  std::vector<std::int32_t> successor_;
};

}  // namespace

bool file_held_out(std::size_t i, double holdout) {
  const double step = holdout * static_cast<double>(i + 1), before = holdout * static_cast<double>(i);
  return std::floor(step + 1e-9) > std::floor(before + 1e-9);
}

std::unique_ptr<BatchSource> open_batches(const DataConfig& data, const ModelConfig& model, int global_batch,
                                          std::uint64_t seed, Split split, double holdout) {
  if (data.kind == "synthetic")
    return std::make_unique<SyntheticBatches>(model.vocab, model.context, global_batch, seed, split == Split::eval);
  std::vector<std::string> files = expand(data.path);
  if (files.empty()) {
    // A pattern that matches nothing is refused as such; a plain name is opened, to say why not.
    if (data.path.find_first_of("*?[") != std::string::npos)
      throw UserError(fmt::format("data.path '{}' matches no file", data.path));
    files.push_back(data.path);
  }
  std::string what = fmt::format("{} '{}'", data.kind, data.path);
  if (data.held_out == "files" && split != Split::all) {
    // Whole files: the split is the files' own, each read whole.
    std::vector<std::string> held, trained;
    for (std::size_t i = 0; i < files.size(); ++i) (file_held_out(i, holdout) ? held : trained).push_back(files[i]);
    if (held.empty() || trained.empty())
      throw UserError(fmt::format("data.held_out files: eval.holdout {} of the {} files of '{}' holds out {} and "
                                  "trains on {}; give more files or another eval.holdout",
                                  holdout, files.size(), data.path, held.size(), trained.size()));
    what += fmt::format(", {} of its {} files {}", split == Split::eval ? held.size() : trained.size(), files.size(),
                        split == Split::eval ? "held out whole" : "trained on");
    files = split == Split::eval ? held : trained;
    split = Split::all;
  }
  std::vector<Shard> shards;
  for (const auto& f : files) shards.push_back(data.kind == "text" ? open_text(f) : open_token_shard(f, model.vocab));
  return std::make_unique<FileBatches>(std::move(shards), what, model.context, global_batch, split, holdout);
}

void write_token_shard(const std::string& path, const std::vector<std::uint16_t>& tokens) {
  std::int32_t header[kShardHeaderInts] = {};
  header[0] = kShardMagic;
  header[1] = kShardVersion;
  header[2] = static_cast<std::int32_t>(tokens.size());
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(header), sizeof(header));
  out.write(reinterpret_cast<const char*>(tokens.data()), static_cast<std::streamsize>(tokens.size() * 2));
  if (!out) throw UserError(fmt::format("cannot write token shard '{}'", path));
}

}  // namespace ft
