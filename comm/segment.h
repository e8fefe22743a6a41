// How collectives cut a buffer among p ranks.
#pragma once

#include <cstddef>
#include <vector>

namespace ft {

struct Segment {
  std::size_t offset = 0, count = 0;
};

// The i-th of p near-equal segments of n elements: the first n % p segments hold one more.
// With `align`, of the ceil(n / align) blocks of that many elements (the last may be short).
Segment segment(std::size_t n, int p, int i, std::size_t align = 1);

// Segment i of p of a buffer holding whole tensors, its ends moved to the tensor boundaries
// (`cuts`, sorted, from 0 to n) nearest to the even split. Every rank computes the same.
Segment aligned_segment(std::size_t n, int p, int i, const std::vector<std::size_t>& cuts);

// The boundaries of `cuts` inside [offset, offset + count), relative to offset, from 0 to count:
// what aligned_segment takes for that part of the buffer.
std::vector<std::size_t> cuts_within(const std::vector<std::size_t>& cuts, std::size_t offset, std::size_t count);

// The segment a ring rank sends at `step` of a phase over p ranks: a reduce-scatter sends
// rank - 1 - step (so that rank r ends holding segment r summed), an all-gather rank - step.
// It receives what its predecessor sends.
inline int ring_send_index(int rank, int step, int p, bool reduce) {
  return (((rank - (reduce ? 1 : 0) - step) % p) + p) % p;
}

// The elements ring rank `rank` sends at each of the p - 1 steps of a phase over n elements
// (with `cuts`, in segments that end on them; else in segments of whole `align` blocks): the
// ring's messages, which the communicator counts and paces whoever moves them, and which the
// collective plan sums.
std::vector<std::size_t> ring_sends(std::size_t n, int p, int rank, bool reduce,
                                    const std::vector<std::size_t>* cuts = nullptr, std::size_t align = 1);

}  // namespace ft
