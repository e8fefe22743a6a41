#include "trainer/io/metrics.h"

#include <algorithm>
#include <filesystem>
#include <stdexcept>

#include <fmt/format.h>

#include "comm/error.h"
#include "comm/runtime.h"
#include "trainer/io/units.h"

namespace ft {

Config step_log_config(const h5::File& f, const std::string& path) {
  if (!f.has_attr("/", "config") || !f.exists("/steps/step_time"))
    throw UserError(fmt::format("'{}' is not a fibertrain step log", path));
  return load_config_text(f.attr_string("/", "config"), path + " (config attribute)");
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int MetricsSchema::add(std::string name, std::string units, Scope scope, std::string description) {
  specs_.push_back({std::move(name), std::move(units), scope, std::move(description)});
  return static_cast<int>(specs_.size()) - 1;
}

int MetricsSchema::index(const std::string& name) const {
  for (std::size_t i = 0; i < specs_.size(); ++i)
    if (specs_[i].name == name) return static_cast<int>(i);
  throw std::out_of_range("no metric named " + name);
}

StepFile::StepFile(const std::string& path, const MetricsSchema& schema, int world_size, int flush_every,
                   bool overwrite)
    : lock_(path, overwrite),
      file_(path, h5::Mode::create), schema_(schema), world_(world_size), flush_every_(flush_every) {
  pending_.resize(schema_.specs().size());
  // Chunks of at least 64 rows, about 4 KiB for per-rank logs of small jobs.
  std::size_t chunk_rows = std::max<std::size_t>(64, 512 / static_cast<std::size_t>(world_));
  for (const MetricSpec& m : schema_.specs()) {
    std::string ds = "/steps/" + m.name;
    file_.create_log(ds, m.scope == Scope::per_rank ? static_cast<std::size_t>(world_) : 0, chunk_rows);
    file_.set_attr(ds, "units", m.units);
    file_.set_attr(ds, "description", m.description);
  }
  file_.flush();
  std::error_code ec;
  size_ = std::filesystem::file_size(path, ec);
}

StepFile::~StepFile() {
  try {
    flush();
  } catch (...) {
    // Never throw from a destructor; the last flush is best effort when unwinding.
  }
}

void StepFile::append(const std::vector<std::vector<double>>& values) {
  const auto& specs = schema_.specs();
  for (std::size_t c = 0; c < specs.size(); ++c) {
    if (specs[c].scope == Scope::job)
      pending_[c].push_back(values[c][0]);
    else
      pending_[c].insert(pending_[c].end(), values[c].begin(), values[c].end());
  }
  if (++pending_rows_ >= flush_every_) flush();
}

void StepFile::check_room() {
  std::error_code ec;
  const std::string& path = file_.path();
  std::filesystem::space_info room = std::filesystem::space(path, ec);
  if (ec) return;  // no answer from the file system: write and let HDF5 report
  const std::uintmax_t need = std::max<std::uintmax_t>(std::uintmax_t{1} << 20, 2 * max_growth_);
  if (room.available < need)
    throw UserError(fmt::format("step log '{}': its file system has {} free, under the {} the next write may need; "
                                "the log stops here so the steps it holds stay readable: free some space",
                                path, format_bytes(Bytes{room.available}), format_bytes(Bytes{need})));
}

void StepFile::flush() {
  if (pending_rows_ > 0) {
    check_room();
    const auto& specs = schema_.specs();
    for (std::size_t c = 0; c < specs.size(); ++c) {
      file_.append_rows("/steps/" + specs[c].name, pending_[c].data(), static_cast<std::size_t>(pending_rows_));
      pending_[c].clear();
    }
    pending_rows_ = 0;
  }
  file_.flush();
  std::error_code ec;
  std::uintmax_t size = std::filesystem::file_size(file_.path(), ec);
  if (!ec) {
    if (size_ > 0 && size > size_) max_growth_ = std::max(max_growth_, size - size_);
    size_ = size;
  }
}

StepLog::StepLog(MPI_Comm comm, MetricsSchema schema, const std::string& path, int flush_every, bool overwrite)
    : comm_(comm), schema_(std::move(schema)), path_(path) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &world_);
  if (rank_ == 0 && !path.empty()) file_ = std::make_unique<StepFile>(path, schema_, world_, flush_every, overwrite);
}

void StepLog::set_attr(const std::string& name, const std::string& value) {
  if (file_) file_->file().set_attr("/", name, value);
}
void StepLog::set_attr(const std::string& name, std::int64_t value) {
  if (file_) file_->file().set_attr("/", name, value);
}
void StepLog::set_attr(const std::string& name, double value) {
  if (file_) file_->file().set_attr("/", name, value);
}
void StepLog::set_attr(const std::string& name, const std::vector<std::string>& values) {
  if (file_) file_->file().set_attr("/", name, values);
}
void StepLog::set_attr(const std::string& name, const std::vector<std::int64_t>& values) {
  if (file_) file_->file().set_attr("/", name, values);
}

void StepLog::record(const StepRecord& r) {
  std::size_t cols = schema_.specs().size();
  std::vector<double> all = gather_to_root(comm_, r.values());
  if (rank_ != 0 || !file_) return;
  std::vector<std::vector<double>> per_rank(cols, std::vector<double>(static_cast<std::size_t>(world_)));
  for (std::size_t c = 0; c < cols; ++c)
    for (std::size_t k = 0; k < static_cast<std::size_t>(world_); ++k) per_rank[c][k] = all[k * cols + c];
  file_->append(per_rank);
}

void StepLog::flush() {
  if (file_) file_->flush();
}

}  // namespace ft
