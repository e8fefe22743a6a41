// A small RAII layer over the HDF5 C API: files, groups, attributes, extendable row logs and
// fixed arrays. Paths may contain '/', and missing groups are created on the way.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <hdf5.h>

namespace ft::h5 {

// Owns one HDF5 identifier and closes it with the matching H5?close.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer close) : id_(id), close_(close) {}
  Handle(Handle&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }
  void reset();
  hid_t get() const { return id_; }
  explicit operator bool() const { return id_ >= 0; }

 private:
  hid_t id_ = -1;
  Closer close_ = nullptr;
};

enum class Mode { create, read, read_write };

class File {
 public:
  // Throws UserError when the file cannot be created or opened (the message names it).
  File(const std::string& path, Mode mode);
  const std::string& path() const { return path_; }
  hid_t id() const { return file_.get(); }

  // Attributes on a group or dataset ("/" for the root).
  void set_attr(const std::string& object, const std::string& name, const std::string& value);
  void set_attr(const std::string& object, const std::string& name, std::int64_t value);
  void set_attr(const std::string& object, const std::string& name, double value);
  void set_attr(const std::string& object, const std::string& name, const std::vector<std::string>& values);
  void set_attr(const std::string& object, const std::string& name, const std::vector<std::int64_t>& values);
  std::string attr_string(const std::string& object, const std::string& name) const;
  std::int64_t attr_int(const std::string& object, const std::string& name) const;
  std::vector<std::int64_t> attr_ints(const std::string& object, const std::string& name) const;
  bool has_attr(const std::string& object, const std::string& name) const;

  bool exists(const std::string& path) const;
  // Paths of every dataset below `group`, relative to it ("a/b/c").
  std::vector<std::string> datasets_under(const std::string& group) const;

  // Extendable log of float64 rows: shape [n] when width == 0, else [n, width].
  void create_log(const std::string& path, std::size_t width, std::size_t chunk_rows);
  void append_rows(const std::string& path, const double* rows, std::size_t n_rows);
  std::size_t rows(const std::string& path) const;

  // Fixed arrays (checkpoints, benchmark tables).
  template <class T> void write(const std::string& path, const std::vector<T>& data,
                                const std::vector<std::uint64_t>& shape);
  template <class T> std::vector<T> read(const std::string& path) const;
  std::vector<std::uint64_t> shape(const std::string& path) const;
  // Bytes per element as stored (4 for float32, 8 for float64).
  std::size_t element_bytes(const std::string& path) const;

  void flush();
  // Flushes and closes now (a destructor cannot report a failed write).
  void close();

 private:
  void ensure_parent(const std::string& path);
  Handle open_object(const std::string& object) const;

  std::string path_;
  Handle file_;
};

}  // namespace ft::h5
