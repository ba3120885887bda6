// PricingTable: lookup, and loading from our YAML and from LiteLLM's JSON.
#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>
#include <vector>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "bastion/cost.h"
#include "util/path_arg.h"

namespace bastion {
namespace {

// Our YAML prices are USD per 1M tokens: x 1e9 gives nUSD per 1M = fUSD/token.
constexpr int kYamlScale = 9;
// LiteLLM prices are USD per token: x 1e15 gives fUSD/token.
constexpr int kLiteLlmScale = 15;

std::string Where(const std::string& source, const YAML::Mark& mark) {
  if (mark.is_null()) return source;
  return fmt::format("{}:{}:{}", source, mark.line + 1, mark.column + 1);
}

Status At(const std::string& source, const YAML::Node& node, std::string_view field,
          std::string_view msg) {
  return Status::InvalidArgument(fmt::format("{}: {}: {}", Where(source, node.Mark()), field, msg));
}

Result<int64_t> ScalarNumber(const YAML::Node& node, const std::string& source,
                             const std::string& field, int scale, bool allow_rounding) {
  if (!node.IsScalar()) return At(source, node, field, "expected a number");
  Result<int64_t> v = ParseScaledDecimal(node.Scalar(), scale, allow_rounding);
  if (!v.ok()) return At(source, node, field, v.status().message());
  return v;
}

bool AllDigits(std::string_view s) {
  for (char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  }
  return !s.empty();
}

bool PlausibleDate(std::string_view yyyy, std::string_view mm, std::string_view dd) {
  if (!AllDigits(yyyy) || !AllDigits(mm) || !AllDigits(dd)) return false;
  const int m = (mm[0] - '0') * 10 + (mm[1] - '0');
  const int d = (dd[0] - '0') * 10 + (dd[1] - '0');
  return m >= 1 && m <= 12 && d >= 1 && d <= 31;
}

// "gpt-4o-2024-08-06" -> "gpt-4o"; "claude-3-5-sonnet-20241022" -> "claude-3-5-sonnet".
bool StripDateSuffix(std::string_view name, std::string* base) {
  if (name.size() > 11 && name[name.size() - 11] == '-' && name[name.size() - 6] == '-' &&
      name[name.size() - 3] == '-' &&
      PlausibleDate(name.substr(name.size() - 10, 4), name.substr(name.size() - 5, 2),
                    name.substr(name.size() - 2, 2))) {
    *base = std::string(name.substr(0, name.size() - 11));
    return true;
  }
  if (name.size() > 9 && name[name.size() - 9] == '-' &&
      PlausibleDate(name.substr(name.size() - 8, 4), name.substr(name.size() - 4, 2),
                    name.substr(name.size() - 2, 2))) {
    *base = std::string(name.substr(0, name.size() - 9));
    return true;
  }
  return false;
}

// LiteLLM's long-context keys: "<base key>_above_<N>k_tokens".
constexpr std::string_view kLiteLlmTierKeys[] = {
    "input_cost_per_token", "output_cost_per_token", "cache_read_input_token_cost",
    "cache_creation_input_token_cost"};

// The thresholds (in tokens) of every long-context key in `entry`, e.g.
// {200000} for "input_cost_per_token_above_200k_tokens".
std::vector<int64_t> LiteLlmThresholds(const YAML::Node& entry) {
  std::vector<int64_t> out;
  for (auto it = entry.begin(); it != entry.end(); ++it) {
    const std::string key = it->first.Scalar();
    for (std::string_view base : kLiteLlmTierKeys) {
      const std::string prefix = std::string(base) + "_above_";
      constexpr std::string_view kSuffix = "k_tokens";
      if (key.size() <= prefix.size() + kSuffix.size() || key.compare(0, prefix.size(), prefix) ||
          !std::string_view(key).ends_with(kSuffix)) {
        continue;
      }
      const std::string_view n(key.data() + prefix.size(),
                               key.size() - prefix.size() - kSuffix.size());
      if (!AllDigits(n) || n.size() > 9) continue;
      const int64_t t = std::stoll(std::string(n)) * 1000;
      if (std::find(out.begin(), out.end(), t) == out.end()) out.push_back(t);
    }
  }
  return out;
}

// Reads the price keys of one tier (all but input/output optional) from a
// YAML map, rejecting unknown keys. `extra` lists keys the caller handles.
Status ReadYamlTier(const YAML::Node& map, const std::string& source, const std::string& path,
                    const std::vector<std::string_view>& extra, TierPrices* tier) {
  bool have_input = false, have_output = false;
  for (auto it = map.begin(); it != map.end(); ++it) {
    const std::string key = it->first.Scalar();
    const std::string field = path + "." + key;
    std::optional<int64_t>* optional_slot = nullptr;
    int64_t* slot = nullptr;
    if (key == "input") {
      slot = &tier->input;
      have_input = true;
    } else if (key == "output") {
      slot = &tier->output;
      have_output = true;
    } else if (key == "cache_read") {
      optional_slot = &tier->cache_read;
    } else if (key == "cache_write_5m") {
      optional_slot = &tier->cache_write_5m;
    } else if (key == "cache_write_1h") {
      optional_slot = &tier->cache_write_1h;
    } else if (key == "reasoning") {
      optional_slot = &tier->reasoning;
    } else if (std::find(extra.begin(), extra.end(), key) != extra.end()) {
      continue;
    } else {
      return At(source, it->first, field, "unknown key");
    }
    Result<int64_t> v = ScalarNumber(it->second, source, field, kYamlScale, false);
    if (!v.ok()) return v.status();
    if (slot) *slot = *v;
    if (optional_slot) *optional_slot = *v;
  }
  if (!have_input) return At(source, map, path, "missing 'input' price");
  if (!have_output) return At(source, map, path, "missing 'output' price");
  return Status::OK();
}

Result<PricingTable> ParseYamlTable(const YAML::Node& root, const std::string& source) {
  if (!root.IsMap()) return At(source, root, "(top level)", "expected a map with 'models'");
  PricingTable table;
  struct PendingAlias {
    std::string alias, model;
    YAML::Node node;
  };
  std::vector<PendingAlias> aliases;
  for (auto top = root.begin(); top != root.end(); ++top) {
    const std::string key = top->first.Scalar();
    if (key != "models") return At(source, top->first, key, "unknown key");
    const YAML::Node models = top->second;  // a copy: the iterator proxy is a temporary
    if (!models.IsMap()) return At(source, models, "models", "expected a map of model names");
    for (auto m = models.begin(); m != models.end(); ++m) {
      const std::string name = m->first.Scalar();
      const std::string path = "models." + name;
      const YAML::Node entry = m->second;  // a copy: the iterator proxy is a temporary
      if (name.empty()) return At(source, m->first, "models", "empty model name");
      if (!entry.IsMap()) return At(source, entry, path, "expected a map of prices");
      ModelPrice price;
      BASTION_RETURN_IF_ERROR(
          ReadYamlTier(entry, source, path, {"aliases", "long_context"}, &price.base));
      if (const YAML::Node a = entry["aliases"]) {
        if (!a.IsSequence()) return At(source, a, path + ".aliases", "expected a list of names");
        for (const YAML::Node& alias : a) {
          if (!alias.IsScalar() || alias.Scalar().empty()) {
            return At(source, alias, path + ".aliases", "expected a model name");
          }
          aliases.push_back({alias.Scalar(), name, alias});
        }
      }
      if (const YAML::Node lc = entry["long_context"]) {
        const std::string lpath = path + ".long_context";
        if (!lc.IsMap()) return At(source, lc, lpath, "expected a map of prices");
        TierPrices tier;
        BASTION_RETURN_IF_ERROR(ReadYamlTier(lc, source, lpath, {"above_input_tokens"}, &tier));
        const YAML::Node above = lc["above_input_tokens"];
        if (!above) return At(source, lc, lpath, "missing 'above_input_tokens'");
        Result<int64_t> threshold =
            ScalarNumber(above, source, lpath + ".above_input_tokens", 0, false);
        if (!threshold.ok()) return threshold.status();
        price.long_context_above_input_tokens = *threshold;
        price.long_context = tier;
      }
      if (table.Find(name).ok() && table.Find(name)->model == name) {
        return At(source, m->first, path, "model listed twice");
      }
      table.Set(name, std::move(price));
    }
  }
  for (const PendingAlias& a : aliases) {
    Status s = table.AddAlias(a.alias, a.model);
    if (!s.ok()) return At(source, a.node, "models." + a.model + ".aliases", s.message());
  }
  return table;
}

}  // namespace

void PricingTable::Set(const std::string& name, ModelPrice price) {
  aliases_.erase(name);
  models_[name] = std::move(price);
}

Status PricingTable::AddAlias(const std::string& alias, const std::string& model) {
  if (!models_.count(model)) {
    return Status::NotFound(
        fmt::format("alias '{}': model '{}' is not in the table", alias, model));
  }
  if (models_.count(alias)) {
    return Status::InvalidArgument(fmt::format("alias '{}' is already a model name", alias));
  }
  auto it = aliases_.find(alias);
  if (it != aliases_.end() && it->second != model) {
    return Status::InvalidArgument(
        fmt::format("alias '{}' already names model '{}'", alias, it->second));
  }
  aliases_[alias] = model;
  return Status::OK();
}

void PricingTable::MergeFrom(const PricingTable& other) {
  for (const auto& [name, price] : other.models_) Set(name, price);
  for (const auto& [alias, model] : other.aliases_) {
    if (!models_.count(alias)) aliases_[alias] = model;
  }
}

const ModelPrice* PricingTable::FindExactOrAlias(const std::string& name,
                                                 std::string* canonical) const {
  if (auto m = models_.find(name); m != models_.end()) {
    *canonical = m->first;
    return &m->second;
  }
  if (auto a = aliases_.find(name); a != aliases_.end()) {
    if (auto m = models_.find(a->second); m != models_.end()) {
      *canonical = m->first;
      return &m->second;
    }
  }
  return nullptr;
}

Result<PricingTable::Match> PricingTable::Find(std::string_view model) const {
  std::string_view candidate = model;
  while (true) {
    std::string canonical;
    if (const ModelPrice* p = FindExactOrAlias(std::string(candidate), &canonical)) {
      return Match{canonical, p};
    }
    std::string base;
    if (StripDateSuffix(candidate, &base)) {
      if (const ModelPrice* p = FindExactOrAlias(base, &canonical)) return Match{canonical, p};
    }
    const size_t slash = candidate.find('/');
    if (slash == std::string_view::npos) break;
    candidate.remove_prefix(slash + 1);
  }
  return Status::NotFound(fmt::format("model '{}' has no price", model));
}

Result<PricingTable> PricingTable::FromYaml(const std::string& yaml,
                                            const std::string& source_name) {
  try {
    return ParseYamlTable(YAML::Load(yaml), source_name);
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(fmt::format("{}: {}", Where(source_name, e.mark), e.msg));
  }
}

Result<PricingTable> PricingTable::FromYamlFile(const std::string& path) {
  BASTION_RETURN_IF_ERROR(CheckPathArgument(path, "the pricing file path"));
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IOError(fmt::format("{}: cannot be read", path));
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) return Status::IOError(fmt::format("{}: read failed", path));
  return FromYaml(out.str(), path);
}

Result<PricingTable> PricingTable::FromLiteLlmJson(const std::string& json,
                                                   const std::string& source_name) {
  try {
    const YAML::Node root = YAML::Load(json);
    if (!root.IsMap()) return At(source_name, root, "(top level)", "expected a JSON object");
    PricingTable table;
    for (auto m = root.begin(); m != root.end(); ++m) {
      const std::string name = m->first.Scalar();
      const YAML::Node entry = m->second;  // a copy: the iterator proxy is a temporary
      if (name == "sample_spec" || !entry.IsMap()) continue;
      // Reads one optional price; an absent or null key leaves `out` empty.
      auto read = [&](const char* key, std::optional<int64_t>* out) -> Status {
        const YAML::Node v = entry[key];
        if (!v || v.IsNull()) return Status::OK();
        Result<int64_t> n = ScalarNumber(v, source_name, name + "." + key, kLiteLlmScale, true);
        if (!n.ok()) return n.status();
        *out = *n;
        return Status::OK();
      };
      std::optional<int64_t> input, output, long_input, long_output, long_read, long_write,
          long_write_1h;
      TierPrices base;
      BASTION_RETURN_IF_ERROR(read("input_cost_per_token", &input));
      BASTION_RETURN_IF_ERROR(read("output_cost_per_token", &output));
      if (!input || !output) continue;  // not priced per token
      base.input = *input;
      base.output = *output;
      BASTION_RETURN_IF_ERROR(read("cache_read_input_token_cost", &base.cache_read));
      BASTION_RETURN_IF_ERROR(read("cache_creation_input_token_cost", &base.cache_write_5m));
      BASTION_RETURN_IF_ERROR(
          read("cache_creation_input_token_cost_above_1hr", &base.cache_write_1h));
      BASTION_RETURN_IF_ERROR(read("output_cost_per_reasoning_token", &base.reasoning));
      ModelPrice price;
      price.base = base;
      const std::vector<int64_t> thresholds = LiteLlmThresholds(entry);
      if (thresholds.size() > 1) continue;  // several tiers: unpriced rather than mispriced
      if (thresholds.size() == 1) {
        const std::string suffix = fmt::format("_above_{}k_tokens", thresholds[0] / 1000);
        BASTION_RETURN_IF_ERROR(read(("input_cost_per_token" + suffix).c_str(), &long_input));
        BASTION_RETURN_IF_ERROR(read(("output_cost_per_token" + suffix).c_str(), &long_output));
        BASTION_RETURN_IF_ERROR(
            read(("cache_read_input_token_cost" + suffix).c_str(), &long_read));
        BASTION_RETURN_IF_ERROR(
            read(("cache_creation_input_token_cost" + suffix).c_str(), &long_write));
        BASTION_RETURN_IF_ERROR(
            read(("cache_creation_input_token_cost_above_1hr" + suffix).c_str(), &long_write_1h));
        TierPrices tier;
        tier.input = long_input.value_or(base.input);
        tier.output = long_output.value_or(base.output);
        tier.cache_read = long_read;
        tier.cache_write_5m = long_write;
        tier.cache_write_1h = long_write_1h;
        price.long_context = tier;
        price.long_context_above_input_tokens = thresholds[0];
      }
      table.Set(name, std::move(price));
    }
    return table;
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(fmt::format("{}: {}", Where(source_name, e.mark), e.msg));
  }
}

}  // namespace bastion
