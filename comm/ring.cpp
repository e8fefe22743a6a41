// fibertrain's own collectives over the backend's point-to-point primitives: the ring
// reduce-scatter and all-gather (pipelined in chunks, two chunks in flight), and the
// hierarchical all-reduce built from them level by level.
#include <algorithm>

#include "comm/communicator.h"

namespace ft {
namespace {

Buffer sub(Buffer b, std::size_t offset, std::size_t count) {
  return Buffer{static_cast<char*>(b.data) + offset * dtype_size(b.dtype), count, b.dtype, b.device};
}

int mod(int a, int p) { return ((a % p) + p) % p; }

}  // namespace

void Communicator::ring_phase(Buffer buf, bool reduce) {
  const int p = size(), r = rank_;
  const int next = mod(r + 1, p), prev = mod(r - 1, p);
  const Tier tier = tier_to(next);
  const std::size_t esize = dtype_size(buf.dtype);
  const std::size_t chunk = std::max<std::size_t>(1, chunk_bytes_ / esize);
  // Reduce-scatter: step s sends segment r-1-s and receives r-2-s, so that rank r ends with
  // the full sum of segment r. All-gather: sends r-s, receives r-1-s into place.
  const int shift = reduce ? 1 : 0;
  Buffer landing = reduce ? scratch(kScratchLanding, 2 * chunk * esize, buf.dtype) : Buffer{};
  const double t0 = now_seconds();
  for (int s = 0; s < p - 1; ++s) {
    Segment out = segment(buf.count, p, mod(r - shift - s, p));
    Segment in = segment(buf.count, p, mod(r - shift - 1 - s, p));
    std::size_t n_out = (out.count + chunk - 1) / chunk, n_in = (in.count + chunk - 1) / chunk;
    std::size_t n = std::max(n_out, n_in);
    // Chunk i of this step: what goes out, and where what comes in lands.
    auto send_part = [&](std::size_t i) {
      if (i >= n_out) return Buffer{};
      std::size_t off = i * chunk;
      return sub(buf, out.offset + off, std::min(chunk, out.count - off));
    };
    auto recv_part = [&](std::size_t i) {
      if (i >= n_in) return Buffer{};
      std::size_t off = i * chunk, cnt = std::min(chunk, in.count - off);
      return reduce ? sub(landing, (i % 2) * chunk, cnt) : sub(buf, in.offset + off, cnt);
    };
    // The whole segment is ready now: reserve the link for all its chunks, then send each
    // when its emulated transfer has finished.
    std::vector<std::int64_t> release(n_out);
    for (std::size_t i = 0; i < n_out; ++i) release[i] = count_and_reserve(tier, send_part(i).bytes());
    auto start = [&](std::size_t i) {
      Buffer s_part = send_part(i);
      if (i < n_out) Pacer::wait_until(release[i]);
      return start_exchange(s_part, s_part.count ? next : -1, recv_part(i), i < n_in ? prev : -1);
    };
    int tickets[2] = {-1, -1};
    if (n > 0) tickets[0] = start(0);
    for (std::size_t i = 0; i < n; ++i) {
      if (i + 1 < n) tickets[(i + 1) % 2] = start(i + 1);
      finish_exchange(tickets[i % 2]);
      if (reduce && i < n_in) {
        std::size_t off = i * chunk;
        local_add(sub(buf, in.offset + off, std::min(chunk, in.count - off)), recv_part(i));
      }
    }
  }
  traffic().busy(tier, now_seconds() - t0);
}

void Communicator::ring_reduce_scatter_inplace(Buffer buf) { ring_phase(buf, true); }

void Communicator::ring_all_gather_inplace(Buffer buf) { ring_phase(buf, false); }

void Communicator::prepare_hierarchy() {
  if (!levels_.empty() || !plan_.even || plan_.levels.size() < 2) return;
  for (const HierarchyLevel& level : plan_.levels) {
    int color = level.color[static_cast<std::size_t>(rank_)];
    std::vector<std::pair<int, int>> keyed;  // (key, world rank) of my sub-group
    for (std::size_t m = 0; m < members_.size(); ++m)
      if (level.color[m] == color) keyed.emplace_back(level.key[m], members_[m]);
    std::sort(keyed.begin(), keyed.end());
    std::vector<int> sub_members;
    for (const auto& [key, world] : keyed) sub_members.push_back(world);
    levels_.push_back(split(color, level.key[static_cast<std::size_t>(rank_)], std::move(sub_members)));
    levels_.back()->set_chunk_bytes(chunk_bytes_);
    levels_.back()->set_pacer(pacer_);
  }
}

// Level by level up: each level reduce-scatters the part the level below left this rank,
// so level t carries (k_t - 1) / k_t of S / (k_0 ... k_{t-1}); an all-reduce (up, then
// down) carries twice that, DESIGN.md's 2 (k_t - 1) / k_t x S / (k_0 ... k_{t-1}).
void Communicator::hierarchical_reduce_scatter(Buffer buf) {
  Buffer region = buf;
  for (const auto& level : levels_) {
    level->ring_reduce_scatter_inplace(region);
    Segment mine = segment(region.count, level->size(), level->rank());
    region = sub(region, mine.offset, mine.count);
  }
}

void Communicator::hierarchical_all_gather(Buffer buf) {
  std::vector<Buffer> regions{buf};
  for (std::size_t l = 0; l + 1 < levels_.size(); ++l) {
    Segment mine = segment(regions.back().count, levels_[l]->size(), levels_[l]->rank());
    regions.push_back(sub(regions.back(), mine.offset, mine.count));
  }
  for (std::size_t l = levels_.size(); l-- > 0;) {
    levels_[l]->ring_all_gather_inplace(regions.back());
    if (l > 0) regions.pop_back();
  }
}

}  // namespace ft
