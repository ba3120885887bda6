// Tests for bastion/cost.h: exact prices, usage normalization, lookup, loaders.
#include "bastion/cost.h"

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "test_util.h"

namespace bastion {
namespace {

// $1 per 1M tokens, in the table's unit (fUSD per token).
constexpr int64_t kUsdPerMillion = 1'000'000'000;  // $1 / 1M tokens in fUSD/token

const char* kPricesYaml = R"(models:
  gpt-4o:
    input: 2.50          # USD per 1M tokens
    output: 10.00
    cache_read: 1.25
    aliases: [gpt-4o-2024-08-06, gpt-4o-2024-11-20]
  o3-mini:
    input: 1.10
    output: 4.40
    cache_read: 0.55
  claude-sonnet-4-5:
    input: 3.00
    output: 15.00
    cache_read: 0.30
    cache_write_5m: 3.75
    cache_write_1h: 6.00
    long_context: {above_input_tokens: 200000, input: 6.00, output: 22.50, cache_read: 0.60, cache_write_5m: 7.50, cache_write_1h: 12.00}
  gemini-2.5-flash:
    input: 0.30
    output: 2.50
    cache_read: 0.075
  cheap:
    input: 0.0375
    output: 0.15
)";

PricingTable LoadTable() {
  Result<PricingTable> t = PricingTable::FromYaml(kPricesYaml, "prices.yaml");
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return t.ok() ? std::move(*t) : PricingTable();
}

// --- exact decimals ---

TEST(CostDecimal, ParsesExactlyFromText) {
  struct Case {
    const char* text;
    int scale;
    bool round;
    int64_t want;
  } cases[] = {
      {"2.50", 9, false, 2'500'000'000},
      {"0.0375", 9, false, 37'500'000},
      {"0.075", 9, false, 75'000'000},
      {"3", 9, false, 3'000'000'000},
      {".5", 9, false, 500'000'000},
      {"0", 9, false, 0},
      {"0.000", 9, false, 0},
      {"2.5000000000000", 9, false, 2'500'000'000},  // trailing zeros are not precision
      {"2.5e-06", 15, false, 2'500'000'000},
      {"1E-7", 15, false, 100'000'000},
      {"3.75E+00", 9, false, 3'750'000'000},
      {"0.0000000375", 15, false, 37'500'000},
      {"9223372036854775807", 0, false, INT64_MAX},
      // Rounding half to even at the last kept digit.
      {"0.0000000005", 9, true, 0},
      {"0.0000000015", 9, true, 2},
      {"0.0000000025", 9, true, 2},
      {"0.00000000250001", 9, true, 3},
      {"0.0000000024999", 9, true, 2},
      {"1.0000000000000001e-07", 15, true, 100'000'000},
      {"8.333333333333334e-08", 15, true, 83'333'333},
  };
  for (const Case& c : cases) {
    Result<int64_t> v = ParseScaledDecimal(c.text, c.scale, c.round);
    ASSERT_TRUE(v.ok()) << c.text << ": " << v.status().ToString();
    EXPECT_EQ(*v, c.want) << c.text;
  }
}

TEST(CostDecimal, RejectsNonDecimalsNegativesOverflowAndExcessPrecision) {
  struct Case {
    const char* text;
    const char* message_part;
  } cases[] = {
      {"", "not a decimal"},        {"-1", "negative"},          {"+1", "not a decimal"},
      {"abc", "not a decimal"},     {"1e", "not a decimal"},     {"1.2.3", "not a decimal"},
      {"nan", "not a decimal"},     {".inf", "not a decimal"},   {"0x10", "not a decimal"},
      {"1e30", "too large"},        {"1 ", "not a decimal"},     {"true", "not a decimal"},
      {"0.0000000001", "more than 9 decimal places"},
      {"9223372036.854775808", "too large"},
  };
  for (const Case& c : cases) {
    Result<int64_t> v = ParseScaledDecimal(c.text, 9, false);
    ASSERT_FALSE(v.ok()) << "'" << c.text << "' parsed as " << *v;
    EXPECT_TRUE(v.status().IsInvalidArgument()) << c.text;
    EXPECT_NE(v.status().message().find(c.message_part), std::string::npos)
        << c.text << ": " << v.status().message();
  }
}

TEST(CostRounding, RoundsHalfToEvenAtTheNanoUsd) {
  struct Case {
    int64_t fusd, nanousd;
  } cases[] = {{0, 0},          {499'999, 0},   {500'000, 0},   {500'001, 1},
               {1'500'000, 2},  {2'500'000, 2}, {2'500'001, 3}, {37'500'000, 38},
               {112'500'000, 112}, {INT64_MAX, INT64_MAX / 1'000'000 + 1}};
  for (const Case& c : cases) EXPECT_EQ(RoundFusdToNanousd(c.fusd), c.nanousd) << c.fusd;
}

// --- usage normalization ---

TEST(CostUsage, EachProviderShapeNormalizes) {
  struct Case {
    const char* name;
    Result<Usage> got;
    Usage want;
  };
  OpenAIUsage openai{.prompt_tokens = 1200, .completion_tokens = 300, .cached_tokens = 1000,
                     .reasoning_tokens = 100};
  AnthropicUsage anthropic{.input_tokens = 100, .output_tokens = 500,
                           .cache_read_input_tokens = 2000, .cache_creation_input_tokens = 3000,
                           .ephemeral_5m_input_tokens = 1000, .ephemeral_1h_input_tokens = 2000};
  AnthropicUsage anthropic_unsplit{.input_tokens = 100, .output_tokens = 500,
                                   .cache_read_input_tokens = 2000,
                                   .cache_creation_input_tokens = 3000};
  GeminiUsage gemini{.prompt_token_count = 1000, .candidates_token_count = 200,
                     .cached_content_token_count = 400, .thoughts_token_count = 300};
  LangChainUsage langchain{.input_tokens = 5100, .output_tokens = 500, .cache_read = 2000,
                           .cache_creation = 3000, .ephemeral_5m_input_tokens = 1000,
                           .ephemeral_1h_input_tokens = 2000};
  Case cases[] = {
      {"openai", NormalizeOpenAI(openai), Usage{200, 1000, 0, 0, 200, 100}},
      {"anthropic split 5m/1h", NormalizeAnthropic(anthropic),
       Usage{100, 2000, 1000, 2000, 500, 0}},
      {"anthropic unsplit", NormalizeAnthropic(anthropic_unsplit),
       Usage{100, 2000, 3000, 0, 500, 0}},
      {"gemini", NormalizeGemini(gemini), Usage{600, 400, 0, 0, 200, 300}},
      {"langchain", NormalizeLangChain(langchain), Usage{100, 2000, 1000, 2000, 500, 0}},
      {"openai empty", NormalizeOpenAI({}), Usage{}},
  };
  for (const Case& c : cases) {
    ASSERT_TRUE(c.got.ok()) << c.name << ": " << c.got.status().ToString();
    EXPECT_EQ(*c.got, c.want) << c.name;
  }
}

// The same call reported by different layers (provider response, its streamed
// final usage chunk, LangChain's usage_metadata) must normalize identically.
TEST(CostUsage, EquivalentReportsGiveTheSameUsage) {
  struct Case {
    const char* name;
    Result<Usage> a, b;
  } cases[] = {
      {"openai vs langchain(openai)",
       NormalizeOpenAI({.prompt_tokens = 1200, .completion_tokens = 300, .cached_tokens = 1000,
                        .reasoning_tokens = 100}),
       NormalizeLangChain({.input_tokens = 1200, .output_tokens = 300, .cache_read = 1000,
                           .reasoning = 100})},
      {"anthropic vs langchain(anthropic)",
       NormalizeAnthropic({.input_tokens = 100, .output_tokens = 500,
                           .cache_read_input_tokens = 2000, .cache_creation_input_tokens = 3000,
                           .ephemeral_5m_input_tokens = 1000, .ephemeral_1h_input_tokens = 2000}),
       NormalizeLangChain({.input_tokens = 5100, .output_tokens = 500, .cache_read = 2000,
                           .cache_creation = 3000, .ephemeral_5m_input_tokens = 1000,
                           .ephemeral_1h_input_tokens = 2000})},
      {"gemini vs langchain(gemini)",
       NormalizeGemini({.prompt_token_count = 1000, .candidates_token_count = 200,
                        .cached_content_token_count = 400, .thoughts_token_count = 300}),
       NormalizeLangChain({.input_tokens = 1000, .output_tokens = 500, .cache_read = 400,
                           .reasoning = 300})},
      {"gemini vs openai",
       NormalizeGemini({.prompt_token_count = 1000, .candidates_token_count = 200,
                        .cached_content_token_count = 400, .thoughts_token_count = 300}),
       NormalizeOpenAI({.prompt_tokens = 1000, .completion_tokens = 500, .cached_tokens = 400,
                        .reasoning_tokens = 300})},
  };
  for (const Case& c : cases) {
    ASSERT_TRUE(c.a.ok()) << c.name << ": " << c.a.status().ToString();
    ASSERT_TRUE(c.b.ok()) << c.name << ": " << c.b.status().ToString();
    EXPECT_EQ(*c.a, *c.b) << c.name;
  }
}

TEST(CostUsage, RejectsBadValuesNamingTheField) {
  struct Case {
    const char* name;
    Result<Usage> got;
    const char* message_part;
  } cases[] = {
      {"openai cached > prompt", NormalizeOpenAI({.prompt_tokens = 1000, .cached_tokens = 1200}),
       "prompt_tokens_details.cached_tokens (1200) exceeds prompt_tokens (1000)"},
      {"openai reasoning > completion",
       NormalizeOpenAI({.completion_tokens = 10, .reasoning_tokens = 11}),
       "completion_tokens_details.reasoning_tokens (11) exceeds completion_tokens (10)"},
      {"openai negative", NormalizeOpenAI({.completion_tokens = -1}),
       "completion_tokens is negative"},
      {"anthropic negative", NormalizeAnthropic({.cache_read_input_tokens = -5}),
       "cache_read_input_tokens is negative"},
      {"anthropic split mismatch",
       NormalizeAnthropic({.cache_creation_input_tokens = 10, .ephemeral_5m_input_tokens = 3,
                           .ephemeral_1h_input_tokens = 3}),
       "!= cache_creation_input_tokens (10)"},
      {"gemini cached > prompt",
       NormalizeGemini({.prompt_token_count = 5, .cached_content_token_count = 6}),
       "cachedContentTokenCount (6) exceeds promptTokenCount (5)"},
      {"gemini negative thoughts", NormalizeGemini({.thoughts_token_count = -1}),
       "thoughtsTokenCount is negative"},
      {"langchain cache > input",
       NormalizeLangChain({.input_tokens = 10, .cache_read = 6, .cache_creation = 6}),
       "cache_read + cache_creation (12) exceeds input_tokens (10)"},
      {"langchain reasoning > output", NormalizeLangChain({.output_tokens = 1, .reasoning = 2}),
       "output_token_details.reasoning (2) exceeds output_tokens (1)"},
      {"implausibly large", NormalizeOpenAI({.prompt_tokens = INT64_MAX}), "implausibly large"},
  };
  for (const Case& c : cases) {
    ASSERT_FALSE(c.got.ok()) << c.name;
    EXPECT_TRUE(c.got.status().IsInvalidArgument()) << c.name;
    EXPECT_NE(c.got.status().message().find(c.message_part), std::string::npos)
        << c.name << ": " << c.got.status().message();
  }
}

// --- pricing calls ---

TEST(CostPriceCall, ExactCostForEachProviderShape) {
  PricingTable table = LoadTable();
  struct Case {
    const char* name;
    const char* model;
    Result<Usage> usage;
    int64_t want_nanousd;
  } cases[] = {
      // 200 in @1.10 + 1000 cached @0.55 + 200 out @4.40 + 100 reasoning @4.40 (per 1M)
      {"openai cached+reasoning", "o3-mini",
       NormalizeOpenAI({.prompt_tokens = 1200, .completion_tokens = 300, .cached_tokens = 1000,
                        .reasoning_tokens = 100}),
       2'090'000},
      // 100 @3 + 2000 @0.30 + 1000 @3.75 + 2000 @6 + 500 @15 = $0.02415
      {"anthropic cache writes 5m/1h", "claude-sonnet-4-5",
       NormalizeAnthropic({.input_tokens = 100, .output_tokens = 500,
                           .cache_read_input_tokens = 2000, .cache_creation_input_tokens = 3000,
                           .ephemeral_5m_input_tokens = 1000, .ephemeral_1h_input_tokens = 2000}),
       24'150'000},
      // 600 @0.30 + 400 @0.075 + (200 + 300 thoughts) @2.50 = $0.00146
      {"gemini thoughts", "gemini-2.5-flash",
       NormalizeGemini({.prompt_token_count = 1000, .candidates_token_count = 200,
                        .cached_content_token_count = 400, .thoughts_token_count = 300}),
       1'460'000},
      {"langchain usage_metadata (anthropic)", "claude-sonnet-4-5",
       NormalizeLangChain({.input_tokens = 5100, .output_tokens = 500, .cache_read = 2000,
                           .cache_creation = 3000, .ephemeral_5m_input_tokens = 1000,
                           .ephemeral_1h_input_tokens = 2000}),
       24'150'000},
      {"langchain usage_metadata (openai)", "o3-mini",
       NormalizeLangChain({.input_tokens = 1200, .output_tokens = 300, .cache_read = 1000,
                           .reasoning = 100}),
       2'090'000},
      // 1 token @ $0.0375/1M = 37.5 nUSD -> 38 (half to even); 3 -> 112.5 -> 112.
      {"half-even up", "cheap", Usage{.input = 1}, 38},
      {"half-even down", "cheap", Usage{.input = 3}, 112},
      {"zero usage", "gpt-4o", Usage{}, 0},
  };
  for (const Case& c : cases) {
    ASSERT_TRUE(c.usage.ok()) << c.name << ": " << c.usage.status().ToString();
    Result<Cost> cost = PriceCall(table, c.model, *c.usage);
    ASSERT_TRUE(cost.ok()) << c.name << ": " << cost.status().ToString();
    EXPECT_EQ(cost->total_nanousd, c.want_nanousd) << c.name;
    EXPECT_EQ(cost->input_fusd + cost->cache_read_fusd + cost->cache_write_5m_fusd +
                  cost->cache_write_1h_fusd + cost->output_fusd + cost->reasoning_fusd,
              cost->total_fusd)
        << c.name;
    EXPECT_FALSE(cost->long_context_tier) << c.name;
  }
}

TEST(CostPriceCall, BreakdownIsExactPerComponent) {
  PricingTable table = LoadTable();
  Result<Cost> cost =
      PriceCall(table, "claude-sonnet-4-5", Usage{100, 2000, 1000, 2000, 500, 7});
  ASSERT_TRUE(cost.ok()) << cost.status().ToString();
  EXPECT_EQ(cost->resolved_model, "claude-sonnet-4-5");
  EXPECT_EQ(cost->input_fusd, 100 * 3 * kUsdPerMillion);
  EXPECT_EQ(cost->cache_read_fusd, 2000 * 300'000'000LL);
  EXPECT_EQ(cost->cache_write_5m_fusd, 1000 * 3'750'000'000LL);
  EXPECT_EQ(cost->cache_write_1h_fusd, 2000 * 6 * kUsdPerMillion);
  EXPECT_EQ(cost->output_fusd, 500 * 15 * kUsdPerMillion);
  EXPECT_EQ(cost->reasoning_fusd, 7 * 15 * kUsdPerMillion);  // reasoning defaults to output
}

TEST(CostPriceCall, FallbackPricesWhenCacheFieldsAreUnset) {
  PricingTable table = LoadTable();
  // "cheap" lists no cache prices: reads and writes bill at the input price.
  Result<Cost> cost = PriceCall(table, "cheap", Usage{0, 2, 2, 2, 0, 0});
  ASSERT_TRUE(cost.ok()) << cost.status().ToString();
  EXPECT_EQ(cost->prices.cache_read, 37'500'000);
  EXPECT_EQ(cost->prices.cache_write_5m, 37'500'000);
  EXPECT_EQ(cost->prices.cache_write_1h, 37'500'000);
  EXPECT_EQ(cost->total_nanousd, 225);  // 6 x 37.5
}

TEST(CostPriceCall, LongContextTierSwitchesStrictlyAboveTheThreshold) {
  PricingTable table = LoadTable();
  struct Case {
    const char* name;
    Usage usage;
    bool long_tier;
    int64_t want_nanousd;
  } cases[] = {
      // 100000 @3 + 50000 @0.30 + 50000 @3.75 + 1000 out @15 = $0.5175
      {"exactly 200000 prompt tokens", Usage{100000, 50000, 50000, 0, 1000, 0}, false,
       517'500'000},
      // 100001 @6 + 50000 @0.60 + 50000 @7.50 + 1000 out @22.50 = $1.027506
      {"200001 prompt tokens", Usage{100001, 50000, 50000, 0, 1000, 0}, true, 1'027'506'000},
      // The tier counts cache reads and writes too, and applies to every token.
      {"cache tokens push over", Usage{1, 100000, 0, 100000, 0, 0}, true,
       6'000 + 60'000'000 + 1'200'000'000},
      {"output does not count", Usage{200000, 0, 0, 0, 500000, 0}, false,
       600'000'000 + 7'500'000'000},
  };
  for (const Case& c : cases) {
    Result<Cost> cost = PriceCall(table, "claude-sonnet-4-5", c.usage);
    ASSERT_TRUE(cost.ok()) << c.name << ": " << cost.status().ToString();
    EXPECT_EQ(cost->long_context_tier, c.long_tier) << c.name;
    EXPECT_EQ(cost->total_nanousd, c.want_nanousd) << c.name;
  }
}

TEST(CostPriceCall, TenMillionCallsSumWithoutDrift) {
  PricingTable table = LoadTable();
  // Per-call costs that round (37.5 nUSD -> 38) and decimals that are inexact
  // in binary floating point ($0.15/1M) both add up exactly.
  const Usage usages[] = {Usage{.input = 1}, Usage{.output = 1}, Usage{7, 3, 0, 0, 11, 0}};
  int64_t per_call[3];
  for (int k = 0; k < 3; ++k) {
    Result<Cost> one = PriceCall(table, "cheap", usages[k]);
    ASSERT_TRUE(one.ok()) << one.status().ToString();
    per_call[k] = one->total_nanousd;
  }
  constexpr int64_t kCalls = 10'000'000;
  int64_t sum[3] = {0, 0, 0};
  for (int64_t i = 0; i < kCalls; ++i) {
    const int k = static_cast<int>(i % 3);
    Result<Cost> c = PriceCall(table, "cheap", usages[k]);
    ASSERT_TRUE(c.ok()) << i;
    sum[k] += c->total_nanousd;
  }
  const int64_t counts[3] = {(kCalls + 2) / 3, (kCalls + 1) / 3, kCalls / 3};
  for (int k = 0; k < 3; ++k) EXPECT_EQ(sum[k], per_call[k] * counts[k]) << "usage " << k;
  EXPECT_EQ(per_call[0], 38);
  EXPECT_EQ(per_call[1], 150);
}

// --- lookup ---

TEST(CostLookup, ResolvesAliasesDatesAndProviderPrefixes) {
  PricingTable table = LoadTable();
  struct Case {
    const char* query;
    const char* want;  // nullptr: unpriced
  } cases[] = {
      {"gpt-4o", "gpt-4o"},
      {"gpt-4o-2024-08-06", "gpt-4o"},               // alias
      {"gpt-4o-2024-05-13", "gpt-4o"},               // unlisted dated version
      {"openai/gpt-4o", "gpt-4o"},                   // provider prefix
      {"openai/gpt-4o-2024-11-20", "gpt-4o"},        // prefix + alias
      {"azure/openai/gpt-4o-2024-05-13", "gpt-4o"},  // two prefixes + date
      {"anthropic/claude-sonnet-4-5", "claude-sonnet-4-5"},
      {"claude-sonnet-4-5-20250929", "claude-sonnet-4-5"},  // YYYYMMDD
      {"anthropic/claude-sonnet-4-5-20250929", "claude-sonnet-4-5"},
      {"gpt-4o-mini", nullptr},        // never a prefix match
      {"gpt-4", nullptr},
      {"GPT-4O", nullptr},             // case-sensitive
      {"gpt-4o-2024-13-45", nullptr},  // not a date
      {"gpt-4o-20241", nullptr},
      {"", nullptr},
      {"openai/", nullptr},
  };
  for (const Case& c : cases) {
    Result<PricingTable::Match> m = table.Find(c.query);
    if (c.want == nullptr) {
      ASSERT_FALSE(m.ok()) << "'" << c.query << "' resolved to " << m->model;
      EXPECT_TRUE(m.status().IsNotFound()) << c.query;
      continue;
    }
    ASSERT_TRUE(m.ok()) << c.query << ": " << m.status().ToString();
    EXPECT_EQ(m->model, c.want) << c.query;
  }
}

TEST(CostLookup, UnknownModelIsUnpricedNotZero) {
  PricingTable table = LoadTable();
  Result<Cost> cost = PriceCall(table, "mystery-model", Usage{.input = 10});
  ASSERT_FALSE(cost.ok());
  EXPECT_TRUE(cost.status().IsNotFound());
  EXPECT_EQ(cost.status().message(), "model 'mystery-model' has no price");
  EXPECT_TRUE(PriceCall(PricingTable(), "gpt-4o", Usage{}).status().IsNotFound());
}

TEST(CostLookup, ListedDatedVersionWinsOverItsBase) {
  PricingTable table = LoadTable();
  ModelPrice old;
  old.base.input = 5 * kUsdPerMillion;
  old.base.output = 15 * kUsdPerMillion;
  table.Set("gpt-4o-2024-05-13", old);
  Result<PricingTable::Match> m = table.Find("openai/gpt-4o-2024-05-13");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->model, "gpt-4o-2024-05-13");
  EXPECT_EQ(m->price->base.input, 5 * kUsdPerMillion);
}

TEST(CostLookup, MergeLetsTheOtherTableWin) {
  PricingTable base = LoadTable();
  Result<PricingTable> over = PricingTable::FromYaml(
      "models:\n  gpt-4o:\n    input: 2.00\n    output: 8.00\n    aliases: [my-4o]\n", "o.yaml");
  ASSERT_TRUE(over.ok()) << over.status().ToString();
  base.MergeFrom(*over);
  Result<PricingTable::Match> m = base.Find("my-4o");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->price->base.input, 2 * kUsdPerMillion);
  EXPECT_TRUE(base.Find("gpt-4o-2024-08-06").ok());  // old aliases survive
  EXPECT_TRUE(base.Find("o3-mini").ok());
}

// --- loaders ---

TEST(CostYaml, LoadsEveryField) {
  PricingTable table = LoadTable();
  EXPECT_EQ(table.size(), 5u);
  Result<PricingTable::Match> m = table.Find("claude-sonnet-4-5");
  ASSERT_TRUE(m.ok());
  const ModelPrice& p = *m->price;
  EXPECT_EQ(p.base.input, 3'000'000'000);
  EXPECT_EQ(p.base.cache_write_5m, 3'750'000'000);
  EXPECT_EQ(p.base.cache_write_1h, 6'000'000'000);
  ASSERT_TRUE(p.long_context.has_value());
  EXPECT_EQ(p.long_context_above_input_tokens, 200000);
  EXPECT_EQ(p.long_context->output, 22'500'000'000);
  EXPECT_EQ(p.long_context->cache_write_1h, 12'000'000'000);
  EXPECT_FALSE(p.base.reasoning.has_value());
}

TEST(CostYaml, ErrorsNameFileLineAndField) {
  struct Case {
    const char* name;
    const char* yaml;
    const char* message_part;
  } cases[] = {
      {"syntax", "models:\n  gpt-4o: {input: 2.5\n", "prices.yaml:3:"},
      {"unknown key", "models:\n  gpt-4o:\n    input: 2.5\n    outptu: 10\n",
       "prices.yaml:4:5: models.gpt-4o.outptu: unknown key"},
      {"missing output", "models:\n  gpt-4o:\n    input: 2.5\n",
       "prices.yaml:3:5: models.gpt-4o: missing 'output' price"},
      {"bad number", "models:\n  gpt-4o:\n    input: 2.5x\n    output: 1\n",
       "prices.yaml:3:12: models.gpt-4o.input: '2.5x' is not a decimal number"},
      {"negative", "models:\n  gpt-4o:\n    input: 1\n    output: -1\n",
       "prices.yaml:4:13: models.gpt-4o.output: '-1' is negative"},
      {"too precise", "models:\n  m:\n    input: 1.0000000001\n    output: 1\n",
       "prices.yaml:3:12: models.m.input: '1.0000000001' has more than 9 decimal places"},
      {"below 1e-15 USD per token", "models:\n  m:\n    input: 1\n    output: 0.0000000004\n",
       "prices.yaml:4:13: models.m.output: price '0.0000000004' is below the smallest price a "
       "table holds, 1e-15 USD per token"},
      {"a price key twice", "models:\n  m:\n    input: 1\n    output: 1\n    input: 0.5\n",
       "prices.yaml:5:5: models.m.input: key listed twice"},
      {"a long_context key twice",
       "models:\n  m:\n    input: 1\n    output: 1\n    long_context:\n"
       "      above_input_tokens: 5\n      input: 2\n      output: 2\n      output: 3\n",
       "prices.yaml:9:7: models.m.long_context.output: key listed twice"},
      {"models twice", "models:\n  a: {input: 1, output: 1}\nmodels:\n  b: {input: 1, output: 1}\n",
       "prices.yaml:3:1: models: key listed twice"},
      {"price is a list", "models:\n  m:\n    input: [1]\n    output: 1\n",
       "prices.yaml:3:12: models.m.input: expected a number"},
      {"alias is a model", "models:\n  a:\n    input: 1\n    output: 1\n  b:\n    input: 1\n"
                           "    output: 1\n    aliases: [a]\n",
       "prices.yaml:8:15: models.b.aliases: alias 'a' is already a model name"},
      {"alias twice", "models:\n  a:\n    input: 1\n    output: 1\n    aliases: [x]\n  b:\n"
                      "    input: 1\n    output: 1\n    aliases: [x]\n",
       "prices.yaml:9:15: models.b.aliases: alias 'x' already names model 'a'"},
      {"long_context without threshold",
       "models:\n  m:\n    input: 1\n    output: 1\n    long_context: {input: 2, output: 2}\n",
       "prices.yaml:5:19: models.m.long_context: missing 'above_input_tokens'"},
      {"long_context unknown key",
       "models:\n  m:\n    input: 1\n    output: 1\n    long_context:\n"
       "      above_input_tokens: 5\n"
       "      input: 2\n      output: 2\n      cache_red: 1\n",
       "prices.yaml:9:7: models.m.long_context.cache_red: unknown key"},
      {"model twice", "models:\n  m: {input: 1, output: 1}\n  m: {input: 2, output: 2}\n",
       "prices.yaml:3:3: models.m: model listed twice"},
      {"unknown top-level key", "model:\n  m: {}\n", "prices.yaml:1:1: model: unknown key"},
      {"not a map", "- 1\n", "prices.yaml:1:1: (top level): expected a map"},
  };
  for (const Case& c : cases) {
    Result<PricingTable> t = PricingTable::FromYaml(c.yaml, "prices.yaml");
    ASSERT_FALSE(t.ok()) << c.name;
    EXPECT_TRUE(t.status().IsInvalidArgument()) << c.name;
    EXPECT_NE(t.status().message().find(c.message_part), std::string::npos)
        << c.name << ": " << t.status().message();
  }
}

TEST(CostYaml, FromFileReportsThePath) {
  testing::TempDir dir;
  const std::string path = dir.Sub("prices.yaml");
  {
    std::ofstream out(path);
    out << "models:\n  m:\n    input: 1\n";
  }
  Result<PricingTable> t = PricingTable::FromYamlFile(path);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find(path + ":3:5:"), std::string::npos)
      << t.status().message();
  EXPECT_TRUE(PricingTable::FromYamlFile(dir.Sub("missing.yaml")).status().IsIOError());
}

const char* kLiteLlmJson = R"({
  "sample_spec": {
    "max_tokens": "LEGACY parameter. set to max_output_tokens if provider specifies it.",
    "input_cost_per_token": 0.0000,
    "output_cost_per_token": 0.000,
    "litellm_provider": "one of https://docs.litellm.ai/docs/providers",
    "mode": "one of: chat, embedding, completion, image_generation, audio_transcription"
  },
  "gpt-4o": {
    "max_tokens": 16384,
    "max_input_tokens": 128000,
    "input_cost_per_token": 2.5e-06,
    "output_cost_per_token": 1e-05,
    "cache_read_input_token_cost": 1.25e-06,
    "litellm_provider": "openai",
    "mode": "chat",
    "supports_vision": true
  },
  "o3-mini": {
    "input_cost_per_token": 1.1e-06,
    "output_cost_per_token": 4.4e-06,
    "cache_read_input_token_cost": 5.5e-07,
    "litellm_provider": "openai",
    "mode": "chat",
    "supports_reasoning": true
  },
  "claude-sonnet-4-5": {
    "input_cost_per_token": 3e-06,
    "output_cost_per_token": 1.5e-05,
    "cache_read_input_token_cost": 3e-07,
    "cache_creation_input_token_cost": 3.75e-06,
    "cache_creation_input_token_cost_above_1hr": 6e-06,
    "input_cost_per_token_above_200k_tokens": 6e-06,
    "output_cost_per_token_above_200k_tokens": 2.25e-05,
    "cache_read_input_token_cost_above_200k_tokens": 6e-07,
    "cache_creation_input_token_cost_above_200k_tokens": 7.5e-06,
    "cache_creation_input_token_cost_above_1hr_above_200k_tokens": 1.2e-05,
    "input_cost_per_token_above_200k_tokens_priority": 1e-05,
    "litellm_provider": "anthropic",
    "mode": "chat"
  },
  "gemini/gemini-2.5-flash": {
    "input_cost_per_token": 3e-07,
    "output_cost_per_token": 2.5e-06,
    "output_cost_per_reasoning_token": 2.5e-06,
    "cache_read_input_token_cost": 7.5e-08,
    "litellm_provider": "gemini"
  },
  "gemini/gemini-1.5-pro": {
    "input_cost_per_token": 1.25e-06,
    "input_cost_per_token_above_128k_tokens": 2.5e-06,
    "output_cost_per_token": 5e-06,
    "output_cost_per_token_above_128k_tokens": 1e-05
  },
  "two-tiers": {
    "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06,
    "input_cost_per_token_above_128k_tokens": 2e-06,
    "input_cost_per_token_above_256k_tokens": 3e-06
  },
  "dall-e-3": {
    "input_cost_per_pixel": 4.0054321e-08,
    "output_cost_per_pixel": 0.0,
    "litellm_provider": "openai",
    "mode": "image_generation"
  },
  "tiny": {"input_cost_per_token": 0.0000000375, "output_cost_per_token": 1.0000000000000001e-07,
           "cache_read_input_token_cost": null}
})";

TEST(CostLiteLlm, ParsesPricesExactlyFromTheirText) {
  Result<PricingTable> t = PricingTable::FromLiteLlmJson(kLiteLlmJson, "litellm.json");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  // sample_spec, the per-pixel model and the model with two tiers are skipped.
  EXPECT_EQ(t->size(), 6u);
  struct Case {
    const char* model;
    int64_t input, output;
    std::optional<int64_t> cache_read;
  } cases[] = {
      {"gpt-4o", 2'500'000'000, 10'000'000'000, 1'250'000'000},
      {"o3-mini", 1'100'000'000, 4'400'000'000, 550'000'000},
      {"gemini/gemini-2.5-flash", 300'000'000, 2'500'000'000, 75'000'000},
      {"tiny", 37'500'000, 100'000'000, std::nullopt},
  };
  for (const Case& c : cases) {
    Result<PricingTable::Match> m = t->Find(c.model);
    ASSERT_TRUE(m.ok()) << c.model;
    EXPECT_EQ(m->price->base.input, c.input) << c.model;
    EXPECT_EQ(m->price->base.output, c.output) << c.model;
    EXPECT_EQ(m->price->base.cache_read, c.cache_read) << c.model;
  }
  EXPECT_TRUE(t->Find("dall-e-3").status().IsNotFound());
  EXPECT_TRUE(t->Find("two-tiers").status().IsNotFound());
  Result<PricingTable::Match> pro = t->Find("gemini/gemini-1.5-pro");
  ASSERT_TRUE(pro.ok());
  EXPECT_EQ(pro->price->long_context_above_input_tokens, 128000);
  ASSERT_TRUE(pro->price->long_context.has_value());
  EXPECT_EQ(pro->price->long_context->input, 2'500'000'000);
  EXPECT_EQ(pro->price->long_context->output, 10'000'000'000);
  Result<PricingTable::Match> claude = t->Find("claude-sonnet-4-5");
  ASSERT_TRUE(claude.ok());
  ASSERT_TRUE(claude->price->long_context.has_value());
  EXPECT_EQ(claude->price->long_context->input, 6'000'000'000);  // not the _priority key
  EXPECT_EQ(claude->price->long_context->cache_write_1h, 12'000'000'000);
  EXPECT_TRUE(t->Find("sample_spec").status().IsNotFound());
}

// The same calls priced from LiteLLM's data and from our YAML cost the same.
TEST(CostLiteLlm, PricesMatchTheYamlTable) {
  Result<PricingTable> lite = PricingTable::FromLiteLlmJson(kLiteLlmJson, "litellm.json");
  ASSERT_TRUE(lite.ok()) << lite.status().ToString();
  PricingTable yaml = LoadTable();
  struct Case {
    const char* lite_model;
    const char* yaml_model;
    Usage usage;
  } cases[] = {
      {"gpt-4o", "gpt-4o", Usage{200, 1000, 0, 0, 300, 0}},
      {"o3-mini", "o3-mini", Usage{200, 1000, 0, 0, 200, 100}},
      {"claude-sonnet-4-5", "claude-sonnet-4-5", Usage{100, 2000, 1000, 2000, 500, 0}},
      {"claude-sonnet-4-5", "claude-sonnet-4-5", Usage{100000, 50000, 50000, 0, 1000, 0}},
      {"claude-sonnet-4-5", "claude-sonnet-4-5", Usage{100001, 50000, 50000, 0, 1000, 0}},
      {"claude-sonnet-4-5", "claude-sonnet-4-5", Usage{100001, 50000, 25000, 25000, 1000, 7}},
      {"gemini/gemini-2.5-flash", "gemini-2.5-flash", Usage{600, 400, 0, 0, 200, 300}},
  };
  for (const Case& c : cases) {
    Result<Cost> a = PriceCall(*lite, c.lite_model, c.usage);
    Result<Cost> b = PriceCall(yaml, c.yaml_model, c.usage);
    ASSERT_TRUE(a.ok() && b.ok()) << c.lite_model;
    EXPECT_EQ(a->total_fusd, b->total_fusd) << c.lite_model << " prompt " << c.usage.input;
    EXPECT_EQ(a->long_context_tier, b->long_context_tier) << c.lite_model;
  }
}

TEST(CostLiteLlm, ErrorsNameFileLineAndModel) {
  struct Case {
    const char* name;
    const char* json;
    const char* message_part;
  } cases[] = {
      {"syntax", "{\"m\": {\"input_cost_per_token\": 1e-6,\n", "litellm.json:"},
      {"negative", "{\"m\": {\n  \"input_cost_per_token\": -1e-6, \"output_cost_per_token\": 0}}",
       "litellm.json:2:27: m.input_cost_per_token: '-1e-6' is negative"},
      {"string", "{\"m\": {\"input_cost_per_token\": \"cheap\", \"output_cost_per_token\": 0}}",
       "m.input_cost_per_token: 'cheap' is not a decimal number"},
      {"not an object", "[1, 2]", "expected a JSON object"},
      {"model twice",
       "{\"m\": {\"input_cost_per_token\": 1e-6, \"output_cost_per_token\": 2e-6},\n"
       " \"m\": {\"input_cost_per_token\": 1e-7, \"output_cost_per_token\": 2e-7}}",
       "litellm.json:2:2: m: model listed twice"},
      {"a price key twice",
       "{\"m\": {\"input_cost_per_token\": 1e-6,\n  \"output_cost_per_token\": 2e-6, "
       "\"input_cost_per_token\": 0}}",
       "litellm.json:2:34: m.input_cost_per_token: key listed twice"},
      {"price rounding to zero",
       "{\"m\": {\"input_cost_per_token\": 1e-6,\n  \"output_cost_per_token\": 4e-16}}",
       "litellm.json:2:28: m.output_cost_per_token: price '4e-16' is below the smallest price a "
       "table holds, 1e-15 USD per token"},
      {"price rounding up to 1e-15",
       "{\"m\": {\"input_cost_per_token\": 7e-16, \"output_cost_per_token\": 1e-6}}",
       "m.input_cost_per_token: price '7e-16' is below the smallest price"},
      {"a tiny long-context price",
       "{\"m\": {\"input_cost_per_token\": 1e-6, \"output_cost_per_token\": 1e-6,\n"
       "  \"input_cost_per_token_above_200k_tokens\": 0.0000000000000001}}",
       "m.input_cost_per_token_above_200k_tokens: price '0.0000000000000001' is below"},
  };
  for (const Case& c : cases) {
    Result<PricingTable> t = PricingTable::FromLiteLlmJson(c.json, "litellm.json");
    ASSERT_FALSE(t.ok()) << c.name;
    EXPECT_TRUE(t.status().IsInvalidArgument()) << c.name;
    EXPECT_NE(t.status().message().find(c.message_part), std::string::npos)
        << c.name << ": " << t.status().message();
  }
}

// The smallest price, 1e-15 USD per token, and an explicit 0 (a free model)
// load; only positive prices below the smallest are refused.
TEST(CostLiteLlm, SmallestPriceAndZeroLoad) {
  Result<PricingTable> t = PricingTable::FromLiteLlmJson(
      R"({"smallest": {"input_cost_per_token": 1e-15, "output_cost_per_token": 0.0000000000000015},
          "free": {"input_cost_per_token": 0, "output_cost_per_token": 0.0}})",
      "litellm.json");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  auto smallest = t->Find("smallest");
  ASSERT_TRUE(smallest.ok());
  EXPECT_EQ(smallest->price->base.input, 1);
  EXPECT_EQ(smallest->price->base.output, 2);  // 1.5 fUSD, half to even
  auto free = t->Find("free");
  ASSERT_TRUE(free.ok());
  EXPECT_EQ(free->price->base.input, 0);
  Result<PricingTable> yaml = PricingTable::FromYaml(
      "models:\n  m: {input: 0.000000001, output: 0}\n", "prices.yaml");
  ASSERT_TRUE(yaml.ok()) << yaml.status().ToString();
  EXPECT_EQ(yaml->Find("m")->price->base.input, 1);
}

TEST(CostPriceCall, RejectsBadUsageAndOverflow) {
  PricingTable table = LoadTable();
  Result<Cost> neg = PriceCall(table, "gpt-4o", Usage{.input = -1});
  ASSERT_FALSE(neg.ok());
  EXPECT_TRUE(neg.status().IsInvalidArgument());
  EXPECT_NE(neg.status().message().find("input is negative"), std::string::npos)
      << neg.status().message();
  // 2^53 tokens at $10/1M is ~$90 billion: beyond int64 fUSD.
  Result<Cost> huge = PriceCall(table, "gpt-4o", Usage{.output = int64_t{1} << 53});
  ASSERT_FALSE(huge.ok());
  EXPECT_TRUE(huge.status().IsInvalidArgument()) << huge.status().ToString();
}

TEST(FormatUsd, ExactWithoutTrailingZeros) {
  EXPECT_EQ(FormatUsd(0), "$0");
  EXPECT_EQ(FormatUsd(830'000'000), "$0.83");
  EXPECT_EQ(FormatUsd(12'000'000'000), "$12");
  EXPECT_EQ(FormatUsd(2'365), "$0.000002365");
  EXPECT_EQ(FormatUsd(-1'500'000'000), "-$1.5");
  EXPECT_EQ(FormatUsd(INT64_MIN), "-$9223372036.854775808");
}

}  // namespace
}  // namespace bastion
