// Pricing tables: our YAML format, LiteLLM's JSON, and the exact decimal
// parser under both. The first byte picks the parser ('y' YAML, 'j' JSON,
// 'd' decimal; others by their value), the rest is its text.
// Invariants: every model listed in an accepted YAML table resolves to
// itself; pricing any listed model gives components that add up to the
// total; a decimal parsed without rounding parses the same with it, and
// FormatUsd's text of an amount parses back to that amount.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "bastion/cost.h"
#include "bastion/value.h"
#include "fuzz_check.h"
#include "policy/bundle.h"

namespace bastion {
namespace {

constexpr std::string_view kSource = "fuzz-prices";

void CheckCallsPrice(const PricingTable& table, const std::string& model) {
  const Usage usages[] = {
      {1200, 1000, 50, 25, 300, 100},
      {250000, 0, 0, 0, 1, 0},  // past a long-context threshold
  };
  for (const Usage& u : usages) {
    Result<Cost> c = PriceCall(table, model, u);
    if (!c.ok()) {
      FUZZ_CHECK(c.status().IsNotFound() || c.status().IsInvalidArgument(), "%s",
                 c.status().ToString().c_str());
      continue;
    }
    const __int128 sum = static_cast<__int128>(c->input_fusd) + c->cache_read_fusd +
                         c->cache_write_5m_fusd + c->cache_write_1h_fusd + c->output_fusd +
                         c->reasoning_fusd;
    FUZZ_CHECK(sum == c->total_fusd && c->total_fusd >= 0,
               "components of '%s' do not add up to its total", model.c_str());
    FUZZ_CHECK(c->total_nanousd == RoundFusdToNanousd(c->total_fusd), "rounding of '%s'",
               model.c_str());
    FUZZ_CHECK(c->prices.input >= 0 && c->prices.output >= 0 && c->prices.cache_read >= 0 &&
                   c->prices.cache_write_5m >= 0 && c->prices.cache_write_1h >= 0 &&
                   c->prices.reasoning >= 0,
               "negative price for '%s'", model.c_str());
  }
}

// The names a document lists: the keys of `models` (YAML) or of the top
// level (JSON), as the generic YAML reader sees them.
std::vector<std::string> ListedNames(const std::string& text, bool yaml_format) {
  std::vector<std::string> names;
  Result<Value> doc = policy::ParseYamlValue(text, std::string(kSource));
  if (!doc.ok() || doc->type() != Value::Type::kObject) return names;
  const Value* models = yaml_format ? doc->Find("models") : &*doc;
  if (models == nullptr || models->type() != Value::Type::kObject) return names;
  for (const auto& [name, price] : models->as_object()) names.push_back(name);
  return names;
}

void CheckTable(const std::string& text, bool yaml_format) {
  Result<PricingTable> table = yaml_format
                                   ? PricingTable::FromYaml(text, std::string(kSource))
                                   : PricingTable::FromLiteLlmJson(text, std::string(kSource));
  if (!table.ok()) {
    FUZZ_CHECK(table.status().IsInvalidArgument(), "%s", table.status().ToString().c_str());
    FUZZ_CHECK(table.status().message().starts_with(kSource), "error does not name the source: %s",
               table.status().ToString().c_str());
    return;
  }
  for (const std::string& name : ListedNames(text, yaml_format)) {
    Result<PricingTable::Match> m = table->Find(name);
    if (yaml_format) {
      FUZZ_CHECK(m.ok() && m->model == name, "listed model '%s' does not resolve to itself",
                 name.c_str());
    }
    CheckCallsPrice(*table, name);
  }
}

void CheckDecimal(std::string_view rest) {
  if (rest.empty()) return;
  const int scale = static_cast<uint8_t>(rest[0]) % 19;
  const std::string_view text = rest.substr(1);
  Result<int64_t> exact = ParseScaledDecimal(text, scale, /*allow_rounding=*/false);
  Result<int64_t> rounded = ParseScaledDecimal(text, scale, /*allow_rounding=*/true);
  if (exact.ok()) {
    FUZZ_CHECK(*exact >= 0, "negative result");
    FUZZ_CHECK(rounded.ok() && *rounded == *exact, "rounding changed an exact value");
  } else {
    FUZZ_CHECK(exact.status().IsInvalidArgument(), "%s", exact.status().ToString().c_str());
  }
  if (rounded.ok()) {
    FUZZ_CHECK(*rounded >= 0, "negative result");
    if (scale == 9) {  // nano-USD: FormatUsd's text reads back exactly
      const std::string usd = FormatUsd(*rounded);
      FUZZ_CHECK(usd.size() > 1 && usd[0] == '$', "FormatUsd gave '%s'", usd.c_str());
      Result<int64_t> back = ParseScaledDecimal(std::string_view(usd).substr(1), 9, false);
      FUZZ_CHECK(back.ok() && *back == *rounded, "'%s' does not read back", usd.c_str());
    }
  }
}

}  // namespace
}  // namespace bastion

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0 || size > 64 * 1024) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] == 'y' ? 0 : data[0] == 'j' ? 1 : data[0] == 'd' ? 2 : data[0] % 3) {
    case 0: bastion::CheckTable(std::string(rest), /*yaml_format=*/true); break;
    case 1: bastion::CheckTable(std::string(rest), /*yaml_format=*/false); break;
    default: bastion::CheckDecimal(rest); break;
  }
  return 0;
}
