// Tests for ParseUsageReport (bastion/cost.h): recognising a provider's usage
// report by its shape, and refusing, with the keys named, what fits none.
#include <cstdint>
#include <string>

#include <gtest/gtest.h>

#include "bastion/cost.h"

namespace bastion {
namespace {

using Obj = Value::Object;

struct Accepted {
  const char* name;
  Value report;
  const char* provider;
  Usage want;
  const char* shape_part;  // in ParsedUsage::shape
};

TEST(UsageReport, RecognisesEveryShape) {
  const Accepted cases[] = {
      {"openai chat, auto",
       Obj{{"prompt_tokens", 1300},
           {"completion_tokens", 400},
           {"total_tokens", 1700},
           {"prompt_tokens_details", Obj{{"cached_tokens", 1000}, {"audio_tokens", 0}}},
           {"completion_tokens_details",
            Obj{{"reasoning_tokens", 150}, {"audio_tokens", 0},
                {"accepted_prediction_tokens", 0}, {"rejected_prediction_tokens", 0}}}},
       "auto", Usage{300, 1000, 0, 0, 250, 150}, "OpenAI chat completions"},
      {"openai chat, details null (SDK model_dump)",
       Obj{{"prompt_tokens", 10},
           {"completion_tokens", 5},
           {"prompt_tokens_details", nullptr},
           {"completion_tokens_details", nullptr}},
       "openai", Usage{10, 0, 0, 0, 5, 0}, "OpenAI chat completions"},
      {"openai embeddings", Obj{{"prompt_tokens", 8}, {"total_tokens", 8}}, "auto",
       Usage{8, 0, 0, 0, 0, 0}, "OpenAI chat completions"},
      {"openai responses, auto",
       Obj{{"input_tokens", 1300},
           {"output_tokens", 400},
           {"total_tokens", 1700},
           {"input_tokens_details", Obj{{"cached_tokens", 1000}}},
           {"output_tokens_details", Obj{{"reasoning_tokens", 150}}}},
       "auto", Usage{300, 1000, 0, 0, 250, 150}, "OpenAI responses"},
      {"anthropic, auto",
       Obj{{"input_tokens", 50},
           {"output_tokens", 1000},
           {"cache_read_input_tokens", 100000},
           {"cache_creation_input_tokens", 150000},
           {"cache_creation",
            Obj{{"ephemeral_5m_input_tokens", 100000}, {"ephemeral_1h_input_tokens", 50000}}},
           {"server_tool_use", Obj{{"web_search_requests", 1}}},
           {"service_tier", "standard"}},
       "auto", Usage{50, 100000, 100000, 50000, 1000, 0}, "Anthropic"},
      {"anthropic without cache keys",
       Obj{{"input_tokens", 7}, {"output_tokens", 3}}, "anthropic", Usage{7, 0, 0, 0, 3, 0},
       "Anthropic"},
      {"gemini REST, auto",
       Obj{{"promptTokenCount", 1300},
           {"candidatesTokenCount", 250},
           {"cachedContentTokenCount", 1000},
           {"thoughtsTokenCount", 150},
           {"totalTokenCount", 1700},
           {"promptTokensDetails", Value::Array{Obj{{"modality", "TEXT"}, {"tokenCount", 1300}}}}},
       "auto", Usage{300, 1000, 0, 0, 250, 150}, "Gemini usageMetadata"},
      {"gemini tool-use prompt tokens bill as input",
       Obj{{"promptTokenCount", 100}, {"candidatesTokenCount", 20},
           {"toolUsePromptTokenCount", 40}},
       "gemini", Usage{140, 0, 0, 0, 20, 0}, "Gemini"},
      {"gemini without candidates (omitted when 0)", Obj{{"promptTokenCount", 100}}, "auto",
       Usage{100, 0, 0, 0, 0, 0}, "Gemini"},
      {"gemini python SDK",
       Obj{{"prompt_token_count", 1300},
           {"candidates_token_count", 250},
           {"cached_content_token_count", 1000},
           {"thoughts_token_count", 150},
           {"total_token_count", 1700}},
       "auto", Usage{300, 1000, 0, 0, 250, 150}, "Python SDK"},
      {"langchain, auto",
       Obj{{"input_tokens", 5100},
           {"output_tokens", 500},
           {"total_tokens", 5600},
           {"input_token_details",
            Obj{{"cache_read", 2000}, {"cache_creation", 3000},
                {"ephemeral_5m_input_tokens", 1000}, {"ephemeral_1h_input_tokens", 2000},
                {"audio", 0}}},
           {"output_token_details", Obj{{"reasoning", 0}, {"audio", 0}}}},
       "auto", Usage{100, 2000, 1000, 2000, 500, 0}, "LangChain"},
      {"langchain, an unknown part of a breakdown is inside input_tokens",
       Obj{{"input_tokens", 100},
           {"output_tokens", 10},
           {"input_token_details", Obj{{"cache_read", 40}, {"some_new_part", 30}}}},
       "langchain", Usage{60, 40, 0, 0, 10, 0}, "LangChain"},
      {"input/output only: every reading agrees",
       Obj{{"input_tokens", 100}, {"output_tokens", 10}}, "auto", Usage{100, 0, 0, 0, 10, 0},
       "OpenAI responses / Anthropic messages / LangChain usage_metadata"},
      {"explicit zero usage is an honest zero", Obj{{"input_tokens", 0}, {"output_tokens", 0}},
       "auto", Usage{}, "Anthropic"},
      {"null counts are absent",
       Obj{{"prompt_tokens", 5}, {"completion_tokens", nullptr}}, "openai",
       Usage{5, 0, 0, 0, 0, 0}, "OpenAI chat completions"},
  };
  for (const Accepted& c : cases) {
    Result<ParsedUsage> got = ParseUsageReport(c.report, c.provider);
    ASSERT_TRUE(got.ok()) << c.name << ": " << got.status().ToString();
    EXPECT_EQ(got->usage, c.want) << c.name;
    EXPECT_NE(got->shape.find(c.shape_part), std::string::npos) << c.name << ": " << got->shape;
  }
}

struct Refused {
  const char* name;
  Value report;
  const char* provider;
  std::vector<const char*> message_parts;
};

TEST(UsageReport, RefusesWhatFitsNoShapeNamingTheKeys) {
  const Refused cases[] = {
      {"empty", Obj{}, "auto", {"usage is empty", "missing"}},
      {"null", Value(), "auto", {"usage must be a map", "got null"}},
      {"a list", Value::Array{Value(1), Value(2)}, "auto", {"usage must be a map", "got list"}},
      {"a number", Value(5), "openai", {"got int"}},
      {"misspelt key",
       Obj{{"prompt_tokens", 100}, {"completion_token", 50}}, "auto",
       {"'prompt_tokens', 'completion_token'", "closest shape OpenAI chat completions",
        "unknown key 'completion_token'"}},
      {"another provider's shape under an explicit provider",
       Obj{{"prompt_tokens", 150000}, {"completion_tokens", 100}}, "langchain",
       {"is not a usage report of provider 'langchain'", "unknown keys 'prompt_tokens', 'completion_tokens'",
        "missing 'input_tokens', 'output_tokens'"}},
      {"openai dict under anthropic", Obj{{"prompt_tokens", 1}}, "anthropic",
       {"is not a usage report of provider 'anthropic'"}},
      {"a whole response instead of its usage",
       Obj{{"id", "chatcmpl-1"}, {"usage", Obj{{"prompt_tokens", 1}}}}, "auto",
       {"'id', 'usage'"}},
      {"unknown top-level key of a known shape",
       Obj{{"input_tokens", 10}, {"output_tokens", 5}, {"cache_read_tokens", 100}}, "anthropic",
       {"unknown key 'cache_read_tokens'"}},
      {"two shapes mixed",
       Obj{{"input_tokens", 10},
           {"output_tokens", 5},
           {"cache_read_input_tokens", 3},
           {"input_token_details", Obj{{"cache_read", 3}}}},
       "auto", {"is not a known usage report"}},
      {"camelCase and snake_case mixed",
       Obj{{"promptTokenCount", 10}, {"candidates_token_count", 5}}, "gemini",
       {"unknown key 'candidates_token_count'"}},
      {"only a breakdown", Obj{{"prompt_tokens_details", Obj{{"cached_tokens", 5}}}}, "openai",
       {"missing 'prompt_tokens'"}},
      {"required key null", Obj{{"input_tokens", nullptr}, {"output_tokens", 3}}, "langchain",
       {"missing 'input_tokens'"}},
      {"float count", Obj{{"prompt_tokens", 12.5}}, "auto",
       {"usage.prompt_tokens must be an integer token count, got float 12.5"}},
      {"integral float count", Obj{{"prompt_tokens", 12.0}}, "auto",
       {"usage.prompt_tokens must be an integer token count, got float"}},
      {"bool count", Obj{{"input_tokens", true}, {"output_tokens", 1}}, "anthropic",
       {"usage.input_tokens must be an integer token count, got bool true"}},
      {"string count", Obj{{"promptTokenCount", "12"}}, "gemini",
       {"usage.promptTokenCount must be an integer token count, got str '12'"}},
      {"negative count", Obj{{"input_tokens", -1}, {"output_tokens", 1}}, "anthropic",
       {"input_tokens is negative (-1)"}},
      {"huge count", Obj{{"prompt_tokens", INT64_MAX}}, "openai", {"implausibly large"}},
      {"breakdown not a map",
       Obj{{"prompt_tokens", 5}, {"prompt_tokens_details", 3}}, "openai",
       {"usage.prompt_tokens_details must be a map, got int"}},
      {"nested count of the wrong type",
       Obj{{"input_tokens", 10},
           {"output_tokens", 5},
           {"output_token_details", Obj{{"reasoning", "2"}}}},
       "langchain", {"usage.output_token_details.reasoning must be an integer token count"}},
      {"parts larger than the whole",
       Obj{{"prompt_tokens", 10}, {"prompt_tokens_details", Obj{{"cached_tokens", 11}}}},
       "auto", {"cached_tokens (11) exceeds prompt_tokens (10)"}},
      {"unknown provider", Obj{{"input_tokens", 1}}, "cohere",
       {"unknown usage provider 'cohere'"}},
  };
  for (const Refused& c : cases) {
    Result<ParsedUsage> got = ParseUsageReport(c.report, c.provider);
    ASSERT_FALSE(got.ok()) << c.name << " was read as " << got->shape;
    EXPECT_TRUE(got.status().IsInvalidArgument()) << c.name << ": " << got.status().ToString();
    for (const char* part : c.message_parts) {
      EXPECT_NE(got.status().message().find(part), std::string::npos)
          << c.name << ": '" << part << "' not in: " << got.status().message();
    }
  }
}

TEST(UsageReport, AReportThatFitsSeveralShapesNamesEveryOneThatReadsItAlike) {
  const Value report = Obj{{"input_tokens", 7}, {"output_tokens", 3}};
  Result<ParsedUsage> got = ParseUsageReport(report, "auto");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->usage, (Usage{7, 0, 0, 0, 3, 0}));
  EXPECT_EQ(got->shape, "OpenAI responses / Anthropic messages / LangChain usage_metadata");
  // Under an explicit provider only that provider's shapes are tried.
  got = ParseUsageReport(report, "anthropic");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->shape, "Anthropic messages");
}

// The failure this guards against: a 150k-token OpenAI report read with a
// LangChain reader priced at $0. Read automatically it costs what it should.
TEST(UsageReport, AnOpenAIReportIsNeverPricedAtZero) {
  Result<PricingTable> table =
      PricingTable::FromYaml("models:\n  gpt-4o: {input: 2.50, output: 10.00}\n", "p.yaml");
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  const Value report = Obj{{"prompt_tokens", 150000}, {"completion_tokens", 1000}};
  Result<ParsedUsage> parsed = ParseUsageReport(report, "auto");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  Result<Cost> cost = PriceCall(*table, "gpt-4o", parsed->usage);
  ASSERT_TRUE(cost.ok()) << cost.status().ToString();
  EXPECT_EQ(cost->total_nanousd, 385'000'000);  // 150k x $2.50/M + 1k x $10/M
  EXPECT_FALSE(ParseUsageReport(report, "langchain").ok());
}

}  // namespace
}  // namespace bastion
