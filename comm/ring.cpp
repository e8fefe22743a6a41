// fibertrain's own collectives over the backend's point-to-point primitives: the ring
// reduce-scatter and all-gather (pipelined in chunks, two chunks in flight), the library's
// collectives booked as the ring would send them, and the hierarchical all-reduce built from
// either level by level. Every message is counted when issued and paced on the transport's
// stream (book, hold), so the pacer holds NCCL's work as it holds MPI's calls.
#include <algorithm>
#include <memory>

#include "comm/communicator.h"

namespace ft {
namespace {

int mod(int a, int p) { return ((a % p) + p) % p; }

}  // namespace

Communicator::Booking Communicator::book(Tier tier, const std::vector<std::pair<std::size_t, std::size_t>>& messages) {
  Booking b;
  std::vector<std::size_t> wires;
  for (auto [wire, logical] : messages) {
    if (wire) traffic().count(kind_, tier, logical, wire);
    wires.push_back(wire);
  }
  b.paced = pacer_ && pacer_->links()[tier].throttled() && !messages.empty();
  if (!b.paced) return b;
  b.release = std::make_shared<std::vector<std::int64_t>>(messages.size(), 0);
  transport_->on_stream([pacer = pacer_, from = members_[static_cast<std::size_t>(rank_)], tier, wires,
                         release = b.release] {
    for (std::size_t i = 0; i < wires.size(); ++i)
      if (wires[i]) (*release)[i] = pacer->reserve(from, tier, wires[i]);
  });
  return b;
}

void Communicator::hold(const Booking& b, std::size_t i) {
  if (b.paced) transport_->on_stream([release = b.release, i] { Pacer::wait_until((*release)[i]); });
}

void Communicator::busy_while(Tier tier, const std::function<void()>& body) {
  // On a GPU a host function stalls its stream: only a paced tier's time is worth that.
  if (transport_->memory() == Device::cuda && !(pacer_ && pacer_->links()[tier].throttled())) return body();
  auto start = std::make_shared<double>(0);
  transport_->on_stream([start] { *start = now_seconds(); });
  body();
  transport_->on_stream([start, tier] { traffic().busy(tier, now_seconds() - *start); });
}

std::vector<std::vector<std::size_t>> Communicator::phase_chunks(std::size_t n, bool reduce, std::size_t chunk,
                                                                 const std::vector<std::size_t>* cuts,
                                                                 std::size_t align) const {
  std::vector<std::vector<std::size_t>> steps;
  for (std::size_t elems : ring_sends(n, size(), rank_, reduce, cuts, align)) {
    steps.emplace_back();
    for (std::size_t off = 0; off < elems; off += chunk) steps.back().push_back(std::min(chunk, elems - off));
  }
  return steps;
}

void Communicator::ring_phase(Buffer buf, bool reduce, Wire wire, const std::vector<std::size_t>* cuts) {
  const int p = size(), r = rank_;
  const int next = mod(r + 1, p), prev = mod(r - 1, p);
  const Tier tier = tier_to(next);
  // A format other than the buffer's own (a 16-bit cast, a quantizer) encodes each chunk on
  // the way out and decodes it on the way in; the sums still accumulate in buf's type.
  const WireFormat* format = wire.format;
  const bool coded = format && format->dtype() != buf.dtype;
  const std::size_t esize = dtype_size(buf.dtype), align = format ? format->block() : 1;
  const std::size_t chunk = format ? format->chunk_elements(chunk_bytes_) : std::max<std::size_t>(1, chunk_bytes_ / esize);
  auto wire_bytes = [&](std::size_t elems) { return coded ? format->bytes(elems) : elems * esize; };
  const std::size_t slot_bytes = wire_bytes(chunk);  // a full chunk's message
  auto seg = [&](int i) { return cuts ? aligned_segment(buf.count, p, i, *cuts) : segment(buf.count, p, i, align); };
  // A reduce-scatter's chunks arrive in two landing slots (and, coded, leave from two staging
  // ones). A coded all-gather forwards the bytes it receives, as they came: every segment's
  // messages lie in one store, its owner's encoded once.
  Buffer landing, staging, store;
  std::vector<std::size_t> stored(static_cast<std::size_t>(p) + 1, 0);  // where each segment's messages start
  if (reduce) {
    landing = transport_->scratch(Transport::kScratchLanding, 2 * slot_bytes, coded ? DType::u8 : buf.dtype);
    if (coded) staging = transport_->scratch(Transport::kScratchStaging, 2 * slot_bytes, DType::u8);
  } else if (coded) {
    for (int i = 0; i < p; ++i)
      stored[static_cast<std::size_t>(i) + 1] = stored[static_cast<std::size_t>(i)] + format->message_bytes(seg(i).count, chunk);
    store = transport_->scratch(Transport::kScratchStaging, stored.back(), DType::u8);
  }
  auto bytes_at = [](Buffer b, std::size_t offset, std::size_t count) {
    return Buffer{static_cast<std::uint8_t*>(b.data) + offset, count, DType::u8, b.device};
  };
  auto slot = [&](Buffer slots, std::size_t i, std::size_t elems) {
    return coded ? bytes_at(slots, (i % 2) * slot_bytes, wire_bytes(elems)) : slots.slice((i % 2) * chunk, elems);
  };
  auto stored_at = [&](int segment_index, std::size_t i, std::size_t elems) {
    return bytes_at(store, stored[static_cast<std::size_t>(segment_index)] + i * slot_bytes, wire_bytes(elems));
  };
  auto coding = [&](const std::function<void()>& fn) {
    const double c0 = now_seconds();
    fn();
    traffic().codec(tier, now_seconds() - c0);
  };
  const std::vector<std::vector<std::size_t>> sends = phase_chunks(buf.count, reduce, chunk, cuts, align);
  busy_while(tier, [&] {
    if (coded && !reduce) {
      // This rank's part, encoded once; it keeps what the others will decode, so that every
      // rank ends with the same bits.
      Segment own = seg(r);
      for (std::size_t i = 0, off = 0; off < own.count; ++i, off += chunk) {
        Buffer part = buf.slice(own.offset + off, std::min(chunk, own.count - off));
        Buffer bytes = stored_at(r, i, part.count);
        coding([&] {
          transport_->encode(bytes, part, *format);
          transport_->decode(part, bytes, *format, false);
        });
      }
    }
    for (int s = 0; s < p - 1; ++s) {
      const int out_index = ring_send_index(r, s, p, reduce), in_index = ring_send_index(prev, s, p, reduce);
      Segment out = seg(out_index), in = seg(in_index);
      std::size_t n_out = (out.count + chunk - 1) / chunk, n_in = (in.count + chunk - 1) / chunk;
      std::size_t n = std::max(n_out, n_in);
      // Chunk i of this step: the elements that go out, and where those coming in belong.
      auto out_part = [&](std::size_t i) {
        if (i >= n_out) return Buffer{};
        std::size_t off = i * chunk;
        return buf.slice(out.offset + off, std::min(chunk, out.count - off));
      };
      auto in_part = [&](std::size_t i) {
        if (i >= n_in) return Buffer{};
        std::size_t off = i * chunk;
        return buf.slice(in.offset + off, std::min(chunk, in.count - off));
      };
      // The whole segment is ready now: the link is reserved for all its chunks, and each
      // goes when its emulated transfer has finished.
      std::vector<std::pair<std::size_t, std::size_t>> messages;
      for (std::size_t elems : sends[static_cast<std::size_t>(s)])
        messages.emplace_back(wire_bytes(elems),
                              static_cast<std::size_t>(static_cast<double>(elems * esize) * wire.logical_per_byte));
      const Booking booked = book(tier, messages);
      auto start = [&](std::size_t i) {
        Buffer send = out_part(i), recv = in_part(i);
        if (send.count && coded) {
          if (reduce) {
            Buffer staged = slot(staging, i, send.count);
            coding([&] { transport_->encode(staged, send, *format); });
            send = staged;
          } else {
            send = stored_at(out_index, i, send.count);
          }
        }
        if (recv.count && (reduce || coded)) recv = reduce ? slot(landing, i, recv.count) : stored_at(in_index, i, recv.count);
        if (i < n_out) hold(booked, i);
        return transport_->start_exchange(send, send.count ? next : -1, recv, i < n_in ? prev : -1);
      };
      int tickets[2] = {-1, -1};
      if (n > 0) tickets[0] = start(0);
      for (std::size_t i = 0; i < n; ++i) {
        if (i + 1 < n) tickets[(i + 1) % 2] = start(i + 1);
        transport_->finish_exchange(tickets[i % 2]);
        Buffer dst = in_part(i);
        if (!dst.count || !(reduce || coded)) continue;
        if (!coded) {
          transport_->add(dst, slot(landing, i, dst.count));
        } else {
          Buffer arrived = reduce ? slot(landing, i, dst.count) : stored_at(in_index, i, dst.count);
          coding([&] { transport_->decode(dst, arrived, *format, reduce); });
        }
      }
    }
  });
}

void Communicator::phases(Buffer buf, bool reduce, bool gather) {
  if (!transport_->collectives_in_library()) {
    if (reduce) ring_phase(buf, true, Wire{});
    if (gather) ring_phase(buf, false, Wire{});
    return;
  }
  // The ring's messages, step by step, each step held until its last chunk would have
  // arrived; then the library's collective.
  const Tier tier = tier_to(mod(rank_ + 1, size()));
  const std::size_t esize = dtype_size(buf.dtype), chunk = std::max<std::size_t>(1, chunk_bytes_ / esize);
  busy_while(tier, [&] {
    for (bool r : {true, false}) {
      if (!(r ? reduce : gather)) continue;
      for (const std::vector<std::size_t>& step : phase_chunks(buf.count, r, chunk, nullptr, 1)) {
        std::vector<std::pair<std::size_t, std::size_t>> messages;
        for (std::size_t elems : step) messages.emplace_back(elems * esize, elems * esize);
        const Booking booked = book(tier, messages);
        if (!step.empty()) hold(booked, step.size() - 1);
      }
    }
    library_collective(buf, reduce, gather);
  });
}

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
    const int key = level.key[static_cast<std::size_t>(rank_)];
    levels_.push_back(std::make_unique<Communicator>(topo_, std::move(sub_members), key, kind_,
                                                     transport_->split(color, key), lane_));
    levels_.back()->set_chunk_bytes(chunk_bytes_);
    levels_.back()->set_pacer(pacer_);
    levels_.back()->set_producer_stream(transport_->producer());
  }
}

// Level by level up: each level reduce-scatters the part the level below left this rank,
// so level t carries (k_t - 1) / k_t of S / (k_0 ... k_{t-1}); an all-reduce (up, then
// down) carries twice that: 2 (k_t - 1) / k_t x S / (k_0 ... k_{t-1}).
void Communicator::hierarchical_reduce_scatter(Buffer buf) {
  Buffer region = buf;
  for (const auto& level : levels_) {
    level->phases(region, true, false);
    Segment mine = segment(region.count, level->size(), level->rank());
    region = region.slice(mine.offset, mine.count);
  }
}

void Communicator::hierarchical_all_gather(Buffer buf) {
  std::vector<Buffer> regions{buf};
  for (std::size_t l = 0; l + 1 < levels_.size(); ++l) {
    Segment mine = segment(regions.back().count, levels_[l]->size(), levels_[l]->rank());
    regions.push_back(regions.back().slice(mine.offset, mine.count));
  }
  for (std::size_t l = levels_.size(); l-- > 0;) {
    levels_[l]->phases(regions.back(), false, true);
    if (l > 0) regions.pop_back();
  }
}

}  // namespace ft
