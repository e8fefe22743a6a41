// The compressed all-reduce. Up the hierarchy, each level reduce-scatters the part the
// level below left (a cast's level on its 16-bit wire, accumulating in fp32); the top
// level all-reduces its part through its codec (codec.h); then each level all-gathers back
// down on its wire. Nothing here names a codec: what differs is the codec's.
#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "comm/communicator.h"

namespace ft {

// A level's ring as the codecs see it: counted and paced as this communicator's messages,
// codec time booked to the level's tier.
class Communicator::LevelRing final : public TierRing {
 public:
  LevelRing(Communicator& c, Tier tier) : c_(c), tier_(tier) {}
  int size() const override { return c_.size(); }
  int rank() const override { return c_.rank(); }
  void reduce_scatter(Buffer buf, Wire wire, const std::vector<std::size_t>* cuts) override {
    c_.ring_phase(buf, true, wire, cuts);
  }
  void all_gather(Buffer buf, Wire wire) override { c_.ring_phase(buf, false, wire); }
  Buffer scratch(std::size_t bytes, DType dtype) override { return c_.transport_->scratch(Transport::kScratchCodec, bytes, dtype); }
  void copy(void* dst, const void* src, std::size_t bytes, Device device) override {
    c_.transport_->copy_bytes(dst, src, bytes, device);
  }
  void codec_time(double seconds) override { traffic().codec(tier_, seconds); }

 private:
  Communicator& c_;
  Tier tier_;
};

Codec& BucketCodecs::codec(Tier t) {
  auto& c = codecs_[t];
  if (!c) c = make_codec(specs_[t]);
  return *c;
}

std::vector<std::pair<std::string, std::vector<float>*>> BucketCodecs::state() {
  std::vector<std::pair<std::string, std::vector<float>*>> out;
  for (Tier t : kAllTiers)
    if (codecs_[t] && specs_[t].lossy())
      for (auto& [what, v] : codecs_[t]->state()) out.emplace_back(fmt::format("{}/{}", tier_name(t), what), v);
  return out;
}

bool BucketCodecs::restore(const std::string& name, std::vector<float> values) {
  auto slash = name.find('/');
  if (slash == std::string::npos) return false;
  auto tier = tier_from_name(name.substr(0, slash));
  if (!tier || !spec(*tier).lossy()) return false;
  return codec(*tier).restore(name.substr(slash + 1), std::move(values));
}

Segment aligned_segment(std::size_t n, int p, int i, const std::vector<std::size_t>& cuts) {
  auto boundary = [&](int j) -> std::size_t {
    if (j <= 0) return 0;
    if (j >= p) return n;
    double ideal = static_cast<double>(n) * j / p;
    auto it = std::lower_bound(cuts.begin(), cuts.end(), static_cast<std::size_t>(ideal));
    std::size_t best = it == cuts.end() ? n : *it;
    if (it != cuts.begin() && ideal - static_cast<double>(*(it - 1)) <= static_cast<double>(best) - ideal)
      best = *(it - 1);
    return best;
  };
  // Boundaries must not decrease; with the nearest-cut rule they cannot, as ideals increase.
  std::size_t lo = boundary(i), hi = std::max(lo, boundary(i + 1));
  return {lo, hi - lo};
}

std::vector<std::size_t> cuts_within(const std::vector<std::size_t>& cuts, std::size_t offset, std::size_t count) {
  std::vector<std::size_t> out{0};
  for (std::size_t c : cuts)
    if (c > offset && c < offset + count) out.push_back(c - offset);
  out.push_back(count);
  return out;
}

void Communicator::all_reduce_compressed(Buffer whole, ReduceOp op, Algorithm algo, BucketCodecs& codecs,
                                         const std::vector<Matrix>& tensors) {
  if (whole.dtype != DType::f32) throw std::invalid_argument("compressed all-reduce takes fp32 buffers");
  ordered([&] { transport_->on_backend_memory(whole, Transport::kScratchHost, [&](Buffer buf) {
    if (buf.count == 0 || size() == 1) return;
    // The levels: the hierarchy's, or this whole group as one level at the highest tier it spans.
    std::vector<std::pair<Communicator*, Tier>> levels;
    if (use_levels(algo)) {
      for (std::size_t l = 0; l < levels_.size(); ++l) levels.emplace_back(levels_[l].get(), plan_.levels[l].tier);
    } else {
      levels.emplace_back(this, topo_->span(members_));
    }
    std::vector<std::size_t> cuts;  // tensor boundaries, when the top codec needs whole matrices
    if (find_codec(codecs.spec(levels.back().second).name)->whole_tensors) cuts = tensor_cuts(tensors, buf.count);
    std::vector<std::pair<Buffer, std::size_t>> regions{{buf, 0}};  // region and its offset in buf
    for (std::size_t l = 0; l + 1 < levels.size(); ++l) {
      auto [comm, tier] = levels[l];
      Codec& codec = codecs.codec(tier);
      auto [region, offset] = regions.back();
      LevelRing ring(*comm, tier);
      codec.prepare(region, ring);
      std::vector<std::size_t> local = cuts.empty() ? cuts : cuts_within(cuts, offset, region.count);
      comm->ring_phase(region, true, Wire{&codec.wire()}, cuts.empty() ? nullptr : &local);
      Segment mine = cuts.empty() ? segment(region.count, comm->size(), comm->rank())
                                  : aligned_segment(region.count, comm->size(), comm->rank(), local);
      regions.emplace_back(region.slice(mine.offset, mine.count), offset + mine.offset);
    }
    auto [region, offset] = regions.back();
    if (region.count > 0) {
      LevelRing ring(*levels.back().first, levels.back().second);
      codecs.codec(levels.back().second).all_reduce(region, ring, tensors_within(tensors, offset, region.count));
    }
    for (std::size_t l = levels.size() - 1; l-- > 0;) {
      regions.pop_back();
      auto [comm, tier] = levels[l];
      std::vector<std::size_t> local = cuts.empty() ? cuts : cuts_within(cuts, regions.back().second, regions.back().first.count);
      comm->ring_phase(regions.back().first, false, Wire{&codecs.codec(tier).wire()}, cuts.empty() ? nullptr : &local);
    }
    if (op == ReduceOp::avg) transport_->scale(buf, 1.0 / size());
  }); });
}

}  // namespace ft
