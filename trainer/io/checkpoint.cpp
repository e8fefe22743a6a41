#include "trainer/io/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <type_traits>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "comm/error.h"
#include "fibertrain_version.h"
#include "models/ops.h"
#include "trainer/io/h5.h"

namespace ft {
namespace {

// 2: every array carries the checksum of its stored bytes.
constexpr std::int64_t kFormatVersion = 2;
constexpr const char* kChecksum = "checksum_fnv1a64";

// FNV-1a over the bytes: finds any changed byte of an array with near certainty, and costs a
// fraction of the write.
std::int64_t checksum(const void* data, std::size_t bytes) {
  std::uint64_t h = 1469598103934665603ull;
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return static_cast<std::int64_t>(h);
}

template <class T>
void write_checked(h5::File& f, const std::string& ds, const std::vector<T>& data, const std::vector<std::uint64_t>& shape) {
  f.write<T>(ds, data, shape);
  f.set_attr(ds, kChecksum, checksum(data.data(), data.size() * sizeof(T)));
}

// An array of a checkpoint, as doubles, after its stored bytes are checked against its checksum.
std::vector<double> read_checked(const h5::File& f, const std::string& ds) {
  auto verify = [&](const auto& stored) {
    using T = typename std::decay_t<decltype(stored)>::value_type;
    if (!f.has_attr(ds, kChecksum) || f.attr_int(ds, kChecksum) != checksum(stored.data(), stored.size() * sizeof(T)))
      throw UserError(fmt::format("checkpoint '{}' is corrupt: {} does not match its checksum; resume from another "
                                  "checkpoint",
                                  f.path(), ds));
  };
  if (f.element_bytes(ds) == sizeof(float)) {
    std::vector<float> stored = f.read<float>(ds);
    verify(stored);
    return {stored.begin(), stored.end()};
  }
  std::vector<double> stored = f.read<double>(ds);
  verify(stored);
  return stored;
}

// The file's bytes on the disk before it is renamed into place: a crash after the rename
// cannot leave a checkpoint whose blocks were never written.
void sync_to_disk(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    int err = errno;
    if (fd >= 0) ::close(fd);
    throw UserError(fmt::format("checkpoint '{}': cannot sync it to disk: {}", path, std::strerror(err)));
  }
  ::close(fd);
}
const char* const kArrays[] = {"params", "optimizer/m", "optimizer/v"};
constexpr const char* kRankState = "rank_state";

// The layout a rank's own state depends on: what cuts the buckets and forms the rings
// (the topology places ranks in them); under an outer sync also what makes the islands and
// the optimizer state's shards.
std::string layout_of(const Config& c, int world) {
  const auto& p = c.parallel;
  const auto& t = c.topology;
  std::string outer;
  if (c.sync.outer)
    outer = fmt::format(" outer={} fragments={} zero={} optimizer={}", c.sync.outer->tier, c.sync.outer->fragments,
                        p.zero, c.train.optimizer);
  return fmt::format("world={} tp={} pp={} dp={} order={} bucket={} algorithm={} topology={}/{}/{}/{}{}", world, p.tp,
                     p.pp, p.dp, p.order, c.sync.bucket.value, c.sync.algorithm, t.ranks_per_node, t.nodes_per_pod,
                     t.pods_per_site, t.file, outer);
}

// The model section of the config, which must match between a checkpoint and its resume.
std::string model_yaml(const Config& c) {
  YAML::Emitter out;
  out << YAML::Flow << YAML::BeginMap;
  config::Encoder e(out);
  describe(e, const_cast<ModelConfig&>(c.model));
  out << YAML::EndMap;
  return out.c_str();
}

// A byte stream of records: (array, name, full shape, full indices, values).
class Packer {
 public:
  template <class T> void put(const T& v) {
    const char* p = reinterpret_cast<const char*>(&v);
    bytes.insert(bytes.end(), p, p + sizeof(T));
  }
  void put_string(const std::string& s) {
    put<std::uint32_t>(static_cast<std::uint32_t>(s.size()));
    bytes.insert(bytes.end(), s.begin(), s.end());
  }
  std::vector<char> bytes;
};

class Unpacker {
 public:
  Unpacker(const char* p, std::size_t n) : p_(p), end_(p + n) {}
  bool done() const { return p_ >= end_; }
  template <class T> T get() {
    T v;
    std::memcpy(&v, p_, sizeof(T));
    p_ += sizeof(T);
    return v;
  }
  std::string get_string() {
    auto n = get<std::uint32_t>();
    std::string s(p_, n);
    p_ += n;
    return s;
  }

 private:
  const char* p_;
  const char* end_;
};

// Adds this rank's elements of flat range [begin, end) of `flat` (whose element `begin`
// is at `flat_offset` in the parameter buffer) to the packer.
void pack(Packer& out, const std::string& array, const GptStage& model, const Tensor& flat, std::int64_t begin, std::int64_t end,
          std::int64_t flat_offset) {
  const ParamSet& ps = model.params();
  std::vector<double> host = ops::to_host(flat);
  for (const ParamInfo& p : ps.infos()) {
    std::int64_t b = std::max(begin, p.offset), e = std::min(end, p.offset + p.numel());
    if (b >= e) continue;
    auto full = ParamSet::full_indices(p, model.plan().tp, model.plan().tp_rank);
    out.put_string(array);
    out.put_string(p.name);
    out.put<std::int32_t>(static_cast<std::int32_t>(p.full_shape.size()));
    for (auto d : p.full_shape) out.put<std::int64_t>(d);
    out.put<std::int64_t>(e - b);
    for (std::int64_t i = b; i < e; ++i) {
      out.put<std::int64_t>(full[static_cast<std::size_t>(i - p.offset)]);
      out.put<double>(host[static_cast<std::size_t>(i - flat_offset)]);
    }
  }
}

struct FullTensor {
  Shape shape;
  std::vector<double> data;
};

}  // namespace

void save_checkpoint(MPI_Comm comm, const std::string& path, const Config& cfg, const GptStage& model,
                     const Optimizer& opt, const CheckpointRole& role, const CheckpointState& state,
                     const RankState& rank_state, const std::vector<FlatArray>& flat_arrays) {
  Packer out;
  const ParamSet& ps = model.params();
  if (role.owns_params) {
    pack(out, kArrays[0], model, ps.flat_values(), 0, ps.numel(), 0);
    for (const FlatArray& a : flat_arrays) pack(out, a.name, model, a.values, 0, ps.numel(), 0);
  }
  if (role.owns_state && opt.has_moments()) {
    for (std::size_t i = 0; i < opt.owned().size(); ++i) {
      const FlatRange& r = opt.owned()[i];
      pack(out, kArrays[1], model, opt.m(), r.begin, r.end, r.begin - opt.state_offset(i));
      pack(out, kArrays[2], model, opt.v(), r.begin, r.end, r.begin - opt.state_offset(i));
    }
  }
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  for (const auto& [name, values] : rank_state) {
    out.put_string(kRankState);
    out.put_string(fmt::format("rank{}/{}", rank, name));
    out.put<std::int32_t>(1);
    out.put<std::int64_t>(static_cast<std::int64_t>(values->size()));
    out.put<std::int64_t>(static_cast<std::int64_t>(values->size()));
    for (std::size_t i = 0; i < values->size(); ++i) {
      out.put<std::int64_t>(static_cast<std::int64_t>(i));
      out.put<double>((*values)[i]);
    }
  }
  int mine = static_cast<int>(out.bytes.size());
  std::vector<int> counts(static_cast<std::size_t>(size)), displs(static_cast<std::size_t>(size));
  MPI_Gather(&mine, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, comm);
  std::vector<char> all;
  if (rank == 0) {
    long long total = 0;
    for (int r = 0; r < size; ++r) {
      displs[static_cast<std::size_t>(r)] = static_cast<int>(total);
      total += counts[static_cast<std::size_t>(r)];
    }
    all.resize(static_cast<std::size_t>(total));
  }
  MPI_Gatherv(out.bytes.data(), mine, MPI_BYTE, all.data(), counts.data(), displs.data(), MPI_BYTE, 0, comm);
  if (rank != 0) return;

  std::map<std::string, std::map<std::string, FullTensor>> arrays;  // by array, then name
  Unpacker in(all.data(), all.size());
  while (!in.done()) {
    std::string array = in.get_string();
    std::string name = in.get_string();
    Shape shape(static_cast<std::size_t>(in.get<std::int32_t>()));
    for (auto& d : shape) d = in.get<std::int64_t>();
    auto n = in.get<std::int64_t>();
    FullTensor& t = arrays[array][name];
    if (t.data.empty()) {
      t.shape = shape;
      t.data.assign(static_cast<std::size_t>(numel_of(shape)), 0.0);
    }
    for (std::int64_t i = 0; i < n; ++i) {
      auto idx = in.get<std::int64_t>();
      t.data[static_cast<std::size_t>(idx)] = in.get<double>();
    }
  }
  // Write to a temporary name, sync and rename, so a crash or a full disk mid-write keeps the
  // previous checkpoint and leaves no partial file.
  std::string tmp = path + ".partial";
  try {
    h5::File f(tmp, h5::Mode::create);
    f.set_attr("/", "format_version", kFormatVersion);
    f.set_attr("/", "fibertrain_version", std::string(FIBERTRAIN_VERSION));
    f.set_attr("/", "config", to_yaml(cfg));
    f.set_attr("/", "model", model_yaml(cfg));
    f.set_attr("/", "steps_done", std::int64_t{state.steps_done});
    f.set_attr("/", "adam_steps", opt.steps_taken());
    f.set_attr("/", "data_position", state.data_position);
    f.set_attr("/", "data_tokens", state.data_tokens);
    f.set_attr("/", "seed", static_cast<std::int64_t>(cfg.train.seed));
    f.set_attr("/", "layout", layout_of(cfg, size));
    bool f32 = ps.flat_values().dtype() == DType::f32;
    for (const auto& [array, tensors] : arrays) {
      for (const auto& [name, t] : tensors) {
        std::vector<std::uint64_t> shape(t.shape.begin(), t.shape.end());
        std::string ds = fmt::format("/{}/{}", array, name);
        if (f32 || array == kRankState)
          write_checked<float>(f, ds, std::vector<float>(t.data.begin(), t.data.end()), shape);
        else
          write_checked<double>(f, ds, t.data, shape);
      }
    }
    f.close();
    sync_to_disk(tmp);
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
      throw UserError(fmt::format("cannot move checkpoint into place at '{}': {}", path, std::strerror(errno)));
  } catch (const std::exception& e) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    throw UserError(fmt::format("checkpoint '{}' not written: {}", path, e.what()));
  }
  auto dir = std::filesystem::path(path).parent_path();
  if (int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); fd >= 0) {
    ::fsync(fd);  // the rename itself
    ::close(fd);
  }
}

namespace {
// `path` opened for reading, after its format is checked.
h5::File open_checkpoint(const std::string& path) {
  h5::File f(path, h5::Mode::read);
  if (!f.has_attr("/", "format_version") || f.attr_int("/", "format_version") != kFormatVersion)
    throw UserError(fmt::format("'{}' is not a fibertrain checkpoint (format {})", path, kFormatVersion));
  return f;
}
}  // namespace

int checkpoint_steps_done(const std::string& path) {
  return static_cast<int>(open_checkpoint(path).attr_int("/", "steps_done"));
}

CheckpointState load_checkpoint(const std::string& path, const Config& cfg, GptStage& model, Optimizer& opt,
                                std::int64_t data_tokens) {
  h5::File f = open_checkpoint(path);
  std::string saved_model = f.attr_string("/", "model");
  if (saved_model != model_yaml(cfg))
    throw UserError(fmt::format("checkpoint '{}' holds model {}, but the config asks for {}", path, saved_model,
                                model_yaml(cfg)));
  CheckpointState state;
  state.steps_done = static_cast<int>(f.attr_int("/", "steps_done"));
  state.data_position = f.attr_int("/", "data_position");
  state.data_tokens = f.attr_int("/", "data_tokens");
  if (state.data_tokens != data_tokens)
    throw UserError(fmt::format("checkpoint '{}' was trained on data of {} tokens, but this run's data has {}", path,
                                state.data_tokens, data_tokens));

  const ParamSet& ps = model.params();
  std::vector<double> values(static_cast<std::size_t>(ps.numel()));
  std::vector<double> m(static_cast<std::size_t>(opt.m().numel())), v(m.size());
  for (const ParamInfo& p : ps.infos()) {
    auto full = ParamSet::full_indices(p, model.plan().tp, model.plan().tp_rank);
    std::vector<double>* targets[3] = {&values, &m, &v};
    for (int a = 0; a < (opt.has_moments() ? 3 : 1); ++a) {
      std::string ds = fmt::format("/{}/{}", kArrays[a], p.name);
      if (!f.exists(ds)) {
        if (a > 0 && !f.exists(fmt::format("/{}", kArrays[a])))
          throw UserError(fmt::format("checkpoint '{}' holds no AdamW moments (it was trained with train.optimizer: "
                                      "sgd); resume it with train.optimizer: sgd",
                                      path));
        throw UserError(fmt::format("checkpoint '{}' lacks {}", path, ds));
      }
      auto shape = f.shape(ds);
      if (Shape(shape.begin(), shape.end()) != p.full_shape)
        throw UserError(fmt::format("checkpoint '{}': {} has shape {}, expected {}", path, ds,
                                    to_string(Shape(shape.begin(), shape.end())), to_string(p.full_shape)));
      std::vector<double> data = read_checked(f, ds);
      auto take = [&](std::int64_t lo, std::int64_t hi, std::int64_t dest) {  // flat [lo, hi) -> target[dest..]
        for (std::int64_t i = std::max(lo, p.offset); i < std::min(hi, p.offset + p.numel()); ++i)
          (*targets[a])[static_cast<std::size_t>(dest + i - lo)] =
              data[static_cast<std::size_t>(full[static_cast<std::size_t>(i - p.offset)])];
      };
      if (a == 0) {
        take(0, ps.numel(), 0);
      } else {
        for (std::size_t r = 0; r < opt.owned().size(); ++r)
          take(opt.owned()[r].begin, opt.owned()[r].end, opt.state_offset(r));
      }
    }
  }
  ops::from_host(ps.flat_values(), values);
  if (opt.has_moments()) {
    ops::from_host(opt.m(), m);
    ops::from_host(opt.v(), v);
  }
  opt.set_steps_taken(f.attr_int("/", "adam_steps"));
  return state;
}

bool load_flat_array(const std::string& path, const GptStage& model, const std::string& array, const Tensor& into) {
  h5::File f = open_checkpoint(path);
  const ParamSet& ps = model.params();
  std::vector<double> values(static_cast<std::size_t>(ps.numel()));
  for (const ParamInfo& p : ps.infos()) {
    std::string ds = fmt::format("/{}/{}", array, p.name);
    if (!f.exists(ds)) return false;
    std::vector<double> data = read_checked(f, ds);
    if (data.size() != static_cast<std::size_t>(numel_of(p.full_shape)))
      throw UserError(fmt::format("checkpoint '{}': {} has {} elements, expected {}", path, ds, data.size(),
                                  numel_of(p.full_shape)));
    auto full = ParamSet::full_indices(p, model.plan().tp, model.plan().tp_rank);
    for (std::int64_t i = 0; i < p.numel(); ++i)
      values[static_cast<std::size_t>(p.offset + i)] = data[static_cast<std::size_t>(full[static_cast<std::size_t>(i)])];
  }
  ops::from_host(into, values);
  return true;
}

std::optional<std::map<std::string, std::vector<float>>> load_rank_state(const std::string& path, const Config& cfg,
                                                                          int rank, int world) {
  h5::File f(path, h5::Mode::read);
  if (!f.has_attr("/", "layout") || f.attr_string("/", "layout") != layout_of(cfg, world)) return std::nullopt;
  std::map<std::string, std::vector<float>> out;
  std::string group = fmt::format("/{}/rank{}", kRankState, rank);
  if (!f.exists(group)) return out;
  for (const std::string& name : f.datasets_under(group)) {
    std::vector<double> values = read_checked(f, group + "/" + name);
    out[name] = std::vector<float>(values.begin(), values.end());
  }
  return out;
}

}  // namespace ft
