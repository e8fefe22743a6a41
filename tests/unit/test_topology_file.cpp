#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "comm/error.h"
#include "trainer/io/topology_file.h"

namespace ft {
namespace {

std::string write_file(const std::string& text) {
  static int n = 0;
  auto p = std::filesystem::temp_directory_path() / ("ft_topo_" + std::to_string(::getpid()) + "_" + std::to_string(n++) + ".yaml");
  std::ofstream(p) << text;
  return p.string();
}

std::string error_of(const std::string& yaml, const std::vector<std::string>& hosts) {
  try {
    topology_from_file(write_file(yaml), hosts);
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

TEST(HostList, ExpandsSlurmRangesWithTheirPadding) {
  EXPECT_EQ(expand_hostlist("n[1-3,7]"), (std::vector<std::string>{"n1", "n2", "n3", "n7"}));
  EXPECT_EQ(expand_hostlist("gpu[008-010]-ib"), (std::vector<std::string>{"gpu008-ib", "gpu009-ib", "gpu010-ib"}));
  EXPECT_EQ(expand_hostlist("r[1-2]n[1-2]"), (std::vector<std::string>{"r1n1", "r1n2", "r2n1", "r2n2"}));
  EXPECT_EQ(expand_hostlist("login"), (std::vector<std::string>{"login"}));
  EXPECT_THROW(expand_hostlist("n[1-"), UserError);
  EXPECT_THROW(expand_hostlist("n[a-b]"), UserError);
  EXPECT_TRUE(host_matches("gpu[001-016]", "gpu012"));
  EXPECT_FALSE(host_matches("gpu[001-016]", "gpu12"));
  EXPECT_TRUE(host_matches("spare-*", "spare-17"));
}

TEST(TopologyFile, PlacesHostsInPodsAndSites) {
  std::string f = write_file(
      "- {hosts: \"n[1-2]\", pod: a, site: west}\n"
      "- {hosts: [\"n[3-4]\"], pod: b, site: west}\n"
      "- {hosts: \"far-*\", pod: c, site: east}\n");
  Topology t = topology_from_file(f, {"n1", "n1", "n2", "n2", "n3", "n3", "n4", "n4", "far-1", "far-1", "far-2", "far-2"});
  EXPECT_EQ(t.nodes(), 6);
  EXPECT_EQ(t.pods(), 3);
  EXPECT_EQ(t.sites(), 2);
  EXPECT_EQ(t.tier(0, 1), Tier::intra_node);
  EXPECT_EQ(t.tier(0, 2), Tier::inter_node);
  EXPECT_EQ(t.tier(0, 4), Tier::inter_pod);
  EXPECT_EQ(t.tier(0, 8), Tier::inter_site);
  EXPECT_EQ(t.tier(8, 10), Tier::inter_node);
}

TEST(TopologyFile, WithoutSitesAllPodsShareOne) {
  Topology t = topology_from_file(write_file("- {hosts: a, pod: p1}\n- {hosts: b, pod: p2}\n"), {"a", "b"});
  EXPECT_EQ(t.sites(), 1);
  EXPECT_EQ(t.tier(0, 1), Tier::inter_pod);
}

TEST(TopologyFile, RefusesUnknownHostsAndBadEntries) {
  EXPECT_NE(error_of("- {hosts: \"n[1-2]\", pod: a}\n", {"n1", "n3"}).find("host 'n3' (rank 1) matches no entry"),
            std::string::npos);
  EXPECT_NE(error_of("- {hosts: n1, pod: a, site: x}\n- {hosts: n2, pod: a, site: y}\n", {"n1", "n2"})
                .find("pod 'a' is placed in two sites"),
            std::string::npos);
  EXPECT_NE(error_of("- {hosts: n1}\n", {"n1"}).find("an entry needs hosts and pod"), std::string::npos);
  EXPECT_NE(error_of("- {hosts: n1, pod: a, rack: 3}\n", {"n1"}).find("unknown key 'rack'"), std::string::npos);
  EXPECT_NE(error_of("hosts: n1\n", {"n1"}).find("expected a list"), std::string::npos);
  EXPECT_NE(error_of("- {hosts: n1, pod: a}\n- hosts: n2\n  pod: b\n  pod: c\n", {"n1", "n2"})
                .find(":4: key 'pod' given twice"),
            std::string::npos);
  try {
    topology_from_file("/nonexistent/topo.yaml", {"n1"});
    FAIL();
  } catch (const UserError& e) {
    EXPECT_STREQ(e.what(), "topology.file '/nonexistent/topo.yaml' does not exist");
  }
}

}  // namespace
}  // namespace ft
