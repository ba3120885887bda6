// Tests for the shipped pricing table, pricing/default.yaml: it loads, covers
// the major providers, every name in it resolves, and a sample of its prices
// are exactly the source list's per-token figures.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "bastion/cost.h"

namespace bastion {
namespace {

const std::string kPath = std::string(BASTION_SOURCE_DIR) + "/pricing/default.yaml";

const PricingTable& Shipped() {
  static const PricingTable* table = [] {
    Result<PricingTable> t = PricingTable::FromYamlFile(kPath);
    EXPECT_TRUE(t.ok()) << t.status().ToString();
    return new PricingTable(t.ok() ? std::move(*t) : PricingTable());
  }();
  return *table;
}

// The file's model names with their aliases, read straight from the YAML so the
// test does not depend on the table's own alias bookkeeping.
std::map<std::string, std::vector<std::string>> ListedModels() {
  std::map<std::string, std::vector<std::string>> out;
  const YAML::Node root = YAML::LoadFile(kPath);
  for (const auto& m : root["models"]) {
    std::vector<std::string>& aliases = out[m.first.Scalar()];
    if (const YAML::Node a = m.second["aliases"]) {
      for (const auto& alias : a) aliases.push_back(alias.Scalar());
    }
  }
  return out;
}

std::string Provider(std::string_view name) {
  auto starts = [&](std::string_view p) { return name.substr(0, p.size()) == p; };
  if (starts("groq/")) return "groq";
  if (starts("together_ai/")) return "together_ai";
  if (starts("fireworks_ai/")) return "fireworks_ai";
  if (starts("gpt-") || starts("o1") || starts("o3") || starts("o4") || starts("codex-") ||
      starts("chatgpt-")) {
    return "openai";
  }
  if (starts("claude-")) return "anthropic";
  if (starts("gemini-") || starts("vertex_ai/gemini-")) return "google";
  if (starts("mistral-") || starts("codestral-") || starts("magistral-") ||
      starts("devstral-") || starts("ministral-") || starts("pixtral-")) {
    return "mistral";
  }
  if (starts("deepseek-")) return "deepseek";
  return "";
}

TEST(ShippedPricing, LoadsAndCoversEveryProvider) {
  ASSERT_GE(Shipped().size(), 100u);
  std::map<std::string, int> per_provider;
  for (const auto& [name, aliases] : ListedModels()) {
    const std::string p = Provider(name);
    EXPECT_FALSE(p.empty()) << name << " belongs to no known provider";
    ++per_provider[p];
  }
  const std::map<std::string, int> at_least = {
      {"openai", 30}, {"anthropic", 12}, {"google", 10},     {"mistral", 10},
      {"deepseek", 2}, {"groq", 6},      {"together_ai", 10}, {"fireworks_ai", 8}};
  for (const auto& [provider, n] : at_least) {
    EXPECT_GE(per_provider[provider], n) << provider;
  }
}

TEST(ShippedPricing, EveryNameAndAliasResolvesToItsModel) {
  const PricingTable& table = Shipped();
  const auto listed = ListedModels();
  ASSERT_EQ(listed.size(), table.size());
  int aliases_seen = 0;
  for (const auto& [name, aliases] : listed) {
    Result<PricingTable::Match> m = table.Find(name);
    ASSERT_TRUE(m.ok()) << name << ": " << m.status().ToString();
    EXPECT_EQ(m->model, name);
    for (const std::string& alias : aliases) {
      ++aliases_seen;
      Result<PricingTable::Match> a = table.Find(alias);
      ASSERT_TRUE(a.ok()) << alias << ": " << a.status().ToString();
      EXPECT_EQ(a->model, name) << alias;
    }
  }
  EXPECT_GE(aliases_seen, 50);
}

// A zero price would make a model silently free; a long-context tier must be
// dearer than the base, or it is a typo.
TEST(ShippedPricing, EveryPriceIsPositiveAndTiersCostMore) {
  const PricingTable& table = Shipped();
  for (const auto& [name, aliases] : ListedModels()) {
    Result<PricingTable::Match> m = table.Find(name);
    ASSERT_TRUE(m.ok()) << name;
    const ModelPrice& p = *m->price;
    EXPECT_GT(p.base.input, 0) << name;
    EXPECT_GT(p.base.output, 0) << name;
    if (p.base.cache_read) {
      EXPECT_GT(*p.base.cache_read, 0) << name;
      EXPECT_LT(*p.base.cache_read, p.base.input) << name;
    }
    if (p.long_context) {
      ASSERT_TRUE(p.long_context_above_input_tokens.has_value()) << name;
      EXPECT_GE(*p.long_context_above_input_tokens, 100'000) << name;
      EXPECT_GT(p.long_context->input, p.base.input) << name;
      EXPECT_GT(p.long_context->output, p.base.output) << name;
    }
  }
}

enum class Field { kInput, kOutput, kCacheRead, kCacheWrite5m, kCacheWrite1h, kReasoning };

std::optional<int64_t> Get(const TierPrices& t, Field f) {
  switch (f) {
    case Field::kInput:
      return t.input;
    case Field::kOutput:
      return t.output;
    case Field::kCacheRead:
      return t.cache_read;
    case Field::kCacheWrite5m:
      return t.cache_write_5m;
    case Field::kCacheWrite1h:
      return t.cache_write_1h;
    case Field::kReasoning:
      return t.reasoning;
  }
  return std::nullopt;
}

// Each expectation is the source list's per-token USD figure (quoted) in fUSD
// per token, i.e. the figure x 1e15, written out by hand.
TEST(ShippedPricing, PricesAreExactlyTheSourceFigures) {
  struct Case {
    const char* model;
    bool long_tier;
    Field field;
    int64_t want_fusd;
    const char* source;  // the source's key and text, for the reader
  } cases[] = {
      {"gpt-4o", false, Field::kInput, 2'500'000'000, "input_cost_per_token 2.5e-06"},
      {"gpt-4o", false, Field::kCacheRead, 1'250'000'000, "cache_read_input_token_cost 1.25e-06"},
      {"gpt-4o-2024-05-13", false, Field::kOutput, 15'000'000'000,
       "output_cost_per_token 1.5e-05"},
      {"gpt-5-nano", false, Field::kCacheRead, 5'000'000, "cache_read_input_token_cost 5e-09"},
      {"o4-mini", false, Field::kCacheRead, 275'000'000, "cache_read_input_token_cost 2.75e-07"},
      {"gpt-5.4", true, Field::kOutput, 22'500'000'000,
       "output_cost_per_token_above_272k_tokens 2.25e-05"},
      {"claude-opus-4-1", false, Field::kCacheWrite5m, 18'750'000'000,
       "cache_creation_input_token_cost 1.875e-05"},
      {"claude-opus-4-1", false, Field::kCacheWrite1h, 30'000'000'000,
       "cache_creation_input_token_cost_above_1hr 3e-05"},
      {"claude-haiku-4-5", false, Field::kCacheRead, 100'000'000,
       "cache_read_input_token_cost 1e-07"},
      {"claude-sonnet-4-5", true, Field::kCacheWrite1h, 12'000'000'000,
       "cache_creation_input_token_cost_above_1hr_above_200k_tokens 1.2e-05"},
      {"claude-sonnet-4", true, Field::kCacheRead, 600'000'000,
       "cache_read_input_token_cost_above_200k_tokens 6e-07"},
      {"gemini-2.0-flash-lite", false, Field::kCacheRead, 18'750'000,
       "cache_read_input_token_cost 1.875e-08"},
      {"gemini-2.5-pro", true, Field::kInput, 2'500'000'000,
       "input_cost_per_token_above_200k_tokens 2.5e-06"},
      {"gemini-2.5-flash", false, Field::kReasoning, 2'500'000'000,
       "output_cost_per_reasoning_token 2.5e-06"},
      {"vertex_ai/gemini-2.0-flash-001", false, Field::kCacheRead, 37'500'000,
       "cache_read_input_token_cost 3.75e-08"},
      {"deepseek-chat", false, Field::kCacheRead, 28'000'000,
       "cache_read_input_token_cost 2.8e-08"},
      {"deepseek-v4-pro", false, Field::kCacheRead, 3'625'000,
       "cache_read_input_token_cost 3.625e-09"},
      {"mistral-large-latest", false, Field::kInput, 500'000'000, "input_cost_per_token 5e-07"},
      {"groq/llama-3.3-70b-versatile", false, Field::kOutput, 790'000'000,
       "output_cost_per_token 7.9e-07"},
      {"together_ai/meta-llama/Llama-3.3-70B-Instruct-Turbo", false, Field::kInput, 880'000'000,
       "input_cost_per_token 8.8e-07"},
      {"fireworks_ai/accounts/fireworks/models/gpt-oss-120b", false, Field::kCacheRead,
       15'000'000, "cache_read_input_token_cost 1.5e-08"},
  };
  const PricingTable& table = Shipped();
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.model) + " " + c.source);
    Result<PricingTable::Match> m = table.Find(c.model);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    ASSERT_EQ(m->model, c.model);
    const ModelPrice& p = *m->price;
    if (c.long_tier) ASSERT_TRUE(p.long_context.has_value());
    std::optional<int64_t> got = Get(c.long_tier ? *p.long_context : p.base, c.field);
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(*got, c.want_fusd);
  }
}

TEST(ShippedPricing, LongPromptsPayTheLongContextRate) {
  const PricingTable& table = Shipped();
  struct Case {
    const char* model;
    Usage usage;
    bool long_tier;
    int64_t want_nanousd;
  } cases[] = {
      // 250k input at $6/M + 1k output at $22.50/M.
      {"claude-sonnet-4-20250514", {.input = 250'000, .output = 1'000}, true, 1'522'500'000},
      // Exactly 200k is not above the threshold: $3/M and $15/M.
      {"claude-sonnet-4", {.input = 200'000, .output = 1'000}, false, 615'000'000},
      // Cache reads count toward the prompt size: 150k input + 100k cached is
      // 250k, so $6/M input, $0.60/M cache read, $22.50/M output.
      {"anthropic/claude-sonnet-4-5",
       {.input = 150'000, .cache_read = 100'000, .output = 1'000},
       true,
       982'500'000},
      // 250k input at $2.50/M + 1k output at $15/M.
      {"gemini/gemini-2.5-pro", {.input = 250'000, .output = 1'000}, true, 640'000'000},
      // 100k input at $1.25/M + 1k output at $10/M.
      {"gemini-2.5-pro", {.input = 100'000, .output = 1'000}, false, 135'000'000},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.model);
    Result<Cost> cost = PriceCall(table, c.model, c.usage);
    ASSERT_TRUE(cost.ok()) << cost.status().ToString();
    EXPECT_EQ(cost->long_context_tier, c.long_tier);
    EXPECT_EQ(cost->total_nanousd, c.want_nanousd);
  }
}

TEST(ShippedPricing, DatedAndPrefixedNamesResolve) {
  struct Case {
    const char* query;
    const char* want;  // nullptr: unpriced
  } cases[] = {
      {"gpt-4o-2024-08-06", "gpt-4o"},
      {"openai/gpt-4o-2024-11-20", "gpt-4o"},
      {"gpt-4o-2024-05-13", "gpt-4o-2024-05-13"},  // priced on its own
      {"azure/gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"},
      {"gpt-5-mini-2030-01-01", "gpt-5-mini"},  // an unlisted dated version
      {"claude-sonnet-4-20250514", "claude-sonnet-4"},
      {"anthropic/claude-sonnet-4-5-20250929", "claude-sonnet-4-5"},
      {"claude-3-7-sonnet-20250219", "claude-3-7-sonnet"},
      {"claude-3-5-haiku-latest", "claude-3-5-haiku"},
      {"claude-opus-4-1-20250805", "claude-opus-4-1"},
      {"openrouter/anthropic/claude-opus-4.1", "claude-opus-4-1"},
      {"claude-haiku-4-5-20251001", "claude-haiku-4-5"},
      {"gemini/gemini-2.5-pro", "gemini-2.5-pro"},
      {"vertex_ai/gemini-2.5-flash", "gemini-2.5-flash"},
      {"gemini/gemini-2.0-flash-001", "gemini-2.0-flash"},
      {"vertex_ai/gemini-2.0-flash-001", "vertex_ai/gemini-2.0-flash-001"},
      {"mistral/mistral-large-2512", "mistral-large-latest"},
      {"mistral/codestral-latest", "codestral-latest"},
      {"deepseek/deepseek-reasoner", "deepseek-reasoner"},
      {"groq/llama-3.3-70b-versatile", "groq/llama-3.3-70b-versatile"},
      // A host's price never stands in for another host or a bare name.
      {"llama-3.3-70b-versatile", nullptr},
      {"openrouter/openai/gpt-oss-120b", nullptr},
  };
  const PricingTable& table = Shipped();
  for (const Case& c : cases) {
    Result<PricingTable::Match> m = table.Find(c.query);
    if (c.want == nullptr) {
      EXPECT_TRUE(m.status().IsNotFound()) << c.query << " resolved to " << m->model;
      continue;
    }
    ASSERT_TRUE(m.ok()) << c.query << ": " << m.status().ToString();
    EXPECT_EQ(m->model, c.want) << c.query;
  }
}

}  // namespace
}  // namespace bastion
