// The rank grid: world = tp x pp x dp, laid over ranks in a configurable order. Pure
// functions, unit tested without MPI.
#pragma once

#include <array>
#include <string>
#include <vector>

namespace ft {

enum class Dim : int { tp = 0, pp = 1, dp = 2 };

struct GridCoord {
  int tp = 0, pp = 0, dp = 0;
  int operator[](Dim d) const { return d == Dim::tp ? tp : d == Dim::pp ? pp : dp; }
  friend bool operator==(const GridCoord&, const GridCoord&) = default;
};

class Grid {
 public:
  // `order` names the dimensions fastest-varying first: "tp-pp-dp" puts a model replica on
  // consecutive ranks; "tp-dp-pp" is Megatron's. Throws std::invalid_argument on a bad order.
  Grid(int tp, int pp, int dp, const std::string& order = "tp-pp-dp");

  int size(Dim d) const { return sizes_[static_cast<std::size_t>(d)]; }
  int world() const { return sizes_[0] * sizes_[1] * sizes_[2]; }
  GridCoord coord(int rank) const;
  int rank(const GridCoord& c) const;
  // The ranks that differ from `rank` only along `d`, ordered by their coordinate on d.
  std::vector<int> group(Dim d, int rank) const;
  // Every group along `d`, ordered by their lowest rank.
  std::vector<std::vector<int>> groups(Dim d) const;

 private:
  std::array<int, 3> sizes_;
  std::array<Dim, 3> order_;  // fastest first
};

}  // namespace ft
