// YAML as fibertrain reads it, from a config, a topology file or a device profile: a syntax
// error, or a key given twice in one map, is refused with the file and line. (yaml-cpp keeps
// the first of two equal keys without a word; PyYAML, which users check their files with,
// keeps the last: either way one of the user's values would be dropped.)
#pragma once

#include <string>

#include <yaml-cpp/yaml.h>

namespace ft {

// Parses `text`; `origin` names it in messages ("configs/tiny.yaml", "a step log's config").
YAML::Node parse_yaml(const std::string& text, const std::string& origin);
// Reads and parses the file at `path`; `role` names it when it is missing or unreadable
// ("config file", "topology.file", "device profile").
YAML::Node read_yaml_file(const std::string& path, const std::string& role);

}  // namespace ft
