#include "trainer/io/run_files.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <set>

#include <fmt/format.h>
#include <mpi.h>

#include "comm/error.h"

namespace fs = std::filesystem;

namespace ft {
namespace {

std::string checkpoint_at(const std::string& pattern, int step) {
  std::string path = pattern;
  if (auto at = path.find("{step}"); at != std::string::npos) path.replace(at, 6, std::to_string(step));
  return path;
}

bool same_file(const std::string& a, const std::string& b) {
  std::error_code ec;
  if (fs::weakly_canonical(fs::absolute(a), ec) == fs::weakly_canonical(fs::absolute(b), ec)) return true;
  return fs::exists(a, ec) && fs::exists(b, ec) && fs::equivalent(a, b, ec);  // hard links
}

// Whether a file can be created in `dir` (made when missing): a probe file, removed again.
std::string unwritable_reason(const fs::path& dir) {
  std::error_code ec;
  if (!dir.empty()) fs::create_directories(dir, ec);
  if (ec) return ec.message();
  std::string probe = (dir.empty() ? fs::path(".") : dir) / fmt::format(".fibertrain-probe-{}", ::getpid());
  int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return std::strerror(errno);
  ::close(fd);
  ::unlink(probe.c_str());
  return {};
}

}  // namespace

RunFiles run_files(const Config& cfg, const std::string& config_path, const std::string& out,
                   const std::string& resume, int first_step) {
  RunFiles f;
  if (!config_path.empty()) f.inputs.emplace_back("the config", config_path);
  if (cfg.data.kind != "synthetic" && !cfg.data.path.empty()) f.inputs.emplace_back("data.path", cfg.data.path);
  if (!cfg.topology.file.empty()) f.inputs.emplace_back("topology.file", cfg.topology.file);
  if (!resume.empty()) f.inputs.emplace_back("--resume", resume);
  if (!out.empty()) f.outputs.emplace_back("--out", out);
  const auto& ck = cfg.checkpoint;
  if (!ck.path.empty()) {
    for (int step = first_step + 1; step <= cfg.train.steps; ++step) {
      bool saves = step == cfg.train.steps || (ck.every > 0 && step % ck.every == 0);
      if (!saves) continue;
      f.outputs.emplace_back(fmt::format("checkpoint.path (step {})", step), checkpoint_at(ck.path, step));
      if (ck.path.find("{step}") == std::string::npos) break;  // one file, rewritten
    }
  }
  return f;
}

void check_run_files(const RunFiles& files) {
  // A run may save thousands of checkpoints: outputs meet each other through one map of
  // canonical paths, and each directory is probed once.
  std::map<fs::path, const std::string*> seen;
  std::set<fs::path> probed;
  for (const auto& [what, path] : files.outputs) {
    // A checkpoint may replace the one the run resumed from: that was read whole at start-up,
    // and a checkpoint is renamed into place only once it is complete.
    const bool checkpoint = what.rfind("checkpoint.path", 0) == 0;
    for (const auto& [in_what, in_path] : files.inputs)
      if (!(checkpoint && in_what == "--resume") && same_file(path, in_path))
        throw UserError(fmt::format("{} '{}' is also {}: the run would overwrite its own input", what, path, in_what));
    std::error_code ec;
    if (fs::is_directory(path, ec))
      throw UserError(fmt::format("{} '{}' is a directory: the run could not write its file there", what, path));
    auto [at, fresh] = seen.emplace(fs::weakly_canonical(fs::absolute(path), ec), &what);
    if (!fresh)
      throw UserError(fmt::format("{} '{}' is also {}: two outputs of the run would overwrite each other", what, path,
                                  *at->second));
    fs::path dir = fs::path(path).parent_path();
    if (!probed.insert(dir).second) continue;
    if (std::string why = unwritable_reason(dir); !why.empty())
      throw UserError(fmt::format("{} '{}': cannot write in its directory: {}", what, path, why));
  }
}

std::string default_step_log(const std::string& config_path) {
  std::string stem = config_path.empty() ? "defaults" : fs::path(config_path).stem().string();
  char name[512] = {};
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0) {
    std::time_t t = std::time(nullptr);
    char when[32];
    std::strftime(when, sizeof when, "%Y%m%d-%H%M%S", std::gmtime(&t));
    std::string base = fmt::format("runs/{}-{}", stem.substr(0, 400), when), path = base + ".h5";
    for (int n = 2; fs::exists(path); ++n) path = fmt::format("{}-{}.h5", base, n);
    std::snprintf(name, sizeof name, "%s", path.c_str());
  }
  MPI_Bcast(name, sizeof name, MPI_CHAR, 0, MPI_COMM_WORLD);
  return name;
}

OutputLock::OutputLock(const std::string& path, bool overwrite) {
  std::error_code ec;
  if (auto dir = fs::path(path).parent_path(); !dir.empty()) fs::create_directories(dir, ec);
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw UserError(fmt::format("cannot create '{}': {}", path, std::strerror(errno)));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd_);
    throw UserError(fmt::format("'{}' is being written by another run (it holds the file's lock); choose another --out",
                                path));
  }
  struct stat st {};
  if (!overwrite && ::fstat(fd_, &st) == 0 && st.st_size > 0) {
    ::close(fd_);
    throw UserError(fmt::format("'{}' exists; pass --overwrite to replace it, or choose another --out", path));
  }
}

OutputLock::~OutputLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace ft
