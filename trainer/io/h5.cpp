#include "trainer/io/h5.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include <fmt/format.h>

#include "comm/error.h"

namespace ft::h5 {
namespace {

// HDF5 prints its error stack to stderr by default; fibertrain reports errors itself.
struct SilenceHdf5 {
  SilenceHdf5() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }
} silence_hdf5;

// The operating system's reason for a failed HDF5 call, when the error stack holds one (its
// file drivers record "errno = 28, error message = 'No space left on device'").
std::string os_reason() {
  std::string reason;
  auto visit = [](unsigned, const H5E_error2_t* e, void* out) -> herr_t {
    std::string desc = e->desc ? e->desc : "";
    const std::string key = "error message = '";
    if (auto at = desc.find(key); at != std::string::npos) {
      auto end = desc.find('\'', at + key.size());
      *static_cast<std::string*>(out) = desc.substr(at + key.size(), end - at - key.size());
    }
    return 0;
  };
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, visit, &reason);
  return reason;
}

// A failure the system explains (a full disk, a lost permission) is the user's to fix; one
// without a reason is fibertrain's.
hid_t check(hid_t id, const std::string& what) {
  if (id >= 0) return id;
  std::string reason = os_reason();
  if (!reason.empty()) throw UserError(fmt::format("HDF5: {}: {}", what, reason));
  throw std::runtime_error("HDF5: " + what);
}

template <class T> hid_t native_type();
template <> hid_t native_type<float>() { return H5T_NATIVE_FLOAT; }
template <> hid_t native_type<double>() { return H5T_NATIVE_DOUBLE; }
template <> hid_t native_type<std::int32_t>() { return H5T_NATIVE_INT32; }
template <> hid_t native_type<std::int64_t>() { return H5T_NATIVE_INT64; }
template <> hid_t native_type<std::uint64_t>() { return H5T_NATIVE_UINT64; }
template <> hid_t native_type<std::uint8_t>() { return H5T_NATIVE_UINT8; }
template <> hid_t native_type<std::uint16_t>() { return H5T_NATIVE_UINT16; }

Handle string_type(std::size_t len) {
  Handle t(check(H5Tcopy(H5T_C_S1), "H5Tcopy"), H5Tclose);
  H5Tset_size(t.get(), len == 0 ? 1 : len);
  H5Tset_strpad(t.get(), H5T_STR_NULLTERM);
  H5Tset_cset(t.get(), H5T_CSET_UTF8);
  return t;
}

}  // namespace

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = o.id_;
    close_ = o.close_;
    o.id_ = -1;
  }
  return *this;
}

void Handle::reset() {
  if (id_ >= 0 && close_) close_(id_);
  id_ = -1;
}

File::File(const std::string& path, Mode mode) : path_(path) {
  hid_t id = -1;
  if (mode == Mode::create) {
    auto parent = std::filesystem::path(path).parent_path();
    std::error_code ec;
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    // HDF5's own lock is taken after it has truncated the file, and would clash with the
    // lock the step log holds (OutputLock); files are locked by fibertrain instead.
    Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
    H5Pset_file_locking(fapl.get(), false, true);
    id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get());
    if (id < 0) throw UserError(fmt::format("cannot create HDF5 file '{}' (is the directory writable?)", path));
  } else {
    if (!std::filesystem::exists(path)) throw UserError(fmt::format("HDF5 file '{}' does not exist", path));
    id = H5Fopen(path.c_str(), mode == Mode::read ? H5F_ACC_RDONLY : H5F_ACC_RDWR, H5P_DEFAULT);
    if (id < 0) throw UserError(fmt::format("cannot open '{}' as an HDF5 file", path));
  }
  file_ = Handle(id, H5Fclose);
}

bool File::exists(const std::string& path) const {
  if (path == "/") return true;
  // Each prefix must exist before H5Lexists may be asked about the next.
  std::size_t pos = 0;
  while ((pos = path.find('/', pos + 1)) != std::string::npos) {
    if (H5Lexists(file_.get(), path.substr(0, pos).c_str(), H5P_DEFAULT) <= 0) return false;
  }
  return H5Lexists(file_.get(), path.c_str(), H5P_DEFAULT) > 0;
}

std::vector<std::string> File::datasets_under(const std::string& group) const {
  std::vector<std::string> out;
  Handle g(check(H5Gopen2(file_.get(), group.c_str(), H5P_DEFAULT), "open group " + group), H5Gclose);
  auto visit = [](hid_t, const char* name, const H5O_info_t* info, void* data) -> herr_t {
    if (info->type == H5O_TYPE_DATASET) static_cast<std::vector<std::string>*>(data)->emplace_back(name);
    return 0;
  };
  check(H5Ovisit(g.get(), H5_INDEX_NAME, H5_ITER_INC, visit, &out), "visit " + group);
  return out;
}

void File::ensure_parent(const std::string& path) {
  std::size_t pos = 0;
  while ((pos = path.find('/', pos + 1)) != std::string::npos) {
    std::string group = path.substr(0, pos);
    if (H5Lexists(file_.get(), group.c_str(), H5P_DEFAULT) <= 0)
      Handle(check(H5Gcreate2(file_.get(), group.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                   "create group " + group),
             H5Gclose);
  }
}

Handle File::open_object(const std::string& object) const {
  return Handle(check(H5Oopen(file_.get(), object.c_str(), H5P_DEFAULT), "open " + object), H5Oclose);
}

namespace {
void write_attr(hid_t obj, const std::string& name, hid_t type, hid_t space, const void* data) {
  if (H5Aexists(obj, name.c_str()) > 0) H5Adelete(obj, name.c_str());
  Handle a(check(H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), "create attribute " + name),
           H5Aclose);
  check(H5Awrite(a.get(), type, data), "write attribute " + name);
}
}  // namespace

void File::set_attr(const std::string& object, const std::string& name, const std::string& value) {
  Handle obj = open_object(object);
  Handle type = string_type(value.size() + 1);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  write_attr(obj.get(), name, type.get(), space.get(), value.c_str());
}

void File::set_attr(const std::string& object, const std::string& name, std::int64_t value) {
  Handle obj = open_object(object);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  write_attr(obj.get(), name, H5T_NATIVE_INT64, space.get(), &value);
}

void File::set_attr(const std::string& object, const std::string& name, double value) {
  Handle obj = open_object(object);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  write_attr(obj.get(), name, H5T_NATIVE_DOUBLE, space.get(), &value);
}

void File::set_attr(const std::string& object, const std::string& name, const std::vector<std::string>& values) {
  std::size_t len = 1;
  for (const auto& v : values) len = std::max(len, v.size() + 1);
  std::vector<char> packed(values.size() * len, '\0');
  for (std::size_t i = 0; i < values.size(); ++i) std::memcpy(&packed[i * len], values[i].data(), values[i].size());
  Handle obj = open_object(object);
  Handle type = string_type(len);
  hsize_t dims[1] = {values.size()};
  Handle space(H5Screate_simple(1, dims, nullptr), H5Sclose);
  write_attr(obj.get(), name, type.get(), space.get(), packed.data());
}

void File::set_attr(const std::string& object, const std::string& name, const std::vector<std::int64_t>& values) {
  Handle obj = open_object(object);
  hsize_t dims[1] = {values.size()};
  Handle space(H5Screate_simple(1, dims, nullptr), H5Sclose);
  write_attr(obj.get(), name, H5T_NATIVE_INT64, space.get(), values.data());
}

bool File::has_attr(const std::string& object, const std::string& name) const {
  if (!exists(object)) return false;
  Handle obj = open_object(object);
  return H5Aexists(obj.get(), name.c_str()) > 0;
}

std::string File::attr_string(const std::string& object, const std::string& name) const {
  Handle obj = open_object(object);
  Handle a(check(H5Aopen(obj.get(), name.c_str(), H5P_DEFAULT), "open attribute " + name), H5Aclose);
  Handle ftype(H5Aget_type(a.get()), H5Tclose);
  if (H5Tis_variable_str(ftype.get()) > 0) {
    Handle mtype(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mtype.get(), H5T_VARIABLE);
    char* s = nullptr;
    check(H5Aread(a.get(), mtype.get(), &s), "read attribute " + name);
    std::string out = s ? s : "";
    H5free_memory(s);
    return out;
  }
  std::size_t len = H5Tget_size(ftype.get());
  std::string out(len, '\0');
  Handle mtype = string_type(len);
  check(H5Aread(a.get(), mtype.get(), out.data()), "read attribute " + name);
  out.resize(std::strlen(out.c_str()));
  return out;
}

std::int64_t File::attr_int(const std::string& object, const std::string& name) const {
  Handle obj = open_object(object);
  Handle a(check(H5Aopen(obj.get(), name.c_str(), H5P_DEFAULT), "open attribute " + name), H5Aclose);
  std::int64_t v = 0;
  check(H5Aread(a.get(), H5T_NATIVE_INT64, &v), "read attribute " + name);
  return v;
}

std::vector<std::int64_t> File::attr_ints(const std::string& object, const std::string& name) const {
  Handle obj = open_object(object);
  Handle a(check(H5Aopen(obj.get(), name.c_str(), H5P_DEFAULT), "open attribute " + name), H5Aclose);
  Handle space(H5Aget_space(a.get()), H5Sclose);
  std::vector<std::int64_t> v(static_cast<std::size_t>(H5Sget_simple_extent_npoints(space.get())));
  if (!v.empty()) check(H5Aread(a.get(), H5T_NATIVE_INT64, v.data()), "read attribute " + name);
  return v;
}

void File::create_log(const std::string& path, std::size_t width, std::size_t chunk_rows) {
  ensure_parent(path);
  int rank = width == 0 ? 1 : 2;
  hsize_t dims[2] = {0, width};
  hsize_t maxdims[2] = {H5S_UNLIMITED, width};
  hsize_t chunk[2] = {chunk_rows == 0 ? 1 : chunk_rows, width == 0 ? 1 : width};
  Handle space(check(H5Screate_simple(rank, dims, maxdims), "dataspace"), H5Sclose);
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5Pset_chunk(dcpl.get(), rank, chunk);
  Handle ds(check(H5Dcreate2(file_.get(), path.c_str(), H5T_IEEE_F64LE, space.get(), H5P_DEFAULT, dcpl.get(),
                             H5P_DEFAULT),
                  "create dataset " + path),
            H5Dclose);
}

void File::append_rows(const std::string& path, const double* data, std::size_t n_rows) {
  if (n_rows == 0) return;
  Handle ds(check(H5Dopen2(file_.get(), path.c_str(), H5P_DEFAULT), "open " + path), H5Dclose);
  Handle space(H5Dget_space(ds.get()), H5Sclose);
  int rank = H5Sget_simple_extent_ndims(space.get());
  hsize_t dims[2] = {0, 0};
  H5Sget_simple_extent_dims(space.get(), dims, nullptr);
  hsize_t start[2] = {dims[0], 0};
  hsize_t count[2] = {n_rows, rank == 2 ? dims[1] : 1};
  hsize_t new_dims[2] = {dims[0] + n_rows, dims[1]};
  check(H5Dset_extent(ds.get(), new_dims), "extend " + path + " in " + path_);
  Handle fspace(H5Dget_space(ds.get()), H5Sclose);
  H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start, nullptr, count, nullptr);
  Handle mspace(H5Screate_simple(rank, count, nullptr), H5Sclose);
  check(H5Dwrite(ds.get(), H5T_NATIVE_DOUBLE, mspace.get(), fspace.get(), H5P_DEFAULT, data), "write " + path + " in " + path_);
}

std::size_t File::rows(const std::string& path) const {
  auto s = shape(path);
  return s.empty() ? 0 : s[0];
}

std::vector<std::uint64_t> File::shape(const std::string& path) const {
  Handle ds(check(H5Dopen2(file_.get(), path.c_str(), H5P_DEFAULT), "open " + path), H5Dclose);
  Handle space(H5Dget_space(ds.get()), H5Sclose);
  int rank = H5Sget_simple_extent_ndims(space.get());
  std::vector<hsize_t> dims(static_cast<std::size_t>(std::max(rank, 0)));
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  return {dims.begin(), dims.end()};
}

std::size_t File::element_bytes(const std::string& path) const {
  Handle ds(check(H5Dopen2(file_.get(), path.c_str(), H5P_DEFAULT), "open " + path), H5Dclose);
  Handle type(H5Dget_type(ds.get()), H5Tclose);
  return H5Tget_size(type.get());
}

template <class T>
void File::write(const std::string& path, const std::vector<T>& data, const std::vector<std::uint64_t>& shape) {
  ensure_parent(path);
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  if (H5Lexists(file_.get(), path.c_str(), H5P_DEFAULT) > 0) H5Ldelete(file_.get(), path.c_str(), H5P_DEFAULT);
  Handle space(check(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), "dataspace " + path),
               H5Sclose);
  Handle ds(check(H5Dcreate2(file_.get(), path.c_str(), native_type<T>(), space.get(), H5P_DEFAULT, H5P_DEFAULT,
                             H5P_DEFAULT),
                  "create dataset " + path),
            H5Dclose);
  if (!data.empty()) check(H5Dwrite(ds.get(), native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data()), "write " + path + " in " + path_);
}

template <class T> std::vector<T> File::read(const std::string& path) const {
  if (!exists(path)) throw UserError(fmt::format("{}: missing dataset {}", path_, path));
  Handle ds(check(H5Dopen2(file_.get(), path.c_str(), H5P_DEFAULT), "open " + path), H5Dclose);
  Handle space(H5Dget_space(ds.get()), H5Sclose);
  auto n = static_cast<std::size_t>(H5Sget_simple_extent_npoints(space.get()));
  std::vector<T> out(n);
  if (n) check(H5Dread(ds.get(), native_type<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()), "read " + path);
  return out;
}

void File::flush() { check(H5Fflush(file_.get(), H5F_SCOPE_GLOBAL), "flush " + path_); }

void File::close() {
  flush();
  file_.reset();
}

#define FT_H5_INSTANTIATE(T)                                                                              \
  template void File::write<T>(const std::string&, const std::vector<T>&, const std::vector<std::uint64_t>&); \
  template std::vector<T> File::read<T>(const std::string&) const;
FT_H5_INSTANTIATE(float)
FT_H5_INSTANTIATE(double)
FT_H5_INSTANTIATE(std::int32_t)
FT_H5_INSTANTIATE(std::int64_t)
FT_H5_INSTANTIATE(std::uint64_t)
FT_H5_INSTANTIATE(std::uint8_t)
FT_H5_INSTANTIATE(std::uint16_t)
#undef FT_H5_INSTANTIATE

}  // namespace ft::h5
