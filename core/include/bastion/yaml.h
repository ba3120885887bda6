// YAML text as plain values, parsed the way bundle.yaml and the other
// configuration files are.
//
//   auto v = bastion::ParseYamlValue("limits: {instructions: 5000}", "bundle.yaml");
//   if (!v.ok()) { /* "bundle.yaml:1:9: ..." */ }
#ifndef BASTION_YAML_H_
#define BASTION_YAML_H_

#include <string>

#include "bastion/status.h"
#include "bastion/value.h"

namespace bastion {

// YAML text -> Value (scalars typed as YAML 1.2 core: null, bool, int,
// float, else string; quoted scalars stay strings). Errors are
// InvalidArgument and name source_name:line:column.
Result<Value> ParseYamlValue(const std::string& yaml, const std::string& source_name);

}  // namespace bastion

#endif  // BASTION_YAML_H_
