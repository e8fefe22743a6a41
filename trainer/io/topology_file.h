// Topology files: which pod and site each host belongs to, for real clusters.
//
//   # hosts: a name, a Slurm host list (gpu[001-016,020]) or a glob (node-*), or a list of them
//   - {hosts: "gpu[001-004]", pod: a, site: west}
//   - {hosts: ["gpu[005-008]", "spare-*"], pod: b, site: west}
//   - {hosts: "gpu[009-016]", pod: c, site: east}
//
// The first entry that matches a host places it; site defaults to the entry's pod's.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "comm/topology.h"

namespace ft {

// Expands a Slurm host list ("n[1-3,7]", "gpu[001-016]") into names; a name without
// brackets stands for itself.
std::vector<std::string> expand_hostlist(const std::string& pattern);
// Whether `host` is named by `pattern` (a host list whose names may hold * and ? globs).
bool host_matches(const std::string& pattern, const std::string& host);

// Topology of ranks on `host_of_rank` per the file. Throws UserError for a file that does
// not parse, an entry without hosts or pod, or a host no entry names.
Topology topology_from_file(const std::string& path, const std::vector<std::string>& host_of_rank);

}  // namespace ft
