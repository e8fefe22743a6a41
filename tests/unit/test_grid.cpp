#include <gtest/gtest.h>

#include "comm/codec.h"
#include "comm/collective_plan.h"
#include "comm/grid.h"
#include "comm/topology.h"

namespace ft {
namespace {

using Groups = std::vector<std::vector<int>>;

TEST(Grid, SixteenRanksTp2Pp4Dp2InTpPpDpOrder) {
  Grid g(2, 4, 2, "tp-pp-dp");
  EXPECT_EQ(g.groups(Dim::tp), (Groups{{0, 1}, {2, 3}, {4, 5}, {6, 7}, {8, 9}, {10, 11}, {12, 13}, {14, 15}}));
  EXPECT_EQ(g.groups(Dim::pp), (Groups{{0, 2, 4, 6}, {1, 3, 5, 7}, {8, 10, 12, 14}, {9, 11, 13, 15}}));
  EXPECT_EQ(g.groups(Dim::dp), (Groups{{0, 8}, {1, 9}, {2, 10}, {3, 11}, {4, 12}, {5, 13}, {6, 14}, {7, 15}}));
  EXPECT_EQ(g.coord(13), (GridCoord{1, 2, 1}));
}

TEST(Grid, SixteenRanksTp2Pp4Dp2InMegatronOrder) {
  Grid g(2, 4, 2, "tp-dp-pp");
  EXPECT_EQ(g.groups(Dim::tp), (Groups{{0, 1}, {2, 3}, {4, 5}, {6, 7}, {8, 9}, {10, 11}, {12, 13}, {14, 15}}));
  EXPECT_EQ(g.groups(Dim::dp), (Groups{{0, 2}, {1, 3}, {4, 6}, {5, 7}, {8, 10}, {9, 11}, {12, 14}, {13, 15}}));
  EXPECT_EQ(g.groups(Dim::pp), (Groups{{0, 4, 8, 12}, {1, 5, 9, 13}, {2, 6, 10, 14}, {3, 7, 11, 15}}));
  EXPECT_EQ(g.coord(13), (GridCoord{1, 3, 0}));
}

TEST(Grid, RankAndCoordAreInverse) {
  for (const char* order : {"tp-pp-dp", "tp-dp-pp", "dp-pp-tp", "pp-tp-dp"}) {
    Grid g(3, 2, 4, order);
    for (int r = 0; r < g.world(); ++r) EXPECT_EQ(g.rank(g.coord(r)), r) << order;
  }
}

TEST(Grid, BadOrdersAreRefused) {
  EXPECT_THROW(Grid(1, 1, 1, "tp-pp"), std::invalid_argument);
  EXPECT_THROW(Grid(1, 1, 1, "tp-tp-dp"), std::invalid_argument);
  EXPECT_THROW(Grid(1, 1, 1, "tp-pp-xp"), std::invalid_argument);
}

TEST(Topology, TwoSitesTwoPodsTwoNodes) {
  Topology t = Topology::emulated(8, 1, 2, 2);
  EXPECT_EQ(t.nodes(), 8);
  EXPECT_EQ(t.pods(), 4);
  EXPECT_EQ(t.sites(), 2);
  EXPECT_EQ(t.tier(0, 0), Tier::intra_node);
  EXPECT_EQ(t.tier(0, 1), Tier::inter_node);
  EXPECT_EQ(t.tier(0, 2), Tier::inter_pod);
  EXPECT_EQ(t.tier(1, 3), Tier::inter_pod);
  EXPECT_EQ(t.tier(0, 4), Tier::inter_site);
  EXPECT_EQ(t.tier(7, 3), Tier::inter_site);
  EXPECT_EQ(t.describe(), "8 ranks = 2 sites x 2 pods/site x 2 nodes/pod x 1 rank/node");
}

TEST(Topology, HostsMakeNodes) {
  Topology t = Topology::from_hosts({"a", "a", "b", "b", "c", "c", "d", "d"}, 2, 0);
  EXPECT_EQ(t.nodes(), 4);
  EXPECT_EQ(t.pods(), 2);
  EXPECT_EQ(t.tier(0, 1), Tier::intra_node);
  EXPECT_EQ(t.tier(1, 2), Tier::inter_node);
  EXPECT_EQ(t.tier(3, 4), Tier::inter_pod);
  EXPECT_EQ(t.location(5).local, 1);
  EXPECT_THROW(Topology::from_hosts({"a", "b", "c"}, 2, 0), std::invalid_argument);
}

TEST(Hierarchy, OneLevelPerTierTheGroupSpans) {
  Topology t = Topology::emulated(8, 1, 2, 2);
  std::vector<int> all = {0, 1, 2, 3, 4, 5, 6, 7};
  HierarchyPlan p = plan_hierarchy(t, all);
  ASSERT_TRUE(p.even);
  ASSERT_EQ(p.levels.size(), 3u);
  EXPECT_EQ(p.levels[0].tier, Tier::inter_node);
  EXPECT_EQ(p.levels[1].tier, Tier::inter_pod);
  EXPECT_EQ(p.levels[2].tier, Tier::inter_site);
  for (const auto& l : p.levels) EXPECT_EQ(l.size, 2);
  // inter_node sub-groups: {0,1}, {2,3}, ...; inter_pod: {0,2}, {1,3}, ...; inter_site: {0,4}, ...
  EXPECT_EQ(p.levels[0].color[0], p.levels[0].color[1]);
  EXPECT_NE(p.levels[0].color[1], p.levels[0].color[2]);
  EXPECT_EQ(p.levels[1].color[1], p.levels[1].color[3]);
  EXPECT_EQ(p.levels[2].color[3], p.levels[2].color[7]);
  EXPECT_NE(p.levels[2].color[3], p.levels[2].color[6]);
  EXPECT_EQ(p.levels[2].key[7], 1);
}

TEST(Hierarchy, NodeLocalRanksFormTheLowestLevel) {
  Topology t = Topology::emulated(8, 2, 0, 0);  // 4 nodes x 2 ranks, one pod
  HierarchyPlan p = plan_hierarchy(t, {0, 1, 2, 3, 4, 5, 6, 7});
  ASSERT_EQ(p.levels.size(), 2u);
  EXPECT_EQ(p.levels[0].tier, Tier::intra_node);
  EXPECT_EQ(p.levels[0].size, 2);
  EXPECT_EQ(p.levels[1].tier, Tier::inter_node);
  EXPECT_EQ(p.levels[1].size, 4);
  // Ranks 1, 3, 5, 7 (second on their node) reduce across nodes together.
  EXPECT_EQ(p.levels[1].color[1], p.levels[1].color[7]);
  EXPECT_NE(p.levels[1].color[0], p.levels[1].color[1]);
}

TEST(Hierarchy, UnevenGroupsAreFlagged) {
  Topology t({0, 0, 0, 1, 1, 2, 2, 2}, 0, 0);
  HierarchyPlan p = plan_hierarchy(t, {0, 1, 2, 3, 4, 5, 6, 7});
  EXPECT_FALSE(p.even);
  EXPECT_NE(p.why_uneven.find("nodes"), std::string::npos);
}

// The plan's bytes per phase, worked out from the segments' three sizes, equal the ring's
// own messages step by step (ring_sends in messages of the wire's chunk), for blocked and
// plain wires, members with no share, and every rank.
TEST(CollectivePlanBytes, EqualTheRingsMessagesStepByStep) {
  const Topology topo = Topology::emulated(8, 1, 0, 0);
  CodecSpec int8 = default_spec("int8");
  int8.params["block"] = 64;
  auto quantizer = make_codec(int8);
  for (int p : {2, 3, 8}) {
    std::vector<int> members(static_cast<std::size_t>(p));
    for (int i = 0; i < p; ++i) members[static_cast<std::size_t>(i)] = i;
    const CollectivePlan plan(topo, members, false);
    for (const WireFormat* wire : {&fp32_wire(), &fp16_wire(), &quantizer->wire()})
      for (std::size_t n : {0u, 1u, 5u, 63u, 64u, 65u, 200u, 1000u, 4099u})
        for (std::size_t chunk : {64u, 1024u})
          for (bool reduce : {true, false})
            for (int m = 0; m < p; ++m) {
              const auto steps = ring_step_bytes(ring_sends(n, p, m, reduce, nullptr, wire->block()), *wire, chunk);
              std::size_t expect = 0;
              for (std::size_t b : steps) expect += b;
              ASSERT_EQ(plan.sent_bytes(n, 0, m, reduce, *wire, chunk), expect)
                  << wire->name() << " p " << p << " n " << n << " chunk " << chunk << " reduce " << reduce << " m " << m;
              ASSERT_EQ(plan.sent_bytes_of(n, 0, m, reduce, *wire, chunk), expect);
            }
  }
}

}  // namespace
}  // namespace ft
