#include "comm/grid.h"

#include <algorithm>
#include <stdexcept>

namespace ft {

Grid::Grid(int tp, int pp, int dp, const std::string& order) : sizes_{tp, pp, dp} {
  auto dim_of = [&](const std::string& name) {
    if (name == "tp") return Dim::tp;
    if (name == "pp") return Dim::pp;
    if (name == "dp") return Dim::dp;
    throw std::invalid_argument("grid order '" + order + "': unknown dimension '" + name + "'");
  };
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (true) {
    auto dash = order.find('-', start);
    parts.push_back(order.substr(start, dash - start));
    if (dash == std::string::npos) break;
    start = dash + 1;
  }
  if (parts.size() != 3) throw std::invalid_argument("grid order '" + order + "' must name tp, pp and dp");
  for (std::size_t i = 0; i < 3; ++i) order_[i] = dim_of(parts[i]);
  if (order_[0] == order_[1] || order_[1] == order_[2] || order_[0] == order_[2])
    throw std::invalid_argument("grid order '" + order + "' repeats a dimension");
  if (tp < 1 || pp < 1 || dp < 1) throw std::invalid_argument("grid sizes must be at least 1");
}

GridCoord Grid::coord(int rank) const {
  GridCoord c;
  int rest = rank;
  for (Dim d : order_) {
    int v = rest % size(d);
    rest /= size(d);
    (d == Dim::tp ? c.tp : d == Dim::pp ? c.pp : c.dp) = v;
  }
  return c;
}

int Grid::rank(const GridCoord& c) const {
  int r = 0;
  for (int i = 2; i >= 0; --i) {
    Dim d = order_[static_cast<std::size_t>(i)];
    r = r * size(d) + c[d];
  }
  return r;
}

std::vector<int> Grid::group(Dim d, int r) const {
  GridCoord c = coord(r);
  std::vector<int> out;
  for (int i = 0; i < size(d); ++i) {
    GridCoord m = c;
    (d == Dim::tp ? m.tp : d == Dim::pp ? m.pp : m.dp) = i;
    out.push_back(rank(m));
  }
  return out;
}

std::vector<std::vector<int>> Grid::groups(Dim d) const {
  std::vector<std::vector<int>> out;
  // A rank's index along `d` raises its rank by a fixed stride, so each group's lowest rank
  // is its member at index 0: one group per such rank, without building the others.
  for (int r = 0; r < world(); ++r) {
    if (coord(r)[d] == 0) out.push_back(group(d, r));
  }
  return out;
}

}  // namespace ft
