#include "bastion/value.h"

namespace bastion {

const Value* Value::Find(std::string_view key) const {
  if (type() != Type::kObject) return nullptr;
  for (const auto& [k, v] : as_object()) {
    if (k == key) return &v;
  }
  return nullptr;
}

}  // namespace bastion
