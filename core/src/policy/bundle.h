// A policy bundle as loaded from disk: its sources, settings, data,
// permissions and content hash. Immutable once built; shared by the threads
// that evaluate it.
#ifndef BASTION_POLICY_BUNDLE_H_
#define BASTION_POLICY_BUNDLE_H_

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bastion/permissions.h"
#include "bastion/policy.h"
#include "bastion/status.h"
#include "bastion/value.h"
#include "bastion/yaml.h"

namespace bastion::policy {

struct CompiledBundle {
  std::string name;  // the folder, for messages
  std::vector<std::pair<std::string, std::string>> sources;  // (file name, Lua), sorted
  bool fail_open = false;
  PolicyLimits limits;
  Value data;  // bundle.yaml "data", visible to policies as `data`
  std::shared_ptr<const Permissions> permissions;
  std::string version;  // hex SHA-256 over every file
};

// Reads `dir`: every *.lua file at its top level, bundle.yaml and
// permissions.yaml if present. Does not compile the Lua (the engine does).
Result<std::shared_ptr<CompiledBundle>> ReadBundleDir(const std::string& dir);

// Builds a bundle from in-memory files; `name` prefixes error messages.
Result<std::shared_ptr<CompiledBundle>> MakeBundle(
    std::string name, std::vector<std::pair<std::string, std::string>> sources,
    const std::string& bundle_yaml, const std::string& permissions_yaml);

// The 1-based line of a policy's `scope = ...` in its Lua source, for load
// errors: with `glob` not empty, the line of that glob written as a string
// literal after it, if there is one. 0 when the source does not spell the
// scope out (a scope built by code).
int ScopeLine(std::string_view code, std::string_view glob);

using ::bastion::ParseYamlValue;  // bastion/yaml.h

}  // namespace bastion::policy

#endif  // BASTION_POLICY_BUNDLE_H_
