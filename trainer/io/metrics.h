// The per-step log: every rank contributes its figures, rank 0 writes them to HDF5.
//
// Layout (documented in docs/metrics.md): /steps/<name> is [step] for job-wide figures and
// [step, rank] for per-rank ones; each dataset carries `units` and `description`
// attributes. Rows are buffered and written every `flush_every` records, each write ending
// in H5Fflush, so a run killed between flushes leaves a file with every flushed step.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <mpi.h>

#include "trainer/io/config.h"
#include "trainer/io/h5.h"
#include "trainer/io/run_files.h"

namespace ft {

// The median of measured figures (the upper one of an even count; 0 for none): what the
// readers of step logs and benchmarks report, robust to a slow step.
double median(std::vector<double> v);

// The config a step log's run used, read from `f` (opened from `path`); throws UserError when
// the file is not a step log.
Config step_log_config(const h5::File& f, const std::string& path);

enum class Scope { job, per_rank };

struct MetricSpec {
  std::string name;  // dataset path under /steps; may contain '/'
  std::string units;
  Scope scope;
  std::string description;
};

// The columns a run logs, in a fixed order. Every rank builds the same schema.
class MetricsSchema {
 public:
  // Returns the column index used with StepRecord.
  int add(std::string name, std::string units, Scope scope, std::string description);
  int index(const std::string& name) const;  // throws std::out_of_range when absent
  const std::vector<MetricSpec>& specs() const { return specs_; }

 private:
  std::vector<MetricSpec> specs_;
};

// One logged step's values, indexed by schema column. Job-wide values are taken from rank 0.
class StepRecord {
 public:
  explicit StepRecord(const MetricsSchema& schema) : values_(schema.specs().size(), 0.0) {}
  void set(int column, double value) { values_[static_cast<std::size_t>(column)] = value; }
  double get(int column) const { return values_[static_cast<std::size_t>(column)]; }
  const std::vector<double>& values() const { return values_; }

 private:
  std::vector<double> values_;
};

// Rank 0's side: the HDF5 file. Rows are buffered and written every `flush_every`
// appends, each write ending in H5Fflush. A write that fails half-way (a full disk) can
// leave an HDF5 file unreadable, so none is started without room for it: when the file
// system has less free than twice the largest growth of one flush (at least 1 MiB), the
// log stops with a UserError and every step written so far stays readable.
class StepFile {
 public:
  // Locks `path` first (OutputLock): throws UserError, leaving the file untouched, when
  // another run writes it or it exists and `overwrite` is false; or if it cannot be created.
  StepFile(const std::string& path, const MetricsSchema& schema, int world_size, int flush_every,
           bool overwrite = false);
  ~StepFile();
  h5::File& file() { return file_; }
  // One logged step: values[column][rank].
  void append(const std::vector<std::vector<double>>& values);
  void flush();

 private:
  OutputLock lock_;
  h5::File file_;
  const MetricsSchema schema_;
  int world_;
  int flush_every_;
  std::vector<std::vector<double>> pending_;  // per column, rows appended since last flush
  int pending_rows_ = 0;
  std::uintmax_t size_ = 0, max_growth_ = 0;  // the file's bytes after the last flush; most one flush added
  void check_room();
};

// Every rank's side: gathers each record to rank 0, which appends it to the StepFile.
class StepLog {
 public:
  // Rank 0 creates `path` (empty: no file; figures are still gathered for the summary).
  // Local work only, so it can run inside run_phase.
  StepLog(MPI_Comm comm, MetricsSchema schema, const std::string& path, int flush_every, bool overwrite = false);

  bool writes_file() const { return file_ != nullptr; }
  const std::string& path() const { return path_; }
  // Root attributes; ignored on ranks other than 0.
  void set_attr(const std::string& name, const std::string& value);
  void set_attr(const std::string& name, std::int64_t value);
  void set_attr(const std::string& name, double value);
  void set_attr(const std::string& name, const std::vector<std::string>& values);
  void set_attr(const std::string& name, const std::vector<std::int64_t>& values);

  // Collective over the communicator: gathers this rank's record for rank 0 to write.
  void record(const StepRecord& r);
  void flush();

 private:
  MPI_Comm comm_;
  MetricsSchema schema_;
  std::string path_;
  int rank_ = 0, world_ = 1;
  std::unique_ptr<StepFile> file_;
};

}  // namespace ft
