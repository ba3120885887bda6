// fleet.yaml: where a guard directory's shared state lives.
#include <fmt/format.h>

#include "bastion/fleet.h"
#include "fleet/redis_client.h"
#include "util/yaml_reader.h"

namespace bastion {

Result<StoreOptions> ParseFleetYaml(std::string_view text, const std::string& source_name) {
  yaml::Reader r(source_name);
  auto root = r.Load(text, "a mapping with a 'store' key");
  if (!root.ok()) return root.status();
  yaml::Members top;
  BASTION_RETURN_IF_ERROR(r.GetMembers(*root, {"version", "store"}, "key", &top));
  StoreOptions out;
  bool have_store = false;
  for (const auto& [key, field] : top) {
    if (key == "version") {
      BASTION_RETURN_IF_ERROR(r.Version(field, 1));
      continue;
    }
    have_store = true;
    if (field.node.IsScalar()) {  // store: redis://host:6379/0
      auto url = r.Name(field);
      if (!url.ok()) return url.status();
      out.url = *url;
      continue;
    }
    yaml::Members store;
    BASTION_RETURN_IF_ERROR(
        r.GetMembers(field, {"url", "timeout", "prefix", "degraded_cap_usd"}, "key", &store));
    for (const auto& [k, f] : store) {
      if (k == "url") {
        auto url = r.Name(f);
        if (!url.ok()) return url.status();
        out.url = *url;
      } else if (k == "timeout") {
        auto t = r.Duration(f);
        if (!t.ok()) return t.status();
        if (*t > 3600LL * 1'000'000'000) return r.Error(f, "must be at most 1h");
        out.timeout_ns = *t;
      } else if (k == "prefix") {
        auto p = r.Name(f);
        if (!p.ok()) return p.status();
        if (p->find_first_of("{}") != std::string::npos) {
          return r.Error(f, "must not contain '{' or '}' (it names a Redis hash slot)");
        }
        out.prefix = *p;
      } else {  // degraded_cap_usd
        auto cap = r.Usd(f);
        if (!cap.ok()) return cap.status();
        if (*cap <= 0) return r.Error(f, "must be more than $0");
        out.degrade_to_local = true;
        out.degraded_cap_nanousd = *cap;
      }
    }
    if (out.url.empty()) return r.Error(field, "needs a 'url' (redis://host:port/db)");
  }
  if (!have_store) return r.Error(*root, "needs a 'store' (a redis:// URL or a mapping)");
  if (auto endpoint = fleet::ParseRedisUrl(out.url); !endpoint.ok()) {
    return Status::InvalidArgument(fmt::format("{}: {}", source_name, endpoint.status().message()));
  }
  return out;
}

Result<StoreOptions> LoadFleetYamlFile(const std::string& path) {
  auto text = yaml::ReadConfigFile(path, "fleet file");
  if (!text.ok()) return text.status();
  return ParseFleetYaml(*text, path);
}

}  // namespace bastion
