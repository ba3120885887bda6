// Provider usage reports -> normalized Usage -> a priced call. The input is
// either a JSON document {"provider": "...", "usage": {...}}, read the way
// the Python binding reads a response's usage dict, or (any input not
// starting with '{') raw integers for the four providers' structs.
// Invariants: normalizing never loses or invents tokens (the disjoint counts
// add back up to the provider's totals), accepted usage validates, and a
// priced call's exact components add up to its total, which rounds to the
// nano-USD figure.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include "bastion/cost.h"
#include "bastion/value.h"
#include "fuzz_check.h"
#include "policy/bundle.h"

namespace bastion {
namespace {

const PricingTable& Table() {
  static const PricingTable* table = [] {
    auto t = PricingTable::FromYaml(R"(models:
  flat:
    input: 2.50
    output: 10.00
  tiered:
    input: 3.00
    output: 15.00
    cache_read: 0.30
    cache_write_5m: 3.75
    cache_write_1h: 6.00
    reasoning: 20.00
    long_context: {above_input_tokens: 200000, input: 6.00, output: 22.50}
  free:
    input: 0
    output: 0
)",
                                    "fuzz-prices.yaml");
    FUZZ_CHECK(t.ok(), "%s", t.status().ToString().c_str());
    return new PricingTable(std::move(*t));
  }();
  return *table;
}

void CheckPriced(const Usage& u) {
  for (const char* model : {"flat", "tiered", "free"}) {
    Result<Cost> c = PriceCall(Table(), model, u);
    if (!c.ok()) {
      FUZZ_CHECK(c.status().IsInvalidArgument(), "%s", c.status().ToString().c_str());
      continue;
    }
    const __int128 sum = static_cast<__int128>(c->input_fusd) + c->cache_read_fusd +
                         c->cache_write_5m_fusd + c->cache_write_1h_fusd + c->output_fusd +
                         c->reasoning_fusd;
    FUZZ_CHECK(sum == c->total_fusd, "components do not add up to the total (%s)", model);
    FUZZ_CHECK(c->input_fusd >= 0 && c->cache_read_fusd >= 0 && c->cache_write_5m_fusd >= 0 &&
                   c->cache_write_1h_fusd >= 0 && c->output_fusd >= 0 && c->reasoning_fusd >= 0,
               "negative component (%s)", model);
    FUZZ_CHECK(c->total_nanousd == RoundFusdToNanousd(c->total_fusd), "rounding (%s)", model);
    const __int128 diff = static_cast<__int128>(c->total_nanousd) * 1'000'000 - c->total_fusd;
    FUZZ_CHECK(diff <= 500'000 && diff >= -500'000, "rounded by more than half a nano-USD");
    FUZZ_CHECK(c->resolved_model == model, "resolved '%s' as '%s'", model,
               c->resolved_model.c_str());
    FUZZ_CHECK(c->long_context_tier == (std::string_view(model) == "tiered" &&
                                        u.PromptTokens() > 200000),
               "long-context tier chosen wrongly");
  }
}

void CheckUsage(const Result<Usage>& u, int64_t prompt_side, int64_t output_side) {
  if (!u.ok()) {
    FUZZ_CHECK(u.status().IsInvalidArgument() && !u.status().message().empty(), "%s",
               u.status().ToString().c_str());
    return;
  }
  FUZZ_CHECK(ValidateUsage(*u).ok(), "normalized usage does not validate: %s",
             ValidateUsage(*u).ToString().c_str());
  FUZZ_CHECK(u->PromptTokens() == prompt_side, "prompt tokens %lld, reported %lld",
             static_cast<long long>(u->PromptTokens()), static_cast<long long>(prompt_side));
  FUZZ_CHECK(u->output + u->reasoning == output_side, "output tokens %lld, reported %lld",
             static_cast<long long>(u->output + u->reasoning),
             static_cast<long long>(output_side));
  CheckPriced(*u);
}

// A provider's total from its parts, without overflowing on hostile counts:
// -1 (never a valid total) when it does not fit. Totals are only compared when
// normalizing succeeded, which bounds every count by 2^53.
int64_t Sum(std::initializer_list<int64_t> xs) {
  __int128 s = 0;
  for (int64_t x : xs) s += x;
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  return s > kMax || s < kMin ? int64_t{-1} : static_cast<int64_t>(s);
}

// Mirrors the binding: a missing field is 0; anything but an integer is an
// error there, so such inputs end here.
std::optional<int64_t> Field(const Value& usage, std::initializer_list<const char*> path) {
  const Value* v = &usage;
  for (const char* key : path) {
    if (v->type() != Value::Type::kObject) return int64_t{0};
    v = v->Find(key);
    if (v == nullptr || v->is_null()) return int64_t{0};
  }
  if (v->type() != Value::Type::kInt) return std::nullopt;
  return v->as_int();
}

void FromJson(const std::string& text) {
  Result<Value> doc = policy::ParseYamlValue(text, "usage.json");
  if (!doc.ok() || doc->type() != Value::Type::kObject) return;
  const Value* provider = doc->Find("provider");
  const Value* usage = doc->Find("usage");
  if (provider == nullptr || usage == nullptr || provider->type() != Value::Type::kString ||
      usage->type() != Value::Type::kObject) {
    return;
  }
  const std::string& p = provider->as_string();
  auto get = [&](std::initializer_list<const char*> path, int64_t* out) {
    std::optional<int64_t> v = Field(*usage, path);
    if (v) *out = *v;
    return v.has_value();
  };
  if (p == "openai") {
    OpenAIUsage r;
    if (!get({"prompt_tokens"}, &r.prompt_tokens) ||
        !get({"completion_tokens"}, &r.completion_tokens) ||
        !get({"prompt_tokens_details", "cached_tokens"}, &r.cached_tokens) ||
        !get({"completion_tokens_details", "reasoning_tokens"}, &r.reasoning_tokens)) {
      return;
    }
    CheckUsage(NormalizeOpenAI(r), r.prompt_tokens, r.completion_tokens);
  } else if (p == "anthropic") {
    AnthropicUsage r;
    if (!get({"input_tokens"}, &r.input_tokens) || !get({"output_tokens"}, &r.output_tokens) ||
        !get({"cache_read_input_tokens"}, &r.cache_read_input_tokens) ||
        !get({"cache_creation_input_tokens"}, &r.cache_creation_input_tokens) ||
        !get({"cache_creation", "ephemeral_5m_input_tokens"}, &r.ephemeral_5m_input_tokens) ||
        !get({"cache_creation", "ephemeral_1h_input_tokens"}, &r.ephemeral_1h_input_tokens)) {
      return;
    }
    CheckUsage(NormalizeAnthropic(r),
               Sum({r.input_tokens, r.cache_read_input_tokens, r.cache_creation_input_tokens}),
               r.output_tokens);
  } else if (p == "gemini") {
    GeminiUsage r;
    if (!get({"promptTokenCount"}, &r.prompt_token_count) ||
        !get({"candidatesTokenCount"}, &r.candidates_token_count) ||
        !get({"cachedContentTokenCount"}, &r.cached_content_token_count) ||
        !get({"thoughtsTokenCount"}, &r.thoughts_token_count)) {
      return;
    }
    CheckUsage(NormalizeGemini(r), r.prompt_token_count,
               Sum({r.candidates_token_count, r.thoughts_token_count}));
  } else if (p == "langchain") {
    LangChainUsage r;
    if (!get({"input_tokens"}, &r.input_tokens) || !get({"output_tokens"}, &r.output_tokens) ||
        !get({"input_token_details", "cache_read"}, &r.cache_read) ||
        !get({"input_token_details", "cache_creation"}, &r.cache_creation) ||
        !get({"input_token_details", "ephemeral_5m_input_tokens"},
             &r.ephemeral_5m_input_tokens) ||
        !get({"input_token_details", "ephemeral_1h_input_tokens"},
             &r.ephemeral_1h_input_tokens) ||
        !get({"output_token_details", "reasoning"}, &r.reasoning)) {
      return;
    }
    CheckUsage(NormalizeLangChain(r), r.input_tokens, r.output_tokens);
  }
}

// Small counts, boundaries and arbitrary 64-bit values alike.
int64_t Count(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange<int>(0, 3)) {
    case 0: return in.ConsumeIntegralInRange<int64_t>(0, 1'000'000);
    case 1: return (int64_t{1} << 53) + in.ConsumeIntegralInRange<int64_t>(-2, 2);
    case 2: return in.ConsumeIntegralInRange<int64_t>(-2, 2);
    default: return in.ConsumeIntegral<int64_t>();
  }
}

void FromStructs(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  switch (in.ConsumeIntegralInRange<int>(0, 3)) {
    case 0: {
      OpenAIUsage r{Count(in), Count(in), Count(in), Count(in)};
      CheckUsage(NormalizeOpenAI(r), r.prompt_tokens, r.completion_tokens);
      break;
    }
    case 1: {
      AnthropicUsage r{Count(in), Count(in), Count(in), Count(in), Count(in), Count(in)};
      CheckUsage(NormalizeAnthropic(r),
                 Sum({r.input_tokens, r.cache_read_input_tokens, r.cache_creation_input_tokens}),
                 r.output_tokens);
      break;
    }
    case 2: {
      GeminiUsage r{Count(in), Count(in), Count(in), Count(in)};
      CheckUsage(NormalizeGemini(r), r.prompt_token_count,
                 Sum({r.candidates_token_count, r.thoughts_token_count}));
      break;
    }
    default: {
      LangChainUsage r{Count(in), Count(in), Count(in), Count(in), Count(in), Count(in), Count(in)};
      CheckUsage(NormalizeLangChain(r), r.input_tokens, r.output_tokens);
      break;
    }
  }
}

}  // namespace
}  // namespace bastion

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 0 && data[0] == '{') {
    bastion::FromJson(std::string(reinterpret_cast<const char*>(data), size));
  } else {
    bastion::FromStructs(data, size);
  }
  return 0;
}
