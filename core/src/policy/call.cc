#include "bastion/call.h"

#include <algorithm>

namespace bastion {

const CallField* FindCallField(std::string_view name) {
  for (const CallFieldAlias& a : kCallFieldAliases) {
    if (a.alias == name) {
      name = a.name;
      break;
    }
  }
  for (const CallField& f : kCallFields) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

Record RecordFromCall(const CallInfo& call, std::string_view action) {
  Record r;
  r.action = action;
  for (const CallField& f : kCallFields) {
    if (!f.record) continue;
    switch (f.type) {
      case CallFieldType::kString:
        *StringField(r, *f.record) = call.*f.text;
        break;
      case CallFieldType::kCount:
        // step_index is the only recorded count; 0 means "not given".
        if (call.*f.count != 0) r.step_index = call.*f.count;
        break;
      case CallFieldType::kAttributes:
        // Keys are unique in a record: a repeated key keeps its last value.
        for (const auto& attribute : call.attributes) {
          auto same = [&](const auto& kv) { return kv.first == attribute.first; };
          auto it = std::find_if(r.attributes.begin(), r.attributes.end(), same);
          if (it == r.attributes.end()) {
            r.attributes.push_back(attribute);
          } else {
            it->second = attribute.second;
          }
        }
        break;
      case CallFieldType::kHook:
      case CallFieldType::kArgs:
      case CallFieldType::kTokens:
        break;
    }
  }
  for (const TokenField& t : kTokenFields) *UintField(r, t.record) = call.tokens.*t.member;
  return r;
}

}  // namespace bastion
