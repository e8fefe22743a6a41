// The files a training run reads and writes, checked before any is created: no output may
// be one of the run's inputs or another of its outputs, every output's directory must be
// writable, and the step log is this run's alone (locked) and replaces an existing file only
// when asked.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "trainer/io/config.h"

namespace ft {

struct RunFiles {
  // (what it is, path): "the config", "data.path", "--out", "checkpoint.path (step 100)", ...
  std::vector<std::pair<std::string, std::string>> inputs, outputs;
};

// The run's files: its config, data and resumed checkpoint; its step log and the checkpoint
// of every step it will save (from `first_step`, the resumed one, to train.steps).
RunFiles run_files(const Config& cfg, const std::string& config_path, const std::string& out,
                   const std::string& resume, int first_step);

// Throws UserError naming both roles when an output is an input or another output (the same
// file by path, link or hard link), when an output is a directory, or when a file cannot be
// created in an output's directory (tried, as the OS decides, not judged by mode bits).
void check_run_files(const RunFiles& files);

// runs/<config stem>-<UTC date and time>.h5, or with -2, -3 ... when that exists: two runs of
// one config never share a default log. Rank 0 names it; every rank gets the name.
std::string default_step_log(const std::string& config_path);

// An exclusive lock on a file this process is about to write, held while the object lives.
// The file is opened without truncation: a refused run leaves it as it was.
class OutputLock {
 public:
  // Throws UserError when another process holds the lock, when the file exists, is not
  // empty and `overwrite` is false, or when it cannot be opened (with the OS reason).
  OutputLock(const std::string& path, bool overwrite);
  ~OutputLock();
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace ft
