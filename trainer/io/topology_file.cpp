#include "trainer/io/topology_file.h"

#include <fnmatch.h>

#include <algorithm>
#include <map>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "comm/error.h"
#include "trainer/io/yaml_file.h"

namespace ft {

std::vector<std::string> expand_hostlist(const std::string& pattern) {
  auto open = pattern.find('[');
  if (open == std::string::npos) return {pattern};
  auto close = pattern.find(']', open);
  if (close == std::string::npos) throw UserError(fmt::format("host list '{}': '[' without ']'", pattern));
  std::string prefix = pattern.substr(0, open), body = pattern.substr(open + 1, close - open - 1);
  std::vector<std::string> rest = expand_hostlist(pattern.substr(close + 1));
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= body.size()) {
    auto comma = body.find(',', start);
    std::string item = body.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    auto dash = item.find('-');
    std::string lo_s = item.substr(0, dash), hi_s = dash == std::string::npos ? lo_s : item.substr(dash + 1);
    if (lo_s.empty() || hi_s.empty() || lo_s.find_first_not_of("0123456789") != std::string::npos ||
        hi_s.find_first_not_of("0123456789") != std::string::npos)
      throw UserError(fmt::format("host list '{}': '{}' is not a number or a range a-b", pattern, item));
    long lo = std::stol(lo_s), hi = std::stol(hi_s);
    if (hi < lo || hi - lo > 100000) throw UserError(fmt::format("host list '{}': bad range '{}'", pattern, item));
    std::size_t width = lo_s.size();  // zero padding as written: gpu[001-016]
    for (long v = lo; v <= hi; ++v)
      for (const std::string& tail : rest) out.push_back(fmt::format("{}{:0{}}{}", prefix, v, width, tail));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

bool host_matches(const std::string& pattern, const std::string& host) {
  for (const std::string& name : expand_hostlist(pattern))
    if (fnmatch(name.c_str(), host.c_str(), 0) == 0) return true;
  return false;
}

namespace {

struct Entry {
  std::vector<std::string> hosts;
  std::string pod, site;
};

std::vector<Entry> read_entries(const std::string& path) {
  YAML::Node root = read_yaml_file(path, "topology.file");
  if (!root.IsSequence())
    throw UserError(fmt::format("{}: expected a list of {{hosts, pod, site}} entries", path));
  std::vector<Entry> out;
  for (const auto& n : root) {
    std::string where = fmt::format("{}:{}", path, n.Mark().line + 1);
    if (!n.IsMap()) throw UserError(fmt::format("{}: an entry must be a map {{hosts, pod, site}}", where));
    for (const auto& kv : n) {
      auto key = kv.first.as<std::string>();
      if (key != "hosts" && key != "pod" && key != "site")
        throw UserError(fmt::format("{}: unknown key '{}' (known: hosts, pod, site)", where, key));
    }
    if (!n["hosts"] || !n["pod"]) throw UserError(fmt::format("{}: an entry needs hosts and pod", where));
    Entry e;
    if (n["hosts"].IsSequence())
      for (const auto& h : n["hosts"]) e.hosts.push_back(h.as<std::string>());
    else
      e.hosts.push_back(n["hosts"].as<std::string>());
    e.pod = n["pod"].as<std::string>();
    e.site = n["site"] ? n["site"].as<std::string>() : "";
    for (const auto& h : e.hosts) expand_hostlist(h);  // refuse bad host lists early
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace

Topology topology_from_file(const std::string& path, const std::vector<std::string>& host_of_rank) {
  std::vector<Entry> entries = read_entries(path);
  std::map<std::string, int> node_ids, pod_ids, site_ids;
  std::vector<int> pod_of_node, site_of_pod;
  for (std::size_t r = 0; r < host_of_rank.size(); ++r) {
    const std::string& host = host_of_rank[r];
    if (node_ids.count(host)) continue;
    node_ids.emplace(host, static_cast<int>(node_ids.size()));
    auto e = std::find_if(entries.begin(), entries.end(), [&](const Entry& x) {
      return std::any_of(x.hosts.begin(), x.hosts.end(), [&](const std::string& p) { return host_matches(p, host); });
    });
    if (e == entries.end())
      throw UserError(fmt::format("topology.file '{}': host '{}' (rank {}) matches no entry", path, host, r));
    auto [pod, new_pod] = pod_ids.emplace(e->pod, static_cast<int>(pod_ids.size()));
    std::string site_name = e->site.empty() ? "site of " + e->pod : e->site;
    int site = site_ids.emplace(site_name, static_cast<int>(site_ids.size())).first->second;
    if (new_pod) {
      site_of_pod.push_back(site);
    } else if (site_of_pod[static_cast<std::size_t>(pod->second)] != site) {
      throw UserError(fmt::format("topology.file '{}': pod '{}' is placed in two sites", path, e->pod));
    }
    pod_of_node.push_back(pod->second);
  }
  // Without sites named, all pods are in one site.
  bool any_site = std::any_of(entries.begin(), entries.end(), [](const Entry& x) { return !x.site.empty(); });
  if (!any_site) std::fill(site_of_pod.begin(), site_of_pod.end(), 0);
  return Topology::from_mapping(host_of_rank, pod_of_node, site_of_pod);
}

}  // namespace ft
