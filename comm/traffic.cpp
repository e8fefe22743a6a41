#include "comm/traffic.h"

namespace ft {

std::string_view traffic_name(Traffic k) {
  switch (k) {
    case Traffic::dp: return "dp";
    case Traffic::tp: return "tp";
    case Traffic::pp: return "pp";
    case Traffic::other: return "other";
  }
  return "?";
}

std::uint64_t TrafficSnapshot::logical_at(Tier t) const {
  std::uint64_t s = 0;
  for (const auto& k : logical) s += k[static_cast<std::size_t>(index(t))];
  return s;
}

std::uint64_t TrafficSnapshot::wire_at(Tier t) const {
  std::uint64_t s = 0;
  for (const auto& k : wire) s += k[static_cast<std::size_t>(index(t))];
  return s;
}

TrafficSnapshot TrafficSnapshot::operator-(const TrafficSnapshot& e) const {
  TrafficSnapshot d;
  for (std::size_t k = 0; k < kTrafficKinds; ++k) {
    for (std::size_t t = 0; t < kTiers; ++t) {
      d.logical[k][t] = logical[k][t] - e.logical[k][t];
      d.wire[k][t] = wire[k][t] - e.wire[k][t];
      d.messages[k][t] = messages[k][t] - e.messages[k][t];
    }
    d.native_bytes[k] = native_bytes[k] - e.native_bytes[k];
  }
  for (std::size_t t = 0; t < kTiers; ++t) {
    d.busy[t] = busy[t] - e.busy[t];
    d.codec[t] = codec[t] - e.codec[t];
  }
  return d;
}

void TrafficCounters::count(Traffic kind, Tier tier, std::uint64_t logical, std::uint64_t wire) {
  auto k = static_cast<std::size_t>(kind);
  auto t = static_cast<std::size_t>(index(tier));
  logical_[k][t].fetch_add(logical, std::memory_order_relaxed);
  wire_[k][t].fetch_add(wire, std::memory_order_relaxed);
  messages_[k][t].fetch_add(1, std::memory_order_relaxed);
}

void TrafficCounters::busy(Tier tier, double seconds) {
  busy_[static_cast<std::size_t>(index(tier))].fetch_add(seconds, std::memory_order_relaxed);
}

void TrafficCounters::codec(Tier tier, double seconds) {
  codec_[static_cast<std::size_t>(index(tier))].fetch_add(seconds, std::memory_order_relaxed);
}

void TrafficCounters::native(Traffic kind, std::uint64_t bytes) {
  native_[static_cast<std::size_t>(kind)].fetch_add(bytes, std::memory_order_relaxed);
}

TrafficSnapshot TrafficCounters::snapshot() const {
  TrafficSnapshot s;
  for (std::size_t k = 0; k < kTrafficKinds; ++k) {
    for (std::size_t t = 0; t < kTiers; ++t) {
      s.logical[k][t] = logical_[k][t].load(std::memory_order_relaxed);
      s.wire[k][t] = wire_[k][t].load(std::memory_order_relaxed);
      s.messages[k][t] = messages_[k][t].load(std::memory_order_relaxed);
    }
    s.native_bytes[k] = native_[k].load(std::memory_order_relaxed);
  }
  for (std::size_t t = 0; t < kTiers; ++t) {
    s.busy[t] = busy_[t].load(std::memory_order_relaxed);
    s.codec[t] = codec_[t].load(std::memory_order_relaxed);
  }
  return s;
}

TrafficCounters& traffic() {
  static TrafficCounters counters;
  return counters;
}

}  // namespace ft
