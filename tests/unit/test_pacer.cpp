// The pacer's arithmetic on private link state: reservations queue behind each other on
// one uplink, latency is paid once per message, and the uplink is chosen by tier.
#include <gtest/gtest.h>

#include "comm/pacer.h"

namespace ft {
namespace {

struct Fixture {
  std::shared_ptr<const Topology> topo = std::make_shared<const Topology>(Topology::emulated(8, 2, 2, 0));
  std::vector<std::atomic<std::int64_t>> free_at = std::vector<std::atomic<std::int64_t>>(kTiers * 8);
  std::vector<int> machines = std::vector<int>(kTiers * 8, 1);
  Pacer make(LinkSpecs links) { return Pacer(topo, links, free_at.data(), machines); }
};

constexpr double kMB = 1e6;

TEST(Pacer, MessagesOnOneUplinkQueueAndPayLatencyOnce) {
  Fixture f;
  LinkSpecs links{};
  links[static_cast<std::size_t>(index(Tier::inter_node))] = {100 * kMB, 0.002};  // 100 MB/s, 2 ms
  Pacer p = f.make(links);
  std::int64_t t0 = monotonic_ns();
  std::int64_t a = p.reserve(0, Tier::inter_node, 1000000);  // 10 ms of the link
  std::int64_t b = p.reserve(1, Tier::inter_node, 1000000);  // rank 1 shares node 0's uplink
  std::int64_t c = p.reserve(2, Tier::inter_node, 1000000);  // rank 2 is on node 1: its own uplink
  EXPECT_NEAR(static_cast<double>(a - t0), 12e6, 1e6);
  EXPECT_NEAR(static_cast<double>(b - a), 10e6, 1e4);  // queued behind a, same latency
  EXPECT_NEAR(static_cast<double>(c - t0), 12e6, 1e6);
}

TEST(Pacer, UnthrottledTiersAreFreeAndLatencyOnlyLinksDelay) {
  Fixture f;
  LinkSpecs links{};
  links[static_cast<std::size_t>(index(Tier::inter_pod))] = {0, 0.005};
  Pacer p = f.make(links);
  EXPECT_EQ(p.reserve(0, Tier::inter_node, 1 << 20), 0);
  std::int64_t t0 = monotonic_ns();
  std::int64_t r = p.reserve(0, Tier::inter_pod, 1 << 30);
  EXPECT_NEAR(static_cast<double>(r - t0), 5e6, 1e6);
}

TEST(Pacer, UplinksAreThoseOfNodePodAndSite) {
  Fixture f;
  LinkSpecs links{};
  Pacer p = f.make(links);
  // 8 ranks: nodes of 2, pods of 2 nodes; one site.
  EXPECT_EQ(p.link_of(1, Tier::inter_node), p.link_of(0, Tier::inter_node));
  EXPECT_NE(p.link_of(2, Tier::inter_node), p.link_of(0, Tier::inter_node));
  EXPECT_EQ(p.link_of(3, Tier::inter_pod), p.link_of(0, Tier::inter_pod));
  EXPECT_NE(p.link_of(4, Tier::inter_pod), p.link_of(0, Tier::inter_pod));
  EXPECT_EQ(p.link_of(7, Tier::inter_site), p.link_of(0, Tier::inter_site));
}

TEST(Pacer, MachinesBehindOneUplinkEachGetAnEqualShare) {
  Fixture f;
  LinkSpecs links{};
  links[static_cast<std::size_t>(index(Tier::inter_pod))] = {100 * kMB, 0};
  for (auto& m : f.machines) m = 2;
  Pacer p = f.make(links);
  std::int64_t t0 = monotonic_ns();
  std::int64_t r = p.reserve(0, Tier::inter_pod, 1000000);
  EXPECT_NEAR(static_cast<double>(r - t0), 20e6, 1e6);  // half of 100 MB/s
}

TEST(Pacer, WaitUntilSleepsToTheRelease) {
  std::int64_t target = monotonic_ns() + 3000000;
  Pacer::wait_until(target);
  std::int64_t late = monotonic_ns() - target;
  EXPECT_GE(late, 0);
  EXPECT_LT(late, 2000000);  // generous: a loaded machine may deschedule us
}

}  // namespace
}  // namespace ft
